"""`loscat-hf demo-data`: SYNTHETIC phantom "clinical photos" of localized scleroderma, messy rater labels.

Real patient photos cannot ship, yet every step of the pipeline (prepare, train, evaluate, batch labelling)
needs something realistic to run on. The phantom draws a simple child's body (front or back view) in a
camera frame around one LoSCAT site (or, with `multi_region`, two adjacent sites with a streak across their
border), paints morphea plaques whose look follows LoSCAT severities, and writes what a clinic archive really
looks like: identifying file names, EXIF with GPS and a patient name, several raters who spell sites in their
own way and sometimes disagree. Everything is marked SYNTHETIC.

Deterministic: a plan is drawn from `seed` in the main process; each photo is then rendered from its own
RNG seeded with (seed, photo index), so the same arguments give the same bytes with any number of workers.

Modules, each importing only those above it:
    shapes    outline primitives (ellipses, limb tubes)
    anatomy   joints, site areas and camera aim points of a body; site name -> side, class
    body      the body as drawing operations, one function per part
    camera    framing jitter and body units -> pixels
    lesions   plaque shapes and painting them by LoSCAT severity
    render    one photo's pixels (render_photo)
    jpeg      one photo on disk: EXIF orientation, identifying EXIF, JPEG
    raters    rater labels, spellings, quality marks
    cohort    patients, visits, severities, photo specs
    plan      the whole archive drawn from one seed
    generate  generate_demo_data: arguments, output folder, rendering in parallel, CSVs, README
"""

from loscat_hf.demo.phantom.camera import FRAMING
from loscat_hf.demo.phantom.cohort import SEVERITY_COLUMNS, SKIN_TONES
from loscat_hf.demo.phantom.generate import OUTPUTS, format_summary, generate_demo_data
from loscat_hf.demo.phantom.raters import RATERS, spelling_variants
from loscat_hf.demo.phantom.render import WORK_SIDE, render_photo

__all__ = ["FRAMING", "OUTPUTS", "RATERS", "SEVERITY_COLUMNS", "SKIN_TONES", "WORK_SIDE", "format_summary",
           "generate_demo_data", "render_photo", "spelling_variants"]
