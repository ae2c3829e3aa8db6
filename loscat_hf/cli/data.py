"""`loscat-hf` subcommands that make a dataset: prepare (rater labels + photos), demo-data (phantom photos).

They sit together because demo-data writes exactly what prepare reads; the work is in loscat_hf.data and
loscat_hf.demo.phantom, this module only maps flags to parameters, prints the summary and picks the exit code.
"""

from __future__ import annotations

import argparse
import sys

from loscat_hf.cli.hub import add_public_flag
from loscat_hf.defaults import MAX_SIDE
from loscat_hf.errors import LoscatError


def prepare_command(*, strict: bool = False, push_to_hub: str | None = None, private: bool = True,
                    **kwargs) -> int:
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
        print(f"\nNo usable photo remains ({len(result.consensus.photos)} photos had a consensus label out "
              f"of {result.consensus.n_rows} CSV rows): nothing was written. Fix the problems above and run "
              "again.", file=sys.stderr)
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
        scores=args.scores, keep_columns=args.keep_columns, multi_region=args.multi_region,
    )


def _demo_data(args: argparse.Namespace) -> int:
    from loscat_hf.demo.phantom import format_summary, generate_demo_data

    summary = generate_demo_data(
        args.out, n_patients=args.n_patients, n_photos=args.n_photos, image_size=tuple(args.image_size),
        n_unlabeled=args.n_unlabeled, seed=args.seed, overwrite=args.overwrite, num_workers=args.num_workers,
        photo_like=args.photo_like, multi_region=args.multi_region,
    )
    print(format_summary(summary))
    return 0


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare",
                       help="rater labels + photos -> de-identified imagefolder with a patient split")
    p.add_argument("--annotations", required=True,
                   help="CSV export: image, patient_id, region [, rater, visit, quality, ...]")
    p.add_argument("--images", required=True, help="folder the CSV's image paths are relative to")
    p.add_argument("--out", required=True, help="output dataset folder (imagefolder layout)")
    p.add_argument("--taxonomy", default=None,
                   help="taxonomy JSON (default: the packaged 18 sites -> 12 classes)")
    p.add_argument("--val-fraction", type=float, default=0.165,
                   help="share of patients for validation (default 0.165)")
    p.add_argument("--test-fraction", type=float, default=0.0,
                   help="share of patients for a test split (default none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-side", type=int, default=MAX_SIDE,
                   help=f"downscale so the shorter side is at most this (default {MAX_SIDE}); the trained "
                        "model records it and predict decodes photos at the same size")
    p.add_argument("--scores", default=None, help="LoSCAT score table CSV to attach per-photo score targets")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--strict", action="store_true",
                   help="exit non-zero on any problem, not only when nothing is usable")
    p.add_argument("--push-to-hub", default=None, metavar="REPO",
                   help="push the dataset (never its private/ folder)")
    add_public_flag(p, "with --push-to-hub: ")
    p.add_argument("--num-workers", type=int, default=None, help="image processes (default: all cores)")
    p.add_argument("--keep-columns", default=None, metavar="A,B",
                   help="extra per-photo columns to keep (e.g. skin_tone,fitzpatrick); every other column "
                        "the CSV has beyond image, patient_id, region, rater, visit, quality is dropped")
    p.add_argument("--multi-region", action="store_true",
                   help="write the `labels` column (every photo's regions) even when no photo shows several; "
                        "automatic when a region cell names several sites ('Left thigh; Left leg')")
    p.set_defaults(func=_prepare)


def add_demo_data(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--photo-like", action="store_true", help="camera grain and JPEG quality 90-95: files "
                   "that cost what camera photos cost to decode (~2-3 bits per pixel; the default renders "
                   "are smooth, ~0.3)")
    p.add_argument("--multi-region", action="store_true",
                   help="about 25%% of the photos (labelled and unlabeled) show two adjacent sites "
                        "(thigh+leg, arm+forearm, forearm+hand, chest+abdomen, head+neck) with one lesion "
                        "across them; raters name both ('Left thigh; L leg') or one")
    p.set_defaults(func=_demo_data)
