"""Which CPU backend runs ViT-B/16-384 fastest with fp32 answers: the measurement behind `--backend onnx`.

Times one forward pass (batch 1 and 8, best of --repeat, same process, same random input) of torch eager,
torch.compile (its compile time reported apart), ONNX Runtime on loscat-hf's exported graph (and its int8
graph), and OpenVINO on the same graph when `openvino` is installed (it is not a loscat-hf dependency). Each
row gives the largest class-probability difference against torch eager; exact = below 1e-3.

    python scripts/bench_backends.py [--preset vit-base-384-random] [--repeat 3] [--out bench_backends.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import matmul_peak_tflops, vit_forward_gflops  # noqa: E402

from loscat_hf.defaults import EXACT_PROB_DIFF  # noqa: E402
from loscat_hf.hardware import cpu_description  # noqa: E402
from loscat_hf.infer.backends.onnx_export import max_prob_diff  # noqa: E402


def best_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="vit-base-384-random", choices=["tiny", "vit-base-384-random"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true",
                    help="skip torch.compile (it takes ~1 min to compile)")
    ap.add_argument("--out", default="bench_backends.json")
    args = ap.parse_args(argv)

    from loscat_hf.infer.backends.onnx_cache import graph_name, open_session
    from loscat_hf.infer.backends.onnx_export import OnnxRunner
    from loscat_hf.model.build import build_model_and_processor
    from loscat_hf.taxonomy import load_taxonomy

    model, proc = build_model_and_processor(args.preset, load_taxonomy())
    model.eval()
    size = int(model.config.image_size)
    mean, std = list(proc.image_mean), list(proc.image_std)
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["LOSCAT_HF_CACHE"] = tmp
        t0 = time.perf_counter()
        onnx_fp32 = OnnxRunner(model, mean, std)
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        onnx_int8 = OnnxRunner(model, mean, std, int8=True)
        quantize_s = time.perf_counter() - t0
        threads = torch.get_num_threads()
        rows = []
        for batch in args.batches:
            x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
            with torch.inference_mode():
                ref = model(pixel_values=x).logits.numpy()
            xn = x.numpy()
            runs = {"torch eager": lambda x=x: model(pixel_values=x).logits.numpy(),
                    "onnxruntime fp32": lambda xn=xn: onnx_fp32.session("logits").run(
                        None, {"pixel_values": xn})[0]}
            int8_session = open_session(onnx_int8.folder / graph_name("logits", True), threads)
            runs["onnxruntime int8"] = lambda xn=xn, s=int8_session: np.concatenate(
                [s.run(None, {"pixel_values": xn[i:i + 1]})[0] for i in range(len(xn))])
            if importlib.util.find_spec("openvino") is not None:
                import openvino as ov

                compiled = ov.Core().compile_model(str(onnx_fp32.folder / graph_name("logits", False)),
                                                   "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                           "INFERENCE_NUM_THREADS": threads,
                                                           "PERFORMANCE_HINT": "LATENCY"})
                runs["openvino fp32"] = lambda xn=xn, c=compiled: c({0: xn})[0]
            if not args.no_compile:
                compiled_model = torch.compile(model)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    compiled_model(pixel_values=x)
                compile_s = time.perf_counter() - t0
                runs["torch.compile"] = lambda x=x, m=compiled_model: m(pixel_values=x).logits.numpy()
            with torch.inference_mode():
                base = None
                for name, fn in runs.items():
                    seconds = best_time(fn, args.repeat)
                    base = base or seconds
                    diff = max_prob_diff(ref, fn())
                    row = {"batch": batch, "backend": name, "s_per_photo": seconds / batch,
                           "vs_eager": base / seconds, "max_prob_diff": diff, "exact": diff < EXACT_PROB_DIFF}
                    if name == "torch.compile":
                        row["compile_s"] = compile_s
                    rows.append(row)
    peak = matmul_peak_tflops(torch.float32)
    bound = vit_forward_gflops(model.config) / 1e3 / peak  # s per photo at the measured fp32 matmul peak
    result = {"preset": args.preset, "cpu": cpu_description(), "threads": threads, "onnx_export_s": export_s,
              "onnx_int8_quantize_s": quantize_s, "torch": torch.__version__, "fp32_matmul_peak_tflops": peak,
              "fp32_bound_s_per_photo": bound, "rows": rows}
    print(f"CPU: {result['cpu']}")
    print(f"{args.preset}, {threads} threads; ONNX export {export_s:.1f} s, "
          f"int8 quantisation {quantize_s:.1f} s; "
          f"fp32 matmul peak {peak:.3f} TFLOP/s: {vit_forward_gflops(model.config):.0f} GFLOP per photo "
          f"take at least {bound:.3f} s in fp32")
    print("| batch | backend | s/photo | vs eager | max prob diff | exact |")
    for r in rows:
        print(f"| {r['batch']} | {r['backend']} | {r['s_per_photo']:.3f} | {r['vs_eager']:.2f}x | "
              f"{r['max_prob_diff']:.1e} | {'yes' if r['exact'] else 'no'} |"
              + (f" (compile {r['compile_s']:.0f} s)" if "compile_s" in r else ""))
    Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
