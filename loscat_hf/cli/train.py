"""`loscat-hf` subcommands that train a model: train (HfArgumentParser) and quickstart (the whole pipeline).

quickstart lives here because its point is a first trained model; both only print what loscat_hf.training
and loscat_hf.demo.quickstart return. train is parsed by HfArgumentParser, not argparse: `main` hands it
its arguments before building the parser, and the parser lists it for --help only.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def train_command(argv: Sequence[str]) -> int:
    """`loscat-hf train`: HfArgumentParser over loscat's options and every TrainingArguments field."""
    from loscat_hf.training.arguments import train_help

    if "--help-all" in argv:
        print(train_help(full=True))
        return 0
    if any(a in ("-h", "--help") for a in argv):
        print(train_help(full=False))
        return 0
    from loscat_hf.training.parse import parse_train_args
    from loscat_hf.training.run import train

    largs, targs = parse_train_args(argv)
    result = train(largs, targs)
    if result.macro_f1 is not None:  # rank 0 (DDP: the other ranks report nothing)
        for component, m in (result.scores or {}).items():
            mae, pearson, qwk = (float("nan") if m.get(k) is None else m[k]
                                 for k in ("mae", "pearson", "qwk"))
            print(f"  {component}: n={m.get('n')} MAE {mae:.2f} Pearson {pearson:.2f} QWK {qwk:.2f}")
        # multi-label: accuracy is exact match (every region of the photo, and no other), thresholds per class
        accuracy = "accuracy" if not result.thresholds else "exact-match accuracy"
        print(f"macro-F1 {result.macro_f1:.3f}, {accuracy} {result.accuracy:.3f} on validation; model in "
              f"{result.output_dir}, report and plots in {result.output_dir / 'eval'}")
        if result.thresholds:
            print("  per-class thresholds (fitted on validation, saved with the model): " + ", ".join(
                f"{c} {t:.2f}" for c, t in result.thresholds.items()))
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    # Parsed by HfArgumentParser (training/parse.py: every TrainingArguments field); listed here for --help.
    sub.add_parser("train", add_help=False,
                   help="fine-tune a ViT (--dataset DIR --output-dir DIR [--model ID|DIR|tiny]); "
                        "train --help")


def _quickstart(args: argparse.Namespace) -> int:
    from loscat_hf.demo.quickstart import quickstart

    result = quickstart(args.out, patients=args.patients, photos=args.photos, epochs=args.epochs,
                        model=args.model, seed=args.seed, overwrite=args.overwrite)
    print(result.test.summary())
    print(result.summary())
    return 0


def add_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="phantom data -> prepare -> train (tiny) -> evaluate, offline")
    p.add_argument("--out", default="quickstart")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--photos", type=int, default=600)
    p.add_argument("--epochs", type=float, default=60)
    p.add_argument("--model", default="tiny", help="preset, folder or Hub id (default: tiny, offline)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_quickstart)
