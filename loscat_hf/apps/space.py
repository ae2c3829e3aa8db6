"""The Gradio app behind the Hugging Face Space and `loscat-hf demo`: one photo or a batch -> LoSCAT region.

Safety choices for clinical photos: nothing is flagged, every image shown back is re-encoded from the decoded
pixels (no EXIF), user problems become a short gr.Error message, and a queue bounds concurrent work.

File lifecycle: every upload, every answer image and the batch CSV live only in gradio's cache, and gradio's
own sweep (`Blocks(delete_cache=...)`) deletes each of them about `CACHE_EXPIRY_S` after it was written,
whether the request was answered, refused (bad type, queue full) or abandoned. A request never deletes a
file itself: gradio stores identical uploads, and the example photos, at one shared path that other requests
may be reading. While a request runs, the files it reads are held (`IN_FLIGHT`) and the sweep skips them;
the examples are gradio's `keep_in_cache` files and stay until the server stops.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loscat_hf.apps import regions
from loscat_hf.apps.cached import cached_bytes, cached_csv, cached_jpeg
from loscat_hf.apps.gradio_env import import_gradio
from loscat_hf.apps.page import (
    REGIONS_LABEL,
    headline,
    intended_use,
    model_description,  # noqa: F401  (callers and tests import it from here)
    reading_guide,
)
from loscat_hf.errors import LoscatError
from loscat_hf.infer.explain import explain_pixels
from loscat_hf.infer.load import load_predictor

if TYPE_CHECKING:  # gradio itself is imported by the functions that need it, through import_gradio
    import gradio as gr

# Exact answers by default: fp32 on CPU, in ONNX Runtime when the onnx extra is installed (docs/benchmarks.md,
# "Space latency"); int8 (LOSCAT_PRECISION=int8) is faster but changes answers.
DEFAULT_PRECISION = "auto"
DEFAULT_BACKEND = "auto"
MAX_FILE_SIZE = "15mb"
MAX_BATCH = 32
# the example photos: space/examples/ beside the package in a repository checkout; examples/ beside app.py in
# a folder that push-space uploaded (the package is bundled there as loscat_hf/)
_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = next((d for d in (_ROOT / "space" / "examples", _ROOT / "examples") if d.is_dir()),
                    _ROOT / "space" / "examples")
# Uploads and answers are deleted this long after they were written (checked every CACHE_SWEEP_S). It must
# exceed the longest wait in the queue (20 places x a 32-photo batch, ~10 s each on 2 cores): the files of
# a request still waiting in the queue are not held yet.
CACHE_SWEEP_S = 60
CACHE_EXPIRY_S = 600
EXPIRED = (f"the upload has expired (uploads are deleted after {CACHE_EXPIRY_S // 60} minutes): "
           "please upload it again")

@functools.lru_cache(maxsize=32)
def _body_map(highlight: str | tuple[str, ...] | None) -> bytes | None:
    """The predicted region (a multi-region model: every region shown) on a body map, as PNG bytes: drawn
    and encoded once per class or set (matplotlib costs ~0.1 s a figure, the PNG encoding ~10 ms), then only
    written into the cache per request."""
    import io

    try:
        from loscat_hf.viz.bodymap import body_map_image
    except ImportError:
        return None
    buf = io.BytesIO()
    title = highlight if isinstance(highlight, str) else ", ".join(highlight or ())
    body_map_image(values=None, highlight=highlight, title=title or "", size=(480, 480)).save(buf, "PNG")
    return buf.getvalue()


def _body_map_file(highlight: str | tuple[str, ...] | None) -> str | None:
    png = _body_map(highlight)
    return None if png is None else cached_bytes(png, "body_map.png", "loscat-bodymap-")


class InFlight:
    """Cached files that running requests still read, counted: one shared path can serve several requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    @contextmanager
    def hold(self, paths: Iterable[str]) -> Iterator[None]:
        """Keep `paths` from gradio's cache sweep until the block ends (under every spelling of the path)."""
        names = [n for p in paths if p for n in {str(p), os.path.abspath(p), os.path.realpath(p)}]
        with self._lock:
            self._counts.update(names)
        try:
            yield
        finally:
            with self._lock:
                self._counts.subtract(names)
                self._counts = +self._counts  # drop the paths no request holds any more

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._counts))


IN_FLIGHT = InFlight()


class _KeepInCache:
    """A component's `keep_in_cache` (files gradio's sweep spares: its examples and default value) that also
    spares what running requests hold. gradio only ever `add`s to it and iterates it."""

    def __init__(self, own: Iterable[str]) -> None:
        self.own = set(own)

    def add(self, path: str) -> None:
        self.own.add(path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.own | set(IN_FLIGHT))

    def __contains__(self, path: object) -> bool:
        return path in self.own or path in set(IN_FLIGHT)


def spare_in_flight(component: gr.components.Component) -> gr.components.Component:
    """Make gradio's cache sweep spare the files `component`'s running requests hold (`IN_FLIGHT`).

    Done after construction, not in an `__init__` override: gradio builds a component's frontend props from
    its `__init__` signature, and a `*args, **kwargs` override leaves them out (the page loses elem_id,
    label, file types: the browser test caught it).
    """
    component.keep_in_cache = _KeepInCache(component.keep_in_cache)
    return component


