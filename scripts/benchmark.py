"""Benchmarks of loscat-hf against the plain Hugging Face path, in the same run, on the same photos.

    python scripts/benchmark.py all --photos 48 --out bench_results      # ~minutes on 2 cores
    python scripts/benchmark.py input|train|label [--quick]

Inputs: phantom camera-sized JPEGs (`generate_demo_data`), packed by `run_prepare` at --max-side 512.
Each benchmark prints a table and writes <out>/<name>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

VIT_B_FWD_GFLOP = 110.0  # ViT-B/16 at 384 px, forward, per image (2 x MACs); a train step is ~3x


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------- data
def make_data(root: Path, photos: int, image_size: tuple[int, int]) -> dict:
    """Camera-sized phantom photos + their packed dataset; reused when already there."""
    from loscat_hf.phantom import generate_demo_data
    from loscat_hf.prepare import run_prepare

    raw, packed = root / "raw", root / "packed"
    if not (packed / "id_map.csv").is_file():
        generate_demo_data(raw, n_patients=max(8, photos // 4), n_photos=photos, image_size=image_size,
                           n_unlabeled=0, overwrite=True)
        run_prepare(annotations=raw / "annotations.csv", images=raw / "images", out=packed, max_side=512,
                    val_fraction=0.5 if photos < 40 else 0.2, overwrite=True, progress=False)
    with open(packed / "id_map.csv", newline="") as fh:
        originals = {r["image_id"]: str(raw / "images" / r["original_path"]) for r in csv.DictReader(fh)
                     if r["status"] == "kept"}
    return {"raw": raw, "packed": packed, "originals": originals}


def train_split(data: dict):
    """Packed train split (labels) and the matching original camera photos for the plain path."""
    from datasets import Dataset, Image

    from loscat_hf.regions import load_taxonomy
    from loscat_hf.training import load_packed_dataset

    tax = load_taxonomy()
    packed = load_packed_dataset(str(data["packed"]), tax)["train"]
    plain = Dataset.from_dict({"image": [data["originals"][i] for i in packed["image_id"]],
                               "labels": packed["labels"]}).cast_column("image", Image())
    return tax, packed.select_columns(["image", "labels"]), plain


class PlainTransform:
    """run_image_classification.py without torchvision: the image processor on every full-size photo."""

    def __init__(self, size: int) -> None:
        from transformers import ViTImageProcessorPil

        self.proc = ViTImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.5] * 3,
                                         image_std=[0.5] * 3)

    def __call__(self, batch: dict) -> dict:
        pv = self.proc([im.convert("RGB") for im in batch["image"]], return_tensors="pt")["pixel_values"]
        return {"pixel_values": list(pv), "labels": batch["labels"]}


def plain_collate(features: list[dict]) -> dict:
    return {"pixel_values": torch.stack([f["pixel_values"] for f in features]),
            "labels": torch.tensor([f["labels"] for f in features])}


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def table(title: str, rows: list[dict], cols: list[str]) -> None:
    print(f"\n{title}")
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]:>14.2f}" if isinstance(r[c], float) else f"{str(r[c]):>14}" for c in cols))


# ---------------------------------------------------------------------------------------------- input
def time_loader(ds, collate_fn, batch_size: int, workers: int, n_images: int) -> float:
    """Steady-state images/s: the clock starts at the first batch (worker start-up is a one-off cost)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_fn,
                                         shuffle=True, persistent_workers=workers > 0,
                                         prefetch_factor=4 if workers else None)
    seen, t0 = -1, 0.0
    while seen < n_images:
        for batch in loader:
            if seen < 0:
                seen, t0 = 0, time.perf_counter()
                continue
            seen += batch["pixel_values"].shape[0]
            if seen >= n_images:
                break
    return rate(seen, time.perf_counter() - t0)


