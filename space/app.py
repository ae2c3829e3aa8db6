"""Hugging Face Space entry point: the LoSCAT region demo.

On the Space, `loscat-hf push-space` has bundled the loscat_hf package next to this file; run from a
repository checkout, the package one folder up is used instead. Model: env LOSCAT_MODEL (Hub id or folder),
else a bundled model/ folder, else the study's published checkpoint, converted once on the first start.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if not (HERE / "loscat_hf").is_dir():  # repository checkout: use the package beside space/
    sys.path.insert(0, str(HERE.parent))
else:
    sys.path.insert(0, str(HERE))

# imported once sys.path holds the package
from loscat_hf.apps.gradio_env import set_gradio_env  # noqa: E402
from loscat_hf.apps.space import build_demo, launch  # noqa: E402

set_gradio_env()  # before anything imports gradio: the Space starts with analytics off
if not os.environ.get("LOSCAT_MODEL") and (HERE / "model" / "config.json").is_file():
    os.environ["LOSCAT_MODEL"] = str(HERE / "model")  # a model folder bundled by push-space --model DIR

demo = build_demo()

if __name__ == "__main__":
    launch()
