"""packing.pack_dataset: imagefolder layout, de-identification, duplicates, atomic writes, Hub upload."""

import csv
import dataclasses
import errno
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from datasets import Features
from PIL import Image

from loscat_hf.data import cleaning, dataset, packing, private
from loscat_hf.data.dataset import dataset_features
from loscat_hf.data.packing import PackItem, PackOptions, pack_dataset
from loscat_hf.errors import LoscatError, Problem
from loscat_hf.hub.dataset import push_dataset_to_hub

CLASSES = ("head", "arm", "leg")
SECRET = "Jane-Roe"  # part of every original file name: must not appear in OUT outside private/


def _photo(path: Path, size=(90, 60), colour=(120, 80, 60), orientation: int | None = None,
           tag: int = 0) -> Path:
    img = Image.new("RGB", size, colour)
    img.paste((255, 0, 0), (0, 0, size[0] // 3, size[1] // 3))  # red top-left
    corner = (size[0] - 16, size[1] - 16, size[0], size[1])
    img.paste(((tag % 16) * 16, (tag // 16) * 32 % 256, 200), corner)  # unique
    exif = Image.Exif()
    exif[0x010E] = f"{SECRET} description"
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)
    if orientation:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=95, exif=exif.tobytes(), comment=SECRET.encode())
    return path


def _items(root: Path, n_patients: int = 8, per_patient: int = 3) -> list[PackItem]:
    items = []
    for p in range(n_patients):
        for k in range(per_patient):
            label = CLASSES[(p + k) % 3]
            path = _photo(root / f"{SECRET}_{p}" / f"IMG_{SECRET}_{p}_{k}.jpg", tag=p * 10 + k)
            items.append(PackItem(
                source=path, key=f"{SECRET}_{p}/IMG_{SECRET}_{p}_{k}.jpg", label=label,
                site="left_arm" if label == "arm" else label, patient_id=f"MRN{SECRET}{p}",
                visit=f"2024-0{k + 1}-15", extra={"skin_tone": "III"},
            ))
    return items


def _pack(items, out, **kw):
    """pack_dataset with the tests' PackOptions; a PackOptions field in `kw` overrides its default here."""
    names = {f.name for f in dataclasses.fields(PackOptions)}
    options = PackOptions(**{"num_workers": 1, "val_fraction": 0.25, "progress": False,
                             **{k: kw.pop(k) for k in list(kw) if k in names}})
    return pack_dataset(items, out, options, classes=CLASSES, **kw)


def _publishable_bytes(out: Path) -> dict[str, bytes]:
    """Every file outside private/: what the folder itself offers to anyone it is shared with."""
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and dataset.PRIVATE_DIR not in p.relative_to(out).parts}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_layout_metadata_and_opaque_ids(tmp_path):
    items = _items(tmp_path / "photos")
    result = _pack(items, tmp_path / "out", agreement={"n_photos_multi_rated": 0})
    out = tmp_path / "out"
    assert result.out_dir == out.absolute() and result.n_photos == len(items)
    assert sorted(p.name for p in out.iterdir()) == [
        "LICENSE.md", "README.md", "prepare_report.json", "private", "train", "validation"
    ]
    assert sorted(p.name for p in (out / "private").iterdir()) == sorted(dataset.PRIVATE_FILES)
    seen_patients: dict[str, str] = {}
    n = 0
    for split in ("train", "validation"):
        rows = dataset.read_split_metadata(out / split)
        assert list(rows[0]) == ["file_name", "label", "site", "patient_id", "visit", "image_id", "skin_tone"]
        files = {p.name for p in (out / split).iterdir()} - {"metadata.parquet"}
        assert files == {r["file_name"] for r in rows}
        for r in rows:
            assert r["file_name"] == f"{r['image_id']}.jpg" and len(r["image_id"]) == 16
            assert seen_patients.setdefault(r["patient_id"], split) == split  # patient in one split only
            assert re.fullmatch(r"P\d{3}", r["patient_id"]) and re.fullmatch(r"V\d{3}", r["visit"])
            img = Image.open(out / split / r["file_name"])
            assert img.mode == "RGB" and not img.getexif() and "comment" not in img.info
        n += len(rows)
    assert n == len(items)
    assert len(seen_patients) == 8  # one code per patient: the grouping survives
    id_map = _rows(out / "private" / "id_map.csv")
    by_key = {r["original_path"]: r for r in id_map}
    key = bytes.fromhex(json.loads((out / "private" / "details.json").read_text())["image_id"]["key_hex"])
    for item in items:  # a keyed hash of the file bytes: nothing derived from its name, no plain file hash
        expected = hmac.new(key, item.source.read_bytes(), hashlib.sha256).hexdigest()[:16]
        assert expected != hashlib.sha256(item.source.read_bytes()).hexdigest()[:16]
        assert by_key[item.key]["image_id"] == expected and by_key[item.key]["status"] == "kept"
        assert by_key[item.key]["patient_id"] == item.patient_id and by_key[item.key]["visit"] == item.visit
    codes = private.read_codes(out)  # the clinic's way back from codes to its own ids
    assert sorted(codes["patient"].values()) == sorted({i.patient_id for i in items})
    assert sorted(codes["visit"].values()) == sorted({(i.patient_id, i.visit) for i in items})


def test_nothing_identifying_outside_private(tmp_path):
    items = _items(tmp_path / "photos")
    items.append(PackItem(
        source=tmp_path / "photos" / f"{SECRET}_gone.jpg", key=f"{SECRET}_gone.jpg", label="head",
        site="head", patient_id=f"MRN{SECRET}0", row=7,
    ))
    result = _pack(
        items, tmp_path / "out", problems=[Problem("unknown_region", "ann.csv", f"region 'arm {SECRET}'", 3)],
        warnings=[f"{SECRET}_9/IMG_{SECRET}_9_0.jpg looks odd"], notes=[f"no scores for {SECRET}.jpg"],
        agreement={"pairs": [{"rater_a": f"Dr {SECRET}", "rater_b": "Dr Who", "n_photos": 3}]},
        private_details={"images_folder": str(tmp_path / f"{SECRET}_photos"),
                         "dropped_columns": ["PatientName"]},
    )
    assert result.problem_counts() == {"missing_image": 1, "unknown_region": 1}
    published = _publishable_bytes(tmp_path / "out")
    for name, raw in published.items():
        for needle in (SECRET.encode(), b"IMG_", b"MRN", b"2024-0", b"Dr Who", b"PatientName",
                       str(tmp_path).encode()):
            assert needle not in raw, (name, needle)
        if name.endswith(".jpg"):
            assert b"Exif" not in raw and b"GPS" not in raw
    private = tmp_path / "out" / "private"
    assert SECRET in (private / "id_map.csv").read_text()
    problems = _rows(private / "problems.csv")  # every problem in full, with its CSV row
    assert {(r["kind"], r["csv_row"]) for r in problems} == {("missing_image", "7"), ("unknown_region", "3")}
    details = json.loads((private / "details.json").read_text())
    assert set(details["raters"]) == {"Dr Jane-Roe", "Dr Who"}
    assert sorted(details["raters"].values()) == ["rater 1", "rater 2"]
    assert details["dropped_columns"] == ["PatientName"]
    assert details["notes"] == [f"no scores for {SECRET}.jpg"]
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["exclusions"] == {"total": 2, "by_reason": {"missing_image": 1, "unknown_region": 1}}
    assert report["private"]["dropped_columns"] == 1 and report["private"]["warnings"] == 1
    assert (report["agreement"]["pairs"][0]["rater_a"], report["agreement"]["pairs"][0]["rater_b"]) == (
        "rater 1", "rater 2")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_private_folder_is_owner_only(tmp_path):
    os.umask(old := os.umask(0))  # even with a permissive umask
    try:
        _pack(_items(tmp_path / "photos", n_patients=4), tmp_path / "out", val_fraction=0.5)
    finally:
        os.umask(old)
    private = tmp_path / "out" / "private"
    assert private.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in private.iterdir()} == {0o600}


def test_formula_cells_are_neutralised_in_csv_and_exact_in_parquet(tmp_path):
    items = [PackItem(source=i.source, key=i.key, label=i.label, site=i.site, patient_id=i.patient_id,
                      visit=i.visit, extra={"skin_tone": "=HYPERLINK(\"http://x\")", "score_erythema": "2"})
             for i in _items(tmp_path / "photos", n_patients=4)]
    items[0] = PackItem(source=items[0].source, key="=cmd.jpg", label=items[0].label, site=items[0].site,
                        patient_id="+MRN1", visit="-1")
    _pack(items, tmp_path / "out", val_fraction=0.5)
    rows = [r for s in ("train", "validation") for r in dataset.read_split_metadata(tmp_path / "out" / s)]
    assert {r["skin_tone"] for r in rows} == {"=HYPERLINK(\"http://x\")", None}  # parquet: no spreadsheet
    assert {r["score_erythema"] for r in rows} == {2.0, None}  # missing is None, never 0
    id_map = _rows(tmp_path / "out" / "private" / "id_map.csv")
    assert "'=cmd.jpg" in {r["original_path"] for r in id_map}
    assert "'+MRN1" in {r["patient_id"] for r in id_map}
    assert "+MRN1" in private.read_codes(tmp_path / "out")["patient"].values()  # read back as written


def test_stale_partial_folders_are_removed(tmp_path):
    items = _items(tmp_path / "photos", n_patients=4)
    dead = tmp_path / ".out.partial-999999999-0a1b2c3d"  # a killed run: no such process
    (dead / "_staging").mkdir(parents=True)
    (dead / "_staging" / "photo.jpg").write_bytes(b"x")
    alive = tmp_path / f".out.partial-{os.getppid()}-0a1b2c3d"  # a running process: left alone
    alive.mkdir()
    old = tmp_path / ".out.old-999999999-0a1b2c3d"  # killed between the two renames of --overwrite
    old.mkdir()
    mine = tmp_path / ".out.partial-keep"  # not a name prepare writes: never touched
    mine.mkdir()
    _pack(items, tmp_path / "out", val_fraction=0.5)
    assert not dead.exists() and not old.exists() and alive.exists() and mine.exists()


def test_disk_errors_are_one_line_and_leave_nothing(tmp_path, monkeypatch):
    items = _items(tmp_path / "photos", n_patients=4)
    real = cleaning.save_clean_jpeg

    def full(img, path, quality=95):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(cleaning, "save_clean_jpeg", full)
    with pytest.raises(LoscatError, match="disk is full.*nothing was written"):
        _pack(items, tmp_path / "out", val_fraction=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
    monkeypatch.setattr(cleaning, "save_clean_jpeg", real)
    locked = tmp_path / "locked"
    locked.mkdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(locked))

    monkeypatch.setattr(packing.Path, "mkdir", read_only)
    with pytest.raises(LoscatError, match="read-only"):
        _pack(items, locked / "out", val_fraction=0.5)


def test_exif_rotated_photo_is_upright(tmp_path):
    # stored rotated 90 degrees counter-clockwise with orientation 6: the viewer rotates it back
    upright = Image.new("RGB", (90, 60), (120, 120, 120))
    upright.paste((255, 0, 0), (0, 0, 30, 20))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    items = _items(tmp_path / "photos", n_patients=4)
    items.append(PackItem(source=path, key="rot.jpg", label="head", site="head", patient_id="P0"))
    _pack(items, tmp_path / "out", val_fraction=0.5)
    image_id = next(r["image_id"] for r in _rows(tmp_path / "out" / "private" / "id_map.csv")
                    if r["original_path"] == "rot.jpg")
    packed = next((tmp_path / "out").glob(f"*/{image_id}.jpg"))
    img = Image.open(packed)
    assert img.size == (90, 60)
    r, g, b = img.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60
    assert max(img.getpixel((85, 55))) < 180  # bottom-right is grey, not red


def test_loads_with_datasets_without_loscat(tmp_path):
    items = _items(tmp_path / "photos")
    _pack(items, tmp_path / "out", test_fraction=0.25)
    script = textwrap.dedent(
        f"""
        import json, sys
        from datasets import load_dataset
        ds = load_dataset("imagefolder", data_dir={str(tmp_path / "out")!r},
                          cache_dir={str(tmp_path / "cache")!r})
        assert "loscat_hf" not in sys.modules
        print(json.dumps({{s: [d.num_rows, list(d.column_names), d[0]["label"], d[0]["image"].size]
                          for s, d in ds.items()}}))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {s: len(dataset.read_split_metadata(tmp_path / "out" / s))
                for s in ("train", "validation", "test")}
    assert {s: v[0] for s, v in loaded.items()} == expected
    for _, columns, label, _size in loaded.values():
        assert columns == ["image", "label", "site", "patient_id", "visit", "image_id", "skin_tone"]
        assert label in range(len(CLASSES))  # a ClassLabel id: the parquet schema carries the features


def test_a_column_empty_in_one_split_loads_with_one_schema(tmp_path):
    """CSV metadata inferred `null` for a column empty in one split and datasets refused the folder."""
    items = _items(tmp_path / "photos", n_patients=8)
    out = tmp_path / "out"
    _pack(items, out, val_fraction=0.25)
    val_patients = {r["patient_id"] for r in dataset.read_split_metadata(out / "validation")}
    codes = private.read_codes(out)["patient"]
    in_val = {codes[c] for c in val_patients}
    emptied = [PackItem(source=i.source, key=i.key, label=i.label, site=i.site, patient_id=i.patient_id,
                        visit="" if i.patient_id in in_val else i.visit,
                        extra={"skin_tone": "" if i.patient_id in in_val else "III",
                               "score_erythema": "" if i.patient_id in in_val else "1"})
               for i in items]
    _pack(emptied, out, val_fraction=0.25, overwrite=True)  # same patients: the same split
    from datasets import load_dataset

    for ds in (load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "c1")),
               load_dataset(str(out), cache_dir=str(tmp_path / "c2"))):
        assert ds["train"].features == ds["validation"].features
        assert ds["train"].features["label"].names == list(CLASSES)
        assert ds["train"].features["score_erythema"].dtype == "float32"
        assert set(ds["validation"]["skin_tone"]) == {None}
        assert set(ds["validation"]["score_erythema"]) == {None}


def test_card_yaml_and_report(tmp_path):
    items = _items(tmp_path / "photos")
    agreement = {"n_photos_multi_rated": 3, "n_raters": 2, "labels": list(CLASSES), "percent_agreement": 66.7,
                 "fleiss_kappa": 0.5, "pairs": [], "most_confused": []}
    _pack(items, tmp_path / "out", agreement=agreement, notes=["scores not used"])
    card = (tmp_path / "out" / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["task_categories"] == ["image-classification"] and header["license"] == "other"
    # the Hub wants a link with `other`: to the terms file, which the dataset holds and publishes
    assert header["license_link"] == "LICENSE.md" and "SYNTHETIC" not in card
    assert ("LICENSE.md", tmp_path / "out" / "LICENSE.md") in dataset.publishable_files(tmp_path / "out")
    assert "No licence is granted" in (tmp_path / "out" / "LICENSE.md").read_text()
    assert [f["split"] for f in header["configs"][0]["data_files"]] == ["train", "validation"]
    declared = Features._from_yaml_list(header["dataset_info"]["features"])
    assert declared == dataset_features(CLASSES, ["skin_tone"]) == dataset.card_features(tmp_path / "out")
    assert header["configs"][0]["features"] == header["dataset_info"]["features"]
    assert "&id0" not in card and "*id0" not in card  # plain YAML, no anchors/aliases for the Hub to parse
    for section in ("Counts per class and split", "Exclusions", "Rater agreement", "De-identification",
                    "Splits by patient"):
        assert f"## {section}" in card
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["n_photos"] == len(items) and report["agreement"]["fleiss_kappa"] == 0.5
    assert sum(s["photos"] for s in report["splits"].values()) == len(items)
    assert report["private"]["notes"] == 1 and "notes" not in report and "pillow" in report["versions"]
    assert report["phantom_photos"] == 0 and report["synthetic"] is False  # a clinic's photos: no phantom


def test_duplicates(tmp_path):
    items = _items(tmp_path / "photos")
    twin = tmp_path / "copy.jpg"
    twin.write_bytes(items[0].source.read_bytes())
    same = PackItem(source=twin, key="copy.jpg", label=items[0].label, site=items[0].site,
                    patient_id=items[0].patient_id)
    result = _pack([*items, same], tmp_path / "out")
    assert result.n_photos == len(items) and result.problem_counts() == {"duplicate_image": 1}
    assert "copy.jpg" in result.problems[0].source

    other = PackItem(source=twin, key="copy.jpg", label="leg" if items[0].label != "leg" else "head",
                     site="leg", patient_id="P7")
    result = _pack([*items, other], tmp_path / "out2")
    assert result.n_photos == len(items) - 1  # conflicting labels: neither copy is trusted
    assert result.problem_counts() == {"duplicate_image": 2}


def test_bad_images_become_problems_and_rest_goes_on(tmp_path):
    items = _items(tmp_path / "photos")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not a photo")
    good = items[0].source.read_bytes()
    (bad / "cut.jpg").write_bytes(good[: len(good) // 2])
    (bad / "folder.jpg").mkdir()
    kinds = {"zero.jpg": "zero_byte", "text.jpg": "not_an_image", "cut.jpg": "truncated",
             "folder.jpg": "unreadable", "gone.jpg": "missing_image"}
    extra = [PackItem(source=bad / name, key=name, label="head", site="head", patient_id="P1")
             for name in kinds]
    result = _pack([*items, *extra], tmp_path / "out")
    assert result.n_photos == len(items)
    assert {p.source: p.kind for p in result.problems} == kinds
    status = {r["original_path"]: r["status"] for r in _rows(tmp_path / "out" / "private" / "id_map.csv")}
    assert all(status[name] == kind for name, kind in kinds.items())


def test_nothing_usable_writes_nothing(tmp_path):
    item = PackItem(source=tmp_path / "nope.jpg", key="nope.jpg", label="head", site="head", patient_id="P1")
    result = _pack([item], tmp_path / "out")
    assert result.out_dir is None and result.problem_counts() == {"missing_image": 1}
    assert list(tmp_path.iterdir()) == []


def test_refuses_overwrite_then_replaces(tmp_path):
    items = _items(tmp_path / "photos")
    out = tmp_path / "out"
    _pack(items, out)
    with pytest.raises(LoscatError, match="overwrite=True"):
        _pack(items, out)
    (out / "stale.txt").write_text("old run")
    _pack(items[:-3], out, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos"]  # no temp or backup folder left


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    items = _items(tmp_path / "photos")
    calls = []
    real = cleaning.save_clean_jpeg

    def failing(img, path, quality=95):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C halfway through
        real(img, path, quality)

    monkeypatch.setattr(cleaning, "save_clean_jpeg", failing)
    with pytest.raises(KeyboardInterrupt):
        _pack(items, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]

    monkeypatch.setattr(cleaning, "save_clean_jpeg", real)
    _pack(items, tmp_path / "out")
    before = sorted(p.name for p in (tmp_path / "out" / "train").iterdir())

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(packing, "dataset_card", broken_card)
    with pytest.raises(RuntimeError):
        _pack(items[:-3], tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos"]
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == before  # old dataset intact


def test_options_as_keywords_and_their_checks(tmp_path):
    """pack_dataset still takes the PackOptions fields as keywords (alone or over `options`); a bad value
    fails when the options are built, naming the parameter, before anything is written."""
    items = _items(tmp_path / "photos", n_patients=4, per_patient=2)
    by_options = _pack(items, tmp_path / "a", val_fraction=0.5, id_key=b"k" * 32)
    by_keywords = pack_dataset(items, tmp_path / "b", classes=CLASSES, val_fraction=0.5, num_workers=1,
                               progress=False, id_key=b"k" * 32)
    over = pack_dataset(items, tmp_path / "c", PackOptions(val_fraction=0.25, num_workers=1, progress=False),
                        classes=CLASSES, val_fraction=0.5, id_key=b"k" * 32)
    assert by_options.counts == by_keywords.counts == over.counts
    assert by_options.report["parameters"] == by_keywords.report["parameters"] == over.report["parameters"]
    assert by_options.report["parameters"]["val_fraction"] == 0.5
    for bad, param in (({"max_side": 0}, "max_side"), ({"num_workers": 0}, "num_workers")):
        with pytest.raises(LoscatError) as err:
            pack_dataset(items, tmp_path / "d", classes=CLASSES, **bad)
        assert err.value.params == (param,)
    assert not (tmp_path / "d").exists()
    with pytest.raises(dataclasses.FrozenInstanceError):
        PackOptions().seed = 1


def test_parallel_workers_match_serial(tmp_path):
    items = _items(tmp_path / "photos", n_patients=4, per_patient=2)
    serial = _pack(items, tmp_path / "a", val_fraction=0.5, id_key=b"k" * 32)
    parallel = _pack(items, tmp_path / "b", val_fraction=0.5, num_workers=2, id_key=b"k" * 32)
    assert serial.counts == parallel.counts
    ids = [sorted(r["image_id"] for r in _rows(tmp_path / d / "private" / "id_map.csv")) for d in ("a", "b")]
    assert ids[0] == ids[1]


def test_dataset_features_keep_text_ids(tmp_path):
    features = dataset_features(CLASSES, ["skin_tone", "score_erythema"])
    assert features["label"].names == list(CLASSES)
    assert features["patient_id"].dtype == "string" and features["skin_tone"].dtype == "string"
    assert features["score_erythema"].dtype == "float32"


def test_push_uploads_only_the_allow_list(tmp_path, monkeypatch):
    from fake_hub import FakeHub

    out = tmp_path / "out"
    _pack(_items(tmp_path / "photos"), out)
    (out / f"notes_{SECRET}.txt").write_text(SECRET)  # a file someone dropped into the folder
    (out / "train" / f"{SECRET}.jpg").write_bytes(b"x")
    hub = FakeHub().install(monkeypatch)
    # what an earlier push of the old layout left: raw ids in a split this dataset no longer has
    hub.add("me/loscat", "dataset", private=True,
            files=[".gitattributes", "README.md", "id_map.csv", "test/metadata.csv",
                   "train/metadata.parquet"])
    result = push_dataset_to_hub(out, "me/loscat")
    assert result.url.endswith("datasets/me/loscat") and result.private
    commit = hub.commits[-1]
    assert commit["repo_type"] == "dataset"
    # the repo ends up holding the allow-list
    assert set(commit["deleted"]) == {"id_map.csv", "test/metadata.csv"}
    expected = {name for name, _ in dataset.publishable_files(out)}
    assert {"README.md", "prepare_report.json"} <= expected
    assert expected == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                        and dataset.PRIVATE_DIR not in p.relative_to(out).parts and SECRET not in p.name}
    assert set(commit["added"]) == expected
    assert all(SECRET.encode() not in data for data in commit["added"].values())
    legacy = tmp_path / "legacy"  # written by an older prepare: raw ids in metadata.csv, no private/
    (legacy / "train").mkdir(parents=True)
    (legacy / "README.md").write_text("card")
    (legacy / "train" / "metadata.csv").write_text("file_name,label,patient_id\na.jpg,head,MRN1\n")
    with pytest.raises(LoscatError, match="older loscat-hf.*prepare --overwrite"):
        push_dataset_to_hub(legacy, "me/loscat")
