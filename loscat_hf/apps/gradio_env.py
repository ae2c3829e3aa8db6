"""The environment gradio reads, set by a function, not at import: importing an app module sets nothing.

The apps import gradio only through `import_gradio()`, inside the functions that build, launch or serve them,
so the first import of gradio always comes after `set_gradio_env()`. A variable the user set is left as it is.
"""

from __future__ import annotations

import os
from types import ModuleType

# GRADIO_ANALYTICS_ENABLED: gradio sends usage analytics by default (a DNS lookup at launch); a clinic's
# labelling app and the Space send nothing
GRADIO_ENV = {"GRADIO_ANALYTICS_ENABLED": "False"}


def set_gradio_env() -> None:
    """Set `GRADIO_ENV`'s variables that are not set yet; call it before gradio is first imported."""
    for name, value in GRADIO_ENV.items():
        os.environ.setdefault(name, value)


def import_gradio() -> ModuleType:
    """gradio, imported after `set_gradio_env()`: the one way the apps import it."""
    set_gradio_env()
    import gradio

    return gradio
