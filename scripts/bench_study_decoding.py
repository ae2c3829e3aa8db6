"""A converted study checkpoint's answers against the study's own inference script, photo by photo.

The study's script (github caoyuanyuan-tz/LoSCAT_BodyRec, scripts/inference_predict.py): `Image.open(p)
.convert("RGB")`, torchvision `Resize((384, 384), BICUBIC)` on the PIL image (= PIL's bicubic resize of the
whole photo), `ToTensor`, ImageNet `Normalize`, timm's ViT, softmax. Here PIL stands in for torchvision and
tests/timm_reference.py's forward pass for timm (neither installs beside the CPU torch). loscat-hf's side is
`convert-timm` on the same random checkpoint, then `predict`'s own decode (`infer.answers.decode`) and the
converted folder's forward pass: as the folder records (FULL: the whole photo, one resize) and, for
comparison, as packing decodes (PACKED: DCT-scaled, shorter side <= 512, then resized).

Photos, none with an EXIF rotation (the study's script ignores it, loscat-hf applies it): camera-sized
SYNTHETIC phantoms with camera grain (2000x1500 JPEGs, quality 90-95), phantom renders (1024x768 JPEGs) and
small PNGs (phantom renders shrunk to 320x240). Per kind: the largest top-1 probability difference and how
many top-1 answers agree.

    python scripts/bench_study_decoding.py [--checkpoints 3] [--photos 36] [--dim 768] [--out result.json]

`--dim 768` is ViT-B/16 at 384, the study's shape (about 0.8 s a forward pass on 2 CPU cores, three per
photo); `--dim 192` keeps the 384 px / patch 16 geometry at a quarter of the width.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from timm_reference import random_timm_state, timm_forward  # noqa: E402

from loscat_hf.infer.answers import decode  # noqa: E402
from loscat_hf.model.folder import FULL, PACKED  # noqa: E402
from loscat_hf.model.study import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

SIZE = 384
ARCHS = {192: ("vit_tiny_patch16_384", 3), 384: ("vit_small_patch16_384", 6),
         768: ("vit_base_patch16_384", 12)}


def study_probabilities(state: dict, paths: list[Path], heads: int, batch: int = 6) -> np.ndarray:
    """The study's inference script, photo by photo (batched only for speed: the forward pass is per row)."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(paths), batch):
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize(
            (SIZE, SIZE), Image.BICUBIC), dtype=np.float32) / 255.0).permute(2, 0, 1)
            for p in paths[start:start + batch]])
        out.append(timm_forward(state, (x - mean) / std, heads=heads).softmax(-1).numpy())
    return np.concatenate(out)


def loscat_probabilities(predictor, paths: list[Path], mode: str, batch: int = 6) -> np.ndarray:
    """`loscat-hf predict`'s decode (`answers.decode`, as its workers run it) with `mode`, then the converted
    model; raw softmax (a converted checkpoint has no temperature)."""
    from dataclasses import replace

    decoding = replace(predictor.decoding, mode=mode)
    out = []
    for start in range(0, len(paths), batch):
        pixels = np.stack([decode(p, decoding) for p in paths[start:start + batch]])
        logits = predictor.logits(pixels)
        out.append(torch.from_numpy(logits).softmax(-1).numpy())
    return np.concatenate(out)


