"""Benchmarks of loscat-hf against the plain Hugging Face path, in the same run, on the same photos.

    python scripts/benchmark.py all --photos 48 --out bench_results      # ~minutes on 2 cores
    python scripts/benchmark.py input|train|label|stages|process [--quick]

Inputs: photo-like camera-sized JPEGs (`generate_demo_data(photo_like=True)`: camera grain, JPEG quality
90-95, ~2 bits per pixel like clinic photos; `--smooth` for the smooth phantom renders, ~0.3), packed by
`prepare` at --max-side 512. Each benchmark prints a table and writes <out>/<name>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__mp_main__":
    # a spawned decoding worker of predict_folder re-imports this script as its main module: it runs none of
    # it, so keep that import light (torch takes 2-4 s here and would be charged to loscat-hf's label rows)
    torch = None
else:
    import torch  # noqa: E402

from loscat_hf.hardware import cpu_description, default_workers, usable_cores  # noqa: E402


# ---------------------------------------------------------------------------------------------- data
def make_data(root: Path, photos: int, image_size: tuple[int, int], photo_like: bool = True) -> dict:
    """Camera-sized phantom photos + their packed dataset (reused when already there), with their bits per
    pixel: JPEG decoding cost follows it."""
    from loscat_hf.data.dataset import ID_MAP_NAME, PRIVATE_DIR
    from loscat_hf.data.prepare import prepare
    from loscat_hf.demo.phantom import generate_demo_data

    raw, packed = root / "raw", root / "packed"
    id_map = packed / PRIVATE_DIR / ID_MAP_NAME
    if not id_map.is_file():
        generate_demo_data(raw, n_patients=max(8, photos // 4), n_photos=photos, image_size=image_size,
                           n_unlabeled=0, overwrite=True, photo_like=photo_like)
        prepare(annotations=raw / "annotations.csv", images=raw / "images", out=packed, max_side=512,
                val_fraction=0.5 if photos < 40 else 0.2, overwrite=True, progress=False)
    with open(id_map, newline="") as fh:
        originals = {r["image_id"]: str(raw / "images" / r["original_path"]) for r in csv.DictReader(fh)
                     if r["status"] == "kept"}
    return {"raw": raw, "packed": packed, "originals": originals, "photo_like": photo_like,
            "bits_per_pixel": {"camera": bits_per_pixel(originals.values()),
                               "packed": bits_per_pixel((packed / "train").glob("*.jpg"))}}


def bits_per_pixel(paths) -> float:
    """Mean file bits per pixel of JPEGs (camera photos: ~2-3; smooth phantom renders: ~0.3)."""
    from PIL import Image

    values = []
    for p in paths:
        with Image.open(p) as im:
            values.append(os.path.getsize(p) * 8 / (im.width * im.height))
    return round(statistics.fmean(values), 2) if values else float("nan")


def train_split(data: dict):
    """Packed train split (labels) and the matching original camera photos for the plain path."""
    from datasets import Dataset, Image

    from loscat_hf.data.dataset import load_packed_dataset
    from loscat_hf.taxonomy import load_taxonomy

    tax = load_taxonomy()
    packed = load_packed_dataset(str(data["packed"]), tax)["train"]
    plain = Dataset.from_dict({"image": [data["originals"][i] for i in packed["image_id"]],
                               "labels": packed["labels"]}).cast_column("image", Image())
    return tax, packed.select_columns(["image", "labels"]), plain


def repeated(ds, n: int):
    """`ds` repeated to at least n rows, so that one epoch covers a whole measurement.

    A DataLoader drains and refills its workers at every epoch end; a small benchmark set would hit that
    every batch or two (one busy worker, the others idle), which a real training set of thousands never does.
    """
    from datasets import concatenate_datasets

    return concatenate_datasets([ds] * max(1, -(-n // len(ds))))


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
        cells = (r.get(c, "") for c in cols)
        print(" | ".join(f"{v:>14.2f}" if isinstance(v, float) else f"{str(v):>14}" for v in cells))


# ---------------------------------------------------------------------------------------------- input
def time_loader(ds, collate_fn, batch_size: int, workers: int, n_images: int) -> float:
    """Steady-state images/s: the clock starts at the first batch (worker start-up is a one-off cost)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_fn, shuffle=True, persistent_workers=workers > 0,
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
    from loscat_hf.model.transforms import ImageTransform, collate

    _, packed, plain = train_split(data)
    n = max(args.images or len(packed), 4 * args.batch)
    packed, plain = repeated(packed, n + 2 * args.batch), repeated(plain, n + 2 * args.batch)
    rows = []
    lo = time_loader(packed.with_transform(ImageTransform(args.size, train=True)), collate, args.batch,
                     args.workers, n)
    rows.append({"path": "loscat-hf", "workers": args.workers, "images_per_s": lo})
    for w in sorted({0, args.workers}):
        pl = time_loader(plain.with_transform(PlainTransform(args.size)), plain_collate, args.batch, w, n)
        rows.append({"path": "plain-hf", "workers": w, "images_per_s": pl})
    for r in rows:
        r["images_per_s_per_core"] = r["images_per_s"] / usable_cores()
    best_plain = max(r["images_per_s"] for r in rows if r["path"] == "plain-hf")
    # the floor of any JPEG decode: a 1/8-scale decode still Huffman-decodes every coefficient (one core)
    blobs = [p.read_bytes() for p in sorted((data["packed"] / "train").glob("*.jpg"))][:32]
    bounds = {"packed_full_decode_per_core": 1e3 / _ms_per_photo(lambda b: _draft_decode(b, 1), blobs),
              "packed_entropy_decode_per_core": 1e3 / _ms_per_photo(lambda b: _draft_decode(b, 8), blobs)}
    result = {"benchmark": "input", "image_size": args.size, "cores": usable_cores(), "images": n,
              "rows": rows, "speedup_vs_best_plain": lo / best_plain,
              "bits_per_pixel": data["bits_per_pixel"], "decode_bound_images_per_s": bounds}
    table(f"input pipeline at {args.size} px ({usable_cores()} cores, {n} images, "
          f"speed-up {lo / best_plain:.1f}x; "
          f"packed JPEGs {data['bits_per_pixel']['packed']} bits per pixel: one core decodes "
          f"{bounds['packed_full_decode_per_core']:.0f}/s in full, "
          f"{bounds['packed_entropy_decode_per_core']:.0f}/s "
          "at 1/8 scale, the entropy-decoding bound)", rows,
          ["path", "workers", "images_per_s", "images_per_s_per_core"])
    return result


