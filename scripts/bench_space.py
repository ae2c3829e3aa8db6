"""Latency of the Space through gradio_client, and top-1 agreement of int8/bf16 with fp32.

Starts `python -m loscat_hf demo` on 127.0.0.1 with a model folder (default: the ViT-B/16-384 architecture,
preset vit-base-384-random, saved to a temp folder), calls /predict N times with the explanation overlay
off and on, reports p50/p95, then compares top-1 of int8 and bf16 against fp32 on photos; writes JSON.

    python scripts/bench_space.py --out bench_space.json [--model DIR] [--images DIR] [--calls 20] [--agree 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_folder(tmp: Path) -> str:
    from loscat_hf.model.build import build_model_and_processor
    from loscat_hf.taxonomy import load_taxonomy

    model, processor = build_model_and_processor("vit-base-384-random", load_taxonomy())
    model.save_pretrained(tmp / "model")
    processor.save_pretrained(tmp / "model")
    return str(tmp / "model")


def _photos(images: str | None, tmp: Path, n: int) -> list[Path]:
    if images is None:
        from loscat_hf.demo.phantom import generate_demo_data

        generate_demo_data(tmp / "phantom", n_patients=max(4, n // 6), n_photos=n, n_unlabeled=0, seed=7)
        images = str(tmp / "phantom" / "images")
    files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return files[:n]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit("the app did not start")


def latency(model: str, photo: Path, calls: int, precision: str) -> dict:
    from gradio_client import Client, handle_file

    port = _free_port()
    env = dict(os.environ, LOSCAT_PRECISION=precision, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "loscat_hf", "demo", "--model", model, "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait(url, proc)
        client = Client(url, verbose=False)
        out = {}
        for explain in (False, True):
            client.predict(handle_file(str(photo)), explain, api_name="/predict")  # warm-up
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                client.predict(handle_file(str(photo)), explain, api_name="/predict")
                times.append(time.perf_counter() - t)
            times.sort()
            out["explain_on" if explain else "explain_off"] = {
                "p50_s": round(statistics.median(times), 4),
                "p95_s": round(times[min(len(times) - 1, int(0.95 * len(times)))], 4), "calls": calls}
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def agreement(model: str, photos: list[Path]) -> dict:
    import numpy as np
    import torch

    from loscat_hf.infer.predictor import RegionPredictor

    ref = RegionPredictor.from_pretrained(model, precision="fp32")
    batch = torch.stack([ref.pixels(ref.load(p)) for p in photos])
    top = {"fp32": ref.logits(batch).argmax(1)}
    for prec in ("int8", "bf16"):
        pred = RegionPredictor.from_pretrained(model, precision=prec, device="cpu")
        top[prec] = np.concatenate([pred.logits(batch[i:i + 8]).argmax(1) for i in range(0, len(batch), 8)])
    return {f"{p}_vs_fp32": round(float((top[p] == top["fp32"]).mean()), 4) for p in ("int8", "bf16")} | {
        "n_images": len(photos)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: vit-base-384-random in a temp folder)")
    ap.add_argument("--images", default=None, help="photo folder for agreement (default: SYNTHETIC phantoms)")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--agree", type=int, default=50, help="photos for the int8/bf16 vs fp32 agreement")
    ap.add_argument("--precision", default="int8", help="the Space precision to time (LOSCAT_PRECISION)")
    ap.add_argument("--out", default="bench_space.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        model = args.model or _model_folder(tmp)
        photos = _photos(args.images, tmp, max(1, args.agree))
        result = {"model": args.model or "vit-base-384-random (random weights)", "precision": args.precision,
                  "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
                  "latency": latency(model, photos[0], args.calls, args.precision),
                  "agreement": agreement(model, photos) if args.agree > 0 else None}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
