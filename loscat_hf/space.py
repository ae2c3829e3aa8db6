"""The Gradio app behind the Hugging Face Space and `loscat-hf demo`: one photo or a batch -> LoSCAT region.

Safety choices for clinical photos: nothing is flagged or kept (uploads are deleted after use and the
gradio cache is purged), every image shown back is re-encoded from the decoded pixels (no EXIF), user
problems become a short gr.Error message, and a queue bounds concurrent work.
"""

from __future__ import annotations

import csv
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from loscat_hf.explain import explain_pixels  # noqa: E402
from loscat_hf.predict import RegionPredictor  # noqa: E402

DEFAULT_MODEL = "loscat-hf/loscat-region-vit"
DEFAULT_PRECISION = "int8"  # ~0.24 s per ViT-B/16-384 forward on 2 CPU cores; see scripts/bench_space.py
MAX_FILE_SIZE = "15mb"
MAX_BATCH = 32
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "space" / "examples"

INTENDED_USE = """
**Intended use.** Research and quality-control aid that suggests which LoSCAT body region (18 anatomic
sites merged into 12 side-agnostic classes) a clinical photo of localized scleroderma shows, e.g. to
pre-sort an archive before a person checks the labels. **Not a medical device; not for diagnosis or
treatment decisions.** It does not grade disease activity or damage.

**Limits.** Trained on one clinic's photos: other cameras, skin tones, framing or body parts outside the
18 LoSCAT sites can give confident wrong answers. Left and right are merged. Low-confidence answers are
marked *needs review*. The explanation map (attention rollout) shows which patches the model used, not why.
Photos are processed in memory and deleted after the answer; nothing is stored or flagged.
The example photos are **SYNTHETIC** phantoms, not patients.
"""


@functools.lru_cache(maxsize=32)
def _body_map(highlight: str | None):
    """The predicted region on a body map (drawn once per class: matplotlib costs ~0.1 s a figure)."""
    try:
        from loscat_hf.bodymap import body_map_image
    except ImportError:
        return None
    return body_map_image(values=None, highlight=highlight, title=highlight or "", size=(480, 480))


def _forget(path: str | os.PathLike | None) -> None:
    """Delete an uploaded temp file: the Space keeps no photos."""
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


class UploadImage(gr.Image):
    """gr.Image that hands the raw upload path to the app: our safe decoder (not gradio's PIL.open) judges it,
    so a corrupt or non-image file gets a clear message instead of a component error."""

    def get_block_name(self) -> str:
        return "image"  # the stock frontend component

    def preprocess(self, payload):
        if payload is not None and getattr(payload, "path", None) and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


class SpaceModel:
    """The predictor plus the app's callbacks (plain functions, so tests can call them without a browser)."""

    def __init__(self, model: str, precision: str | None = None, review_threshold: float | None = None) -> None:
        precision = precision or os.environ.get("LOSCAT_PRECISION", DEFAULT_PRECISION)
        kwargs: dict[str, Any] = {"precision": precision, "device": "cpu" if precision == "int8" else None}
        if review_threshold is not None:
            kwargs["min_confidence"] = review_threshold
        self.predictor = RegionPredictor.from_pretrained(model, **kwargs)
        self.model_name = model

    def _pixels(self, path: str):
        from loscat_hf.images import ImageProblemError

        if not path:
            raise gr.Error("Please upload a photo first.")
        try:
            img, pixels = self.predictor.explain_inputs(path)
        except ImageProblemError as exc:
            raise gr.Error(f"This file cannot be used as a photo: {exc.reason}") from None
        return img, pixels

    def predict(self, image: str | None, show_explanation: bool = False):
        """One photo -> (top-3 label dict, body map, explanation overlay or None, review notice)."""
        try:
            _, pixels = self._pixels(image)
            batch = pixels[None]
            if show_explanation:
                ex = explain_pixels(self.predictor, batch)[0]
                logits, shown = ex.logits[None], ex.overlay
            else:
                logits, shown = self.predictor.logits(batch), None
        finally:
            _forget(image)
        pred = self.predictor.from_logits(logits, top_k=3)[0]
        notice = (f"⚠️ **Needs review**: top probability {pred.probability:.0%} is below "
                  f"{self.predictor.min_confidence:.0%} or the top two are close. Please check by eye."
                  if pred.needs_review else f"Predicted **{pred.label}** ({pred.probability:.0%}).")
        return dict(pred.top), _body_map(pred.label), shown, notice

    def predict_batch(self, files: list[str] | None):
        """Several photos -> table rows and a CSV file (unreadable photos become rows with the reason)."""
        from loscat_hf.images import ImageProblemError

        files = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not files:
            raise gr.Error("Please upload one or more photos.")
        if len(files) > MAX_BATCH:
            for f in files:
                _forget(f)
            raise gr.Error(f"At most {MAX_BATCH} photos per batch, got {len(files)}.")
        header = ["file", "region", "probability", "second", "second_probability", "needs_review", "problem"]
        rows: list[list[Any]] = []
        try:
            for f in files:
                name = Path(f).name
                try:
                    pixels = self.predictor.pixels(self.predictor.load(f))
                except ImageProblemError as exc:
                    rows.append([name, "", None, "", None, True, exc.reason])
                    continue
                pred = self.predictor.from_logits(self.predictor.logits(torch.stack([pixels])), top_k=2)[0]
                second = pred.top[1] if len(pred.top) > 1 else ("", None)
                rows.append([name, pred.label, round(pred.probability, 4), second[0],
                             None if second[1] is None else round(second[1], 4), pred.needs_review, ""])
        finally:
            for f in files:
                _forget(f)
        out = Path(tempfile.mkdtemp(prefix="loscat-batch-")) / "loscat_regions.csv"
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        return {"headers": header, "data": rows}, str(out)


