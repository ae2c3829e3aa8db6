"""Fine-tune an image classifier on a packed loscat dataset with the HF Trainer.

What the stock Trainer lacks, and this module adds:
- a class-balanced weighted sampler (`_get_train_sampler`), strength set by `--sampling-power`;
- a two-phase schedule (head first, then the whole model) by a callback, with layer-wise LR decay;
- uint8 batches normalised on the device;
- strict checkpoint loading: transformers 5.23 restores only the ViT head at `load_best_model_at_end`
  and at resume (PITFALLS); here both go through `from_pretrained` and a strict `load_state_dict`;
- one run per output folder: a non-empty `--output-dir` is refused unless `--resume` (which checks that the
  checkpoint belongs to this run) or `--overwrite-output-dir` (transformers 5 dropped that flag; it is ours).
  A run's identity (dataset fingerprint, taxonomy classes, task) travels in every checkpoint's config.json
  as `loscat_run`, written by `save_pretrained` together with the weights.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from transformers import Trainer, TrainingArguments

from loscat_hf.data.dataset import check_packed_files, load_packed_dataset, subgroup_columns
from loscat_hf.model.transforms import AugmentConfig
from loscat_hf.train.arguments import LoscatArguments, parse_train_args
from loscat_hf.train.callbacks import TwoPhaseCallback
from loscat_hf.train.output_dir import RUN_KEY, prepare_output_dir, run_identity
from loscat_hf.train.trainer import RegionTrainer, balanced_sample_weights

logger = logging.getLogger(__name__)

def build_trainer(largs: LoscatArguments, targs: TrainingArguments, taxonomy, ds=None) -> tuple[Trainer, object]:
    """The Trainer that `loscat-hf train` runs, and the (packed) dataset it trains on.

    Model, balanced sampler, transforms, two-phase callback and device-side normalisation all come from
    here, so scripts/benchmark.py times exactly the object the command trains with.
    """
    from loscat_hf.evaluation.metrics import compute_metrics_fn
    from loscat_hf.model.build import build_model_and_processor, processor_size
    from loscat_hf.model.transforms import ImageTransform, collate

    if ds is None:
        ds = load_packed_dataset(largs.dataset, taxonomy, largs.max_train_samples, largs.max_eval_samples)
    builder, trainer_cls, transform_cls, extra = build_model_and_processor, RegionTrainer, ImageTransform, {}
    if largs.task == "scores":  # region head + score heads: targets, joint loss and score report
        from loscat_hf.data.dataset import add_score_targets
        from loscat_hf.model.score_heads import build_score_model
        from loscat_hf.model.transforms import ScoreTransform
        from loscat_hf.train.trainer import ScoreTrainer

        ds = add_score_targets(ds)
        builder, trainer_cls, transform_cls = build_score_model, ScoreTrainer, ScoreTransform
        extra = {"score_weight": largs.score_weight}
    model, processor = builder(largs.model, taxonomy, largs.image_size, seed=targs.seed)
    size = processor_size(processor)
    train_labels = ds["train"]["labels"]
    weights = balanced_sample_weights(train_labels, largs.sampling_power) if largs.sampling_power > 0 else None
    train_set = ds["train"].with_transform(transform_cls(size, train=largs.augment))
    eval_set = ds["validation"].with_transform(transform_cls(size, train=False))
    callbacks = [TwoPhaseCallback(largs.phase1_epochs, largs.phase1_trainable_blocks)] if largs.phase1_epochs else []
    if callbacks and targs.parallel_mode.name == "DISTRIBUTED":
        targs.ddp_find_unused_parameters = True  # frozen parameters produce no gradient in phase 1
    trainer = trainer_cls(
        model=model, args=targs, train_dataset=train_set, eval_dataset=eval_set, data_collator=collate,
        processing_class=processor, compute_metrics=compute_metrics_fn(list(taxonomy.classes)),
        callbacks=callbacks, sample_weights=weights, layer_decay=largs.layer_decay,
        image_mean=processor.image_mean, image_std=processor.image_std,
        augment=AugmentConfig() if largs.augment else None, **extra,
    )
    return trainer, ds

def run_training(largs: LoscatArguments, targs: TrainingArguments) -> dict:
    """Train, restore the best model, fit a temperature, save a standard model folder and its report."""
    from loscat_hf.evaluation.split_eval import evaluate_split
    from loscat_hf.model.calibration import CONFIG_KEY, fit_temperature
    from loscat_hf.taxonomy import load_taxonomy
    from loscat_hf.viz.plots import plot_training_curves

    taxonomy = load_taxonomy(largs.taxonomy)
    out = Path(targs.output_dir)
    check_packed_files(largs.dataset)  # before the output folder is touched: nothing half-written
    identity = run_identity(largs, taxonomy)
    resume, stale = prepare_output_dir(largs, targs, identity)
    trainer, ds = build_trainer(largs, targs, taxonomy)
    setattr(trainer.model.config, RUN_KEY, identity)  # saved into every checkpoint's config.json
    if stale and trainer.is_world_process_zero():
        logger.warning("--overwrite-output-dir: deleting the earlier run's model and %d file(s)/folder(s) in %s",
                       len(stale), out)
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    eval_set = trainer.eval_dataset
    train_labels = ds["train"]["labels"]
    counts = Counter(train_labels)
    if trainer.is_world_process_zero():
        print(f"training {largs.model} on {len(ds['train'])} photos "
              f"({', '.join(f'{taxonomy.classes[k]}={v}' for k, v in sorted(counts.items()))}), "
              f"validating on {len(ds['validation'])}; bf16={targs.bf16}, device={targs.device}")
    result = trainer.train(resume_from_checkpoint=resume)

    # Calibrate on validation: the temperature travels in config.json (plain transformers ignores it).
    pred = trainer.predict(eval_set)
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    temperature = fit_temperature(np.asarray(logits, dtype=np.float64), np.asarray(ds["validation"]["labels"]))
    setattr(trainer.model.config, CONFIG_KEY, float(temperature))
    trainer.model.config.loscat_best_checkpoint = (
        Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None)
    trainer.save_model(str(out))
    summary = {"train_runtime_s": result.metrics.get("train_runtime"),
               "train_samples_per_second": result.metrics.get("train_samples_per_second"),
               "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
               "temperature": temperature}
    if trainer.is_world_process_zero():
        eval_dir = out / "eval"
        report = evaluate_split(logits, ds["validation"], taxonomy, eval_dir, temperature=temperature,
                                subgroups=subgroup_columns(ds["validation"]))
        plot_training_curves(trainer.state.log_history, eval_dir / "training_curves.png")
        summary["macro_f1"] = report["macro_f1"]
        summary["accuracy"] = report["accuracy"]
        if largs.task == "scores":
            from loscat_hf.evaluation.score_metrics import score_evaluation

            scores = score_evaluation(pred.predictions[1], ds["validation"], trainer.model.score_components,
                                      eval_dir)
            summary["scores"] = {c: {k: m.get(k) for k in ("mae", "pearson", "spearman", "qwk", "icc_2_1")}
                                 for c, m in scores["components"].items()}
            for c, m in scores["components"].items():
                print(f"  {c}: n={m['n']} MAE {m.get('mae', float('nan')):.2f} "
                      f"Pearson {m.get('pearson', float('nan')):.2f} QWK {m.get('qwk', float('nan')):.2f}")
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print(f"macro-F1 {report['macro_f1']:.3f}, accuracy {report['accuracy']:.3f} on validation; "
              f"model in {out}, report and plots in {eval_dir}")
    return summary

def train_main(argv: Sequence[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from transformers import HfArgumentParser

        HfArgumentParser((LoscatArguments, TrainingArguments), prog="loscat-hf train").print_help()
        return 0
    largs, targs = parse_train_args(argv)
    run_training(largs, targs)
    return 0


if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
