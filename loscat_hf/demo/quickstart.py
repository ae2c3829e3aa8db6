"""`quickstart()`: the whole pipeline on SYNTHETIC phantom data, offline, in a few CPU minutes.

phantom photos -> prepare (patient split with a held-out test set) -> train (tiny preset) -> evaluate,
through the same Python API a user calls (`prepare`, `train`, `evaluate`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from loscat_hf.errors import LoscatError

logger = logging.getLogger(__name__)

# The tiny preset sees 64 px: packing at 128 px keeps every detail it can use and makes each epoch cheap.
# A from-scratch ViT needs many epochs on ~350 photos (12 epochs stayed near chance); 60 take ~2 CPU minutes.
QUICK_MAX_SIDE = 128


@dataclass
class QuickstartResult:
    """The test-split evaluation, the training run, and seconds per step."""

    root: Path
    test: object  # evaluation.split_eval.EvaluationResult on the held-out test patients
    train: object  # training.run.TrainResult (validation macro-F1, best checkpoint, temperature)
    seconds: float
    steps: dict[str, float]

    def summary(self) -> str:
        root, test = self.root, self.test.report
        val = self.train.macro_f1 if self.train.macro_f1 is not None else float("nan")
        return "\n".join([
            f"quickstart done in {self.seconds:.0f} s "
            f"({', '.join(f'{k} {v:.0f} s' for k, v in self.steps.items())}).",
            f"test macro-F1 {test['macro_f1']:.3f} on {test['split_size']} photos of unseen patients "
            f"(chance {1 / 12:.3f}); validation macro-F1 {val:.3f}.",
            f"plots: {root / 'model' / 'eval_test' / 'confusion_matrix.png'}, "
            f"{root / 'model' / 'eval' / 'training_curves.png'}; model: {root / 'model'}",
        ])


def quickstart(out: str = "quickstart", patients: int = 60, photos: int = 600, epochs: float = 60,
               model: str = "tiny", seed: int = 0, overwrite: bool = False,
               train_options: dict | None = None) -> QuickstartResult:
    """Phantom data -> prepare -> train -> evaluate in `out`; `train_options` override training arguments
    (any `loscat-hf train` option by its field name, e.g. {"seed": 1, "num_train_epochs": 30})."""
    from loscat_hf.data.prepare import prepare
    from loscat_hf.demo.phantom import generate_demo_data
    from loscat_hf.evaluation.split_eval import evaluate
    from loscat_hf.training.arguments import recipe_of
    from loscat_hf.training.parse import train_arguments
    from loscat_hf.training.run import train

    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise LoscatError(f"{root} exists and is not empty; pass overwrite=True or another out folder",
                          param="overwrite")
    t0 = time.perf_counter()
    steps: dict[str, float] = {}

    def lap(name: str) -> None:
        steps[name] = time.perf_counter() - t0 - sum(steps.values())

    logger.info("[1/4] generating SYNTHETIC phantom data (%d patients, %d photos) in %s", patients, photos,
                root / "demo")
    generate_demo_data(root / "demo", n_patients=patients, n_photos=photos, seed=seed, overwrite=True)
    lap("demo-data")
    logger.info("[2/4] prepare: consensus labels, de-identified imagefolder, patient-grouped split")
    prepared = prepare(annotations=str(root / "demo" / "annotations.csv"),
                       images=str(root / "demo" / "images"),
                       out=str(root / "dataset"), test_fraction=0.15, seed=seed, overwrite=True,
                       max_side=QUICK_MAX_SIDE, keep_columns=["skin_tone"])  # a subgroup for evaluate
    if prepared.out_dir is None:
        raise LoscatError("prepare found nothing usable in the phantom data")
    logger.info("      %s", ", ".join(f"{s}: {n} patients" for s, n in prepared.pack.patients.items()))
    for warning in prepared.pack.warnings:
        logger.warning("      warning: %s", warning)
    lap("prepare")
    logger.info("[3/4] train: %s, %s epochs, balanced sampler, the %s recipe", model, epochs,
                recipe_of(model))
    # --out was checked above (empty, or --overwrite given): its model folder may be replaced
    trained = train(*train_arguments(**{
        "dataset": str(root / "dataset"), "output_dir": str(root / "model"), "overwrite_output_dir": True,
        "model": model, "num_train_epochs": epochs, "learning_rate": 1e-3, "dataloader_num_workers": 1,
        "per_device_train_batch_size": 32, "logging_steps": 5, "seed": seed, "save_total_limit": 1,
        **(train_options or {})}))
    lap("train")
    logger.info("[4/4] evaluate on the held-out test patients")
    test = evaluate(str(root / "model"), str(root / "dataset"), str(root / "model" / "eval_test"),
                    split="test")
    lap("evaluate")
    return QuickstartResult(root=root, test=test, train=trained, seconds=time.perf_counter() - t0,
                            steps=steps)
