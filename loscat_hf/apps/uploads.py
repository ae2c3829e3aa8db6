"""The Space's upload components: gradio's gr.Image and gr.File, handing the app the raw upload paths.

A module of their own because defining them imports gradio: `space.build_demo` imports this module only after
`gradio_env.import_gradio()`, so importing `apps.space` imports no gradio and sets no environment. Defining
them also makes gradio write a type stub beside this file (uploads.pyi, generated: not part of the source).
"""

from __future__ import annotations

import gradio as gr


class UploadImage(gr.Image):
    """gr.Image that hands the raw upload path to the app: our safe decoder (not gradio's PIL.open) judges
    it, so a corrupt or non-image file gets a clear message instead of a component error."""

    def get_block_name(self) -> str:
        return "image"  # the stock frontend component

    def preprocess(self, payload):
        if (payload is not None and getattr(payload, "path", None)
                and not (payload.url or "").startswith("data:")):
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
