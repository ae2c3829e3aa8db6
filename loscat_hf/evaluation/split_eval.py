"""`loscat-hf evaluate`: metrics, per-class tables and plots of a model folder on a dataset split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loscat_hf.errors import LoscatError
from loscat_hf.model.calibration import apply_temperature, temperature_from_config


def evaluate_split(logits: np.ndarray, split, taxonomy, out_dir: str | Path, temperature: float = 1.0,
                   subgroups: list[str] | None = None) -> dict:
    """Write metrics.json, per-class CSV/Markdown, confusion matrix and per-class F1 plots; return the report."""
    from loscat_hf.evaluation.metrics import classification_report, write_report

    labels = np.asarray(split["labels"])
    probs = apply_temperature(logits, temperature)
    groups = {col: list(split[col]) for col in (subgroups or [])}
    report = classification_report(labels, probs.argmax(1), probs, list(taxonomy.classes),
                                   neighbours=taxonomy.are_neighbours, subgroups=groups or None,
                                   temperature=temperature)
    report["split_size"] = len(labels)
    write_report(report, Path(out_dir), list(taxonomy.classes))
    return report


def split_logits(model_dir: str, split, batch_size: int = 64, num_workers: int = 0, device: str | None = None,
                 bf16: bool | None = None) -> np.ndarray:
    """Logits of a saved model over a dataset split, through the same transforms as training's eval."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageClassification

    from loscat_hf.model.build import load_processor, processor_size
    from loscat_hf.model.inference import LogitRunner
    from loscat_hf.model.transforms import ImageTransform, collate

    model = AutoModelForImageClassification.from_pretrained(model_dir)
    processor = load_processor(model_dir)
    runner = LogitRunner(model, processor.image_mean, processor.image_std, device=device, bf16=bf16)
    data = split.with_transform(ImageTransform(processor_size(processor), train=False))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    chunks = [runner(b["pixel_values"]) for b in tqdm(loader, desc="evaluating", unit="batch")]
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.num_labels))


def run_evaluate(model: str, dataset: str, out: str, split: str = "validation", taxonomy: str | None = None,
                 batch_size: int = 64, num_workers: int = 0) -> dict:
    from transformers import AutoConfig

    from loscat_hf.data.dataset import load_packed_dataset, subgroup_columns
    from loscat_hf.taxonomy import load_taxonomy

    tax = load_taxonomy(taxonomy)
    try:
        config = AutoConfig.from_pretrained(model)
    except OSError as exc:
        raise LoscatError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from None
    if [config.id2label[i] for i in range(config.num_labels)] != list(tax.classes):
        raise LoscatError(f"model {model} predicts {list(config.id2label.values())}, "
                          f"not the taxonomy's classes {list(tax.classes)}")
    ds = load_packed_dataset(dataset, tax)
    if split not in ds:
        raise LoscatError(f"dataset {dataset} has no split {split!r} (it has {', '.join(ds)})")
    logits = split_logits(model, ds[split], batch_size=batch_size, num_workers=num_workers)
    temperature = temperature_from_config(config)
    report = evaluate_split(logits, ds[split], tax, out, temperature=temperature,
                            subgroups=subgroup_columns(ds[split]))
    print(f"{split}: macro-F1 {report['macro_f1']:.3f}, accuracy {report['accuracy']:.3f}, "
          f"balanced accuracy {report['balanced_accuracy']:.3f}, ECE {report['ece']:.3f} "
          f"(n={report['split_size']}); {report.get('neighbour_error_share', 0):.0%} of errors between "
          f"anatomical neighbours. Report: {Path(out) / 'metrics.json'}")
    (Path(out) / "evaluated.json").write_text(json.dumps({"model": model, "dataset": dataset, "split": split}))
    return report
