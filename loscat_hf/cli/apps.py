"""`loscat-hf` subcommands that serve a Gradio app (demo, label)."""

from __future__ import annotations

import argparse

from loscat_hf.cli.infer import BACKEND_HELP
from loscat_hf.defaults import BACKENDS, LABEL_ORDERS, PRECISIONS


def _demo(args: argparse.Namespace) -> int:
    from loscat_hf.apps.space import launch

    launch(args.model, host=args.host, port=args.port, precision=args.precision, backend=args.backend)
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="start the Gradio Space app locally")
    p.add_argument("--model", default=None, help="model folder or Hub id (default: env LOSCAT_MODEL, else "
                   "the study's published checkpoint, converted once)")
    p.add_argument("--host", default=None, help="default: env GRADIO_SERVER_NAME, else 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: env GRADIO_SERVER_PORT, else 7860")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="default: env LOSCAT_PRECISION, else auto (fp32 on CPU); int8 is opt-in")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="default: env LOSCAT_BACKEND, else auto (ONNX Runtime on CPU when installed and "
                        "exact)")
    p.set_defaults(func=_demo)


def _label(args: argparse.Namespace) -> int:
    from loscat_hf.apps.labelling.app import launch_label

    launch_label(args.images, args.out, args.rater, patients=args.patients, model=args.model,
                 order=args.order, suggest=args.suggest, host=args.host, port=args.port, auth=args.auth,
                 precision=args.precision, backend=args.backend)
    return 0


def add_label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label",
                       help="grade photos in the browser (Gradio) into the annotation CSV that prepare reads")
    p.add_argument("--images", required=True, help="photo folder; without --patients its first folder level "
                   "is the patient id (DIR/<patient_id>/.../photo.jpg)")
    p.add_argument("--out", required=True,
                   help="annotation CSV to append answers to (created; resumed if it exists)")
    p.add_argument("--rater", required=True, help="your rater name (written with every answer)")
    p.add_argument("--patients", default=None,
                   help="CSV of image, patient_id[, visit] (image relative to --images)")
    p.add_argument("--model", default=None,
                   help="model folder or Hub id: orders the queue and suggests its top-3")
    p.add_argument("--order", default=None, choices=LABEL_ORDERS,
                   help="queue order (default: uncertain with --model, else folder; random is one seeded "
                        "order)")
    p.add_argument("--suggest", action="store_true", help="show the model's top-3 BEFORE the rater answers "
                   "(a bias risk: by default it is shown after)")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; any other needs --auth")
    p.add_argument("--port", type=int, default=None, help="default: gradio's (7860, or the next free port)")
    p.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                   help="gradio's login (required off 127.0.0.1)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="the model's precision (default auto)")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    p.set_defaults(func=_label)
