"""`loscat-hf` subcommands that upload to the Hugging Face Hub: push, push-dataset, push-space.

Each prints the push's `summary()`: the target, the visibility, the README's metadata and the files. The
option dests are the parameter names of the functions they call (cli/flags.py), `--public` sets `private`.
"""

from __future__ import annotations

import argparse

PUBLIC_HELP = ("publish: a new repo is created public, an existing public repo is accepted (default: "
               "private; an existing public repo is refused, nothing uploaded; an existing repo's visibility "
               "is never changed)")


def add_public_flag(p: argparse.ArgumentParser, help_prefix: str = "") -> None:
    """`--public` sets the API's `private` to False (cli/flags.py then names it in errors about `private`)."""
    p.add_argument("--public", dest="private", action="store_false", help=help_prefix + PUBLIC_HELP)
    p.set_defaults(private=True)


def _push(args: argparse.Namespace) -> int:
    from loscat_hf.hub.model import push_model

    result = push_model(args.model_dir, args.repo_id, private=args.private, dataset_id=args.dataset_id,
                        dry_run=args.dry_run, reports=args.reports or [])
    print(result.summary())
    return 0


def _push_dataset(args: argparse.Namespace) -> int:
    from loscat_hf.hub.dataset import push_dataset_to_hub

    print(push_dataset_to_hub(args.dataset_dir, args.repo_id, private=args.private,
                              dry_run=args.dry_run).summary())
    return 0


def add_push_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push-dataset", help="upload a prepared dataset's publishable files to the Hub "
                       "(private default; what `prepare --push-to-hub` does)")
    p.add_argument("--dataset", dest="dataset_dir", metavar="DATASET", required=True,
                   help="a folder written by `loscat-hf prepare` (its private/ folder never leaves)")
    p.add_argument("--repo-id", required=True, help="ORG/NAME of the Hub dataset repo")
    add_public_flag(p)
    p.add_argument("--dry-run", default=None, metavar="DIR",
                   help="write the exact upload folder to DIR and list it, instead of uploading")
    p.set_defaults(func=_push_dataset)


def add_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push",
                       help="upload a model folder + model card to the Hugging Face Hub (private default)")
    p.add_argument("--model", dest="model_dir", metavar="MODEL", required=True,
                   help="model folder (save_pretrained output, optional eval/)")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    vis = p.add_mutually_exclusive_group()
    add_public_flag(vis)
    vis.add_argument("--private", dest="private", action="store_true", help="private repo (default)")
    p.add_argument("--dataset", dest="dataset_id", default=None, metavar="ID",
                   help="Hub dataset id trained on (card metadata)")
    p.add_argument("--eval", dest="reports", action="append", metavar="DIR",
                   help="an `evaluate --out` report folder (e.g. the test split) whose metrics the card "
                        "adds; repeatable (reports inside --model are found anyway)")
    p.add_argument("--dry-run", default=None, metavar="DIR",
                   help="write the exact upload folder (files + README.md) to DIR instead of uploading")
    p.set_defaults(func=_push, private=True)


def _push_space(args: argparse.Namespace) -> int:
    from loscat_hf.hub.space import push_space

    print(push_space(args.repo_id, model=args.model, private=args.private, dry_run=args.dry_run,
                     dataset_id=args.dataset_id, token_env=args.token_env).summary())
    return 0


def add_push_space(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push-space",
                       help="upload the Gradio Space (app + bundled loscat_hf [+ model folder])")
    p.add_argument("--repo-id", required=True, help="Space id, e.g. user/loscat-region")
    p.add_argument("--model", default=None,
                   help="local model folder to bundle, or Hub id set as LOSCAT_MODEL")
    add_public_flag(p)
    p.add_argument("--dataset", dest="dataset_id", default=None, metavar="ID",
                   help="Hub dataset the model was trained on (the Space's `datasets:` metadata)")
    p.add_argument("--model-token-env", dest="token_env", default=None, metavar="VAR",
                   help="name of an environment variable holding a read token for a private --model: set as "
                        "the Space secret HF_TOKEN (the token never goes on the command line or into a file)")
    p.add_argument("--dry-run", default=None, metavar="DIR",
                   help="write the exact Space folder (app, package, allow-listed model files) to DIR "
                        "instead of uploading")
    p.set_defaults(func=_push_space)