def phantom_photos(root: Path, n: int, size: tuple[int, int], photo_like: bool, seed: int) -> list[Path]:
    """`n` SYNTHETIC phantom photos of `size` without an EXIF rotation (more are rendered, rotated ones left
    out)."""
    from loscat_hf.demo.phantom.generate import generate_demo_data

    summary = generate_demo_data(root, n_patients=max(4, n // 2), n_photos=max(12, 2 * n), image_size=size,
                                 n_unlabeled=0, seed=seed, photo_like=photo_like, num_workers=1)
    with open(summary["truth"], newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("orientation") in ("", "0", "1")]
    photos = [Path(summary["images"]) / r["image"] for r in rows][:n]
    if len(photos) < n:
        raise SystemExit(f"only {len(photos)} upright phantoms of {size} rendered; ask for fewer photos")
    return photos


def make_photos(work: Path, per_kind: int) -> dict[str, list[Path]]:
    cameras = phantom_photos(work / "camera", per_kind, (2000, 1500), photo_like=True, seed=1)
    renders = phantom_photos(work / "render", per_kind, (1024, 768), photo_like=False, seed=2)
    small_dir = work / "small"
    small_dir.mkdir()
    small = []
    sources = phantom_photos(work / "small-src", per_kind, (1024, 768), photo_like=False, seed=3)
    for i, p in enumerate(sources):
        Image.open(p).convert("RGB").resize((320, 240), Image.BICUBIC).save(small_dir / f"small{i:02d}.png")
        small.append(small_dir / f"small{i:02d}.png")
    return {"camera 2000x1500 JPEG": cameras, "render 1024x768 JPEG": renders, "small 320x240 PNG": small}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=3, help="random study-shaped checkpoints")
    parser.add_argument("--photos", type=int, default=36, help="photos per checkpoint, a third of each kind")
    parser.add_argument("--dim", type=int, default=768, choices=sorted(ARCHS), help="ViT width (768 = ViT-B)")
    parser.add_argument("--out", type=Path, default=None, help="write the per-photo results as JSON")
    args = parser.parse_args()
    from loscat_hf.infer.predictor import RegionPredictor
    from loscat_hf.model.convert import convert_timm

    arch, heads = ARCHS[args.dim]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        work = Path(tmp)
        kinds = make_photos(work, args.photos // 3)
        paths = [p for group in kinds.values() for p in group]
        kind_of = {p: k for k, group in kinds.items() for p in group}
        rows = []
        for seed in range(args.checkpoints):
            state = random_timm_state(dim=args.dim, depth=12, patch=16, image=SIZE, seed=seed)
            torch.save(state, work / "checkpoint.pt")
            folder = convert_timm(str(work / "checkpoint.pt"), work / "model", arch=arch,
                                  overwrite=True).out_dir
            predictor = RegionPredictor.from_pretrained(folder, backend="torch", precision="fp32")
            assert predictor.decoding.mode == FULL, predictor.decoding
            want = study_probabilities(state, paths, heads)
            got = {mode: loscat_probabilities(predictor, paths, mode) for mode in (FULL, PACKED)}
            for i, p in enumerate(paths):
                top = int(want[i].argmax())
                rows.append({"checkpoint": seed, "photo": p.name, "kind": kind_of[p],
                             "study_top1": top, "study_p": float(want[i, top]),
                             **{f"{m}_top1": int(got[m][i].argmax()) for m in got},
                             **{f"{m}_dp": float(abs(got[m][i, top] - want[i, top])) for m in got}})
            print(f"checkpoint {seed}: {len(paths)} photos, {time.perf_counter() - t0:.0f} s so far",
                  flush=True)
    print(f"\n{arch} ({args.dim} wide, {SIZE} px, patch 16), {args.checkpoints} random checkpoints x "
          f"{len(paths)} photos, {time.perf_counter() - t0:.0f} s")
    print(f"{'photos':24} {'n':>4} | {'full: max dp':>13} {'same top-1':>10} | {'packed: max dp':>15} "
          f"{'same top-1':>10}")
    for kind in [*kinds, "all"]:
        sel = [r for r in rows if kind in ("all", r["kind"])]
        cells = []
        for m in (FULL, PACKED):
            same = sum(r[f"{m}_top1"] == r["study_top1"] for r in sel)
            cells.append((max(r[f"{m}_dp"] for r in sel), f"{same}/{len(sel)}"))
        print(f"{kind:24} {len(sel):>4} | {cells[0][0]:>13.2e} {cells[0][1]:>10} | {cells[1][0]:>15.4f} "
              f"{cells[1][1]:>10}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
