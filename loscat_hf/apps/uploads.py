"""The Space's upload components: gradio's gr.Image and gr.File, handing the app the raw upload paths.

A module of their own because defining them imports gradio: `space.build_demo` imports this module only after
`gradio_env.import_gradio()`, so importing `apps.space` imports no gradio and sets no environment. Defining
them also makes gradio write a type stub beside this file (uploads.pyi, generated: not part of the source).
"""

from __future__ import annotations

import gradio as gr

DATA_URL_REFUSED = ("This photo came as a data: URL, which this app does not accept: upload the image file "
                    "itself.")


class UploadImage(gr.Image):
    """gr.Image that hands the raw upload path to the app: our safe decoder (not gradio's PIL.open) judges
    it, so a corrupt or non-image file gets a clear message instead of a component error.

    A `data:` URL is refused before anything decodes it: gradio 6.31 decodes one itself, whole and without
    our pixel limit (a 17 KB PNG -> 2.2 GB, ~10 s per call), and writes the result into its cache where the
    sweep never deletes it (docs/upstream.md). The page's own uploads, webcam and clipboard included, arrive
    as uploaded files."""

    def get_block_name(self) -> str:
        return "image"  # the stock frontend component

    def preprocess(self, payload):
        if payload is None:
            return None
        if (getattr(payload, "url", None) or "").startswith("data:"):
            raise gr.Error(DATA_URL_REFUSED)
        if getattr(payload, "path", None):
            return str(payload.path)
        return super().preprocess(payload)


class UploadFiles(gr.File):
    """gr.File (several files) that hands the app the upload paths (see `preprocess`)."""

    def get_block_name(self) -> str:
        return "file"  # the stock frontend component

    def preprocess(self, payload):
        """The upload paths, refused as gradio does for a wrong type. gradio 6.31's own version also leaves
        an empty, never-deleted temp file in the cache for every file, so it is not called."""
        from gradio.data_classes import ListFiles
        from gradio_client.utils import is_valid_file

        if payload is None:
            return None
        items = list(payload.root) if isinstance(payload, ListFiles) else [payload]
        for f in items:
            if self.file_types and not is_valid_file(f.path, self.file_types):
                raise gr.Error(f"Invalid file type. Please upload a file that is one of these formats: "
                               f"{self.file_types}")
        return [str(f.path) for f in items]
