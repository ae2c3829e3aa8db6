"""`loscat-hf` command line: one subcommand per step of the pipeline.

Each subcommand only parses arguments and calls the module that does the work; user errors
(LoscatError) print a message and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from loscat_hf import __version__
from loscat_hf.cli.apps import BACKEND_HELP, add_demo, add_label
from loscat_hf.cli.flags import command_flags
from loscat_hf.cli.hub import add_public_flag, add_push, add_push_dataset, add_push_space
from loscat_hf.defaults import BACKENDS, COMPARE_CANDIDATES, MAX_SIDE, PRECISIONS
from loscat_hf.errors import LoscatError


def prepare_command(*, strict: bool = False, push_to_hub: str | None = None, private: bool = True, **kwargs) -> int:
    """`loscat-hf prepare`: build, print the summary, push; exit 1 when nothing usable remains (or, with
    --strict, when anything was left out)."""
    from loscat_hf.data.dataset import PRIVATE_DIR
    from loscat_hf.data.prepare import format_summary, prepare

    if push_to_hub:  # a bad repo id, no login or a public repo is refused before the photos are packed
        from loscat_hf.hub.repo import check_repo_id, preflight

        preflight(check_repo_id(push_to_hub, "push_to_hub"), "dataset", private)
    elif not private:
        raise LoscatError("--public publishes the pushed dataset: it needs --push-to-hub ORG/NAME")
    result = prepare(strict=strict, **kwargs)
    print(format_summary(result))
    if result.out_dir is None:
        print(f"\nNo usable photo remains ({len(result.consensus.photos)} photos had a consensus label out of "
              f"{result.consensus.n_rows} CSV rows): nothing was written. Fix the problems above and run again.",
              file=sys.stderr)
        return 1
    if strict and result.problems:
        print(f"\n--strict: {len(result.problems)} problem(s) found; the dataset was written to "
              f"{result.out}, but the exit code is 1.", file=sys.stderr)
        return 1
    if push_to_hub:
        from loscat_hf.hub.dataset import push_dataset_to_hub

        pushed = push_dataset_to_hub(result.out_dir, push_to_hub, private=private)
        print(f"\n{pushed.summary()}\n({PRIVATE_DIR}/ stays local.)")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    return prepare_command(
        annotations=args.annotations, images=args.images, out=args.out, taxonomy=args.taxonomy,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        max_side=args.max_side, overwrite=args.overwrite, strict=args.strict,
        push_to_hub=args.push_to_hub, private=args.private, num_workers=args.num_workers,
        scores=args.scores, keep_columns=args.keep_columns,
    )


def _demo_data(args: argparse.Namespace) -> int:
    from loscat_hf.demo.phantom import format_summary, generate_demo_data

    summary = generate_demo_data(
        args.out, n_patients=args.n_patients, n_photos=args.n_photos, image_size=tuple(args.image_size),
        n_unlabeled=args.n_unlabeled, seed=args.seed, overwrite=args.overwrite, num_workers=args.num_workers,
        photo_like=args.photo_like,
    )
    print(format_summary(summary))
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
    p.add_argument("--max-side", type=int, default=MAX_SIDE,
                   help=f"downscale so the shorter side is at most this (default {MAX_SIDE}); the trained model "
                        "records it and predict decodes photos at the same size")
    p.add_argument("--scores", default=None, help="LoSCAT score table CSV to attach per-photo score targets")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--strict", action="store_true", help="exit non-zero on any problem, not only when nothing is usable")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="push the dataset (never its private/ folder)")
    add_public_flag(p, "with --push-to-hub: ")
    p.add_argument("--num-workers", type=int, default=None, help="image processes (default: all cores)")
    p.add_argument("--keep-columns", default=None, metavar="A,B",
                   help="extra per-photo columns to keep (e.g. skin_tone,fitzpatrick); every other column the "
                        "CSV has beyond image, patient_id, region, rater, visit, quality is dropped")
    p.set_defaults(func=_prepare)


def _add_demo_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-data", help="generate SYNTHETIC phantom photos, rater labels and LoSCAT scores")
    p.add_argument("out", help="output folder")
    p.add_argument("--patients", dest="n_patients", metavar="PATIENTS", type=int, default=60)
    p.add_argument("--photos", dest="n_photos", metavar="PHOTOS", type=int, default=600,
                   help="labelled photos in total")
    p.add_argument("--image-size", type=int, nargs=2, default=(1024, 768), metavar=("W", "H"))
    p.add_argument("--unlabeled", dest="n_unlabeled", metavar="UNLABELED", type=int, default=40,
                   help="photos in unlabeled/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--photo-like", action="store_true", help="camera grain and JPEG quality 90-95: files that cost what "
                   "camera photos cost to decode (~2-3 bits per pixel; the default renders are smooth, ~0.3)")
    p.set_defaults(func=_demo_data)


def _evaluate(args: argparse.Namespace) -> int:
    from loscat_hf.evaluation.predictions import evaluate_predictions
    from loscat_hf.evaluation.split_eval import evaluate

    if args.model and args.dataset and not (args.predictions or args.truth):
        result = evaluate(args.model, args.dataset, args.out, split=args.split, taxonomy=args.taxonomy,
                          batch_size=args.batch_size, num_workers=args.num_workers, scores_table=args.scores_table)
    elif args.predictions and args.truth and not (args.model or args.dataset or args.scores_table):
        result = evaluate_predictions(args.predictions, args.truth, args.out, taxonomy=args.taxonomy)
    elif args.scores_table and args.predictions:
        raise LoscatError("--scores compares a score model's predictions with the score table: it needs --model "
                          "and --dataset, not --predictions")
    else:
        raise LoscatError("evaluate takes either --model and --dataset [--scores], or --predictions and --truth")
    print(result.summary())
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from loscat_hf.demo.quickstart import quickstart

    result = quickstart(args.out, patients=args.patients, photos=args.photos, epochs=args.epochs,
                        model=args.model, seed=args.seed, overwrite=args.overwrite)
    print(result.test.summary())
    print(result.summary())
    return 0


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
            mae, pearson, qwk = (float("nan") if m.get(k) is None else m[k] for k in ("mae", "pearson", "qwk"))
            print(f"  {component}: n={m.get('n')} MAE {mae:.2f} Pearson {pearson:.2f} QWK {qwk:.2f}")
        print(f"macro-F1 {result.macro_f1:.3f}, accuracy {result.accuracy:.3f} on validation; model in "
              f"{result.output_dir}, report and plots in {result.output_dir / 'eval'}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    # Parsed by HfArgumentParser (training/parse.py: every TrainingArguments field); listed here for --help.
    sub.add_parser("train", add_help=False,
                   help="fine-tune a ViT (--dataset DIR --output-dir DIR [--model ID|DIR|tiny]); train --help")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="metrics and plots: model on a dataset, or predictions vs truth CSV")
    p.add_argument("--model", help="model folder (or Hub id); with --dataset")
    p.add_argument("--dataset", help="packed dataset folder")
    p.add_argument("--predictions", help="predictions CSV (loscat-hf predict's or the study's); with --truth")
    p.add_argument("--truth", help="ground-truth CSV: image_path/image/file_name and region/label columns")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--split", default="validation")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--scores", dest="scores_table", metavar="SCORES", default=None,
                   help="LoSCAT score table CSV: a score model's per-visit mLoSSI/LoSDI "
                   "agreement (with --model; per-component agreement needs only a dataset packed with scores)")
    p.set_defaults(func=_evaluate)


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="phantom data -> prepare -> train (tiny) -> evaluate, offline")
    p.add_argument("--out", default="quickstart")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--photos", type=int, default=600)
    p.add_argument("--epochs", type=float, default=60)
    p.add_argument("--model", default="tiny", help="preset, folder or Hub id (default: tiny, offline)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_quickstart)


def _predict(args: argparse.Namespace) -> int:
    from loscat_hf.infer.folder import predict_folder

    summary = predict_folder(
        args.model, args.images, args.out, batch_size=args.batch_size, num_workers=args.num_workers,
        device=args.device, precision=args.precision, backend=args.backend, min_confidence=args.min_confidence,
        min_margin=args.min_margin, tta=args.tta, resume=args.resume)
    print(summary)
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from loscat_hf.hardware import default_workers

    p = sub.add_parser("predict", help="label a folder or CSV of photos -> predictions CSV (one row per file)")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--images", required=True, help="folder (recursive, every non-hidden file) or CSV with an "
                   "'image' column (paths relative to the CSV's folder, or absolute)")
    p.add_argument("--out", required=True, help="predictions CSV to write")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=default_workers(8),
                   help="decoding processes (default: cores - 1, at most 8; 0 = in the main process)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when present)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = bf16 on a GPU, fp32 on CPU; int8 = ONNX Runtime dynamic quantisation (CPU only; "
                   "changes answers: check with compare-backends)")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--min-confidence", type=float, default=None,
                   help="flag needs_review below this top-1 probability (default 0.5)")
    p.add_argument("--min-margin", type=float, default=None,
                   help="flag needs_review when top-1 minus top-2 probability is below this (default 0.1)")
    p.add_argument("--tta", action="store_true", help="average with the mirrored photo (2x compute)")
    p.add_argument("--resume", action="store_true", help="skip photos already in --out or its .partial file")
    p.set_defaults(func=_predict)
def _link(args: argparse.Namespace) -> int:
    from loscat_hf.link import run_link

    print(run_link(args.predictions, args.scores, args.metadata, args.out, taxonomy=args.taxonomy))
    return 0


def _add_link(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link", help="join predicted regions with the LoSCAT score table by patient and visit")
    p.add_argument("--predictions", required=True, help="predictions.csv from `loscat-hf predict`")
    p.add_argument("--scores", required=True, help="LoSCAT score table CSV (patient_id, visit, site, 6 components)")
    p.add_argument("--metadata", required=True,
                   help="CSV image,patient_id,visit (or file_name,...), or a packed dataset folder")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--taxonomy", default=None)
    p.set_defaults(func=_link)


def _explain(args: argparse.Namespace) -> int:
    from loscat_hf.infer.explain import explain_folder

    result = explain_folder(args.model, args.images, args.out, precision=args.precision,
                            batch_size=args.batch_size, backend=args.backend)
    for photo, reason in result.skipped:
        print(f"skipped {photo}: {reason}", file=sys.stderr)
    for photo, region, probability, overlay in result.explained:
        print(f"{photo}\t{region}\t{probability:.3f}\t{overlay}")
    return 0


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="attention-rollout overlays: where the model looked in each photo")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--images", required=True, nargs="+", help="photo files and/or folders")
    p.add_argument("--out", required=True, help="folder for <name>.explain.png overlays")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=_explain)


def _evaluate_ensemble(args: argparse.Namespace) -> int:
    from loscat_hf.evaluation.ensemble import evaluate_ensemble, format_ensemble

    report = evaluate_ensemble(args.models, args.dataset, args.out, split=args.split, taxonomy=args.taxonomy,
                               batch_size=args.batch_size, scores_table=args.scores_table)
    print(format_ensemble(report))
    print(f"Report: {Path(args.out) / 'ensemble_report.json'}")
    return 0


def _add_evaluate_ensemble(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-ensemble",
                       help="average several model folders (region probabilities, LoSCAT scores); report each")
    p.add_argument("--models", nargs="+", required=True, help="two or more model folders (one: use evaluate)")
    p.add_argument("--dataset", required=True, help="packed dataset folder")
    p.add_argument("--out", required=True, help="report folder (ensemble_report.json)")
    p.add_argument("--split", default="validation")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--scores", dest="scores_table", metavar="SCORES", default=None,
                   help="LoSCAT score table (CSV): also compare per-visit mLoSSI/LoSDI totals with the clinical ones")
    p.set_defaults(func=_evaluate_ensemble)


def _convert_timm(args: argparse.Namespace) -> int:
    from loscat_hf.model.convert import convert_timm

    labels = [c.strip() for c in args.labels.split(",") if c.strip()] if args.labels else None
    print(convert_timm(args.checkpoint, args.out, arch=args.arch, labels=labels, taxonomy=args.taxonomy,
                       overwrite=args.overwrite).summary())
    return 0


def _add_convert_timm(sub: argparse._SubParsersAction) -> None:
    from loscat_hf.model.study import STUDY_ARCH, STUDY_CHECKPOINT, STUDY_CLASS_CODES

    p = sub.add_parser("convert-timm", help="a timm ViT checkpoint (the study's published model) -> model folder")
    p.add_argument("checkpoint", help=f"local .pt/.pth/.bin/.safetensors, or Hub ORG/REPO[/PATH] (the study's: "
                   f"{STUDY_CHECKPOINT})")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--arch", default=STUDY_ARCH, help=f"timm architecture name (default {STUDY_ARCH})")
    p.add_argument("--labels", default=None, metavar="CODE,...", help="the checkpoint's classes in output order, "
                   f"as region names or study codes (default: {','.join(STUDY_CLASS_CODES)})")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_convert_timm)


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


def _add_compare_backends(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare-backends", help="int8 / ONNX Runtime against torch fp32 on your own photos and model")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--images", required=True, help="photo folder or CSV with an 'image' column (as predict takes)")
    p.add_argument("--candidates", nargs="+", default=list(COMPARE_CANDIDATES), metavar="BACKEND:PRECISION",
                   help=f"what to compare with torch fp32 (default: {' '.join(COMPARE_CANDIDATES)})")
    p.add_argument("--limit", type=int, default=200, help="photos, spread over the folder (default 200)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default=None, help="also write the report as JSON (counts only, no file names)")
    p.set_defaults(func=_compare_backends)


# One registrar per subcommand; the Gradio apps' (demo, label) are in cli/apps.py, the Hub pushes' in cli/hub.py.
_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo_data, _add_prepare, _add_train, _add_evaluate, _add_quickstart, _add_predict, _add_link, add_push,
    add_push_dataset, _add_explain, add_demo, add_push_space, add_label, _add_evaluate_ensemble, _add_convert_timm,
    _add_compare_backends,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loscat-hf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"loscat-hf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (a test's capture, a redirected stream), not the one at start."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_console() -> None:
    """loscat_hf's INFO messages (quickstart steps, training set-up, warnings) on stderr, plain text."""
    logger = logging.getLogger("loscat_hf")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = None
    try:
        _log_to_console()
        if argv[:1] == ["train"]:  # all of TrainingArguments, HfArgumentParser style (training/parse.py)
            return train_command(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except LoscatError as exc:  # the API's message names parameters; a command-line user reads their flags
        flags = command_flags(argv[0] if argv else None, parser or build_parser())
        print(f"loscat-hf: error: {exc.cli_message(flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loscat-hf: interrupted", file=sys.stderr)
        return 130

