"""Build the classifier and its image processor: a Hub id, a local model folder, or an offline preset.

Presets build a randomly initialised ViT from a local config, so CI, the quickstart and machines without
Hub access run exactly the same code path as the real `google/vit-base-patch16-384` fine-tuning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from loscat_hf.data.dataset import PROBLEM_TYPES, SINGLE_LABEL
from loscat_hf.errors import LoscatError
from loscat_hf.model.folder import record_preset, refuse_missing_folder
from loscat_hf.model.hub_access import hub_unreachable
from loscat_hf.model.processor import load_processor
from loscat_hf.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

# Shapes of google/vit-base-patch16-384 (random init): for speed checks where the Hub is unreachable.
PRESETS: dict[str, dict] = {
    "tiny": dict(image_size=64, patch_size=8, hidden_size=96, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=192),
    "vit-base-384-random": dict(image_size=384, patch_size=16, hidden_size=768, num_hidden_layers=12,
                                num_attention_heads=12, intermediate_size=3072),
}
_NORM = {"tiny": 0.5, "vit-base-384-random": 0.5}  # google/vit-* use mean = std = 0.5
# One label per photo (the 12 region classes) unless `train` is asked for photos that show several regions
# (multi_label_classification: a sigmoid per class). Stated in every config loscat-hf builds, trains or
# converts: left unset, transformers guesses it from the first batch's labels (and `pipeline` from
# num_labels), so plain transformers' loss and pipeline would depend on what came first.
PROBLEM_TYPE = SINGLE_LABEL


def image_processor(size: int, mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5,
                    resample: int = 2):
    """A squash-to-size ViT processor (2 = bilinear, google/vit-*'s; the study's converted model: 3 = bicubic,
    ImageNet mean/std)."""
    from transformers import ViTImageProcessorPil  # PIL backend: no torchvision (docs/pitfalls.md)

    mean = [mean] * 3 if isinstance(mean, float) else list(mean)
    std = [std] * 3 if isinstance(std, float) else list(std)
    return ViTImageProcessorPil(size={"height": size, "width": size}, image_mean=mean, image_std=std,
                                resample=resample, do_resize=True, do_rescale=True, do_normalize=True)


def _own_labels(model: str) -> list[str] | None:
    """A folder's or Hub model's class names in output order (None where the config has none or cannot load:
    from_pretrained then says why)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError):
        return None
    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    return [id2label[i] for i in range(len(id2label))] if set(id2label) == set(range(len(id2label))) else None


def reorder_head(net, taxonomy: Taxonomy):
    """Permute a classifier's output rows into the taxonomy's class order and relabel the config: the same
    predictions, under the ids the packed dataset uses."""
    import torch

    _linear_head(net)
    own = [net.config.id2label[i] for i in range(net.config.num_labels)]
    order = torch.tensor([own.index(c) for c in taxonomy.classes])
    with torch.no_grad():
        net.classifier.weight.copy_(net.classifier.weight[order].clone())
        net.classifier.bias.copy_(net.classifier.bias[order].clone())
    net.config.id2label, net.config.label2id = dict(taxonomy.id2label), dict(taxonomy.label2id)
    logger.info("kept the model's trained head, its classes reordered to the taxonomy's")
    return net


def _linear_head(net) -> None:
    import torch

    if not isinstance(getattr(net, "classifier", None), torch.nn.Linear):
        raise LoscatError(f"cannot reuse or replace the head of a {type(net).__name__}: loscat-hf trains "
                          "ViT-style models whose head is one Linear `classifier`")


def _new_head(net) -> None:
    """Re-initialise the classifier as transformers' ViT does for a new head (truncated normal, zero bias)."""
    import torch

    _linear_head(net)
    with torch.no_grad():
        torch.nn.init.trunc_normal_(net.classifier.weight, std=getattr(net.config, "initializer_range", 0.02))
        net.classifier.bias.zero_()
    logger.info("the model's head predicts other classes: re-initialised for the taxonomy")



def build_model_and_processor(model: str, taxonomy: Taxonomy, image_size: int | None = None, seed: int = 0,
                              problem_type: str = PROBLEM_TYPE):
    """Return (model, processor) whose head predicts the taxonomy's classes, with id2label/label2id set.

    A pretrained head with another label set is re-initialised (`ignore_mismatched_sizes` where the number
    of classes differs, explicitly where only the names do); a folder that already predicts these classes
    keeps its head (continued training, ensembles, a converted study model), its rows reordered if needed.
    `problem_type` is stated in the config whatever the folder said: a single-region folder fine-tuned into
    a multi-region model keeps its backbone and head weights (the same classes: logits that ranked the
    classes under softmax are a better start for the sigmoids than a random head) and only changes its loss.
    """
    import torch
    from transformers import AutoModelForImageClassification, ViTConfig, ViTForImageClassification

    if problem_type not in PROBLEM_TYPES:
        raise LoscatError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)}, got {problem_type!r}",
                          param="problem_type")

    # id2label sets num_labels; passing num_labels too makes transformers warn for every 1000-class checkpoint
    labels = dict(id2label=taxonomy.id2label, label2id=taxonomy.label2id)
    if model in PRESETS:
        shape = dict(PRESETS[model])
        if image_size:
            shape["image_size"] = image_size
        torch.manual_seed(seed)
        config = ViTConfig(**shape, **labels, problem_type=problem_type)
        record_preset(config, model)
        return ViTForImageClassification(config), image_processor(shape["image_size"], _NORM[model],
                                                                  _NORM[model])
    torch.manual_seed(seed)  # a new head is drawn inside from_pretrained: `--seed` must fix it
    if not Path(model).exists():
        refuse_missing_folder(model)
        hub_unreachable()  # unreachable: offline now, so that from_pretrained fails at once, not in ~25 s
    try:
        own = _own_labels(model)
        if own is not None and own != list(taxonomy.classes) and sorted(own) == sorted(taxonomy.classes):
            # the same classes in another order (a checkpoint converted with --labels): keep the trained head
            net = reorder_head(AutoModelForImageClassification.from_pretrained(model), taxonomy)
        else:
            net = AutoModelForImageClassification.from_pretrained(model, ignore_mismatched_sizes=True,
                                                                  **labels)
            if (own is not None and sorted(own) != sorted(taxonomy.classes)
                    and len(own) == len(taxonomy.classes)):
                _new_head(net)  # as many classes, other ones: the shapes fit, the meaning does not
        processor = load_processor(model)
    except OSError as exc:
        hint = ("" if Path(model).exists() else
                " It is neither a local folder nor reachable on the Hub (offline?). Use a local model "
                "folder, a Hub cache with HF_HUB_OFFLINE=1, or an offline preset: " + ", ".join(PRESETS)
                + ".")
        raise LoscatError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}{hint}") from None
    if image_size and getattr(net.config, "image_size", image_size) != image_size:
        raise LoscatError(f"image_size {image_size} differs from the model's {net.config.image_size}; "
                          "only presets can change it", param="image_size")
    # whatever the folder or Hub model said: the problem type this run trains
    net.config.problem_type = problem_type
    return net, processor


def weight_shapes(folder: str | Path) -> dict[str, list[int]] | None:
    """Tensor shapes from a local folder's `model.safetensors` header (no weights read), or None where the
    folder has no single safetensors file (sharded, .bin, Hub id). A truncated or damaged file is a
    LoscatError naming it: safetensors checks that the header covers the whole file."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: list(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise LoscatError(f"{path} is damaged or incomplete ({str(exc).splitlines()[0]}); copy the model "
                          "folder again (or re-train)") from None
