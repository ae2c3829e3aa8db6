"""The public dataset card and report of a packed dataset, built from an allow-list of values.

Only counts, class names, reason keys and parameters go in: never a CSV cell or file name, so nothing
private can be quoted and no redaction is needed.
"""

from __future__ import annotations

import copy
import json
import logging
import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata

from loscat_hf import __version__
from loscat_hf.data.dataset import (
    LICENSE_NAME,
    METADATA_COLUMNS,
    PATIENT_PREFIX,
    PRIVATE_DIR,
    PRIVATE_FILES,
    VISIT_PREFIX,
)
from loscat_hf.data.splits import SPLIT_ORDER
from loscat_hf.errors import Problem

logger = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    out = {"loscat_hf": __version__, "python": platform.python_version()}
    for dist in ("pillow", "numpy", "scikit-learn", "datasets", "huggingface-hub"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def build_report(
    *, counts: dict, patients: dict, n_photos: int, classes: Sequence[str], problems: Sequence[Problem],
    warnings: Sequence[str], agreement: Mapping, parameters: Mapping, extra_columns: Sequence[str],
    private_counts: Mapping[str, int], phantoms: Mapping[str, int],
    split_photos: Mapping[str, int] | None = None, regions_per_photo: Mapping[int, int] | None = None,
) -> dict:
    """The publishable report: an allow-list of counts, class names, reason keys and parameters.

    `phantoms`: per split, how many packed photos are `loscat-hf demo-data` phantoms (decided per photo from
    its EXIF before packing re-encoded it): the only record of it, since the packed photos carry no EXIF.
    `split_photos`: photos per split (default: the sum of its class counts, right when each photo has one
    region); `regions_per_photo` (a multi-region dataset): how many photos show 1, 2, ... regions."""
    by_reason = dict(sorted(Counter(p.kind for p in problems).items(), key=lambda kv: (-kv[1], kv[0])))
    n_phantoms = sum(phantoms.get(s, 0) for s in counts)
    return {
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "n_photos": n_photos,
        "n_patients": sum(patients.values()),
        "phantom_photos": n_phantoms,  # SYNTHETIC photos of `loscat-hf demo-data`, not patients
        "synthetic": n_photos > 0 and n_phantoms == n_photos,  # every photo is one
        "classes": list(classes),
        "splits": {
            s: {"photos": (split_photos or {}).get(s, sum(counts[s].values())), "patients": patients[s],
                "phantom_photos": phantoms.get(s, 0), "per_class": counts[s]}
            for s in SPLIT_ORDER if s in counts
        },
        # reasons only: each problem with its file, CSV row and full message is in private/problems.csv
        "exclusions": {"total": len(problems), "by_reason": by_reason},
        "warnings": list(warnings),
        "private": {"folder": PRIVATE_DIR, "files": list(PRIVATE_FILES), **dict(private_counts)},
        "agreement": dict(agreement),
        **({"multi_region": True,  # a `labels` column; photos per number of regions they show
            "regions_per_photo": {str(k): int(v) for k, v in sorted(regions_per_photo.items())},
            "single_region_would_drop": int(sum(v for k, v in regions_per_photo.items() if k > 1))}
           if regions_per_photo is not None else {}),
        "columns": list(METADATA_COLUMNS) + list(extra_columns),
        "parameters": dict(parameters),
        "versions": _versions(),
    }

_REASON_TEXT = {
    "missing_image": "photo file not found",
    "zero_byte": "empty (0-byte) file",
    "not_an_image": "not an image file",
    "truncated": "incomplete (truncated) file",
    "decompression_bomb": "too many pixels (possible decompression bomb)",
    "unreadable": "file could not be read or decoded",
    "duplicate_image": "byte-identical copy of another photo",
    "outside_images_dir": "path points outside the images folder",
    "unknown_region": "region not in the taxonomy",
    "quality_excluded": "marked poor quality / exclude",
    "missing_value": "empty image, patient_id or region cell",
    "two_patients": "one photo labelled for two patients",
    "tie": "raters tied",
    "no_majority": "no region named by more than half of the raters (several regions)",
    "conflicting_rating": "one rater gave two regions",
    "duplicate_row": "repeated CSV row",
}


def _reason_text(kind: str) -> str:
    if kind.startswith("non_site:"):
        return f"raters' consensus is the non-site code `{kind.split(':', 1)[1]}`"
    return _REASON_TEXT.get(kind, kind.replace("_", " "))


def dataset_card(report: dict, table_md: str, agreement: Mapping | None, features) -> str:
    """The dataset card, built from the public report only (so it can quote nothing private)."""
    import yaml

    splits = list(report["splits"])
    yaml_features = features._to_yaml_list()
    synthetic, n_phantoms = bool(report.get("synthetic")), report.get("phantom_photos") or 0
    if synthetic:
        # every pixel, name and score was generated by `loscat-hf demo-data`: no person and no clinic's
        # photo is in it, so the data goes under the licence of the Apache-2.0 project that generated it (a
        # standard licence id: the Hub needs no link)
        licence = {"license": "apache-2.0"}
    else:
        # patients' photos, shared under the centre's data-sharing terms: no licence is granted. The Hub
        # expects a `license_link` with `other`: the terms file, written and published with the data
        licence = {"license": "other", "license_name": "private-clinical-data", "license_link": LICENSE_NAME}
    header = {
        "pretty_name": ("SYNTHETIC LoSCAT body-region phantom photos (loscat-hf demo-data)" if synthetic
                        else "LoSCAT body-region photos (loscat-hf)"),
        **licence,
        "task_categories": ["image-classification"],
        "tags": ["medical", "dermatology", "localized-scleroderma", "morphea", "loscat", "body-region"]
        + (["synthetic"] if n_phantoms else []),
        "size_categories": [_size_category(report["n_photos"])],
        # the schema in one place: `load_dataset(DIR or repo id)` reads it from `configs` (ClassLabel labels,
        # float scores, text codes, one schema in every split); `dataset_info` is what the Hub shows
        "dataset_info": {"features": yaml_features},
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": s, "path": f"{s}/*"} for s in splits],
            "features": copy.deepcopy(yaml_features),  # a copy: no YAML anchor/alias in the card header
        }],
    }
    params = report["parameters"]
    private = report["private"]
    labelled = (f"each labelled with the LoSCAT body region it shows ({len(report['classes'])} classes, "
                f"sides folded; `site` keeps the side). Built by `loscat-hf prepare` "
                f"{report['versions'].get('loscat_hf', '')} on {report['created_utc']}")
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", ""]
    if synthetic:
        lines += [
            "# SYNTHETIC LoSCAT body-region phantom photos", "",
            "**SYNTHETIC** phantom photographs drawn by `loscat-hf demo-data`, not photographs of patients: "
            f"rendered bodies with localized-scleroderma-like plaques, {labelled}: {report['n_photos']} "
            f"phantom photos of {report['n_patients']} made-up patients. They test the pipeline; a model "
            "trained on them says nothing about real photographs.", "",
            f"Licence: Apache-2.0, as the loscat-hf project that generated them "
            f"([{LICENSE_NAME}]({LICENSE_NAME})).",
            "",
        ]
    else:
        lines += [
            "# LoSCAT body-region photos", "",
            f"Clinical photographs of localized scleroderma, {labelled}: {report['n_photos']} photos of "
            f"{report['n_patients']} patients.", "",
        ]
        if n_phantoms:
            lines += [
                f"**{n_phantoms} of the {report['n_photos']} photos are SYNTHETIC** phantoms drawn by "
                "`loscat-hf demo-data`, not patients (per split: " + ", ".join(
                    f"{s} {v.get('phantom_photos', 0)} of {v['photos']}" for s, v in report["splits"].items())
                + "); the others are not.", "",
            ]
        lines += [
            "**Private clinical data**, shared under the data-sharing terms of the centre that took the "
            f"photos: no licence is granted ([{LICENSE_NAME}]({LICENSE_NAME})). Keep the repository private "
            "unless the photos are cleared for release.", "",
        ]
    lines += [
        "## Structure", "",
        "Hugging Face `imagefolder`: one folder per split, each with a `metadata.parquet` giving per photo: "
        + ", ".join(f"`{c}`" for c in report["columns"][:2] + ["labels"] * bool(report.get("multi_region"))
                    + report["columns"][2:]) + ". The features are declared in this card's "
        "header and in each metadata file's schema, so loading the folder (or the Hub repo) gives `label` "
        "as a `ClassLabel` in taxonomy order and the same schema in every split (a missing value is `None`):",
        "", "```python", "from datasets import load_dataset",
        'ds = load_dataset("path/to/dataset")  # or the Hub repo id',
        'ds = load_dataset("imagefolder", data_dir="path/to/dataset")  # the same', "```", "",
        *_multi_region_text(report),
        "## Counts per class and split", "", table_md, "",
        "## Exclusions", "",
    ]
    by_reason = report["exclusions"]["by_reason"]
    if by_reason:
        lines += ["| reason | count | meaning |", "|---|---:|---|"]
        lines += [f"| `{k}` | {n} | {_reason_text(k)} |" for k, n in by_reason.items()]
        lines += ["", "Whoever prepared the data holds the list of excluded photos; it is not published."]
    else:
        lines.append("Nothing was excluded.")
    lines += ["", "## Rater agreement", "", _agreement_text(agreement), ""]
    lines += ["## De-identification", ""]
    if synthetic:
        lines += ["The phantoms carry made-up identifying file names and EXIF on purpose; `prepare` treated "
                  "them as it treats every photo:", ""]
    lines += [
        "- Every photo was decoded and re-encoded as JPEG (quality 95): EXIF (camera, dates, GPS), XMP, "
        "IPTC, ICC profiles, PNG text and comments are gone; EXIF orientation was applied to the pixels, "
        "colour converted to sRGB.",
        f"- Photos were downscaled so the shorter side is at most {params.get('max_side')} pixels (at least "
        f"{round((1 - params.get('size_slack', 0)) * params.get('max_side', 0))} unless the original was "
        "smaller).",
        "- File names are opaque ids (a keyed hash of the original file; the key is not published).",
        f"- `patient_id` and `visit` are opaque codes drawn for this dataset (`{PATIENT_PREFIX}001`, "
        f"`{VISIT_PREFIX}001`, in random order); photos of one patient share a code. The map back to the "
        "clinic's ids and the original files stays with whoever prepared the data and is never uploaded.",
        "- Only the columns loscat-hf defines"
        + (", and " + ", ".join(f"`{c}`" for c in report["columns"][len(METADATA_COLUMNS):])
           + " (kept on purpose)" if len(report["columns"]) > len(METADATA_COLUMNS) else "")
        + f", are published; {private['dropped_columns']} other column(s) of the annotation export were left "
        "out.",
        "- Rater names are replaced by `rater 1`, `rater 2`, ...",
        "- The pixels themselves can still identify a person (faces, tattoos, jewellery): review before "
        "sharing.",
        "", "## Splits by patient", "",
        f"All photos of one patient are in the same split (no patient is in two splits). Splits come from "
        f"scikit-learn's `StratifiedGroupKFold` (stratified by class, grouped by patient; see the warnings "
        f"for a split too small to stratify), seed "
        f"{params.get('seed')}, validation share {params.get('val_fraction')}"
        + (f", test share {params.get('test_fraction')}" if params.get("test_fraction") else "")
        + " of the photos. Patients per split: "
        + ", ".join(f"{s} {v['patients']}" for s, v in report["splits"].items()) + ".",
    ]
    if report["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def _multi_region_text(report: Mapping) -> list[str]:
    """The card's section on photos that show several regions (`labels`), from the report's counts."""
    per = report.get("regions_per_photo")
    if not report.get("multi_region") or not isinstance(per, Mapping):
        return []
    counts = ", ".join(f"{n} photo{'s show' if n != 1 else ' shows'} {k} region{'s' if k != '1' else ''}"
                       for k, n in per.items())
    return [
        "## Photos that show several regions", "",
        "A photo may show several regions (a linear lesion running from the thigh to the leg). `labels` "
        "lists every region of every photo (`Sequence(ClassLabel)`); `label` is the one region of a "
        "single-region photo and empty (`None`) on the others, whose `site` lists their sites "
        f"`;`-separated. {counts}. "
        f"A single-region dataset would have left out {report.get('single_region_would_drop', 0)} of the "
        f"{report['n_photos']} photos. The class counts below count such a photo under each of its regions.",
        "",
    ]


def dataset_licence(report: Mapping) -> str:
    """LICENSE.md, the terms the card's `license_link` names: Apache-2.0 for an all-SYNTHETIC dataset, else no
    licence granted (private clinical data under the centre's data-sharing terms). Fixed text and a count."""
    if report.get("synthetic"):
        return ("# Licence: Apache-2.0 (SYNTHETIC data)\n\n"
                "Every photo of this dataset is a SYNTHETIC phantom rendered by `loscat-hf demo-data`: no "
                "person and no clinic's photograph is in it. It is data generated by the loscat-hf project "
                "and may be used under that project's licence, the Apache License, Version 2.0: "
                "https://www.apache.org/licenses/LICENSE-2.0\n")
    phantoms = report.get("phantom_photos") or 0
    return ("# Terms of use: no licence granted\n\n"
            "This dataset holds private clinical photographs of patients, de-identified by "
            "`loscat-hf prepare`"
            + (f" (and {phantoms} SYNTHETIC phantom photos of `loscat-hf demo-data`)" if phantoms else "")
            + ". "
            "No licence is granted: the photos are shared only under the data-sharing terms of the centre "
            "that took them, with the people those terms name. Ask whoever gave you access for those "
            "terms.\n\n"
            "- Do not redistribute or re-publish the photos, or make this repository public, unless those "
            "terms clear it.\n"
            "- Use them only for what those terms allow.\n"
            "- Do not try to identify any person in them.\n")


def _agreement_text(agreement: Mapping | None) -> str:
    if not agreement:
        return "No agreement statistics were computed."
    try:
        from loscat_hf.data.agreement import format_agreement

        return "```\n" + format_agreement(dict(agreement)) + "\n```"
    except Exception:  # noqa: BLE001 - the card must be written even if the summary format changes
        return "```json\n" + json.dumps(dict(agreement), indent=2, default=str) + "\n```"
