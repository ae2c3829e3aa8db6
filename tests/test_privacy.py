"""End to end: identifying strings planted everywhere a clinic export has them never reach a publishable byte.

Planted in folder and file names (with spaces), every kind of CSV column (names, birth dates in two
languages, phone, address, MRN, original file name, free text, a formula), patient ids (MRNs), visit dates,
rater names, EXIF, XMP, IPTC, PNG text, a symlink to a text file, files that are not photos, an unknown
region spelled with a name, and the score table. Then every file that `prepare --push-to-hub`, `push` and
`push-space` would upload (captured at the Hub API or staged by --dry-run) is byte-searched.
"""

import csv
import io
import os
import struct
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import loscat_hf
from loscat_hf.cli import main

NEEDLES = [b"Richard", b"MRN999", b"1984-02-29", b"29.02.1984", b"7946 0958", b"Baker Street", b"Smithson",
           b"Jonesworth", b"Geburtsdatum", b"PatientName", b"DateOfBirth", b"x/?Richard", b"2023-0",
           b"Roe_link"]
REGIONS = ["head", "left arm", "Rt. Leg", "chest", "right forearm", "abdomen"]
COLUMNS = ["image", "patient_id", "region", "rater", "visit", "quality", "skin_tone", "PatientName",
           "DateOfBirth", "Geburtsdatum", "Phone", "Address", "MedicalRecordNumber", "OriginalFileName",
           "Notes"]


def _iptc_app13(text: str) -> bytes:
    """A Photoshop APP13 segment holding one IPTC record (2:80 by-line): PIL can read but not write it."""
    record = b"\x1c\x02\x50" + struct.pack(">H", len(text)) + text.encode()
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(record)) + record
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def _jpeg(path: Path, tag: int) -> None:
    img = Image.new("RGB", (96, 72), (150, 110, 90))
    img.paste(((tag * 37) % 256, (tag * 91) % 256, 200), (0, 0, 24, 24))
    exif = Image.Exif()
    exif[0x010E] = "Richard Roe MRN9990 1984-02-29"  # ImageDescription
    exif[0x013B] = "Dr Alice Smithson"  # Artist
    exif.get_ifd(0x8825)[2] = (51.0, 31.0, 12.0)  # GPS
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>Richard Roe, 221B Baker Street</dc:creator>'
           b'</x:xmpmeta>')
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes(), xmp=xmp, comment=b"Richard Roe +44 20 7946 0958")
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:2] + _iptc_app13("Richard Roe") + data[2:])
    assert b"Richard" in path.read_bytes()  # the plant is really there


def _png(path: Path, tag: int) -> None:
    img = Image.new("RGB", (96, 72), (140, 100, 80))
    img.paste((200, (tag * 53) % 256, (tag * 29) % 256), (60, 40, 90, 70))
    info = PngInfo()
    info.add_text("Author", "Richard Roe")
    info.add_itxt("Comment", "DOB 1984-02-29, MRN999")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG", pnginfo=info)


def _clinic_export(root: Path) -> tuple[Path, Path, Path]:
    images = root / "photos of Richard Roe"
    rows = []
    for p in range(8):
        folder = f"Roe_Richard_MRN999{p}"
        for k in range(3):
            name = f"{folder}/Richard Roe {k} 2023-0{k + 1}-05" + (".png" if k == 2 else ".jpg")
            (_png if k == 2 else _jpeg)(images / name, p * 10 + k)
            region = REGIONS[(p + k) % len(REGIONS)]
            for rater in ("Dr Alice Smithson", "Dr Bob Jonesworth"):
                rows.append([name, f"MRN999{p}", region, rater, f"2023-0{k + 1}-05", "ok", "III",
                             "Richard Roe", "1984-02-29", "29.02.1984", "+44 20 7946 0958",
                             "221B Baker Street", f"MRN999{p}", f"IMG_Richard_{p}{k}.JPG",
                             '=HYPERLINK("http://x/?Richard")'])
    outside = root / "Richard Roe letter.txt"
    outside.write_text("Richard Roe, born 1984-02-29, 221B Baker Street")
    (images / "Roe_link.jpg").symlink_to(outside)
    (images / "Richard Roe notes.txt").write_text("MRN9990 Richard Roe")
    extra = [["Roe_link.jpg", "MRN9990", "head"], ["Richard Roe notes.txt", "MRN9991", "chest"],
             ["Roe_Richard_MRN9990/missing Richard.jpg", "MRN9990", "head"],
             ["Roe_Richard_MRN9992/Richard Roe 0 2023-01-05.jpg", "MRN9992", "left arm of Richard Roe"]]
    for image, patient, region in extra:
        rows.append([image, patient, region, "Dr Alice Smithson", "2023-01-05", "ok", "III",
                     "Richard Roe", "1984-02-29", "29.02.1984", "+44 20 7946 0958", "221B Baker Street",
                     patient, "x.JPG", ""])
    annotations = root / "export Richard Roe.csv"
    with open(annotations, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([COLUMNS, *rows])
    scores = root / "scores MRN999.csv"
    with open(scores, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "visit", "site", "erythema", "skin_thickness", "new_extension",
                    "dermal_atrophy", "subcutaneous_atrophy", "dyspigmentation"])
        w.writerows([f"MRN999{p}", f"2023-0{k + 1}-05", REGIONS[(p + k) % len(REGIONS)], 1, 2, "", 0, 1, 2]
                    for p in range(7) for k in range(3))  # patient 7 has no scores: listed, privately
    return annotations, images, scores