def _examples() -> list[list[Any]]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return [[str(p), False] for p in sorted(EXAMPLES_DIR.glob("*.jpg"))]


def build_demo(model: str | None = None, precision: str | None = None) -> gr.Blocks:
    """The Blocks app; model from the argument, else env LOSCAT_MODEL, else the default Hub id."""
    app = SpaceModel(model or os.environ.get("LOSCAT_MODEL", DEFAULT_MODEL), precision=precision)
    for label in app.predictor.labels:  # warm the body-map cache so no answer waits for matplotlib
        _body_map(label)
    with gr.Blocks(title="LoSCAT body region", delete_cache=(600, 600)) as demo:
        gr.Markdown("# LoSCAT body region of a localized scleroderma photo\n"
                    "Upload a photo: the model suggests the body region (12 side-agnostic LoSCAT classes).")
        with gr.Tab("One photo"):
            with gr.Row():
                with gr.Column():
                    image = UploadImage(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                     label="Photo", elem_id="photo")
                    show = gr.Checkbox(label="Show explanation map (attention rollout)", value=False)
                    button = gr.Button("Predict region", variant="primary", elem_id="predict-btn")
                with gr.Column():
                    label = gr.Label(num_top_classes=3, label="Top-3 regions", elem_id="top-label")
                    notice = gr.Markdown(elem_id="notice")
                    body = gr.Image(label="Body map", type="pil", interactive=False, format="png")
                    expl = gr.Image(label="Explanation overlay (what the model saw)", type="pil",
                                    interactive=False, format="png")
            button.click(app.predict, [image, show], [label, body, expl, notice], api_name="predict")
            examples = _examples()
            if examples:
                gr.Examples(examples, [image, show], label="SYNTHETIC example photos (phantoms, not patients)")
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image"], label=f"Photos (up to {MAX_BATCH})")
            run = gr.Button("Predict all", variant="primary")
            table = gr.Dataframe(label="Regions", interactive=False)
            csv_out = gr.File(label="CSV")
            run.click(app.predict_batch, [files], [table, csv_out], api_name="predict_batch")
        gr.Markdown(INTENDED_USE)
    demo.queue(default_concurrency_limit=1, max_size=20)
    return demo


def launch(model: str | None = None, host: str | None = None, port: int | None = None,
           precision: str | None = None, **kwargs: Any) -> gr.Blocks:
    """Start the app; host/port default to GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, then gradio's own."""
    demo = build_demo(model, precision=precision)
    demo.launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME"),
        server_port=port or (int(os.environ["GRADIO_SERVER_PORT"]) if os.environ.get("GRADIO_SERVER_PORT") else None),
        max_file_size=MAX_FILE_SIZE, show_error=True, theme=gr.themes.Soft(), **kwargs,
    )
    return demo
