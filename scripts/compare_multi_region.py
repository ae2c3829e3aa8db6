"""Single-region vs multi-region path on SYNTHETIC phantom data with limb-spanning photos.

    python scripts/compare_multi_region.py [--out compare_multi_region] [--epochs 60] [--seed 0]

demo-data --multi-region -> prepare (patient-grouped, held-out test split) -> two tiny models trained the same
way on the same dataset: `--problem-type single_label_classification` (the study's path: single-region photos
only) and `multi_label_classification` (every photo) -> both predict the test split's photos ->
`evaluate --predictions` scores both against the same truth sets, per class. Prints how many photos each
path trained on and a Markdown table of per-class F1 on the same test photos; writes compare.json. CPU,
offline; a few minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

PROBLEM_TYPES = {"single": "single_label_classification", "multi": "multi_label_classification"}


def _truth_csv(dataset: Path, split: str, out: Path) -> int:
    """The split's photos and their regions (';'-joined classes) as a truth CSV `evaluate --truth` reads."""
    from loscat_hf.data.dataset import read_split_metadata

    rows = read_split_metadata(dataset / split)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "region"])
        writer.writerows([r["file_name"], ";".join(r["labels"])] for r in rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="compare_multi_region")
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--epochs", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import loscat_hf
    from loscat_hf.demo.quickstart import QUICK_MAX_SIDE

    root = Path(args.out)
    t0 = time.perf_counter()
    loscat_hf.generate_demo_data(root / "demo", n_patients=args.patients, n_photos=args.photos,
                                 seed=args.seed, overwrite=True, multi_region=True, n_unlabeled=0)
    prepared = loscat_hf.prepare(annotations=str(root / "demo" / "annotations.csv"),
                                 images=str(root / "demo" / "images"), out=str(root / "dataset"),
                                 test_fraction=0.15, seed=args.seed, overwrite=True, max_side=QUICK_MAX_SIDE)
    report = prepared.pack.report
    n_test = _truth_csv(root / "dataset", "test", root / "test_truth.csv")
    result: dict = {"photos": report["n_photos"], "regions_per_photo": report["regions_per_photo"],
                    "test_photos": n_test, "models": {}}
    for name, problem_type in PROBLEM_TYPES.items():
        model = root / f"model_{name}"
        trained = loscat_hf.train(*loscat_hf.train_arguments(
            dataset=str(root / "dataset"), output_dir=str(model), overwrite_output_dir=True, model="tiny",
            problem_type=problem_type, num_train_epochs=args.epochs, learning_rate=1e-3,
            dataloader_num_workers=1, per_device_train_batch_size=32, logging_steps=5, seed=args.seed,
            save_total_limit=1))
        predictions = root / f"predictions_{name}.csv"
        loscat_hf.predict_folder(str(model), str(root / "dataset" / "test"), str(predictions), num_workers=0)
        scored = loscat_hf.evaluate_predictions(predictions, root / "test_truth.csv", root / f"eval_{name}")
        result["models"][name] = {
            "problem_type": problem_type, "train_photos": trained.data["train"]["n"],
            "test": {
                k: scored.report.get(k) for k in ("macro_f1", "exact_match", "hamming_loss", "n")},
            "per_class_f1": {r["class"]: r["f1"] for r in scored.report["per_class"]},
            "support": {r["class"]: r["support"] for r in scored.report["per_class"]},
        }
    result["seconds"] = round(time.perf_counter() - t0)
    (root / "compare.json").write_text(json.dumps(result, indent=2))
    single, multi = result["models"]["single"], result["models"]["multi"]
    print(f"photos packed: {result['photos']} (regions per photo: {result['regions_per_photo']}); "
          f"test photos: {n_test}; {result['seconds']} s")
    print(f"trained on: single-region path {single['train_photos']} photos, multi-region path "
          f"{multi['train_photos']} photos")
    print("\n| class | test photos showing it | F1 single-region model | F1 multi-region model |")
    print("|---|---:|---:|---:|")
    for c, support in multi["support"].items():
        print(f"| {c} | {support} | {single['per_class_f1'][c]:.3f} | {multi['per_class_f1'][c]:.3f} |")
    for key in ("macro_f1", "exact_match", "hamming_loss"):
        print(f"| **{key}** | | {single['test'][key]:.3f} | {multi['test'][key]:.3f} |")


if __name__ == "__main__":
    main()
