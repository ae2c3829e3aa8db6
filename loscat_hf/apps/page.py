"""What the Space's page says about the model it serves: which model, what its record says it was trained
on, whether its numbers are calibrated, its intended use and limits, and, for a multi-region model, how to
read its scores.

Built from the model folder's own record through `model/published.py`'s allow-lists: the page is public and a
config.json may hold anything. A multi-region model's text claims no more than its record holds: per-class
sigmoid scores (independent, not a distribution, and not called probabilities), each compared with its
threshold, fitted on as many photos as the record says (or not recorded: then it says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loscat_hf.model.folder import ModelFolder

# The page's intended use and limits (`intended_use`): fixed words around what the model's record says
_USE = ("**Intended use.** Research and quality-control aid that suggests which LoSCAT {regions} "
        "(18 anatomic sites merged into 12 side-agnostic classes) a clinical photo of localized scleroderma "
        "shows, e.g. to pre-sort an archive before a person checks the labels. **Not a medical device; not "
        "for diagnosis or treatment decisions.** It does not grade disease activity or damage.")
USE = _USE.format(regions="body region")
DEMO_USE = ("**Intended use.** A demonstration of loscat-hf only: this model was trained on SYNTHETIC "
            "phantoms and has never seen a photograph of a patient. **Do not use its answers on patients' "
            "photos.** Not a medical device.")
OUT_OF_DISTRIBUTION = ("other cameras, skin tones, framing or body parts outside the 18 LoSCAT sites can "
                       "give confident wrong answers")
REVIEW = "Low-confidence answers are marked *needs review*."
MULTI_REVIEW = ("*Needs review* marks a photo where no region reaches its threshold or a score sits near "
                "its threshold.")
LIMITS = (f"Left and right are merged. {REVIEW} The explanation "
          "map (attention rollout) shows which patches the model used, not why. Photos, answers and the "
          "batch CSV are deleted about 10 minutes after upload; nothing is stored or flagged. The example "
          "photos are **SYNTHETIC** phantoms, not patients.")
TITLE = "# LoSCAT body region of a localized scleroderma photo\n"
MULTI_TITLE = "# LoSCAT body regions of a localized scleroderma photo\n"
REGIONS_LABEL = "Regions shown (independent per-class scores)"  # the answer's gr.Label


def headline(folder: ModelFolder, name: str) -> str:
    """The page's title, what the model does and which model it is."""
    if not folder.multi_label:
        return (f"{TITLE}Upload a photo: the model suggests the body region (12 side-agnostic LoSCAT "
                f"classes).\n\n{model_description(folder, name)}")
    return (f"{MULTI_TITLE}Upload a photo: the model lists every body region it finds in it "
            f"({len(folder.labels)} side-agnostic LoSCAT classes; a lesion may span several), each with its "
            f"own score.\n\n{model_description(folder, name)}")


def model_description(folder: ModelFolder, name: str) -> str:
    """Which model the page serves, crediting the study where its weights come from the study's model."""
    from loscat_hf.model.folder import looks_local
    from loscat_hf.model.study import STUDY_CODE_REPO, STUDY_WEIGHTS_REPO

    source = folder.source
    # a Hub id, or only a folder's name (not the local path)
    shown = Path(name).name if looks_local(name) else name
    if source.get("study"):
        links = (f"([weights](https://huggingface.co/{STUDY_WEIGHTS_REPO}), "
                 f"[code](https://github.com/{STUDY_CODE_REPO})). Credit: the study's authors.")
        if folder.fine_tuned:  # `train` records its run: fine-tuned further
            return (f"**Model**: `{shown}`, fine-tuned by loscat-hf from the LoSCAT study's published ViT "
                    f"{links}")
        return (f"**Model**: the LoSCAT body-region study's published ViT, `{source.get('checkpoint')}`, "
                f"converted by loscat-hf {links}")
    if source:
        return f"**Model**: `{shown}`, converted by loscat-hf from `{source.get('checkpoint')}`."
    return f"**Model**: `{shown}`."


def trained_on(folder: ModelFolder) -> str:
    """What the model's own record says its weights learnt from (allowed values only: the page is public)."""
    from loscat_hf.model.published import data_shown

    data = data_shown(folder.data)
    check = "validate it on your own labelled photos before use"
    photos = f"{data['photos']} photos" if data and data["photos"] is not None else "photos"
    if data and data["kind"] == "synthetic":
        return (f"Trained on SYNTHETIC phantoms (`loscat-hf demo-data`, {photos}): its answers on "
                "photographs of patients mean nothing.")
    if data and data["kind"] in ("clinical", "mixed"):
        verb = ("Trained from scratch" if (folder.base_model or {}).get("kind") == "scratch" else
                "Fine-tuned from the LoSCAT study's published model" if folder.source.get("study") else
                "Fine-tuned")
        some = ", some of them SYNTHETIC phantoms" if data["kind"] == "mixed" else ""
        return f"{verb} on {photos} of this clinic{some}: {OUT_OF_DISTRIBUTION}."
    if data:
        return f"Trained by loscat-hf on {photos} whose origin was not recorded: {check}."
    if folder.source and not folder.fine_tuned:
        whose = "the LoSCAT study's published model" if folder.source.get("study") else "a timm checkpoint"
        return (f"Converted from {whose}: trained by its authors on their photos, which loscat-hf did not "
                f"see; {check} (`loscat-hf evaluate`).")
    if folder.fine_tuned:
        return f"Trained by loscat-hf, but what it was trained on was not recorded: {check}."
    return (f"Of unknown origin: its folder does not record what it was trained on; {check}. "
            f"{OUT_OF_DISTRIBUTION[0].upper()}{OUT_OF_DISTRIBUTION[1:]}.")


