"""`loscat-hf quickstart`: the whole pipeline on SYNTHETIC phantom data, offline, in a few CPU minutes.

phantom photos -> prepare (patient split with a held-out test set) -> train (tiny preset) -> evaluate.
"""

from __future__ import annotations

import time
from pathlib import Path

from loscat_hf.errors import LoscatError

# The tiny preset sees 64 px: packing at 128 px keeps every detail it can use and makes each epoch cheap.
# A from-scratch ViT needs many epochs on ~350 photos (12 epochs stayed near chance); 60 take ~2 CPU minutes.
QUICK_MAX_SIDE = 128


def run_quickstart(out: str = "quickstart", patients: int = 60, photos: int = 600, epochs: float = 60,
                   model: str = "tiny", seed: int = 0, overwrite: bool = False,
                   extra_train_args: list[str] | None = None) -> dict:
    from loscat_hf.data.prepare import run_prepare
    from loscat_hf.demo.phantom import generate_demo_data
    from loscat_hf.evaluation.split_eval import run_evaluate
    from loscat_hf.train.arguments import parse_train_args
    from loscat_hf.train.run import run_training

    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise LoscatError(f"{root} exists and is not empty; pass --overwrite or another --out")
    t0 = time.perf_counter()
    steps: dict[str, float] = {}
    print(f"[1/4] generating SYNTHETIC phantom data ({patients} patients, {photos} photos) in {root / 'demo'}")
    generate_demo_data(root / "demo", n_patients=patients, n_photos=photos, seed=seed, overwrite=True)
    steps["demo-data"] = time.perf_counter() - t0
    print("[2/4] prepare: consensus labels, de-identified imagefolder, patient-grouped split")
    code = run_prepare(annotations=str(root / "demo" / "annotations.csv"), images=str(root / "demo" / "images"),
                       out=str(root / "dataset"), test_fraction=0.15, seed=seed, overwrite=True,
                       max_side=QUICK_MAX_SIDE, keep_columns=["skin_tone"])  # a subgroup for evaluate
    if code != 0:
        raise LoscatError("prepare found nothing usable in the phantom data")
    steps["prepare"] = time.perf_counter() - t0 - sum(steps.values())
    print(f"[3/4] train: {model} preset, {epochs} epochs, balanced sampler, two-phase schedule")
    # --out was checked above (empty, or --overwrite given): its model folder may be replaced
    argv = ["--dataset", str(root / "dataset"), "--output-dir", str(root / "model"), "--overwrite-output-dir",
            "--model", model,
            "--num-train-epochs", str(epochs), "--learning-rate", "1e-3",
            "--dataloader-num-workers", "1", "--per-device-train-batch-size", "32",
            "--logging-steps", "5", "--seed", str(seed), "--save-total-limit", "1",
            *(extra_train_args or [])]
    summary = run_training(*parse_train_args(argv))
    steps["train"] = time.perf_counter() - t0 - sum(steps.values())
    print("[4/4] evaluate on the held-out test patients")
    report = run_evaluate(str(root / "model"), str(root / "dataset"), str(root / "model" / "eval_test"),
                          split="test")
    steps["evaluate"] = time.perf_counter() - t0 - sum(steps.values())
    total = time.perf_counter() - t0
    print(f"\nquickstart done in {total:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in steps.items())}).")
    print(f"test macro-F1 {report['macro_f1']:.3f} on {report['split_size']} photos of unseen patients "
          f"(chance {1 / 12:.3f}); validation macro-F1 {summary.get('macro_f1', float('nan')):.3f}.")
    print(f"plots: {root / 'model' / 'eval_test' / 'confusion_matrix.png'}, "
          f"{root / 'model' / 'eval' / 'training_curves.png'}; model: {root / 'model'}")
    return {"test": report, "train": summary, "seconds": total, "steps": steps}
