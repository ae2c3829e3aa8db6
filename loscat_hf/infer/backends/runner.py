"""The forward-pass runner of a loaded torch model: torch eager (`LogitRunner`) or ONNX Runtime
(`OnnxRunner`).

`RegionPredictor` asks here and never branches on the backend itself: `onnx_key` hashes the model folder
before its weights load (only where ONNX Runtime may run), `make_runner` picks and starts the runner, and
`prepare_explain` readies the explanation graph where there is one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from loscat_hf.errors import LoscatError
from loscat_hf.infer.backends import onnx_cache
from loscat_hf.infer.backends.choice import choose_backend
from loscat_hf.model.inference import LogitRunner, pick_device

logger = logging.getLogger(__name__)


@dataclass
class FolderKey:
    """The ONNX cache key of a model folder, hashed before its weights load, and the state of the files
    hashed: `key()` is None when they changed while loading (then the graph is keyed by the loaded
    weights)."""

    folder: Path | None = None
    state: list | None = None
    hashed: str | None = None

    def key(self) -> str | None:
        if self.hashed is None or onnx_cache.files_state(self.folder) != self.state:
            return None
        return self.hashed


def onnx_key(name: str, backend: str = "auto", device: str | None = None,
             precision: str = "auto") -> FolderKey:
    """Hash a model folder (or a Hub id's cached snapshot) where these settings may run ONNX Runtime (~0.3 s
    for ViT-B); settings that cannot run raise later, in `make_runner`, with the same check."""
    try:
        onnx_likely = choose_backend(backend, str(pick_device(device)), precision) == "onnx"
    except LoscatError:
        onnx_likely = False
    folder = onnx_cache.local_model_folder(name) if onnx_likely else None
    if folder is None:
        return FolderKey()
    return FolderKey(folder, onnx_cache.files_state(folder), onnx_cache.folder_key(folder))


def make_runner(model: torch.nn.Module, mean, std, device: torch.device, precision: str,
                backend: str, key: str | None = None, record: dict | None = None,
                allow_inexact: bool = False) -> LogitRunner:
    """The forward-pass runner: ONNX Runtime when chosen and exact (int8 is never exact: asked for), else
    torch. With backend "auto" any failure of the ONNX step (a read-only cache, an exporter error) falls
    back to torch with a warning; `allow_inexact` (compare-backends) keeps an inexact graph, to report it.

    int8 runs photo by photo: dynamic quantisation scales activations per run, so in a batch a photo's answer
    would depend on its companions."""
    chosen = choose_backend(backend, device, precision)
    explicit = backend == "onnx"
    runner = None
    if chosen == "onnx":
        from loscat_hf.infer.backends.onnx_export import OnnxRunner

        try:
            runner = OnnxRunner(model, mean, std, int8=precision == "int8", key=key, record=record)
        except Exception as exc:  # noqa: BLE001 - export/cache trouble must not stop an auto run
            if explicit or precision == "int8":
                raise LoscatError(f"the ONNX backend could not start ({type(exc).__name__}: {exc}); use "
                                  "backend='torch'", param="backend") from exc
            logger.warning("the ONNX backend could not start (%s: %s): using torch", type(exc).__name__, exc)
        if runner is not None and (runner.exact or precision == "int8" or allow_inexact):
            return runner
    if runner is not None:
        diff = runner.check.get("max_prob_diff", float("nan"))
        if explicit:
            raise LoscatError(f"the ONNX graph of this model is not exact (max probability difference "
                              f"{diff:.2g} against torch on the probe photos); use backend='torch'",
                              param="backend")
        logger.warning("the ONNX graph differs from torch by up to %.2g in probability: using torch", diff)
    bf16 = {"auto": None, "fp32": False, "bf16": True}[precision]
    return LogitRunner(model, mean, std, device=str(device), bf16=bf16)


def backend_of(runner: LogitRunner) -> str:
    return "torch" if type(runner) is LogitRunner else "onnx"


def prepare_explain(runner: LogitRunner) -> None:
    """Export and check the ONNX explanation graph now (the Space: not inside a request); torch needs
    nothing."""
    if backend_of(runner) == "onnx":
        runner.session("explain")