# ---------------------------------------------------------------------------------------------- train
def vit_forward_gflops(config) -> float:
    """Forward GFLOP per image of a ViT (2 x multiply-adds of the matmuls): ~111 for ViT-B/16 at 384 px."""
    d, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    patches = (config.image_size // config.patch_size) ** 2
    tokens = patches + 1
    per_layer = tokens * (4 * d * d + 2 * d * inter) + 2 * tokens * tokens * d
    embed = patches * 3 * config.patch_size ** 2 * d
    return 2 * (layers * per_layer + embed) / 1e9


def matmul_peak_tflops(dtype: torch.dtype, quick: bool = False) -> float:
    """Measured matmul peak of this device in `dtype`, best of several timings: the denominator of MFU."""
    cuda = torch.cuda.is_available()
    n = 8192 if cuda else (512 if quick else 2048)
    a = torch.randn(n, n, dtype=dtype, device="cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    best = float("inf")
    for _ in range(6 if cuda else 5):
        sync()
        t0 = time.perf_counter()
        for _ in range(10 if cuda else 1):
            a @ a
        sync()
        best = min(best, (time.perf_counter() - t0) / (10 if cuda else 1))
    return 2 * n ** 3 / best / 1e12


class StepClock:
    """Trainer callback: step times, and the share of wall time spent waiting for the next batch.

    The Trainer fetches a step's batch between the previous on_step_end and this on_step_begin. On a GPU the
    clock synchronises at each step end, so that gap is time the GPU sits idle: busy = 1 - input_wait_share.
    """

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self
        self.begins: list[float] = []
        self.ends: list[float] = []

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                clock.begins.append(time.perf_counter())

            def on_step_end(self, args, state, control, **kw):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock.ends.append(time.perf_counter())

        self.callback = _Callback()

    def summary(self, batch: int) -> dict:
        """Images/s and input-wait share after the first step (warm-up: allocation, worker start)."""
        if len(self.ends) < 2:
            return {"images_per_s": 0.0, "input_wait_share": float("nan")}
        wall = self.ends[-1] - self.ends[0]
        wait = sum(b - e for b, e in zip(self.begins[1:], self.ends[:-1], strict=True))
        return {"images_per_s": rate((len(self.ends) - 1) * batch, wall), "input_wait_share": wait / wall}


class StepProfiler:
    """Trainer callback: torch.profiler over `steps` training steps after two warm-up steps, so a GPU run says
    where a step's time goes (attention kernels, the optimizer, copies, host syncs); the op table is written
    to `path` (self device time on a GPU, self CPU time otherwise). Its own run: it slows the steps it
    records, so no timed row has it."""

    def __init__(self, steps: int, path: Path) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule
        from transformers import TrainerCallback

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        prof = profile(activities=activities, schedule=schedule(wait=0, warmup=2, active=steps, repeat=1),
                       record_shapes=False)
        self.prof, self.path = prof, path

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                prof.start()

            def on_step_end(self, args, state, control, **kw):
                prof.step()

            def on_train_end(self, args, state, control, **kw):
                prof.stop()
                key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
                path.write_text(prof.key_averages().table(sort_by=key, row_limit=30))

        self.callback = _Callback()


def loscat_trainer(data: dict, tax, args, preset: str, out: str, steps: int, workers: int):
    """The trainer `loscat-hf train` builds (training.build_trainer), set to run `steps` full-model steps."""
    from loscat_hf.data.dataset import load_packed_dataset
    from loscat_hf.training.parse import parse_train_args
    from loscat_hf.training.run import build_trainer

    argv = ["--dataset", str(data["packed"]), "--model", preset, "--output-dir", out,
            "--max-steps", str(steps),
            "--per-device-train-batch-size", str(args.batch), "--dataloader-num-workers", str(workers),
            "--phase1-epochs", "0",  # time the whole model, not the head-only phase
            "--eval-strategy", "no", "--save-strategy", "no", "--load-best-model-at-end", "false",
            "--logging-strategy", "no", "--disable-tqdm", "true"]
    if args.bf16 != "auto":
        argv += ["--bf16", args.bf16]
    if args.bf16 == "true" and not torch.cuda.is_available():
        argv += ["--use-cpu", "true"]  # TrainingArguments allows bf16 on CPU only when asked for explicitly
    if args.compile:
        argv += ["--torch-compile", "true"]
    largs, targs = parse_train_args(argv)
    ds = load_packed_dataset(str(data["packed"]), tax)
    ds["train"] = repeated(ds["train"], (steps + 1) * args.batch)
    trainer, _ = build_trainer(largs, targs, tax, ds)
    return trainer


def plain_trainer(model, plain, args, size: int, out: str, steps: int, bf16: bool):
    """run_image_classification.py: stock Trainer, its defaults (0 workers), the processor on every photo."""
    from transformers import Trainer, TrainingArguments

    targs = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=args.batch,
                              save_strategy="no", report_to="none", logging_strategy="no", bf16=bf16,
                              remove_unused_columns=False, disable_tqdm=True)
    return Trainer(model=model, args=targs,
                   train_dataset=repeated(plain, (steps + 1) * args.batch).with_transform(
                       PlainTransform(size)),
                   data_collator=plain_collate)


def bench_train(data: dict, args) -> dict:
    from loscat_hf.model.build import build_model_and_processor

    tax, _, plain = train_split(data)
    gpu = torch.cuda.is_available()
    gpu_bf16 = gpu and torch.cuda.is_bf16_supported()
    presets = args.presets or ["tiny"] + (["vit-base-384-random"] if gpu or args.base_steps else [])
    peaks = {"fp32": matmul_peak_tflops(torch.float32, args.quick)}
    if gpu_bf16 or args.bf16 == "true":  # bf16 matmul on a CPU without bf16 units is a slow fallback: skip it
        peaks["bf16"] = matmul_peak_tflops(torch.bfloat16, args.quick)
    reference = max(peaks, key=peaks.get)
    rows = []
    for preset in presets:
        steps = args.steps if preset == "tiny" or gpu else (args.base_steps or args.steps)
        plain_steps = min(steps, args.plain_steps or steps)
        # loscat-hf with 0 and --workers workers; plain Trainer defaults, and plain + --bf16 where a GPU
        # has it
        runs = [("loscat-hf", w, None) for w in sorted({0, args.workers})] + [("plain-hf", 0, False)]
        if gpu_bf16:
            runs.append(("plain-hf", 0, True))
        for path, workers, bf16 in runs:
            with tempfile.TemporaryDirectory() as tmp:
                if path == "loscat-hf":
                    trainer = loscat_trainer(data, tax, args, preset, tmp, steps, workers)
                else:
                    model, proc = build_model_and_processor(preset, tax)
                    trainer = plain_trainer(model, plain, args, int(proc.size["height"]), tmp, plain_steps,
                                            bf16)
                clock = StepClock()
                trainer.add_callback(clock.callback)
                trainer.train()
                targs = trainer.args
                row = {"preset": preset, "path": path, "workers": workers, "bf16": bool(targs.bf16),
                       "optim": str(targs.optim.value if hasattr(targs.optim, "value") else targs.optim),
                       "attn": getattr(trainer.model.config, "_attn_implementation", None),
                       "steps": trainer.args.max_steps, **clock.summary(args.batch)}
                row["mfu"] = (row["images_per_s"] * 3 * vit_forward_gflops(trainer.model.config)
                              / 1e3 / peaks[reference])
                rows.append(row)
        if args.profile:  # a separate run of the loscat-hf path with --workers workers
            with tempfile.TemporaryDirectory() as tmp:
                trainer = loscat_trainer(data, tax, args, preset, tmp, args.profile + 3, args.workers)
                trainer.add_callback(StepProfiler(args.profile, args.out / f"profile_{preset}.txt").callback)
                trainer.train()
    for preset in presets:
        plain_default = [r["images_per_s"] for r in rows
                         if r["preset"] == preset and r["path"] == "plain-hf"][0]
        for r in rows:
            if r["preset"] == preset:
                r["speedup_vs_plain"] = r["images_per_s"] / max(plain_default, 1e-9)
    result = {"benchmark": "train", "device": torch.cuda.get_device_name() if gpu else "cpu",
              "cores": usable_cores(), "batch": args.batch, "matmul_peak_tflops": peaks,
              "mfu_reference": reference, "rows": rows}
    table(f"training ({result['device']}, batch {args.batch}; mfu vs the measured {reference} matmul peak "
          f"{peaks[reference]:.2f} TFLOP/s)", rows,
          ["preset", "path", "workers", "bf16", "images_per_s", "input_wait_share", "mfu",
           "speedup_vs_plain"])
    return result


# ---------------------------------------------------------------------------------------------- label
def _save_model(preset: str, tax, out: Path) -> Path:
    from loscat_hf.model.build import build_model_and_processor

    d = out / preset
    if not (d / "config.json").is_file():
        model, proc = build_model_and_processor(preset, tax)
        model.save_pretrained(d)
        proc.save_pretrained(d)
    return d


def loscat_label(model_dir: Path, paths: list[str], backend: str, precision: str, batch: int, workers: int,
                 work: Path):
    """`loscat-hf predict` (infer.folder.predict_folder) over a CSV of the photos; model loading is not
    timed."""
    from loscat_hf.infer.folder import predict_folder
    from loscat_hf.infer.predictor import RegionPredictor

    listing = work / "photos.csv"
    with open(listing, "w", newline="") as fh:
        csv.writer(fh).writerows([["image"], *[[p] for p in paths]])
    pred = RegionPredictor.from_pretrained(model_dir, precision=precision, backend=backend)
    out = work / f"predictions_{backend}_{precision}.csv"
    t0 = time.perf_counter()
    summary = predict_folder(pred, listing, out, batch_size=batch, num_workers=workers, progress=False)
    seconds = time.perf_counter() - t0
    if summary.by_status != {"ok": len(paths)}:
        raise RuntimeError(f"predict did not label every photo: {summary}")
    with open(out, newline="") as fh:
        labels = {r["image"]: r["region"] for r in csv.DictReader(fh)}
    return rate(len(paths), seconds), [labels[p] for p in paths], pred.backend


def label_configs(args) -> list[tuple[str, str]]:
    """(backend, precision) pairs to time: --configs, else auto with --precisions, else per device."""
    from loscat_hf.infer.backends.choice import onnx_installed
    from loscat_hf.infer.compare import parse_candidate

    if args.configs:
        pairs = [parse_candidate(c) for c in args.configs]  # compare-backends' parser: one syntax, checked
    elif args.precisions:
        pairs = [("auto", p) for p in args.precisions]
    elif torch.cuda.is_available():
        pairs = [("torch", "fp32"), ("torch", "bf16")]
    else:
        pairs = [("torch", "fp32")] + ([("onnx", "fp32"), ("onnx", "int8")] if onnx_installed() else [])
    # torch fp32 first: the reference of agree_fp32
    return [("torch", "fp32"), *[p for p in pairs if p != ("torch", "fp32")]]


def pipeline_label(model_dir: Path, paths: list[str], batch: int):
    from transformers import ViTImageProcessorPil, pipeline

    pipe = pipeline("image-classification", model=str(model_dir),
                    image_processor=ViTImageProcessorPil.from_pretrained(str(model_dir)),
                    device=0 if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    out = pipe(paths, batch_size=batch, top_k=1)
    return rate(len(paths), time.perf_counter() - t0), [o[0]["label"] for o in out]


def bench_label(data: dict, args) -> dict:
    from loscat_hf.taxonomy import load_taxonomy

    tax = load_taxonomy()
    all_paths = sorted(data["originals"].values())
    configs = label_configs(args)
    # your own model folder (e.g. a trained one): check its agreement, not random weights
    if args.label_model:
        models = [(str(args.label_model), args.label_model, args.images or len(all_paths))]
    else:
        models = [(preset, _save_model(preset, tax, args.work / "models"), limit) for preset, limit in
                  (("tiny", args.images or len(all_paths)), ("vit-base-384-random", args.base_images))
                  if limit]
    rows = []
    for name, model_dir, limit in models:
        paths = all_paths[:limit]
        ref = None
        pipe_best = 0.0
        for b in args.pipeline_batches:
            ips, labels = pipeline_label(model_dir, paths, b)
            ref = ref or labels
            pipe_best = max(pipe_best, ips)
            rows.append({"model": name, "path": "pipeline", "setting": f"batch {b}", "images_per_s": ips,
                         "top1_agree": 1.0})
        fp32 = None
        for backend, precision in configs:
            with tempfile.TemporaryDirectory() as tmp:
                ips, labels, ran = loscat_label(model_dir, paths, backend, precision, args.label_batch,
                                                args.label_workers, Path(tmp))
            fp32 = fp32 or labels
            rows.append({"model": name, "path": "loscat-hf",
                         "setting": f"{ran} {precision} w{args.label_workers}", "images_per_s": ips,
                         "top1_agree": _agree(labels, ref),
                         "agree_fp32": _agree(labels, fp32), "speedup": ips / pipe_best})
    result = {"benchmark": "label", "device": "cuda" if torch.cuda.is_available() else "cpu",
              "cores": usable_cores(),
              "photos": {"bits_per_pixel": data["bits_per_pixel"], "photo_like": data["photo_like"]},
              "rows": rows}
    table("labelling camera JPEGs with `loscat-hf predict` (top1_agree: vs the pipeline's labels; "
          "agree_fp32: vs loscat-hf fp32, same decode)", rows,
          ["model", "path", "setting", "images_per_s", "speedup", "top1_agree", "agree_fp32"])
    return result


def _agree(labels: list[str], reference: list[str]) -> float:
    return sum(a == b for a, b in zip(labels, reference, strict=True)) / len(reference)


# ---------------------------------------------------------------------------------------------- stages
def _ms_per_photo(fn, items, repeat: int = 2) -> float:
    """Best of `repeat` passes over the items, in ms per item (one item warm-up first)."""
    fn(items[0])
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / len(items)


def _draft_decode(data: bytes, scale: int):
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if scale > 1:
            im.draft("RGB", (im.width // scale, im.height // scale))
        im.load()
        return im


def bench_stages(data: dict, args) -> dict:
    """Where a photo's time goes in `loscat-hf predict`, per stage, on one core: reading, JPEG entropy
    decoding (a 1/8-scale decode: libjpeg still Huffman-decodes every coefficient, so this is the floor of
    any decode), predict's own decode (draft at the model's scale + resample), the squash to the model
    input, and the forward pass per backend (batch 8, all threads). The pipeline's full decode is there for
    comparison."""
    import numpy as np

    from loscat_hf.infer.answers import load_photo, photo_array
    from loscat_hf.infer.predictor import RegionPredictor
    from loscat_hf.taxonomy import load_taxonomy

    tax = load_taxonomy()
    paths = sorted(data["originals"].values())[: args.stage_photos]
    blobs = [Path(p).read_bytes() for p in paths]
    models = [("tiny", _save_model("tiny", tax, args.work / "models"))]
    if args.base_images:
        models.append(("vit-base-384-random", _save_model("vit-base-384-random", tax, args.work / "models")))
    rows = [{"model": "-", "stage": "read file",
             "ms_per_photo": _ms_per_photo(lambda p: Path(p).read_bytes(), paths)},
            {"model": "-", "stage": "entropy decoding (1/8-scale decode)",
             "ms_per_photo": _ms_per_photo(lambda b: _draft_decode(b, 8), blobs)},
            {"model": "-", "stage": "full decode (as the pipeline)",
             "ms_per_photo": _ms_per_photo(lambda b: _draft_decode(b, 1), blobs)}]
    for name, model_dir in models:
        ref = RegionPredictor.from_pretrained(model_dir, backend="torch", precision="fp32")
        decoded = [ref.load(b) for b in blobs]
        rows.append({"model": name, "stage": f"predict decode (for {ref.image_size} px)",
                     "ms_per_photo": _ms_per_photo(ref.load, blobs)})
        if ref.image_size < ref.decoding.max_side:  # what predict did before decoding followed the input size
            rows.append({"model": name,
                         "stage": f"decode at the packing size ({ref.decoding.max_side}), "
                                  "as predict once did",
                         "ms_per_photo": _ms_per_photo(lambda b, r=ref: load_photo(b, r.decoding.max_side),
                                                       blobs)})
        rows.append({"model": name, "stage": f"squash to {ref.image_size} px",
                     "ms_per_photo": _ms_per_photo(
                         lambda im, r=ref: photo_array(im, r.image_size, r.decoding.resample), decoded)})
        batch = np.stack([photo_array(im, ref.image_size, ref.decoding.resample) for im in decoded[:8]])
        for backend, precision in label_configs(args):
            pred = RegionPredictor.from_pretrained(model_dir, backend=backend, precision=precision,
                                                   device="cpu")
            ms = _ms_per_photo(lambda x, p=pred: p.logits(x), [batch], repeat=3) / len(batch)
            rows.append({"model": name, "stage": f"model {pred.backend} {precision} (batch {len(batch)})",
                         "ms_per_photo": ms})
    for r in rows:
        r["photos_per_s_one_core"] = 1e3 / r["ms_per_photo"]
    result = {"benchmark": "stages", "photos": len(paths), "threads": torch.get_num_threads(),
              "bits_per_pixel": data["bits_per_pixel"], "camera": args.camera, "rows": rows}
    table(f"per-stage time per photo ({len(paths)} {args.camera} photos, "
          f"{data['bits_per_pixel']['camera']} bits per pixel; model rows use {torch.get_num_threads()} "
          "threads)", rows,
          ["model", "stage", "ms_per_photo", "photos_per_s_one_core"])
    return result


# ---------------------------------------------------------------------------------------------- process
PIPELINE_SCRIPT = """
import sys, csv
from transformers import ViTImageProcessorPil, pipeline
model, listing, out, batch = sys.argv[1:5]
paths = [r["image"] for r in csv.DictReader(open(listing))]
pipe = pipeline("image-classification", model=model, \
image_processor=ViTImageProcessorPil.from_pretrained(model),
                device="cpu")
with open(out, "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["image", "region", "probability"])
    for p, o in zip(paths, pipe(paths, batch_size=int(batch), top_k=1)):
        w.writerow([p, o[0]["label"], o[0]["score"]])
"""


def _wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def bench_process(data: dict, args) -> dict:
    """Whole processes, start-up included, as a clinic runs them: `loscat-hf predict` (its first run exports
    the ONNX graph; later runs start from it; and `--backend torch`) against a script running
    `transformers.pipeline` over the same photos; plus `loscat-hf predict` on one photo (its
    start-up)."""
    from loscat_hf.taxonomy import load_taxonomy

    tax = load_taxonomy()
    # every photo
    paths = sorted(str(p) for p in (data["raw"] / "images").rglob("*.jpg"))[: args.images or None]
    model = _save_model(args.process_model, tax, args.work / "models")
    work = Path(tempfile.mkdtemp(prefix="loscat_process_"))
    listing, one = work / "photos.csv", work / "one.csv"
    for f, rows in ((listing, paths), (one, paths[:1])):
        with open(f, "w", newline="") as fh:
            csv.writer(fh).writerows([["image"], *[[p] for p in rows]])
    env = dict(os.environ, LOSCAT_HF_CACHE=str(work / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    predict = [sys.executable, "-m", "loscat_hf", "predict", "--model", str(model),
               "--out", str(work / "p.csv")]
    runs = [("loscat-hf predict, first run (exports ONNX)", [*predict, "--images", str(listing)], len(paths)),
            ("loscat-hf predict", [*predict, "--images", str(listing)], len(paths)),
            ("loscat-hf predict --backend torch", [*predict, "--images", str(listing), "--backend", "torch"],
             len(paths)),
            ("loscat-hf predict, 1 photo (start-up)", [*predict, "--images", str(one)], 1),
            ("transformers.pipeline script", [sys.executable, "-c", PIPELINE_SCRIPT, str(model), str(listing),
                                              str(work / "pipe.csv"), str(args.process_pipeline_batch)],
             len(paths))]
    rows = []
    for name, cmd, n in runs:
        seconds = _wall(cmd, env)
        rows.append({"command": name, "photos": n, "seconds": seconds, "photos_per_s": n / seconds})
    pipe_s = rows[-1]["seconds"]
    for r in rows:
        if r["photos"] == len(paths):
            r["speedup_vs_pipeline"] = pipe_s / r["seconds"]
    result = {"benchmark": "process", "model": args.process_model, "photos": len(paths),
              "camera": args.camera, "bits_per_pixel": data["bits_per_pixel"], "cores": usable_cores(),
              "rows": rows}
    table(f"whole processes, start-up included ({args.process_model}, {len(paths)} {args.camera} photos, "
          f"{data['bits_per_pixel']['camera']} bits per pixel)", rows,
          ["command", "photos", "seconds", "photos_per_s", "speedup_vs_pipeline"])
    return result


# ---------------------------------------------------------------------------------------------- main
BENCHES = {"input": bench_input, "train": bench_train, "label": bench_label, "stages": bench_stages,
           "process": bench_process}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=[*BENCHES, "all"])
    p.add_argument("--quick", action="store_true",
                   help="12 small photos, tiny sizes: a smoke test in seconds")
    p.add_argument("--photos", type=int, default=48, help="phantom photos to generate")
    p.add_argument("--camera", default="3000x2000", help="phantom photo size WxH")
    p.add_argument("--size", type=int, default=384, help="input-pipeline model size in px")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=usable_cores())
    p.add_argument("--images", type=int, default=0, help="images per measurement (0 = all)")
    p.add_argument("--steps", type=int, default=8, help="training steps (tiny preset)")
    p.add_argument("--plain-steps", type=int, default=0,
                   help="training steps of the plain path (0 = --steps): it is input-bound, so fewer steps "
                        "measure it as well and save minutes on a GPU")
    p.add_argument("--base-steps", type=int, default=0,
                   help="CPU training steps of vit-base-384-random (0 = skip)")
    p.add_argument("--base-images", type=int, default=16,
                   help="photos labelled with vit-base-384-random (0 = skip)")
    p.add_argument("--presets", nargs="+", choices=["tiny", "vit-base-384-random"], default=None,
                   help="train: the presets to time (default: tiny, and vit-base-384-random on a GPU or with "
                        "--base-steps); e.g. one preset for a second, --compile run")
    p.add_argument("--pipeline-batches", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--label-workers", type=int, default=default_workers(8),
                   help="loscat-hf predict --num-workers (default: predict's own, usable cores - 1, "
                        "at most 8)")
    p.add_argument("--label-batch", type=int, default=32,
                   help="loscat-hf predict --batch-size (its default: 32)")
    p.add_argument("--label-model", type=Path, default=None,
                   help="label with this model folder (e.g. your trained model) instead of the random "
                        "presets")
    p.add_argument("--precisions", nargs="+", default=None,
                   help="loscat-hf predict precisions with --backend auto (default: --configs)")
    p.add_argument("--configs", nargs="+", default=None, metavar="BACKEND:PRECISION",
                   help="label/stages: what loscat-hf runs (default: torch:fp32 onnx:fp32 onnx:int8 on CPU "
                        "with the onnx extra, torch:fp32 torch:bf16 on a GPU)")
    p.add_argument("--smooth", action="store_true",
                   help="smooth phantom renders (~0.3 bits per pixel) instead of the photo-like default "
                        "(~2)")
    p.add_argument("--stage-photos", type=int, default=16, help="stages: photos timed per stage")
    p.add_argument("--process-model", default="tiny", choices=["tiny", "vit-base-384-random"],
                   help="process: the model of the whole-process comparison")
    p.add_argument("--process-pipeline-batch", type=int, default=8,
                   help="process: the pipeline script's batch size")
    p.add_argument("--bf16", choices=["auto", "true", "false"], default="auto",
                   help="loscat-hf training in bf16: auto = as `loscat-hf train` decides (on where a GPU "
                        "has it); true on CPU runs the GPU recipe's code path")
    p.add_argument("--compile", action="store_true", help="loscat-hf training with torch.compile")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="train: also a torch.profiler run of STEPS steps (after 2 warm-up steps) of the "
                   "loscat-hf path with --workers workers; op table in <out>/profile_<preset>.txt")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "loscat_bench")
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    args = p.parse_args(argv)
    if args.label_model and not (args.label_model / "config.json").is_file():
        p.error(f"--label-model {args.label_model} is not a model folder (no config.json)")
    if args.quick:
        args.photos, args.camera, args.size, args.batch, args.steps = 12, "640x480", 64, 4, 3
        args.base_images, args.base_steps, args.workers = 0, 0, min(args.workers, 2)
        args.pipeline_batches, args.stage_photos = [1, 4], 4
        if not (args.configs or args.precisions):
            args.configs = ["torch:fp32", "onnx:fp32"]
        args.work = args.work.with_name(args.work.name + "_quick")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    w, h = (int(v) for v in args.camera.lower().split("x"))
    data = make_data(args.work / f"data_{args.photos}_{w}x{h}{'_smooth' if args.smooth else ''}", args.photos,
                     (w, h), photo_like=not args.smooth)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    print(f"CPU: {cpu_description()}")  # speeds differ by 2x between hosts: every result names its CPU
    for name in (BENCHES if args.which == "all" else [args.which]):
        results[name] = BENCHES[name](data, args)
        results[name]["cpu"] = cpu_description()
        results[name]["command"] = " ".join(["python scripts/benchmark.py", *(argv or sys.argv[1:])])
        (args.out / f"{name}.json").write_text(json.dumps(results[name], indent=2))
    return results


if __name__ == "__main__":
    main()