def _assert_clean(files: dict[str, bytes], extra_needles: list[bytes]) -> None:
    """No needle in any file's bytes, nor in a parquet file's decoded values (in case it were compressed)."""
    assert files
    for name, raw in files.items():
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            raw = raw + repr(pq.read_table(io.BytesIO(raw)).to_pylist()).encode()
        for needle in NEEDLES + extra_needles:
            assert needle not in raw, f"{needle!r} in {name}"


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_prepare_push_publishes_nothing_identifying(tmp_path, monkeypatch, capsys):
    from fake_hub import FakeHub

    annotations, images, scores = _clinic_export(tmp_path)
    hub = FakeHub().install(monkeypatch)
    out = tmp_path / "dataset"
    rc = main(["prepare", "--annotations", str(annotations), "--images", str(images), "--out", str(out),
               "--val-fraction", "0.25", "--scores", str(scores), "--keep-columns", "skin_tone",
               "--push-to-hub", "me/loscat-photos", "--num-workers", "1"])
    assert rc == 0, capsys.readouterr()
    console = capsys.readouterr().out
    assert "PatientName" in console  # the dropped columns are named to the user, on the console only
    uploaded = hub.repo("me/loscat-photos", "dataset")["files"]
    assert "README.md" in uploaded and "train/metadata.parquet" in uploaded
    assert sum(name.endswith(".jpg") for name in uploaded) == 24
    assert not any(name.startswith("private") for name in uploaded)
    _assert_clean(uploaded, [str(tmp_path).encode()])
    # and everything in the folder outside private/ (what gets zipped and shared by hand)
    shared = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
              if p.is_file() and "private" not in p.relative_to(out).parts}
    _assert_clean(shared, [str(tmp_path).encode()])
    # what was planted is where it belongs: in private/
    private = b"".join(p.read_bytes() for p in (out / "private").iterdir())
    assert b"Richard Roe" in private and b"MRN9990" in private and b"PatientName" in private


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_model_push_and_space_push_publish_nothing_identifying(tmp_path, monkeypatch):
    """A model trained on the planted export, in a folder whose path names the patient: push --dry-run."""
    annotations, images, scores = _clinic_export(tmp_path)
    out = tmp_path / "dataset"
    assert main(["prepare", "--annotations", str(annotations), "--images", str(images), "--out", str(out),
                 "--val-fraction", "0.25", "--scores", str(scores), "--keep-columns", "skin_tone",
                 "--num-workers", "1"]) == 0
    model = tmp_path / "Roe_Richard_MRN999_models" / "model"
    assert main(["train", "--dataset", str(out), "--output-dir", str(model), "--model", "tiny",
                 "--image-size", "32", "--num-train-epochs", "1", "--dataloader-num-workers", "0",
                 "--per-device-train-batch-size", "8", "--phase1-epochs", "0"]) == 0
    # the card train saved beside the model, and an evaluate report outside it that the card adds
    _assert_clean({"README.md": (model / "README.md").read_bytes()}, [str(tmp_path).encode()])
    report = tmp_path / "Roe_Richard_MRN999_reports" / "eval"
    assert main(["evaluate", "--model", str(model), "--dataset", str(out), "--split", "validation",
                 "--out", str(report)]) == 0
    staged = tmp_path / "push_dry"
    assert main(["push", "--model", str(model), "--repo-id", "me/loscat-model", "--dry-run", str(staged),
                 "--eval", str(report)]) == 0
    files = {str(p.relative_to(staged)): p.read_bytes() for p in staged.rglob("*") if p.is_file()}
    assert "model.safetensors" in files and "README.md" in files
    assert b"| validation |" in files["README.md"]
    _assert_clean(files, [str(tmp_path).encode()])
    space = tmp_path / "space_dry"
    assert main(["push-space", "--repo-id", "me/loscat-space", "--model", str(model),
                 "--dry-run", str(space)]) == 0
    files = {str(p.relative_to(space)): p.read_bytes() for p in space.rglob("*") if p.is_file()}
    assert "model/model.safetensors" in files and "app.py" in files
    package = Path(loscat_hf.__file__).parent  # loscat-hf's own source, copied unchanged, is code, not data
    shipped = {n for n, raw in files.items() if n.startswith("loscat_hf/")
               and (package / n.removeprefix("loscat_hf/")).is_file()
               and (package / n.removeprefix("loscat_hf/")).read_bytes() == raw}
    assert len(shipped) > 10 and all(n.endswith((".py", ".json", ".md", "py.typed")) for n in shipped)
    files = {n: raw for n, raw in files.items() if n not in shipped}
    _assert_clean(files, [str(tmp_path).encode()])
