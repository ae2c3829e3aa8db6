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
from loscat_hf.data.dataset import METADATA_COLUMNS, PATIENT_PREFIX, PRIVATE_DIR, PRIVATE_FILES, VISIT_PREFIX
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
    private_counts: Mapping[str, int],
) -> dict:
    """The publishable report: an allow-list of counts, class names, reason keys and parameters."""
    by_reason = dict(sorted(Counter(p.kind for p in problems).items(), key=lambda kv: (-kv[1], kv[0])))
    return {
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "n_photos": n_photos,
        "n_patients": sum(patients.values()),
        "classes": list(classes),
        "splits": {
            s: {"photos": sum(counts[s].values()), "patients": patients[s], "per_class": counts[s]}
            for s in SPLIT_ORDER if s in counts
        },
        # reasons only: each problem with its file, CSV row and full message is in private/problems.csv
        "exclusions": {"total": len(problems), "by_reason": by_reason},
        "warnings": list(warnings),
        "private": {"folder": PRIVATE_DIR, "files": list(PRIVATE_FILES), **dict(private_counts)},
        "agreement": dict(agreement),
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
    header = {
        "pretty_name": "LoSCAT body-region photos (loscat-hf)",
        "license": "other",
        "license_name": "private-clinical-data",
        "task_categories": ["image-classification"],
        "tags": ["medical", "dermatology", "localized-scleroderma", "morphea", "loscat", "body-region"],
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
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
        "# LoSCAT body-region photos", "",
        "Clinical photographs of localized scleroderma, each labelled with the LoSCAT body region it shows "
        f"({len(report['classes'])} classes, sides folded; `site` keeps the side). Built by `loscat-hf prepare` "
        f"{report['versions'].get('loscat_hf', '')} on {report['created_utc']}: {report['n_photos']} photos of "
        f"{report['n_patients']} patients.", "",
        "**Private clinical data.** Keep the repository private unless the photos are cleared for release.", "",
        "## Structure", "",
        "Hugging Face `imagefolder`: one folder per split, each with a `metadata.parquet` giving per photo: "
        + ", ".join(f"`{c}`" for c in report["columns"]) + ". The features are declared in this card's "
        "header and in each metadata file's schema, so loading the folder (or the Hub repo) gives `label` as a "
        "`ClassLabel` in taxonomy order and the same schema in every split (a missing value is `None`):",
        "", "```python", "from datasets import load_dataset",
        'ds = load_dataset("path/to/dataset")  # or the Hub repo id',
        'ds = load_dataset("imagefolder", data_dir="path/to/dataset")  # the same', "```", "",
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
    lines += [
        "## De-identification", "",
        "- Every photo was decoded and re-encoded as JPEG (quality 95): EXIF (camera, dates, GPS), XMP, IPTC, "
        "ICC profiles, PNG text and comments are gone; EXIF orientation was applied to the pixels, colour "
        "converted to sRGB.",
        f"- Photos were downscaled so the shorter side is at most {params.get('max_side')} pixels (at least "
        f"{round((1 - params.get('size_slack', 0)) * params.get('max_side', 0))} unless the original was smaller).",
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
        "- The pixels themselves can still identify a person (faces, tattoos, jewellery): review before sharing.",
        "", "## Splits by patient", "",
        f"All photos of one patient are in the same split (no patient is in two splits). Splits come from "
        f"scikit-learn's `StratifiedGroupKFold` (stratified by class, grouped by patient; see the warnings for "
        f"a split too small to stratify), seed "
        f"{params.get('seed')}, validation share {params.get('val_fraction')}"
        + (f", test share {params.get('test_fraction')}" if params.get("test_fraction") else "")
        + " of the photos. Patients per split: "
        + ", ".join(f"{s} {v['patients']}" for s, v in report["splits"].items()) + ".",
    ]
    if report["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def _agreement_text(agreement: Mapping | None) -> str:
    if not agreement:
        return "No agreement statistics were computed."
    try:
        from loscat_hf.data.agreement import format_agreement

        return "```\n" + format_agreement(dict(agreement)) + "\n```"
    except Exception:  # noqa: BLE001 - the card must be written even if the summary format changes
        return "```json\n" + json.dumps(dict(agreement), indent=2, default=str) + "\n```"
