"""Files the apps hand to the browser (a batch's regions, a rater's answers, a photo to grade): written into
gradio's cache, whose sweep (`Blocks(delete_cache=...)`) deletes them like the uploads; CSVs formula-safe
(`csvsafe`), photos re-encoded without metadata. Each goes into a new folder of its own (`mkdtemp`) that no
other request knows until its path is returned, so it is written in place (no `io.atomic` temp file)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loscat_hf.apps.gradio_env import import_gradio
from loscat_hf.io.csvsafe import SafeWriter
from loscat_hf.io.images import save_clean_jpeg


def _new_folder(prefix: str) -> Path:
    cache = Path(import_gradio().utils.get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=cache))


def cached_jpeg(image, prefix: str) -> str:
    """A PIL image as a JPEG without metadata, in a folder of its own in gradio's cache; its path (for
    gr.Image).

    Not returned as a PIL image: gradio 6.31 writes those with `write_bytes` to a path named by their content
    hash (`processing_utils.save_pil_to_cache`), so two requests that show the same photo at once rewrite one
    file while it is served and a browser gets it cut short ("Too little data for declared Content-Length",
    seen with three raters labelling at once). gradio copies a file path into its cache atomically (temp file
    + os.replace). `tests/test_upstream.py::test_gradio_saves_a_pil_output_atomically` tells when this can
    go."""
    out = _new_folder(prefix) / "photo.jpg"
    save_clean_jpeg(image, out)
    return str(out)


def cached_bytes(data: bytes, name: str, prefix: str) -> str:
    """Ready-encoded file bytes (e.g. a body map PNG drawn once per class) as `name` in a new folder of
    gradio's cache; its path. Writing a few KB costs far less than encoding a PIL image per request, and a
    path is copied atomically (see `cached_jpeg`)."""
    out = _new_folder(prefix) / name
    out.write_bytes(data)
    return str(out)


def cached_csv(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]], prefix: str) -> str:
    """Write `rows` under `header` to a new folder in gradio's cache as `name`; its path (for a gr.File)."""
    out = _new_folder(prefix) / name
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = SafeWriter(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(out)
