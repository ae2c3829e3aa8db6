"""The ONNX Runtime backend of a loaded torch model: export, exactness check, int8, `OnnxRunner`.

The ONNX graph is exported once per set of weights with `torch.onnx.export` (the torch.export-based
exporter; the TorchScript one is deprecated) and cached under `onnx_cache.cache_dir()`; the first export
checks it against torch on a probe batch and records the largest probability difference. A graph that is
not exact (max difference >= EXACT_PROB_DIFF) is refused, and "auto" falls back to torch (`runner.py`).
Every graph is opened only after its bytes hashed to the sha256 recorded when it was written
(`onnx_cache.open_verified`); one that does not (copied over, damaged) is exported again, and the check is
measured again for the new graph (it names the sha256 of the graph it measured).

int8 (`--precision int8`) is ONNX Runtime's dynamic quantisation of that graph's MatMuls (torch's
`torch.ao.quantization.quantize_dynamic` is deprecated in torch 2.13 and is not used). It changes answers:
opt-in, and `loscat-hf compare-backends` measures by how much on your own photos.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import ImageClassifierOutput

from loscat_hf.defaults import EXACT_PROB_DIFF
from loscat_hf.errors import LoscatError
from loscat_hf.infer.backends import onnx_cache
from loscat_hf.infer.backends.onnx_cache import OPSET
from loscat_hf.io.atomic import atomic_file
from loscat_hf.model.calibration import apply_temperature
from loscat_hf.model.folder import MULTI_LABEL, temperature
from loscat_hf.model.inference import LogitRunner
from loscat_hf.model.thresholds import sigmoid
from loscat_hf.model.transforms import normalise

logger = logging.getLogger(__name__)


def model_key(model: torch.nn.Module) -> str:
    """For a model without a folder (built in memory): sha256 over config, parameter names, shapes and bytes,
    and the exporter's versions, so a cache entry is reused only for the very same weights."""
    digest = onnx_cache.key_prefix()
    digest.update(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return digest.hexdigest()[:32]


class _Graph(torch.nn.Module):
    """The model as the graph sees it: normalised pixels in, logits (and attention maps) out."""

    def __init__(self, model: torch.nn.Module, attentions: bool) -> None:
        super().__init__()
        self.model = model
        self.attentions = attentions

    def forward(self, pixel_values: torch.Tensor):
        out = self.model(pixel_values=pixel_values, output_attentions=self.attentions)
        return (out.logits, *out.attentions) if self.attentions else out.logits


@contextmanager
def _quiet_exporter():
    """The exporter logs warnings about torchvision ops (not installed here) and prints progress lines."""
    # "" = the root logger: onnxruntime.quantization logs its pre-processing advice with logging.warning()
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch._export", "onnxscript",
             "onnx_ir", "")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def export_graph(model: torch.nn.Module, path: Path, attentions: bool = False) -> None:
    """torch.onnx.export (torch.export-based) with a dynamic batch, written atomically to `path`.

    Attention runs as plain MatMul/Softmax (eager attention): ONNX Runtime ran that graph faster than the
    exported scaled_dot_product_attention here (0.97 s vs 1.10-1.19 s for ViT-B/16-384 at batch 1)."""
    import contextlib
    import io

    from loscat_hf.model.inference import eager_attention

    size = int(model.config.image_size)
    probe = torch.zeros(2, 3, size, size)
    t0 = time.perf_counter()
    # a failed export leaves no half-written graph of ~350 MB behind
    with atomic_file(path) as tmp, eager_attention(model), _quiet_exporter(), \
            contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(_Graph(model.eval(), attentions), (probe,), str(tmp), input_names=["pixel_values"],
                          dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1)}},
                          dynamo=True, optimize=True, opset_version=OPSET, external_data=False)
    logger.info("exported %s in %.1f s", path.name, time.perf_counter() - t0)


def quantize_graph(src: Path, dst: Path) -> None:
    """ONNX Runtime dynamic int8 quantisation (weights int8, activations scaled per run) of a graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_file(dst) as out, _quiet_exporter():
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)


def probe_batch(size: int, n: int = 2) -> torch.Tensor:
    """A fixed uint8 batch (seeded noise over smooth gradients) for the export check."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 255, size)
    smooth = (ramp[None, :] + ramp[:, None]) / 2
    noise = torch.randint(0, 64, (n, 3, size, size), generator=g).float()
    return (smooth + noise - 32).clamp(0, 255).to(torch.uint8)


def max_prob_diff(a: np.ndarray, b: np.ndarray, temperature: float = 1.0, multi_label: bool = False) -> float:
    """Largest absolute difference of calibrated class probabilities between two logit arrays: softmax, or a
    multi-region model's per-class sigmoid scores (what its answers are made of)."""
    scores = sigmoid if multi_label else apply_temperature
    return float(np.abs(scores(a, temperature) - scores(b, temperature)).max())


