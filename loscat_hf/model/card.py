"""The model card `convert-timm` writes beside a converted model: what it is, whose work it is, how to load it."""

from __future__ import annotations

from importlib import resources


def converted_card(config, processor, source: str, arch: str, codes: list[str], study: bool):
    """A `huggingface_hub.ModelCard` (YAML metadata + text) crediting the study for a converted checkpoint."""
    from huggingface_hub import ModelCard, ModelCardData

    from loscat_hf.model.study import STUDY_CODE_REPO, STUDY_WEIGHTS_REPO

    classes = [config.id2label[i] for i in range(config.num_labels)]
    data = ModelCardData(
        library_name="transformers", pipeline_tag="image-classification",
        tags=["image-classification", "vision", "vit", "timm-converted", "dermatology", "localized-scleroderma",
              "morphea", "loscat", "medical"],
        base_model=STUDY_WEIGHTS_REPO if study else None,
    )
    template = resources.files("loscat_hf").joinpath("resources/converted_card.md").read_text(encoding="utf-8")
    return ModelCard.from_template(
        data, template_str=template, source=source, arch=arch, classes=", ".join(classes),
        num_classes=len(classes), study=study, image_size=config.image_size, code_repo=STUDY_CODE_REPO,
        weights_repo=STUDY_WEIGHTS_REPO,
        mapping=", ".join(f"{c} -> {name}" for c, name in zip(codes, classes, strict=True)),
        resample={2: "bilinear", 3: "bicubic"}.get(int(processor.resample), f"PIL filter {processor.resample}"),
        mean=tuple(processor.image_mean), std=tuple(processor.image_std),
    )