def bench_input(data: dict, args) -> dict:
    from loscat_hf.transforms import ImageTransform, collate

    _, packed, plain = train_split(data)
    n = max(args.images or len(packed), 4 * args.batch)
    rows = []
    lo = time_loader(packed.with_transform(ImageTransform(args.size, train=True)), collate, args.batch,
                     args.workers, n)
    rows.append({"path": "loscat-hf", "workers": args.workers, "images_per_s": lo})
    for w in sorted({0, args.workers}):
        pl = time_loader(plain.with_transform(PlainTransform(args.size)), plain_collate, args.batch, w, n)
        rows.append({"path": "plain-hf", "workers": w, "images_per_s": pl})
    for r in rows:
        r["images_per_s_per_core"] = r["images_per_s"] / cores()
    best_plain = max(r["images_per_s"] for r in rows if r["path"] == "plain-hf")
    result = {"benchmark": "input", "image_size": args.size, "cores": cores(), "images": n, "rows": rows,
              "speedup_vs_best_plain": lo / best_plain}
    table(f"input pipeline at {args.size} px ({cores()} cores, {n} images, speed-up {lo / best_plain:.1f}x)",
          rows, ["path", "workers", "images_per_s", "images_per_s_per_core"])
    return result


# ---------------------------------------------------------------------------------------------- train
def _train_args(out: str, args, steps: int, workers: int, bf16: bool, **extra):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=args.batch,
                             save_strategy="no", report_to="none", logging_strategy="no",
                             dataloader_num_workers=workers, remove_unused_columns=False, bf16=bf16,
                             disable_tqdm=True, **extra)


def _timed_train(trainer, steps: int, batch: int) -> float:
    """Images/s after the first step (warm-up: allocation, worker start)."""
    from transformers import TrainerCallback

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    trainer.add_callback(Clock())
    trainer.train()
    return rate((len(marks) - 1) * batch, marks[-1] - marks[0]) if len(marks) > 1 else 0.0


def matmul_peak_tflops() -> float | None:
    """Measured bf16 matmul peak on the GPU (None on CPU), the denominator of model FLOP utilisation."""
    if not torch.cuda.is_available():
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t0, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ a
    torch.cuda.synchronize()
    return 2 * 8192 ** 3 * reps / (time.perf_counter() - t0) / 1e12


def bench_train(data: dict, args) -> dict:
    from transformers import Trainer

    from loscat_hf.modeling import build_model_and_processor
    from loscat_hf.training import RegionTrainer
    from loscat_hf.transforms import ImageTransform, collate

    tax, packed, plain = train_split(data)
    gpu = torch.cuda.is_available()
    presets = ["tiny"] + (["vit-base-384-random"] if gpu or args.base_steps else [])
    rows = []
    for preset in presets:
        steps = args.steps if preset == "tiny" or gpu else args.base_steps
        bf16 = gpu and torch.cuda.is_bf16_supported()
        runs = [("loscat-hf", w) for w in sorted({0, args.workers})] + [("plain-hf", 0)]
        for path, workers in runs:
            model, proc = build_model_and_processor(preset, tax)
            size = int(proc.size["height"])
            with tempfile.TemporaryDirectory() as tmp:
                if path == "loscat-hf":
                    extra = dict(dataloader_persistent_workers=workers > 0, dataloader_pin_memory=gpu)
                    if gpu:
                        extra["optim"] = "adamw_torch_fused"
                    trainer = RegionTrainer(model=model, args=_train_args(tmp, args, steps, workers, bf16,
                                                                          **extra),
                                            train_dataset=packed.with_transform(ImageTransform(size, True)),
                                            data_collator=collate)
                else:  # Trainer defaults: 0 workers, fp32 unless asked, processor over the original photos
                    trainer = Trainer(model=model, args=_train_args(tmp, args, steps, 0, False),
                                      train_dataset=plain.with_transform(PlainTransform(size)),
                                      data_collator=plain_collate)
                ips = _timed_train(trainer, steps, args.batch)
            rows.append({"preset": preset, "path": path, "workers": workers, "steps": steps, "images_per_s": ips})
    peak = matmul_peak_tflops()
    for r in rows:
        if peak and r["preset"] == "vit-base-384-random":
            r["mfu"] = r["images_per_s"] * 3 * VIT_B_FWD_GFLOP / 1e3 / peak
    result = {"benchmark": "train", "device": "cuda" if gpu else "cpu", "cores": cores(),
              "matmul_peak_bf16_tflops": peak, "rows": rows}
    table(f"training ({result['device']}, batch {args.batch})", rows, ["preset", "path", "workers", "steps", "images_per_s"])
    return result


# ---------------------------------------------------------------------------------------------- label
def _save_model(preset: str, tax, out: Path) -> Path:
    from loscat_hf.modeling import build_model_and_processor

    d = out / preset
    if not (d / "config.json").is_file():
        model, proc = build_model_and_processor(preset, tax)
        model.save_pretrained(d)
        proc.save_pretrained(d)
    return d


