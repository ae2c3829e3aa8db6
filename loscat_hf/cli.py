"""`loscat-hf` command line: one subcommand per step of the pipeline.

Each subcommand only parses arguments and calls the module that does the work; user errors
(LoscatError) print a message and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from loscat_hf import __version__
from loscat_hf.errors import LoscatError


def _prepare(args: argparse.Namespace) -> int:
    from loscat_hf.prepare import run_prepare

    return run_prepare(
        annotations=args.annotations, images=args.images, out=args.out, taxonomy=args.taxonomy,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        max_side=args.max_side, overwrite=args.overwrite, strict=args.strict,
        push_to_hub=args.push_to_hub, public=args.public, num_workers=args.num_workers,
        scores=args.scores,
    )


def _demo_data(args: argparse.Namespace) -> int:
    from loscat_hf.phantom import generate_demo_data

    generate_demo_data(
        args.out, n_patients=args.patients, n_photos=args.photos, image_size=tuple(args.image_size),
        n_unlabeled=args.unlabeled, seed=args.seed, overwrite=args.overwrite, num_workers=args.num_workers,
    )
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="rater labels + photos -> de-identified imagefolder with a patient split")
    p.add_argument("--annotations", required=True, help="CSV export: image, patient_id, region [, rater, visit, quality, ...]")
    p.add_argument("--images", required=True, help="folder the CSV's image paths are relative to")
    p.add_argument("--out", required=True, help="output dataset folder (imagefolder layout)")
    p.add_argument("--taxonomy", default=None, help="taxonomy JSON (default: the packaged 18 sites -> 12 classes)")
    p.add_argument("--val-fraction", type=float, default=0.165, help="share of patients for validation (default 0.165)")
    p.add_argument("--test-fraction", type=float, default=0.0, help="share of patients for a test split (default none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-side", type=int, default=512, help="downscale so the shorter side is at most this")
    p.add_argument("--scores", default=None, help="LoSCAT score table CSV to attach per-photo score targets")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--strict", action="store_true", help="exit non-zero on any problem, not only when nothing is usable")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="push the dataset (never id_map.csv)")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: make the repo public (default private)")
    p.add_argument("--num-workers", type=int, default=None, help="image processes (default: all cores)")
    p.set_defaults(func=_prepare)


def _add_demo_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-data", help="generate SYNTHETIC phantom photos, rater labels and LoSCAT scores")
    p.add_argument("out", help="output folder")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--photos", type=int, default=600, help="labelled photos in total")
    p.add_argument("--image-size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"))
    p.add_argument("--unlabeled", type=int, default=40, help="photos in unlabeled/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--num-workers", type=int, default=None)
    p.set_defaults(func=_demo_data)


def _evaluate(args: argparse.Namespace) -> int:
    from loscat_hf.evaluation import run_evaluate

    run_evaluate(args.model, args.dataset, args.out, split=args.split, taxonomy=args.taxonomy,
                 batch_size=args.batch_size, num_workers=args.num_workers)
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from loscat_hf.quickstart import run_quickstart

    run_quickstart(args.out, patients=args.patients, photos=args.photos, epochs=args.epochs, model=args.model,
                   seed=args.seed, overwrite=args.overwrite)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    # Parsed by HfArgumentParser in training.py (every TrainingArguments field); listed here for --help.
    sub.add_parser("train", add_help=False,
                   help="fine-tune a ViT (--dataset DIR --output-dir DIR [--model ID|DIR|tiny]); train --help")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics, per-class report and confusion matrix of a model folder")
    p.add_argument("--model", required=True, help="model folder (or Hub id)")
    p.add_argument("--dataset", required=True, help="packed dataset folder")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--split", default="validation")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.set_defaults(func=_evaluate)


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="phantom data -> prepare -> train (tiny) -> evaluate, offline")
    p.add_argument("--out", default="quickstart")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--photos", type=int, default=600)
    p.add_argument("--epochs", type=float, default=12)
    p.add_argument("--model", default="tiny", help="preset, folder or Hub id (default: tiny, offline)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_quickstart)


def _evaluate_ensemble(args: argparse.Namespace) -> int:
    from loscat_hf.ensemble import run_evaluate_ensemble

    run_evaluate_ensemble(args.models, args.dataset, args.out, split=args.split, taxonomy=args.taxonomy,
                          batch_size=args.batch_size, scores_table=args.scores)
    return 0


def _add_evaluate_ensemble(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-ensemble",
                       help="average several model folders (region probabilities, LoSCAT scores); report each")
    p.add_argument("--models", nargs="+", required=True, help="two or more model folders")
    p.add_argument("--dataset", required=True, help="packed dataset folder")
    p.add_argument("--out", required=True, help="report folder (ensemble_report.json)")
    p.add_argument("--split", default="validation")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--scores", default=None,
                   help="LoSCAT score table (CSV): also compare per-visit mLoSSI/LoSDI totals with the clinical ones")
    p.set_defaults(func=_evaluate_ensemble)


# Subcommands register themselves here; later modules (train, evaluate, predict, ...) add theirs.
_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo_data, _add_prepare, _add_train, _add_evaluate, _add_quickstart, _add_evaluate_ensemble,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loscat-hf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"loscat-hf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["train"]:  # all of TrainingArguments, HfArgumentParser style (see training.py)
            from loscat_hf.training import train_main

            return train_main(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except LoscatError as exc:
        print(f"loscat-hf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loscat-hf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