def calibration_note(folder: ModelFolder) -> str:
    """Whether the probabilities (a multi-region model: scores) shown were calibrated on labelled photos, and
    on how many."""
    from loscat_hf.model.published import calibration_shown

    multi = folder.multi_label
    if not folder.calibrated:
        if multi:
            return ("**Not calibrated**: its scores are the raw per-class sigmoids and can be "
                    "over-confident, so *needs review* may miss photos it gets wrong.")
        return ("**Not calibrated**: its probabilities are the raw softmax and can be over-confident, so "
                "*needs review* may miss photos it gets wrong (`loscat-hf calibrate` fits a temperature on "
                "labelled photos).")
    how = calibration_shown(folder.calibration) or {}
    if multi:  # one temperature rescales every class's logit: the scores stay scores, not probabilities
        on = (f"{how['n']} labelled photos" + (f" of the {how['split']} split" if how.get("split") else "")
              if how.get("n") else "photos (how many was not recorded)")
        return f"Scores computed with a temperature fitted on {on}."
    if not how.get("n"):
        return "Probabilities calibrated by a recorded temperature (on how many photos was not recorded)."
    split = f" of the {how['split']} split" if how.get("split") else ""
    ece = (f" (expected calibration error {how['ece_before']:.3f} before, {how['ece_after']:.3f} after)"
           if how.get("ece_before") is not None and how.get("ece_after") is not None else "")
    return f"Probabilities calibrated on {how['n']} labelled photos{split}{ece}."


def intended_use(folder: ModelFolder) -> str:
    """The page's intended use and limits, from the model's own record: what it was trained on (or converted
    from), and whether its probabilities are calibrated."""
    synthetic = (folder.data or {}).get("kind") == "synthetic"
    use = DEMO_USE if synthetic else _USE.format(regions="body regions") if folder.multi_label else USE
    limits = LIMITS.replace(REVIEW, MULTI_REVIEW) if folder.multi_label else LIMITS
    return f"{use}\n\n**Limits.** {trained_on(folder)} {calibration_note(folder)} {limits}"


def thresholds_note(folder: ModelFolder) -> str:
    """How a multi-region model's thresholds were fitted, as its record says (allowed values only)."""
    from loscat_hf.model.published import thresholds_shown

    how = thresholds_shown(folder.threshold_record, folder.labels)
    if not how:
        return ("No thresholds are recorded with this model: every region is compared with 0.5 (the "
                "sigmoid's midpoint), fitted on no photos.")
    by = f" by `loscat-hf {how['by']}`" if how["by"] else ""
    split = f" of the {how['split']} split" if how["split"] else ""
    on = (f"on {how['n']} labelled photos{split}" if how["n"] else
          f"on photos{split} (how many was not recorded)")
    rule = f" ({how['rule']})" if how["rule"] else ""
    defaulted = [c for c in folder.labels if c in (how["default_for"] or ())]
    kept = [c for c in folder.labels if c in (how["kept_for"] or ())]
    missing = [c for c in folder.labels if c not in how["values"]]
    rest = "".join(f" {', '.join(names)}: {why}." for names, why in (
        (defaulted, "none of those photos showed it, so its threshold was not fitted (the default is used)"),
        (kept, "none of those photos showed it, so it keeps its earlier threshold"),
        (missing, "no threshold recorded, so 0.5 is used")) if names)
    return f"The thresholds were fitted{by} {on}{rule}.{rest}"


def reading_guide(folder: ModelFolder, margin: float) -> str:
    """How to read a multi-region model's answer: independent per-class scores, each against its threshold,
    and what *needs review* means."""
    listed = ", ".join(f"{c} {t:.3g}" for c, t in zip(folder.labels, folder.thresholds, strict=True))
    raw = ("" if folder.calibrated else
           " Not calibrated: a score ranks how strongly the model sees a region, it is not the probability "
           "that the photo shows it.")
    return ("**How to read the answer.** This model scores each region on its own: one sigmoid score "
            "between 0 and 1 per region. The scores are independent, not a distribution: they need not sum "
            f"to 1, and several regions can pass at once.{raw} A region is shown when its score reaches its "
            f"own threshold: {listed}. {thresholds_note(folder)} *Needs review* means that no region "
            f"reaches its threshold, or that a score lies within {margin:.2f} of its threshold: check such "
            "photos by eye.")
