"""How much the decode size moves a model's answers: photos decoded at the model's input size (what predict
does) against the same photos decoded at the packing size first (what predict once did).

    python scripts/bench_decode_size.py MODEL_DIR PHOTO_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loscat_hf.infer.answers import load_photo, photo_array  # noqa: E402
from loscat_hf.infer.predictor import RegionPredictor  # noqa: E402


def probabilities(pred: RegionPredictor, paths: list[Path], min_side: int | None) -> tuple[np.ndarray, list]:
    decoding = pred.decoding
    pixels = [photo_array(load_photo(p, decoding.max_side, min_side), pred.image_size, decoding.resample)
              for p in paths]
    logits = np.concatenate([pred.logits(np.stack(pixels[i:i + 64])) for i in range(0, len(pixels), 64)])
    answers = pred.from_logits(logits)
    return np.array([[a.probabilities[c] for c in pred.labels] for a in answers]), answers


def main() -> None:
    model, folder = sys.argv[1], Path(sys.argv[2])
    pred = RegionPredictor.from_pretrained(model, backend="torch", precision="fp32")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    new, a = probabilities(pred, paths, pred.image_size)
    old, b = probabilities(pred, paths, None)
    same = sum(x.label == y.label for x, y in zip(a, b, strict=True))
    print(f"{len(paths)} photos; decoded for {pred.image_size} px vs at {pred.decoding.max_side} px first: "
          f"same region for {same}, largest probability difference "
          f"{np.abs(new - old).max():.4f} (mean {np.abs(new - old).mean():.5f}), needs_review changed for "
          f"{sum(x.needs_review != y.needs_review for x, y in zip(a, b, strict=True))}")


if __name__ == "__main__":
    main()