class OnnxRunner(LogitRunner):
    """LogitRunner whose forward pass runs in ONNX Runtime; the torch model stays for its config and the
    export.

    Outputs are torch tensors in the transformers output type (logits, and attentions for explain: no score
    heads), so predict, explain and the Space use it as they use the torch runner. Graphs are exported on
    first use and cached (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, image_mean, image_std, int8: bool = False,
                 key: str | None = None, record: dict | None = None) -> None:
        super().__init__(model, image_mean, image_std, device="cpu", bf16=False, one_at_a_time=int8)
        self.int8 = int8
        self.threads = torch.get_num_threads()
        self.entry = onnx_cache.entry(key or model_key(model))
        self._opened: dict[tuple[str, bool], object] = {}
        self._sessions: dict[str, object] = {}
        self.session("logits")  # fail here, at load, not at the first photo; verified or exported again
        self.check = self._exact_check()
        if record is not None:
            record = {"version": onnx_cache.RECORD_VERSION, "key": self.entry.name, **record}
            if onnx_cache.read_json(self.entry / onnx_cache.RECORD_FILE) != record:
                onnx_cache.write_json(self.entry / onnx_cache.RECORD_FILE, record)  # what `lean` replays

    def _open(self, kind: str, int8: bool):
        """A session of this entry's graph, whose bytes hash to the digest recorded when it was written; a
        graph that is missing, or is not the one written here (copied over, damaged), is exported again."""
        if (kind, int8) not in self._opened:
            path = self.entry / onnx_cache.graph_name(kind, int8)
            session = onnx_cache.open_verified(path, self.threads)
            if session is None:
                if int8:
                    self._open(kind, False)  # the fp32 graph it quantises: verified (or exported) first
                    quantize_graph(self.entry / onnx_cache.graph_name(kind, False), path)
                else:
                    logger.warning("exporting the model to ONNX once (%s graph; ViT-B/16-384 takes ~20-30 s "
                                   "on 2 cores), cached in %s", kind, self.entry)
                    export_graph(self.model, path, attentions=kind == "explain")
                onnx_cache.record_graph(path)
                session = onnx_cache.open_verified(path, self.threads)
                if session is None:
                    raise RuntimeError(f"the ONNX graph {path} changed while it was written")
            self._opened[(kind, int8)] = session
        return self._opened[(kind, int8)]

    def _exact_check(self, kind: str = "logits") -> dict:
        """Max probability difference of an fp32 graph against torch on a probe batch, measured once per
        graph: a recorded check counts only for the graph whose sha256 it names."""
        record = self.entry / (onnx_cache.CHECK_FILE if kind == "logits" else f"check.{kind}.json")
        fp32 = self.entry / onnx_cache.graph_name(kind, False)
        known = onnx_cache.read_json(record)
        digest = onnx_cache.recorded_digest(fp32)
        if isinstance(known, dict) and digest is not None and known.get("sha256") == digest:
            return known
        session = self._open(kind, False)
        x = normalise(probe_batch(int(self.model.config.image_size)), self.mean, self.std)
        with torch.inference_mode():
            ref = self.model(pixel_values=x).logits.float().numpy()
        got = session.run(None, {"pixel_values": x.numpy()})[0]
        diff = max_prob_diff(ref, got, temperature(self.model.config),
                             getattr(self.model.config, "problem_type", None) == MULTI_LABEL)
        check = {"max_prob_diff": diff, "exact": diff < EXACT_PROB_DIFF, "probe_photos": int(x.shape[0]),
                 "sha256": onnx_cache.recorded_digest(fp32)}
        onnx_cache.write_json(record, check)
        return check

    @property
    def exact(self) -> bool:
        return onnx_cache.is_exact(self.check)

    def session(self, kind: str):
        """The ONNX Runtime session of a graph ("logits" or "explain"), exported and checked on first use."""
        if kind not in self._sessions:
            session = self._open(kind, self.int8)
            if kind != "logits" and not self.int8 and not onnx_cache.is_exact(self._exact_check(kind)):
                raise LoscatError(f"the ONNX {kind} graph of this model is not exact; use backend='torch'",
                                  param="backend")
            self._sessions[kind] = session
        return self._sessions[kind]

    def _model_call(self, x: torch.Tensor, output_attentions: bool = False, **kwargs):
        if kwargs:
            raise TypeError(f"the ONNX backend does not take {sorted(kwargs)}")
        kind = "explain" if output_attentions else "logits"
        outs = self.session(kind).run(None, {"pixel_values": x.float().contiguous().numpy()})
        tensors = [torch.from_numpy(o) for o in outs]
        return ImageClassifierOutput(logits=tensors[0],
                                     attentions=tuple(tensors[1:]) if output_attentions else None)
