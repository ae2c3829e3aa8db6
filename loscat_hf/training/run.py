"""`train(loscat_args, training_args)`: fine-tune on a packed dataset with the HF Trainer; a TrainResult.

The run, in order: check the dataset and --output-dir (output_dir.py), build model, sampler, transforms and
callbacks (`build_trainer`, shared with scripts/benchmark.py), train, fit a temperature on validation, save a
standard `save_pretrained` folder, and write the validation report and plots into OUTPUT_DIR/eval.
What the stock Trainer lacks lives beside it: trainer.py (balanced sampler, layer-wise LR, device-side
normalisation, strict reloads), callbacks.py (two phases), progress.py (readable progress), arguments.py.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import Trainer, TrainingArguments

from loscat_hf.data.dataset import (
    MULTI_LABEL,
    check_packed_files,
    dataset_origin,
    is_multi_region,
    load_packed_dataset,
    origin_kind,
    packed_max_side,
    subgroup_columns,
)
from loscat_hf.errors import LoscatError
from loscat_hf.model import folder as model_folder
from loscat_hf.model.card import CARD_NAME, model_card
from loscat_hf.training.arguments import LoscatArguments, augment_config, problem_type_of
from loscat_hf.training.callbacks import (
    ChanceCallback,
    TwoPhaseCallback,
    count_parameters,
    ddp_find_unused_parameters,
    phase1_frozen,
)
from loscat_hf.training.output_dir import prepare_output_dir, run_identity
from loscat_hf.training.progress import use_readable_progress
from loscat_hf.training.record import (
    base_model_record,
    chance_grace,
    chance_hints,
    data_record,
    hardware_record,
    hyperparameters,
    multi_label_chance,
)
from loscat_hf.training.trainer import (
    MultiLabelTrainer,
    RegionTrainer,
    balanced_sample_weights,
    set_sample_weights,
)

logger = logging.getLogger(__name__)


def build_trainer(largs: LoscatArguments, targs: TrainingArguments, taxonomy,
                  ds=None, problem_type: str | None = None) -> tuple[Trainer, object]:
    """The Trainer that `loscat-hf train` runs, and the (packed) dataset it trains on.

    Model, balanced sampler, transforms, two-phase callback and device-side normalisation all come from
    here, so scripts/benchmark.py times exactly the object the command trains with.
    """
    refuse_trainer_push(targs)
    from loscat_hf.evaluation.metrics import compute_metrics_fn
    from loscat_hf.model.build import build_model_and_processor
    from loscat_hf.model.processor import processor_resample, processor_size
    from loscat_hf.model.transforms import ImageTransform, collate

    problem_type = problem_type or problem_type_of(largs)  # train() passes the one it decided
    multi = problem_type == MULTI_LABEL
    if ds is None:
        if largs.task == "scores" and is_multi_region(largs.dataset):
            logger.info("task scores trains on the photos that show one region (score heads score one "
                        "region); the dataset's photos of several regions are left out")
        ds = load_packed_dataset(largs.dataset, taxonomy, largs.max_train_samples, largs.max_eval_samples,
                                 problem_type=problem_type)
    builder, trainer_cls, transform_cls, extra = build_model_and_processor, RegionTrainer, ImageTransform, {}
    build_options: dict = {}
    if multi:  # sigmoid + BCE on smoothed targets (the Trainer's softmax smoother does not apply)
        trainer_cls, build_options = MultiLabelTrainer, {"problem_type": problem_type}
    if largs.task == "scores":  # region head + score heads: targets, joint loss and score report
        from loscat_hf.data.dataset import add_score_targets
        from loscat_hf.model.score_heads import build_score_model
        from loscat_hf.model.transforms import ScoreTransform
        from loscat_hf.training.trainer import ScoreTrainer

        ds = add_score_targets(ds)
        builder, trainer_cls, transform_cls = build_score_model, ScoreTrainer, ScoreTransform
        extra = {"score_weight": largs.score_weight}
    model, processor = builder(largs.model, taxonomy, largs.image_size, seed=targs.seed, **build_options)
    size = processor_size(processor)
    train_labels = ds["train"]["labels"]
    sample_weights = set_sample_weights if multi else balanced_sample_weights
    weights = sample_weights(train_labels, largs.sampling_power) if largs.sampling_power > 0 else None
    resample = processor_resample(processor)  # the model's own filter (bicubic for the study's model)
    augment = augment_config(largs)
    train_set = ds["train"].with_transform(transform_cls(size, train=augment is not None, augment=augment,
                                                         resample=resample))
    eval_set = ds["validation"].with_transform(transform_cls(size, train=False, resample=resample))
    hints = chance_hints(largs, targs.learning_rate, targs.num_train_epochs)
    if multi:
        chance, n_classes = multi_label_chance(ds["validation"]["labels"])
        chance_callback = ChanceCallback(n_classes, hints, grace=chance_grace(largs), chance=chance,
                                         chance_is="(marking every photo with every class its validation "
                                                   "photos show, which a fitted threshold can always do)")
    else:
        chance_callback = ChanceCallback(len(set(ds["validation"]["labels"])), hints,
                                         grace=chance_grace(largs))
    callbacks: list = [chance_callback]
    if largs.phase1_epochs:
        callbacks.append(TwoPhaseCallback(largs.phase1_epochs, largs.phase1_trainable_blocks))
    # the unused-parameter search only where phase 1 freezes some
    if targs.parallel_mode.name == "DISTRIBUTED":
        targs.ddp_find_unused_parameters = ddp_find_unused_parameters(
            targs.ddp_find_unused_parameters,
            phase1_frozen(model, largs.phase1_epochs, largs.phase1_trainable_blocks))
    # multi-label: the best checkpoint is picked by macro-F1 at per-class thresholds fitted on the same
    # validation photos (as it would be saved); macro_f1_at_0_5 is logged beside it
    metrics = compute_metrics_fn(list(taxonomy.classes), multi_label=multi)
    trainer = trainer_cls(
        model=model, args=targs, train_dataset=train_set, eval_dataset=eval_set, data_collator=collate,
        processing_class=processor, compute_metrics=metrics, callbacks=callbacks, sample_weights=weights,
        layer_decay=largs.layer_decay, image_mean=processor.image_mean, image_std=processor.image_std,
        augment=augment, **extra,
    )
    use_readable_progress(trainer)
    return trainer, ds


@dataclass
class TrainResult:
    """What a training run produced; also written as OUTPUT_DIR/train_summary.json."""

    output_dir: Path
    best_checkpoint: str | None
    best_metric: float | None
    temperature: float  # 1.0 for a multi-label model: its sigmoids are not calibrated (thresholds instead)
    train_runtime_s: float | None = None
    train_samples_per_second: float | None = None
    macro_f1: float | None = None  # on validation, after calibration (None on non-zero DDP ranks)
    accuracy: float | None = None
    scores: dict | None = None  # --task scores: per component MAE, Pearson, Spearman, QWK, ICC
    base_model: dict | None = None  # where training started (record.base_model_record): also in config.json
    phases: list | None = None  # per phase: what it trains, trainable parameters, start/end step and epoch
    hyperparameters: dict | None = None  # the recipe as it ran, with each group's peak learning rate
    data: dict | None = None  # photos per split and class
    # what the dataset's photos are, from its prepare_report.json (counts, SYNTHETIC)
    data_origin: dict | None = None
    hardware: str | None = None
    warnings: list | None = None  # e.g. validation stuck at chance, with the likely causes
    problem_type: str | None = None  # single_label_classification or multi_label_classification
    thresholds: dict | None = None  # multi-label: per-class decision thresholds fitted on validation

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("output_dir")
        return {k: v for k, v in out.items() if v is not None or k in ("best_checkpoint", "best_metric")}


def refuse_trainer_push(targs: TrainingArguments) -> None:
    """The Trainer's own push (`push_to_hub=True`) creates its repo public unless the organisation says
    otherwise and uploads the output folder at every save (training_args.bin with local paths, logs, reports):
    none of `loscat-hf push`'s allow-list and visibility check. Refused; the model is published with
    `loscat-hf push`."""
    if targs.push_to_hub:
        raise LoscatError("push_to_hub would let the Trainer upload the whole output folder "
                          "(training_args.bin, logs, reports) into a repo whose visibility it does not "
                          "check: train without it, then publish with `loscat-hf push --model OUTPUT_DIR "
                          "--repo-id ORG/NAME` (allow-listed files, private by default)", param="push_to_hub")


def train(largs: LoscatArguments, targs: TrainingArguments) -> TrainResult:
    """Train, restore the best model, fit a temperature, save a standard model folder and its report."""
    from loscat_hf.evaluation.split_eval import evaluate_split, left_out_several_regions
    from loscat_hf.model.calibration import fit_record
    from loscat_hf.model.thresholds import fit_thresholds, sigmoid
    from loscat_hf.taxonomy import load_taxonomy
    from loscat_hf.viz.plots import plot_training_curves

    refuse_trainer_push(targs)
    taxonomy = load_taxonomy(largs.taxonomy)
    out = Path(targs.output_dir)
    check_packed_files(largs.dataset)  # before the output folder is touched: nothing half-written
    problem_type = problem_type_of(largs)
    multi = problem_type == MULTI_LABEL
    identity = run_identity(largs, taxonomy, problem_type)
    resume, stale = prepare_output_dir(largs, targs, identity)
    trainer, ds = build_trainer(largs, targs, taxonomy, problem_type=problem_type)
    # saved into every checkpoint's config.json; prediction decodes photos at the size training saw
    model_folder.record_training(trainer.model.config, run=identity,
                                 base_model=base_model_record(largs.model),
                                 max_side=packed_max_side(largs.dataset))
    # what these weights are trained on (the Space's limits text says it): the card's kind, train photos
    origin = dataset_origin(largs.dataset)
    model_folder.record_data(trainer.model.config, kind=origin_kind(origin), photos=len(ds["train"]))
    if stale and trainer.is_world_process_zero():
        logger.warning("--overwrite-output-dir: deleting the earlier run's model and %d file(s)/folder(s) "
                       "in %s", len(stale), out)
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    eval_set = trainer.eval_dataset
    train_labels = ds["train"]["labels"]
    if multi:  # photos showing each class (a photo of two regions counts for both)
        shown = np.asarray(list(train_labels), dtype=np.float64).reshape(len(ds["train"]), -1).sum(axis=0)
        counts = Counter({k: int(v) for k, v in enumerate(shown) if v})
    else:
        counts = Counter(train_labels)
    hparams = hyperparameters(largs, targs, trainer)
    if trainer.is_world_process_zero():
        logger.info("training %s (%s%s) on %d photos (%s), validating on %d; bf16=%s, device=%s", largs.model,
                    hparams["recipe"], ", multi-label: photos of several regions" if multi else "",
                    len(ds["train"]),
                    ", ".join(f"{taxonomy.classes[k]}={v}" for k, v in sorted(counts.items())),
                    len(ds["validation"]), targs.bf16, targs.device)
        logger.info("peak learning rates: %s", ", ".join(
            f"{k.replace('_', ' ')} {v:.3g}" for k, v in hparams["learning_rates"].items()))
    with logging_redirect_tqdm(loggers=[logging.getLogger("loscat_hf")]):  # phase lines beside the bar
        try:
            result = trainer.train(resume_from_checkpoint=resume)
        except ValueError as exc:
            if not resume or "parameter group" not in str(exc):
                raise
            raise LoscatError(
                f"resume: the optimizer state in {resume} has other parameter groups than this run's ("
                f"{str(exc).splitlines()[0]}): it was trained with another layer_decay or recipe (presets "
                "once defaulted to another layer_decay), or by an older loscat-hf. Resume with the "
                "layer_decay it used, or train into a new output_dir",
                param=("resume", "layer_decay", "output_dir")) from None
    phases = _phases(trainer)

    pred = trainer.predict(eval_set)
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    thresholds = None
    if multi:
        # No temperature: a multi-label model's sigmoids are recorded uncalibrated (T = 1, no
        # loscat_temperature); what decides a region is its per-class threshold, fitted on validation (F1
        # maximum per class) and saved with the model, so prediction and evaluation apply the same ones.
        temperature = 1.0
        thresholds, how = fit_thresholds(sigmoid(logits), np.asarray(list(ds["validation"]["labels"])),
                                         list(taxonomy.classes))
        model_folder.record_thresholds(trainer.model.config, thresholds, by="train", split="validation",
                                       **how)
    else:
        # Calibrate on validation: the temperature, and how it was fitted, travel in config.json (plain
        # transformers ignores them).
        temperature, how = fit_record(logits, np.asarray(ds["validation"]["labels"]))
        model_folder.record_temperature(trainer.model.config, temperature, by="train", split="validation",
                                        **how)
    best = trainer.state.best_model_checkpoint
    model_folder.record_best_checkpoint(trainer.model.config, Path(best).name if best else None)
    trainer.save_model(str(out))
    summary = TrainResult(
        output_dir=out, best_checkpoint=trainer.state.best_model_checkpoint,
        best_metric=trainer.state.best_metric, temperature=float(temperature),
        train_runtime_s=result.metrics.get("train_runtime"),
        train_samples_per_second=result.metrics.get("train_samples_per_second"),
        base_model=model_folder.base_record(trainer.model.config), phases=phases, hyperparameters=hparams,
        data=data_record(ds, list(taxonomy.classes) if multi else None), data_origin=origin,
        hardware=hardware_record(targs),
        warnings=[cb.outcome() for cb in trainer.callback_handler.callbacks
                  if isinstance(cb, ChanceCallback) and cb.warning] or None,
        problem_type=problem_type, thresholds=thresholds)
    if trainer.is_world_process_zero():
        eval_dir = out / "eval"
        # multi-label: the thresholds just recorded, in class order (a multi-label report)
        by_threshold = ({"thresholds": tuple(thresholds[c] for c in taxonomy.classes)} if multi else {})
        # a single-label run on a multi-region dataset: its report says how many validation photos it left out
        left_out = (None if multi or largs.max_eval_samples else
                    left_out_several_regions(largs.dataset, "validation", len(ds["validation"])))
        report = evaluate_split(logits, ds["validation"], taxonomy, eval_dir, temperature=temperature,
                                subgroups=subgroup_columns(ds["validation"]), left_out=left_out,
                                **by_threshold)
        plot_training_curves(trainer.state.log_history, eval_dir / "training_curves.png",
                             phase_switch=phases[1]["start_epoch"] if len(phases) > 1 else None,
                             phase1_trains=phases[0]["trains"])
        summary.macro_f1, summary.accuracy = report["macro_f1"], report["accuracy"]
        if largs.task == "scores":
            from loscat_hf.data.dataset import split_score_targets
            from loscat_hf.evaluation.score_report import score_report

            components = trainer.model.score_components
            scores = score_report(pred.predictions[1], split_score_targets(ds["validation"], components),
                                  components, eval_dir, "validation")
            summary.scores = {c: {k: m.get(k) for k in ("n", "mae", "pearson", "spearman", "qwk", "icc_2_1")}
                              for c, m in (scores["components"] or {}).items()}
        (out / "train_summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=str))
        model_card(out).save(out / CARD_NAME)  # the card `push` would publish, with a placeholder repo id
    return summary


def _phases(trainer: Trainer) -> list[dict]:
    """The run's phases as the two-phase callback recorded them, or one whole-model phase."""
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TwoPhaseCallback) and cb.phases:
            return cb.phases
    state = trainer.state
    return [dict(phase=1, trains="whole model", trainable_parameters=count_parameters(trainer.model),
                 start_step=0, start_epoch=0.0, end_step=state.global_step,
                 end_epoch=round(state.epoch or 0.0, 4))]
