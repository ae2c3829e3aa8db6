"""`loscat-hf` subcommands that score models: evaluate (a model or a predictions CSV), evaluate-ensemble,
calibrate (fit and record a model's temperature, or a multi-region model's per-class thresholds, on labelled
photos).

The metrics, reports and plots are loscat_hf.evaluation's; this module checks which inputs were given
together, prints the summary and lets `main` turn a LoscatError into exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loscat_hf.cli.flags import add_review_thresholds
from loscat_hf.errors import LoscatError


def _evaluate(args: argparse.Namespace) -> int:
    from loscat_hf.evaluation.predictions import evaluate_predictions
    from loscat_hf.evaluation.split_eval import evaluate

    if args.model and args.dataset and not (args.predictions or args.truth):
        result = evaluate(args.model, args.dataset, args.out, split=args.split, taxonomy=args.taxonomy,
                          batch_size=args.batch_size, num_workers=args.num_workers,
                          scores_table=args.scores_table)
    elif args.predictions and args.truth and not (args.model or args.dataset or args.scores_table):
        result = evaluate_predictions(args.predictions, args.truth, args.out, taxonomy=args.taxonomy)
    elif args.scores_table and args.predictions:
        raise LoscatError("--scores compares a score model's predictions with the score table: it needs "
                          "--model and --dataset, not --predictions")
    else:
        raise LoscatError("evaluate takes either --model and --dataset [--scores], or --predictions and "
                          "--truth")
    print(result.summary())
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics and plots: model on a dataset, or predictions vs truth CSV")
    p.add_argument("--model", help="model folder (or Hub id); with --dataset")
    p.add_argument("--dataset", help="packed dataset folder")
    p.add_argument("--predictions", help="predictions CSV (loscat-hf predict's or the study's); with --truth")
    p.add_argument("--truth", help="ground-truth CSV: image_path/image/file_name and region/label columns "
                   "(a photo showing several regions: 'Left thigh; Left leg')")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--split", default="validation")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--scores", dest="scores_table", metavar="SCORES", default=None,
                   help="LoSCAT score table CSV: a score model's per-visit mLoSSI/LoSDI "
                   "agreement (with --model; per-component agreement needs only a dataset packed with "
                   "scores)")
    p.set_defaults(func=_evaluate)


def _evaluate_ensemble(args: argparse.Namespace) -> int:
    from loscat_hf.evaluation.ensemble import evaluate_ensemble, format_ensemble

    report = evaluate_ensemble(args.models, args.dataset, args.out, split=args.split, taxonomy=args.taxonomy,
                               batch_size=args.batch_size, scores_table=args.scores_table)
    print(format_ensemble(report))
    print(f"Report: {Path(args.out) / 'ensemble_report.json'}")
    return 0


def add_evaluate_ensemble(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-ensemble",
                       help="average several model folders (region probabilities, LoSCAT scores); report "
                            "each")
    p.add_argument("--models", nargs="+", required=True, help="two or more model folders (one: use evaluate)")
    p.add_argument("--dataset", required=True, help="packed dataset folder")
    p.add_argument("--out", required=True, help="report folder (ensemble_report.json)")
    p.add_argument("--split", default="validation")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--scores", dest="scores_table", metavar="SCORES", default=None,
                   help="LoSCAT score table (CSV): also compare per-visit mLoSSI/LoSDI totals with the "
                        "clinical ones")
    p.set_defaults(func=_evaluate_ensemble)


def _calibrate(args: argparse.Namespace) -> int:
    from loscat_hf.evaluation.calibrate import calibrate

    thresholds = {k: v for k, v in (("min_confidence", args.min_confidence), ("min_margin", args.min_margin))
                  if v is not None}  # as predict will flag: its defaults unless told
    print(calibrate(args.model, args.dataset, split=args.split, taxonomy=args.taxonomy,
                    batch_size=args.batch_size, num_workers=args.num_workers, **thresholds).summary())
    return 0


def add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate",
                       help="fit a model's temperature (a multi-region model: its per-class thresholds) on "
                            "your labelled photos; record it with n and ECE")
    p.add_argument("--model", required=True,
                   help="local model folder: its config.json gets the temperature (or thresholds)")
    p.add_argument("--dataset", required=True, help="packed dataset folder of your own labelled photos")
    p.add_argument("--split", default="validation", help="split to fit on (default: validation)")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    add_review_thresholds(p)  # the review effect is reported at predict's thresholds: give the same ones
    p.set_defaults(func=_calibrate)
