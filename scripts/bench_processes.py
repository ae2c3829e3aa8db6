"""`loscat-hf predict` over several processes against one: whole commands, start-up included, same photos.

    python scripts/bench_processes.py --photos 120 --camera 2000x1500 --configs 1x1 1x2 2x1  # 2 cores
    python scripts/bench_processes.py --model vit-base-384-random --photos 16 --configs 1x1 1x2 2x1

Each config PROCESSESxTHREADS runs `loscat-hf predict` once on the same photo-like camera JPEGs
(`generate_demo_data(photo_like=True)`), with OMP_NUM_THREADS=THREADS in every process: one process as a
plain command, several under `accelerate launch --multi_gpu --num_processes N` (gloo on CPU, NCCL on GPUs:
each process its own GPU). A first one-photo run fills the ONNX cache, so no row pays for the export. Each row
reports the wall time, the same command's time on one photo (`one_photo_s`: its start-up), photos/s, the
speed-up over the first row, and whether its CSV is byte-identical to the first row's (`same_csv`) and names
the same region for every photo (`same_regions`). The header names the CPU
(model and vector units) and the GPU: speeds differ by 2x between hosts. Writes <out>/processes.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loscat_hf.hardware import cpu_description  # noqa: E402


def _gpus() -> tuple[int, str]:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count(), torch.cuda.get_device_name()
    except ImportError:
        pass
    return 0, "none"


def _photos(work: Path, n: int, camera: str) -> list[str]:
    from loscat_hf.demo.phantom import generate_demo_data

    w, h = (int(v) for v in camera.split("x"))
    raw = work / f"photos_{n}_{camera}"
    if not (raw / "annotations.csv").is_file():
        generate_demo_data(raw, n_patients=max(4, n // 4), n_photos=max(n, 12), image_size=(w, h),
                           n_unlabeled=0, overwrite=True, photo_like=True)  # every class needs a photo
    return sorted(str(p) for p in (raw / "images").rglob("*.jpg"))[:n]


def _model(work: Path, name: str) -> Path:
    """A model folder as given, or a preset saved under <work>/models, as `benchmark.py` saves it (not
    imported from there: `import benchmark` can find onnxruntime's own module of that name first)."""
    if Path(name).is_dir():
        return Path(name)
    from loscat_hf.model.build import build_model_and_processor
    from loscat_hf.taxonomy import load_taxonomy

    d = work / "models" / name
    if not (d / "config.json").is_file():
        model, processor = build_model_and_processor(name, load_taxonomy())
        model.save_pretrained(d)
        processor.save_pretrained(d)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(processes: int, args: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "loscat_hf.cli", *args]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), "-m", "loscat_hf.cli", *args]


def _run(cmd: list[str], threads: int, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _regions(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["image"], r["region"]) for r in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=120)
    p.add_argument("--camera", default="2000x1500", help="photo size WxH")
    p.add_argument("--model", default="tiny", help="a preset (tiny, vit-base-384-random) or a model folder")
    p.add_argument("--configs", nargs="+", default=["1x1", "1x2", "2x1"], metavar="PROCESSESxTHREADS")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None,
                   help="decoding workers per process (default: predict's: its share of the cores - 1)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "loscat_bench")
    p.add_argument("--out", type=Path, default=ROOT / "bench_results")
    args = p.parse_args(argv)
    configs = [tuple(int(v) for v in c.lower().split("x")) for c in args.configs]

    args.work.mkdir(parents=True, exist_ok=True)
    photos, model = _photos(args.work, args.photos, args.camera), _model(args.work, args.model)
    run = Path(tempfile.mkdtemp(prefix="loscat_processes_"))
    listing = run / "photos.csv"
    listing.write_text("image\n" + "".join(f"{p}\n" for p in photos))
    (run / "one.csv").write_text(f"image\n{photos[0]}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOSCAT_HF_CACHE": str(run / "cache"),
           "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    flags = ["--model", str(model), "--batch-size", str(args.batch_size), "--backend", args.backend,
             *(["--num-workers", str(args.workers)] if args.workers is not None else []),
             *(["--device", args.device] if args.device else [])]
    _run(_command(1, ["predict", *flags, "--images", str(run / "one.csv"), "--out", str(run / "w.csv")]), 1,
         env)  # fills the ONNX cache: no row below pays for the export
    gpus, gpu = _gpus()
    rows = []
    for processes, threads in configs:
        out = run / f"p{processes}x{threads}.csv"
        seconds = _run(_command(processes, ["predict", *flags, "--images", str(listing), "--out", str(out)]),
                       threads, env)
        startup = _run(_command(processes, ["predict", *flags, "--images", str(run / "one.csv"), "--out",
                                            str(run / "w.csv")]), threads, env)
        first = run / f"p{configs[0][0]}x{configs[0][1]}.csv"
        rows.append({"processes": processes, "threads_each": threads, "seconds": round(seconds, 2),
                     "one_photo_s": round(startup, 2), "photos_per_s": round(len(photos) / seconds, 2),
                     "speedup": round(rows[0]["seconds"] / seconds, 2) if rows else 1.0,
                     "same_csv": out.read_bytes() == first.read_bytes(),
                     "same_regions": _regions(out) == _regions(first)})
    result = {"benchmark": "processes", "cpu": cpu_description(), "gpus": gpus, "gpu": gpu,
              "model": args.model, "photos": len(photos), "camera": args.camera,
              "batch_size": args.batch_size,
              "workers": "default" if args.workers is None else args.workers, "backend": args.backend,
              "rows": rows}
    print(f"loscat-hf predict, whole commands ({args.model}, {len(photos)} {args.camera} photo-like JPEGs, "
          f"batch {args.batch_size}, workers {result['workers']}, backend {args.backend})")
    print(f"CPU: {result['cpu']}; GPU: {gpus} x {gpu}")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "processes.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
