"""`loscat-hf`, the command line (`loscat_hf.cli:main` is the console script; `python -m loscat_hf[.cli]`).

Only re-exports: the parser and `main` are in cli/main.py, the subcommands in one module per command group
(cli/data.py, train.py, evaluate.py, infer.py, model.py, apps.py, hub.py).
"""

from loscat_hf.cli.data import prepare_command
from loscat_hf.cli.main import build_parser, main
from loscat_hf.cli.train import train_command

__all__ = ["build_parser", "main", "prepare_command", "train_command"]
