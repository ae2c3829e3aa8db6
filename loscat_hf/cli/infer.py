"""`loscat-hf` subcommands that use a trained model on photos: predict, explain, compare-backends, and link.

link runs no model, yet it is here rather than in cli/data.py: it reads predict's predictions CSV and reports
on it (regions joined with the LoSCAT score table), the step after predict, while cli/data.py's commands
build the inputs of training. The work is in loscat_hf.infer and loscat_hf.link; this module only parses
and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loscat_hf.cli.flags import add_review_thresholds
from loscat_hf.defaults import BACKENDS, COMPARE_CANDIDATES, PRECISIONS

# also the label app's --backend help (cli/apps.py)
BACKEND_HELP = ("where the model runs: auto (default) = ONNX Runtime on CPU when the onnx extra is installed "
                "and its graph is exact, else torch; torch; onnx")


def _predict(args: argparse.Namespace) -> int:
    from loscat_hf.infer.folder import predict_folder

    summary = predict_folder(
        args.model, args.images, args.out, batch_size=args.batch_size, num_workers=args.num_workers,
        device=args.device, precision=args.precision, backend=args.backend,
        min_confidence=args.min_confidence, min_margin=args.min_margin, tta=args.tta, resume=args.resume)
    if summary.main:  # under accelerate launch: the first process, which merged the CSV
        print(summary)
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    from loscat_hf.hardware import default_workers

    p = sub.add_parser("predict",
                       help="label a folder or CSV of photos -> predictions CSV (one row per file)")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--images", required=True, help="folder (recursive, every non-hidden file) or CSV with an "
                   "'image' column (paths relative to the CSV's folder, or absolute)")
    p.add_argument("--out", required=True, help="predictions CSV to write")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=default_workers(8),
                   help="decoding processes (default: cores - 1, at most 8; under accelerate launch, each "
                   "process's share of the cores - 1; 0 = in the main process)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when present)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = bf16 on a GPU, fp32 on CPU; int8 = ONNX Runtime dynamic quantisation (CPU "
                   "only; changes answers: check with compare-backends)")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    add_review_thresholds(p)
    p.add_argument("--tta", action="store_true", help="average with the mirrored photo (2x compute)")
    p.add_argument("--resume", action="store_true", help="skip photos already in --out or its .partial file")
    p.set_defaults(func=_predict)


def _link(args: argparse.Namespace) -> int:
    from loscat_hf.link import run_link

    print(run_link(args.predictions, args.scores, args.metadata, args.out, taxonomy=args.taxonomy))
    return 0


def add_link(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link", help="join predicted regions with the LoSCAT score table by patient and visit")
    p.add_argument("--predictions", required=True, help="predictions.csv from `loscat-hf predict`")
    p.add_argument("--scores", required=True,
                   help="LoSCAT score table CSV (patient_id, visit, site, 6 components)")
    p.add_argument("--metadata", required=True,
                   help="CSV image,patient_id,visit (or file_name,...), or a packed dataset folder")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--taxonomy", default=None)
    p.set_defaults(func=_link)


def _explain(args: argparse.Namespace) -> int:
    from loscat_hf.infer.explain import explain_folder

    result = explain_folder(args.model, args.images, args.out, precision=args.precision,
                            batch_size=args.batch_size, backend=args.backend)
    if not result.main:  # under accelerate launch: the first process prints for all
        return 0
    for photo, reason in result.skipped:
        print(f"skipped {photo}: {reason}", file=sys.stderr)
    for photo, answer, scores, overlay in result.answers():  # a multi-region model: its regions and scores
        print(f"{photo}\t{answer}\t{scores}\t{overlay}")
    return 0


def add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="attention-rollout overlays: where the model looked in each photo")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--images", required=True, nargs="+", help="photo files and/or folders")
    p.add_argument("--out", required=True, help="folder for <name>.explain.png overlays")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=_explain)


def _compare_backends(args: argparse.Namespace) -> int:
    import json

    from loscat_hf.infer.compare import compare_backends, format_comparison

    result = compare_backends(args.model, args.images, candidates=args.candidates, limit=args.limit,
                              batch_size=args.batch_size)
    print(format_comparison(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result.to_dict(), indent=2))
        print(f"Report: {args.out}")
    return 0


def add_compare_backends(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare-backends",
                       help="int8 / ONNX Runtime against torch fp32 on your own photos and model")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--images", required=True,
                   help="photo folder or CSV with an 'image' column (as predict takes)")
    p.add_argument("--candidates", nargs="+", default=list(COMPARE_CANDIDATES), metavar="BACKEND:PRECISION",
                   help=f"what to compare with torch fp32 (default: {' '.join(COMPARE_CANDIDATES)})")
    p.add_argument("--limit", type=int, default=200, help="photos, spread over the folder (default 200)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default=None, help="also write the report as JSON (counts only, no file names)")
    p.set_defaults(func=_compare_backends)
