"""Readable training progress: the Trainer's tqdm bar, with each log as one short line instead of a raw dict.

The stock ProgressCallback writes `{'loss': '1.234', 'grad_norm': ..., 'learning_rate': ..., 'epoch': ...}`
every --logging-steps for minutes; a rater or clinician reading the console wants "epoch 1.2  loss 1.234".
Subclassing the public callback keeps the bar, evaluation bars and notebook handling as transformers has them.
"""

from __future__ import annotations

import sys

from transformers import ProgressCallback, Trainer

# what each logged key is called on the line, in this order; other keys follow as they come
_NAMES = {"epoch": "epoch", "loss": "loss", "eval_loss": "val loss", "eval_macro_f1": "val macro-F1",
          "eval_accuracy": "val acc", "learning_rate": "lr", "lr_top_block": "lr top block",
          "lr_bottom_block": "lr bottom block", "grad_norm": "grad norm"}
_SKIP = {"total_flos", "step"}


def format_log(logs: dict) -> str:
    """One line for a Trainer log dict: named, rounded, the clutter (runtimes, FLOPs) left out."""
    parts = []
    keys = [k for k in _NAMES if k in logs] + [k for k in logs if k not in _NAMES]
    for key in keys:
        value = logs[key]
        if key in _SKIP or key.endswith(("_runtime", "_per_second")):
            continue
        name = _NAMES.get(key, key.replace("eval_", "val ").replace("_", " "))
        if not isinstance(value, float):
            text = str(value)
        elif key == "epoch":
            text = f"{value:.2f}"
        elif key == "learning_rate" or key.startswith("lr_"):
            text = f"{value:.3g}"
        else:  # losses and grad norms to 4 digits, rates and scores (macro-F1, ECE) to 3 decimals
            text = f"{value:.4g}" if abs(value) >= 1 or "loss" in key or "norm" in key else f"{value:.3f}"
        parts.append(f"{name} {text}")
    return "  ".join(parts)


class ReadableProgressCallback(ProgressCallback):
    """ProgressCallback whose log lines are `format_log` lines."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(format_log(logs), file=sys.stderr)  # beside the bar; stdout keeps results


def use_readable_progress(trainer: Trainer) -> None:
    """Swap the stock console progress callback for the readable one (notebooks and --disable-tqdm keep
    theirs)."""
    if any(type(cb) is ProgressCallback for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(ReadableProgressCallback)