def loscat_label(model_dir: Path, paths: list[str], precision: str, batch: int, workers: int):
    from loscat_hf.fastload import pixel_batches
    from loscat_hf.predict import RegionPredictor

    pred = RegionPredictor.from_pretrained(model_dir, precision=precision)
    t0 = time.perf_counter()
    labels = []
    for pv in pixel_batches(paths, pred.image_size, batch_size=batch, num_workers=workers):
        labels += [p.label for p in pred.from_logits(pred.logits(pv), top_k=1)]
    return rate(len(paths), time.perf_counter() - t0), labels


def pipeline_label(model_dir: Path, paths: list[str], batch: int):
    from transformers import ViTImageProcessorPil, pipeline

    pipe = pipeline("image-classification", model=str(model_dir),
                    image_processor=ViTImageProcessorPil.from_pretrained(str(model_dir)), device="cpu")
    t0 = time.perf_counter()
    out = pipe(paths, batch_size=batch, top_k=1)
    return rate(len(paths), time.perf_counter() - t0), [o[0]["label"] for o in out]


def bench_label(data: dict, args) -> dict:
    from loscat_hf.regions import load_taxonomy

    tax = load_taxonomy()
    all_paths = sorted(data["originals"].values())
    rows = []
    for preset, limit in (("tiny", args.images or len(all_paths)), ("vit-base-384-random", args.base_images)):
        if not limit:
            continue
        paths = all_paths[:limit]
        model_dir = _save_model(preset, tax, args.work / "models")
        ref = None
        pipe_best = 0.0
        for b in args.pipeline_batches:
            ips, labels = pipeline_label(model_dir, paths, b)
            ref = ref or labels
            pipe_best = max(pipe_best, ips)
            rows.append({"model": preset, "path": "pipeline", "setting": f"batch {b}", "images_per_s": ips,
                         "top1_agree": 1.0})
        for precision in args.precisions:
            ips, labels = loscat_label(model_dir, paths, precision, args.batch, args.workers)
            agree = sum(a == b for a, b in zip(labels, ref, strict=True)) / len(ref)
            rows.append({"model": preset, "path": "loscat-hf", "setting": f"{precision} w{args.workers}",
                         "images_per_s": ips, "top1_agree": agree, "speedup": ips / pipe_best})
    result = {"benchmark": "label", "cores": cores(), "rows": rows}
    table("labelling camera JPEGs (top1_agree: vs the pipeline's labels)", rows,
          ["model", "path", "setting", "images_per_s", "top1_agree"])
    return result


# ---------------------------------------------------------------------------------------------- main
BENCHES = {"input": bench_input, "train": bench_train, "label": bench_label}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=[*BENCHES, "all"])
    p.add_argument("--quick", action="store_true", help="12 small photos, tiny sizes: a smoke test in seconds")
    p.add_argument("--photos", type=int, default=48, help="phantom photos to generate")
    p.add_argument("--camera", default="3000x2000", help="phantom photo size WxH")
    p.add_argument("--size", type=int, default=384, help="input-pipeline model size in px")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=cores())
    p.add_argument("--images", type=int, default=0, help="images per measurement (0 = all)")
    p.add_argument("--steps", type=int, default=8, help="training steps (tiny preset)")
    p.add_argument("--base-steps", type=int, default=0, help="CPU training steps of vit-base-384-random (0 = skip)")
    p.add_argument("--base-images", type=int, default=16, help="photos labelled with vit-base-384-random (0 = skip)")
    p.add_argument("--pipeline-batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "loscat_bench")
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    args = p.parse_args(argv)
    if args.quick:
        args.photos, args.camera, args.size, args.batch, args.steps = 12, "640x480", 64, 4, 3
        args.base_images, args.base_steps, args.workers = 0, 0, min(args.workers, 2)
        args.pipeline_batches, args.precisions = [1, 4], ["fp32"]
        args.work = args.work.with_name(args.work.name + "_quick")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    w, h = (int(v) for v in args.camera.lower().split("x"))
    data = make_data(args.work / f"data_{args.photos}_{w}x{h}", args.photos, (w, h))
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in (BENCHES if args.which == "all" else [args.which]):
        results[name] = BENCHES[name](data, args)
        results[name]["command"] = " ".join(["python scripts/benchmark.py", *(argv or sys.argv[1:])])
        (args.out / f"{name}.json").write_text(json.dumps(results[name], indent=2))
    return results


if __name__ == "__main__":
    main()
