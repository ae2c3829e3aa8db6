"""`loscat-hf` subcommands that make a model folder without training: convert-timm (the study's checkpoint).

The conversion is loscat_hf.model.convert's; this module splits --labels and prints the summary.
"""

from __future__ import annotations

import argparse


def _convert_timm(args: argparse.Namespace) -> int:
    from loscat_hf.model.convert import convert_timm

    labels = [c.strip() for c in args.labels.split(",") if c.strip()] if args.labels else None
    print(convert_timm(args.checkpoint, args.out, arch=args.arch, labels=labels, taxonomy=args.taxonomy,
                       overwrite=args.overwrite).summary())
    return 0


def add_convert_timm(sub: argparse._SubParsersAction) -> None:
    from loscat_hf.model.study import STUDY_ARCH, STUDY_CHECKPOINT, STUDY_CLASS_CODES

    p = sub.add_parser("convert-timm",
                       help="a timm ViT checkpoint (the study's published model) -> model folder")
    p.add_argument("checkpoint", help=f"local .pt/.pth/.bin/.safetensors, or Hub ORG/REPO[/PATH] (the "
                   f"study's: {STUDY_CHECKPOINT})")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--arch", default=STUDY_ARCH, help=f"timm architecture name (default {STUDY_ARCH})")
    p.add_argument("--labels", default=None, metavar="CODE,...", help="the checkpoint's classes in output "
                   f"order, as region names or study codes (default: {','.join(STUDY_CLASS_CODES)})")
    p.add_argument("--taxonomy", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_convert_timm)
