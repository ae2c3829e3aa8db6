"""Latency of the Space through gradio_client, where it goes, and how far int8 / ONNX Runtime stray from fp32.

Starts `python -m loscat_hf demo` on 127.0.0.1 with a model folder (default: the ViT-B/16-384 architecture,
preset vit-base-384-random, saved to a temp folder) at --precision/--backend (default auto: exact fp32, in
ONNX Runtime when installed), calls /predict N times with the explanation overlay off and on, reports
p50/p95, and beside them the bare decode and forward pass of the same photo in this process (the rest of p50
is the app's and gradio's own overhead); then `compare-backends` on --agree photos; writes JSON.

    python scripts/bench_space.py --out bench_space.json [--model DIR] [--images DIR] [--calls 20]
        [--agree 50]
"""

from __future__ import annotations

import argparse
import json
import os
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

from loscat_hf.hardware import cpu_description  # noqa: E402


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


def _photos(images: str | None, tmp: Path, n: int) -> tuple[Path, list[Path]]:
    """(folder, its first n photos); default: SYNTHETIC photo-like 2000x1500 phantoms (~2 bits per pixel)."""
    if images is None:
        from loscat_hf.demo.phantom import generate_demo_data

        generate_demo_data(tmp / "phantom", n_patients=max(4, n // 6), n_photos=max(n, 12), n_unlabeled=0,
                           seed=7, image_size=(2000, 1500), photo_like=True)
        images = str(tmp / "phantom" / "images")
    files = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return Path(images), files[:n]


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


def latency(model: str, photo: Path, calls: int, precision: str, backend: str) -> dict:
    from gradio_client import Client, handle_file

    port = _free_port()
    env = dict(os.environ, LOSCAT_PRECISION=precision, LOSCAT_BACKEND=backend, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "loscat_hf", "demo", "--model", model,
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def bare(model: str, photo: Path, precision: str, backend: str, repeat: int = 5) -> dict:
    """The photo's decode and forward pass alone, in this process, with the app's predictor settings."""
    from loscat_hf.infer.predictor import RegionPredictor

    pred = RegionPredictor.from_pretrained(model, precision=precision, backend=backend, device="cpu")
    times: dict[str, list[float]] = {"decode_s": [], "forward_s": []}
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        pixels = pred.pixels(pred.load(photo))
        t1 = time.perf_counter()
        pred.logits(pixels[None])
        times["decode_s"].append(t1 - t0)
        times["forward_s"].append(time.perf_counter() - t1)
    return {k: round(statistics.median(v[1:]), 4) for k, v in times.items()} | {"backend": pred.backend}


def agreement(model: str, photos: Path, limit: int) -> dict:
    """`loscat-hf compare-backends` on the photos: int8 and ONNX Runtime fp32 against torch fp32."""
    from loscat_hf.infer.compare import compare_backends

    return compare_backends(model, photos, limit=limit, progress=False).to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None,
                    help="model folder (default: vit-base-384-random in a temp folder)")
    ap.add_argument("--images", default=None,
                    help="photo folder for agreement (default: SYNTHETIC phantoms)")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--agree", type=int, default=50, help="photos for the int8/bf16 vs fp32 agreement")
    ap.add_argument("--precision", default="auto",
                    help="the Space precision to time (LOSCAT_PRECISION; default auto: exact fp32 on CPU)")
    ap.add_argument("--backend", default="auto",
                    help="the Space backend to time (LOSCAT_BACKEND; default auto)")
    ap.add_argument("--out", default="bench_space.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        model = args.model or _model_folder(tmp)
        folder, photos = _photos(args.images, tmp, max(1, args.agree))
        result = {"model": args.model or "vit-base-384-random (random weights)", "precision": args.precision,
                  "machine": cpu_description(),
                  "latency": latency(model, photos[0], args.calls, args.precision, args.backend),
                  "bare": bare(model, photos[0], args.precision, args.backend),
                  "agreement": agreement(model, folder, args.agree) if args.agree > 0 else None}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
