"""Files the apps hand to the browser (a batch's regions, a rater's answers): written into gradio's cache, whose
sweep (`Blocks(delete_cache=...)`) deletes them like the uploads, and formula-safe (`csvsafe`)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from loscat_hf.data.csvsafe import SafeWriter


def cached_csv(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]], prefix: str) -> str:
    """Write `rows` under `header` to a new folder in gradio's cache as `name`; its path (for a gr.File)."""
    cache = Path(gr.utils.get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=prefix, dir=cache)) / name
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = SafeWriter(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(out)