def __getattr__(name: str) -> Any:
    """`space.UploadImage` and `space.UploadFiles` (apps/uploads.py), imported on first use, after gradio's
    environment is set."""
    if name in ("UploadImage", "UploadFiles"):
        import_gradio()
        from loscat_hf.apps import uploads

        return getattr(uploads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _error(message: str) -> Exception:
    """gr.Error: gradio shows the message to the user as it is."""
    return import_gradio().Error(message)


class SpaceModel:
    """The predictor plus the app's callbacks (plain functions, so tests can call them without a browser).

    The callbacks read their uploads but never delete them: the cache sweep does (see the module
    docstring)."""

    def __init__(self, model: str, precision: str | None = None, review_threshold: float | None = None,
                 backend: str | None = None) -> None:
        precision = precision or os.environ.get("LOSCAT_PRECISION", DEFAULT_PRECISION)
        backend = backend or os.environ.get("LOSCAT_BACKEND", DEFAULT_BACKEND)
        kwargs: dict[str, Any] = {"precision": precision, "backend": backend,
                                  "device": "cpu" if precision == "int8" or backend == "onnx" else None}
        if review_threshold is not None:
            kwargs["min_confidence"] = review_threshold
        try:
            self.predictor = load_predictor(model, explain=True, **kwargs)
        except LoscatError as exc:
            raise LoscatError(f"{exc}{_access_hint(model)}") from None
        self.model_name = model

    def _pixels(self, path: str | None):
        from loscat_hf.io.images import ImageProblemError

        if not path:
            raise _error("Please upload a photo first.")
        if not os.path.exists(path):  # it waited in the queue longer than the cache expiry
            raise _error(f"Sorry, {EXPIRED}.")
        try:
            img, pixels = self.predictor.explain_inputs(path)
        except ImageProblemError as exc:
            raise _error(f"This file cannot be used as a photo: {exc.reason}") from None
        return img, pixels

    def predict(self, image: str | None, show_explanation: bool = False):
        """One photo -> (top-3 label dict, body map, explanation overlay or None, review notice); a
        multi-region model: every region shown with its score, all lit on the body map."""
        with IN_FLIGHT.hold([image] if image else []):
            img, pixels = self._pixels(image)
        batch = pixels[None]
        if show_explanation:
            ex = explain_pixels(self.predictor, batch, photos=[img])[0]  # drawn at the photo's size
            logits, shown = ex.logits[None], cached_jpeg(ex.overlay, "loscat-overlay-")
        else:
            logits, shown = self.predictor.logits(batch), None
        pred = self.predictor.from_logits(logits, top_k=3)[0]
        if pred.multi_label:  # independent per-class scores, each against its threshold (apps/regions.py)
            return (dict(pred.regions), _body_map_file(regions.lit(pred, self.predictor.labels)), shown,
                    regions.notice(pred, self.predictor))
        # a raw softmax is no probability to trust: say so beside the number
        shown_p = f"{pred.probability:.0%}" + ("" if self.predictor.folder.calibrated else ", not calibrated")
        notice = (f"⚠️ **Needs review**: top probability {shown_p} is below "
                  f"{self.predictor.min_confidence:.0%} or the top two are close. Please check by eye."
                  if pred.needs_review else f"Predicted **{pred.label}** ({shown_p}).")
        return dict(pred.top), _body_map_file(pred.label), shown, notice

    def predict_batch(self, files: list[str] | None):
        """Several photos -> table rows and a CSV file (unreadable photos become rows with the reason).

        The CSV lists uploaded file names, so it is written inside gradio's cache (the sweep expires it with
        the uploads) and through SafeWriter (a name such as `=HYPERLINK(...).jpg` is not run by Excel)."""
        from loscat_hf.io.images import ImageProblemError

        files = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not files:
            raise _error("Please upload one or more photos.")
        if len(files) > MAX_BATCH:
            raise _error(f"At most {MAX_BATCH} photos per batch, got {len(files)}.")
        multi = self.predictor.folder.multi_label  # then its regions ';'-joined with their scores
        header = regions.BATCH_HEADER if multi else ["file", "region", "probability", "second",
                                                       "second_probability", "needs_review", "problem"]
        rows: list[list[Any]] = []
        with IN_FLIGHT.hold(files):
            for f in files:
                name = Path(f).name
                if not os.path.exists(f):
                    rows.append([name, "", None, "", None, True, EXPIRED])
                    continue
                try:
                    pixels = self.predictor.pixels(self.predictor.load(f))
                except ImageProblemError as exc:
                    rows.append([name, "", None, "", None, True, exc.reason])
                    continue
                pred = self.predictor.from_logits(self.predictor.logits(pixels[None]), top_k=2)[0]
                if multi:
                    rows.append(regions.batch_row(name, pred))
                    continue
                second = pred.top[1] if len(pred.top) > 1 else ("", None)
                rows.append([name, pred.label, round(pred.probability, 4), second[0],
                             None if second[1] is None else round(second[1], 4), pred.needs_review, ""])
        csv_path = cached_csv("loscat_regions.csv", header, rows, "loscat-batch-")
        return {"headers": header, "data": rows}, csv_path


def _access_hint(model: str) -> str:
    """Why a Hub model may not load on a Space: a private model needs the Space secret HF_TOKEN, which
    huggingface_hub reads from the environment (set it in the Space settings, or `push-space
    --model-token-env`)."""
    from huggingface_hub import get_token

    if os.path.exists(model) or model.count("/") != 1 or get_token() is not None:
        return ""
    return (f". If {model} is a private or gated Hub model, give the Space read access: add a secret "
            "HF_TOKEN holding a read token (Space settings > Variables and secrets, or `loscat-hf push-space "
            "--model-token-env VAR`)")


def _examples() -> list[list[Any]]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return [[str(p), False] for p in sorted(EXAMPLES_DIR.glob("*.jpg"))]


def default_model() -> str:
    """env LOSCAT_MODEL; else the study's published checkpoint, converted once and cached under HF_HOME."""
    if os.environ.get("LOSCAT_MODEL"):
        return os.environ["LOSCAT_MODEL"]
    from loscat_hf.model.convert import cached_conversion

    return str(cached_conversion())


def build_demo(model: str | None = None, precision: str | None = None, backend: str | None = None,
               cache_expiry: tuple[int, int] = (CACHE_SWEEP_S, CACHE_EXPIRY_S)) -> gr.Blocks:
    """The Blocks app; model from the argument, else env LOSCAT_MODEL, else the study's converted model.

    `cache_expiry` is gradio's `delete_cache`: (sweep every N seconds, delete files older than M seconds)."""
    gr = import_gradio()
    from loscat_hf.apps.uploads import UploadFiles, UploadImage
    app = SpaceModel(model or default_model(), precision=precision, backend=backend)
    folder = app.predictor.folder
    app.predictor.prepare_explain()  # an ONNX explanation graph is exported now, not inside a request
    for label in app.predictor.labels:  # warm the body-map cache so no answer waits for matplotlib
        _body_map(label)
    with gr.Blocks(title="LoSCAT body region", delete_cache=cache_expiry) as demo:
        gr.Markdown(headline(folder, app.model_name), elem_id="model-info")
        if folder.multi_label:  # independent per-class scores, thresholds, what "needs review" means
            gr.Markdown(reading_guide(folder, app.predictor.min_margin), elem_id="how-to-read")
        with gr.Tab("One photo"):
            with gr.Row():
                with gr.Column():
                    image = spare_in_flight(UploadImage(
                        type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                        label="Photo", elem_id="photo"))
                    show = gr.Checkbox(label="Show explanation map (attention rollout)", value=False)
                    button = gr.Button("Predict region", variant="primary", elem_id="predict-btn")
                with gr.Column():
                    label = gr.Label(num_top_classes=len(folder.labels) if folder.multi_label else 3,
                                     label=REGIONS_LABEL if folder.multi_label else "Top-3 regions",
                                     elem_id="top-label")
                    notice = gr.Markdown(elem_id="notice")
                    body = gr.Image(label="Body map", type="filepath", interactive=False)
                    expl = gr.Image(label="Explanation overlay (what the model saw)", type="filepath",
                                    interactive=False)
            button.click(app.predict, [image, show], [label, body, expl, notice], api_name="predict")
            examples = _examples()
            if examples:
                gr.Examples(examples, [image, show],
                            label="SYNTHETIC example photos (phantoms, not patients)")
        with gr.Tab("Batch"):
            files = spare_in_flight(UploadFiles(file_count="multiple", file_types=["image"],
                                                label=f"Photos (up to {MAX_BATCH})"))
            run = gr.Button("Predict all", variant="primary")
            table = gr.Dataframe(label="Regions", interactive=False)
            csv_out = gr.File(label="CSV")
            run.click(app.predict_batch, [files], [table, csv_out], api_name="predict_batch")
        gr.Markdown(intended_use(folder), elem_id="intended-use")
    demo.queue(default_concurrency_limit=1, max_size=20)
    return demo


def launch(model: str | None = None, host: str | None = None, port: int | None = None,
           precision: str | None = None, cache_expiry: tuple[int, int] = (CACHE_SWEEP_S, CACHE_EXPIRY_S),
           backend: str | None = None, **kwargs: Any) -> gr.Blocks:
    """Start the app; host/port default to GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, then gradio's own."""
    from loscat_hf.apps.gradio_env import serve, server_port

    host = host or os.environ.get("GRADIO_SERVER_NAME")
    port = server_port(port, host)  # checked before the model loads
    demo = build_demo(model, precision=precision, backend=backend, cache_expiry=cache_expiry)
    serve(demo, port, server_name=host, max_file_size=MAX_FILE_SIZE, show_error=True,
          theme=import_gradio().themes.Soft(), **kwargs)
    return demo
