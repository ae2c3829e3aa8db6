"""`loscat-hf label`: the answer file, the photo list, the session (queue, blind rating, resume), the app.

Fast tests call the plain-Python session and one in-process server through gradio_client; the slow ones
run the CLI in subprocesses (kill -9 and restart, two apps on one file) and a real browser.
"""

import csv
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from loscat_hf.apps.labelling.log import LABEL_COLUMNS, Answer, LabelLog, latest_answers, read_answers
from loscat_hf.apps.labelling.photos import list_photos
from loscat_hf.apps.labelling.session import LabelSession, model_suggestions
from loscat_hf.cli import main
from loscat_hf.data.annotations import read_ratings
from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parent.parent


def _photos(root: Path, patients: int = 3, per_patient: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for p in range(patients):
        (root / f"P{p:03d}").mkdir(parents=True, exist_ok=True)
        for i in range(per_patient):
            img = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / f"P{p:03d}" / f"img{i}.jpg")
    return root


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def folder(tmp_path):
    return _photos(tmp_path / "photos")


def _session(folder: Path, out: Path, **kwargs) -> LabelSession:
    return LabelSession(list_photos(folder, exclude=[out]), LabelLog(out), load_taxonomy(), **kwargs)


# ------------------------------------------------------------------------------------------ the answer file
def test_every_answer_is_one_row_with_every_field(tmp_path):
    out = tmp_path / "labels.csv"
    log = LabelLog(out)
    log.append(Answer("P1/a.jpg", "P1", "v1", "left_arm", "alice", "good", "2026-11-27T10:00:00+00:00"))
    log.append(Answer("=cmd|x.jpg", "P1", "", "unclear", "bob", "poor", "2026-11-27T10:00:01+00:00"))
    rows = _rows(out)
    assert list(rows[0]) == list(LABEL_COLUMNS)
    assert rows[0] == {"image": "P1/a.jpg", "patient_id": "P1", "visit": "v1", "region": "left_arm",
                       "rater": "alice", "quality": "good", "labelled_at": "2026-11-27T10:00:00+00:00"}
    assert rows[1]["image"] == "'=cmd|x.jpg"  # a spreadsheet shows it as text, not a formula
    assert [a.image for a in read_answers(out)] == ["P1/a.jpg", "=cmd|x.jpg"]  # read back exactly
    assert out.stat().st_mode & 0o077 == 0  # patient ids: readable by the owner only


@pytest.mark.parametrize("pread", [True, False], ids=["pread", "no-pread (Windows)"])
def test_a_row_cut_off_by_a_crash_is_skipped_and_not_glued_to(tmp_path, monkeypatch, pread):
    if not pread:
        monkeypatch.delattr(os, "pread")
    out = tmp_path / "labels.csv"
    log = LabelLog(out)
    log.append(Answer("a.jpg", "P1", "", "head", "alice", "good", "t1"))
    with open(out, "ab") as fh:
        fh.write(b"b.jpg,P1,,ne")  # the process died in the middle of a write
    log.append(Answer("c.jpg", "P1", "", "neck", "alice", "good", "t2"))
    assert [a.image for a in read_answers(out)] == ["a.jpg", "c.jpg"]


def test_a_row_cut_inside_a_quoted_cell_does_not_swallow_the_next(tmp_path):
    out = tmp_path / "labels.csv"
    log = LabelLog(out)
    log.append(Answer("a.jpg", "P1", "", "head", "Smith, J", "good", "t1"))
    with open(out, "ab") as fh:
        fh.write(b'b.jpg,P1,,neck,"Smith, ')  # cut inside the quoted rater name
    log.append(Answer("c.jpg", "P1", "", "chest", "Smith, J", "good", "t2"))
    assert [(a.image, a.rater) for a in read_answers(out)] == [("a.jpg", "Smith, J"), ("c.jpg", "Smith, J")]


def _answer(image: str, labelled_at: str = "2026-11-27T10:00:00+00:00") -> Answer:
    return Answer(image, "P1", "", "head", "alice", "good", labelled_at)


@pytest.mark.parametrize("cut", [b'"P1/line\nbre', b'"P1/line\n', b'"P1/line\nbreak.jpg",P1,,he'],
                         ids=["inside the second line", "just after the line break", "after the cell"])
def test_a_cut_in_a_multi_line_file_name_hides_no_later_answer(tmp_path, cut):
    """A file name with a line break is a quoted cell over two lines; a crash that cuts it leaves a quote
    open that only the whole file, not its last line, shows."""
    out = tmp_path / "labels.csv"
    log = LabelLog(out)
    log.append(_answer("P1/line\nbreak.jpg"))
    with open(out, "ab") as fh:
        fh.write(cut)
    log.append(_answer("P1/c.jpg"))
    log.append(_answer("P1/d.jpg"))
    expected = ["P1/line\nbreak.jpg", "P1/c.jpg", "P1/d.jpg"]
    assert [a.image for a in read_answers(out)] == expected
    assert [r["image"] for r in _rows(out) if r["labelled_at"]] == expected  # any CSV reader: prepare's


def test_answers_after_a_cut_that_was_never_repaired_are_read(tmp_path):
    """A file an older loscat-hf appended to after such a cut: the open quote runs on to the end."""
    out = tmp_path / "labels.csv"
    LabelLog(out).append(_answer("P1/a.jpg"))
    with open(out, "ab") as fh:
        fh.write(b'"P1/line\nbre\n')  # what the earlier writer added: a line end, no closing quote
        fh.write(b"P1/c.jpg,P1,,head,alice,good,2026-11-27T10:00:02+00:00\n")
        fh.write(b"P1/d.jpg,P1,,neck,alice,good,2026-11-27T10:00:03+00:00\n")
    assert [(a.image, a.region) for a in read_answers(out)] == [
        ("P1/a.jpg", "head"), ("P1/c.jpg", "head"), ("P1/d.jpg", "neck")]


def test_a_character_cut_in_two_leaves_the_file_readable(tmp_path):
    out = tmp_path / "labels.csv"
    LabelLog(out).append(_answer("P1/a.jpg"))
    with open(out, "ab") as fh:
        fh.write("P1/café.jpg".encode()[:-5])  # cut inside the two bytes of 'é'
    assert [a.image for a in read_answers(out)] == ["P1/a.jpg"]
    log = LabelLog(out)  # the app starts again
    log.append(_answer("P1/c.jpg"))
    out.read_bytes().decode("utf-8")  # whole characters again: prepare reads it as UTF-8, not cp1252
    assert [a.image for a in read_answers(out)] == ["P1/a.jpg", "P1/c.jpg"]


def test_a_carriage_return_in_a_file_name_stays_in_its_cell(tmp_path):
    out = tmp_path / "labels.csv"
    log = LabelLog(out)
    log.append(_answer("P1/a\rb.jpg"))
    log.append(_answer("P1/c.jpg"))
    assert [a.image for a in read_answers(out)] == ["P1/a\rb.jpg", "P1/c.jpg"]
    assert [r["image"] for r in _rows(out)] == ["P1/a\rb.jpg", "P1/c.jpg"]


def test_a_foreign_csv_is_not_appended_to(tmp_path):
    out = tmp_path / "export.csv"
    out.write_text("image,patient_id,region\na.jpg,P1,head\n")
    with pytest.raises(LoscatError, match="not a loscat-hf label file"):
        LabelLog(out)
    with pytest.raises(LoscatError, match="is a folder"):
        LabelLog(tmp_path)
    book = tmp_path / "labels.xlsx"
    book.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)  # a workbook, not text
    with pytest.raises(LoscatError, match="cannot be read as a loscat-hf label file"):
        LabelLog(book)


def _append_many(path: str, rater: str, n: int) -> None:
    log = LabelLog(path)
    for i in range(n):
        log.append(Answer(f"P{i % 7}/photo_{i:04d}.jpg", f"P{i % 7}", "", "left_forearm", rater, "good",
                          f"2026-11-27T10:{i // 60:02d}:{i % 60:02d}+00:00"))


def test_concurrent_writers_lose_and_interleave_nothing(tmp_path):
    """Four processes and, in this one, threads append at once: every row arrives whole."""
    out = str(tmp_path / "labels.csv")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(out, f"rater{k}", 60)) for k in range(4)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_append_many, args=(out, f"thread{k}", 40)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = _rows(Path(out))
    assert len(rows) == 4 * 60 + 3 * 40
    assert all(len(r) == len(LABEL_COLUMNS) and r["region"] == "left_forearm" and None not in r for r in rows)
    assert Path(out).read_text().count("image,patient_id") == 1  # one header


def test_latest_answer_per_photo_and_rater():
    a = [Answer("x.jpg", "P", "", "head", "r1", "good", "2026-11-27T10:00:00+00:00"),
         Answer("x.jpg", "P", "", "neck", "r1", "good", "2026-11-27T10:05:00+00:00"),
         Answer("x.jpg", "P", "", "chest", "r2", "good", "2026-11-27T10:01:00+00:00"),
         # same second: row order
         Answer("x.jpg", "P", "", "abdomen", "r1", "good", "2026-11-27T10:05:00+00:00")]
    latest = latest_answers(a)
    assert latest[("x.jpg", "r1")].region == "abdomen" and latest[("x.jpg", "r2")].region == "chest"
    # the time decides, not the row: two files appended out of order
    late_first = [a[1], a[0]]
    assert latest_answers(late_first)[("x.jpg", "r1")].region == "neck"
    # times a spreadsheet rewrote ('27/11/2026 10:05') or left empty are not read as times: file order decides
    excel = [replace(a[1], labelled_at="27/11/2026 10:05"), replace(a[0], labelled_at="")]
    assert latest_answers(excel)[("x.jpg", "r1")].region == "head"


# ------------------------------------------------------------------------------------------ prepare reads it
def test_prepare_keeps_each_raters_latest_answer(tmp_path):
    out = tmp_path / "labels.csv"
    log = LabelLog(out)
    for image, region, rater, t in [("P1/a.jpg", "left_arm", "alice", "10:00"),
                                    ("P1/a.jpg", "right_arm", "bob", "10:01"),
                                    ("P1/a.jpg", "left_arm", "bob", "10:02"),  # bob changed his mind
                                    ("P1/b.jpg", "head", "alice", "10:03"),
                                    ("P1/b.jpg", "neck", "alice", "10:04")]:
        log.append(Answer(image, "P1", "", region, rater, "good", f"2026-11-27T{t}:00+00:00"))
    log.append(Answer("P1/b.jpg", "P1", "", "chest", "alice", "good", "2026-11-27T09:59:00+00:00"))  # older
    export = read_ratings(out, load_taxonomy())
    assert export.superseded == 3 and not export.problems
    assert sorted((r.image, r.rater, r.site) for r in export.ratings) == [
        ("P1/a.jpg", "alice", "left_arm"), ("P1/a.jpg", "bob", "left_arm"), ("P1/b.jpg", "alice", "neck")]
    # without labelled_at (another tool's export) two different answers of one rater still contradict
    plain = tmp_path / "export.csv"
    plain.write_text("image,patient_id,region,rater\nP1/b.jpg,P1,head,alice\nP1/b.jpg,P1,neck,alice\n")
    assert read_ratings(plain, load_taxonomy()).superseded == 0


# ------------------------------------------------------------------------------------------ the photos
def test_patient_ids_from_the_first_folder_level(folder, tmp_path):
    (folder / "P000" / "notes.txt").write_text("not a photo")
    (folder / ".hidden.jpg").write_bytes(b"")
    photos = list_photos(folder)
    assert len(photos) == 9 and {p.patient_id for p in photos} == {"P000", "P001", "P002"}
    assert all(p.photo_id not in p.image and len(p.photo_id) == 16 for p in photos)
    shutil.copy(folder / "P000" / "img0.jpg", folder / "loose.jpg")
    with pytest.raises(LoscatError, match="not in a patient folder.*patients=CSV"):
        list_photos(folder)


def test_patient_ids_and_visits_from_a_csv(folder, tmp_path):
    table = tmp_path / "patients.csv"
    lines = [f"P{p:03d}/img{i}.jpg,MRN{p},V{i}" for p in range(3) for i in range(3)]
    table.write_text("Image,Patient ID,Visit\n" + "\n".join(lines[:-1]) + "\n")
    with pytest.raises(LoscatError, match="1 photo.*not in the patients table.*P002/img2.jpg"):
        list_photos(folder, table)
    table.write_text("Image,Patient ID,Visit\n" + "\n".join(lines) + "\n")
    photo = {p.image: p for p in list_photos(folder, table)}["P001/img2.jpg"]
    assert (photo.patient_id, photo.visit) == ("MRN1", "V2")
    table.write_text("image,patient_id\nP000/img0.jpg,\n")
    with pytest.raises(LoscatError, match="row 2: empty patient_id"):
        list_photos(folder, table)


def test_links_out_of_the_folder_and_names_that_are_not_utf8_are_not_offered(folder, tmp_path, caplog):
    secret = tmp_path / "elsewhere" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (folder / "P000" / "passwd.jpg").symlink_to(secret)
    (folder / "P000" / "again.jpg").symlink_to(folder / "P001" / "img0.jpg")  # inside: offered
    try:
        (folder / os.fsdecode(b"P001/caf\xe9.jpg")).write_bytes((folder / "P001" / "img1.jpg").read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this file system names files in UTF-8 only")
    with caplog.at_level("WARNING"):
        photos = list_photos(folder)
    assert sorted(p.image for p in photos) == sorted([f"P{p:03d}/img{i}.jpg" for p in range(3)
                                                      for i in range(3)] + ["P000/again.jpg"])
    assert all(p.path == p.path.resolve() and folder.resolve() in p.path.parents for p in photos)
    assert "links to files outside it (e.g. P000/passwd.jpg)" in caplog.text
    assert "not valid UTF-8 (e.g. P001/caf\\xe9.jpg); rename them" in caplog.text


def test_the_page_shows_no_byte_of_a_file_that_is_no_photo(folder, tmp_path):
    from loscat_hf.apps.labelling.app import LabelApp
    from loscat_hf.apps.labelling.photos import LabelPhoto
    from loscat_hf.apps.labelling.session import Shown

    fake = folder / "P000" / "fake.jpg"
    fake.write_text("root:x:0:0:root:/root:/bin/bash\n")
    app = LabelApp(_session(folder, tmp_path / "labels.csv"), "alice")
    photo = LabelPhoto("id", "P000/fake.jpg", fake.resolve(), "P000")
    image, problem = app._pixels(Shown(photo=photo, progress=""))
    assert image is None and "not an image" in problem and "root" not in problem and "x:0" not in problem
    fake.unlink()
    fake.symlink_to(folder / "P000" / "img0.jpg")  # replaced by a link once the app runs
    image, problem = app._pixels(Shown(photo=photo, progress=""))
    assert image is None and "replaced by a link" in problem


# ------------------------------------------------------------------------------------------ the session
def test_grading_skip_back_and_progress(folder, tmp_path):
    s = _session(folder, tmp_path / "labels.csv")
    first = s.next_photo("alice")
    assert first.progress == "0 of 9 done" and first.photo.image == "P000/img0.jpg"
    second = s.submit("alice", first.photo.photo_id, "Left Arm", "good")  # any spelling the taxonomy knows
    assert second.progress == "1 of 9 done" and second.photo.image == "P000/img1.jpg"
    third = s.skip("alice", second.photo.photo_id)
    assert third.progress == "1 of 9 done (1 skipped)" and third.photo.image == "P000/img2.jpg"
    assert s.back("alice").photo.image == "P000/img1.jpg"
    again = s.back("alice")
    assert again.photo.image == "P000/img0.jpg" and again.earlier == "left_arm"  # their own answer only
    s.submit("alice", again.photo.photo_id, "right_arm", "good")
    rows = _rows(tmp_path / "labels.csv")
    assert [(r["image"], r["region"]) for r in rows] == [("P000/img0.jpg", "left_arm"),
                                                          ("P000/img0.jpg", "right_arm")]
    # the skipped photo comes back once every other photo is answered
    shown = s.next_photo("alice")
    seen = []
    while shown.photo is not None:
        seen.append(shown.photo.image)
        shown = s.submit("alice", shown.photo.photo_id, "head", "good")
    assert seen[-1] == "P000/img1.jpg" and shown.progress.startswith("All 9 photos done")
    assert s.back("alice").photo.image == "P000/img1.jpg"


def test_back_after_a_skipped_photo_came_round_again(folder, tmp_path):
    s = _session(folder, tmp_path / "labels.csv")
    shown = s.next_photo("alice")
    for _ in range(8):
        shown = s.submit("alice", shown.photo.photo_id, "head", "good")
    last = shown.photo
    again = s.skip("alice", last.photo_id)  # the only photo left: it comes straight back
    assert again.photo == last
    assert s.back("alice").photo != last  # Back shows the photo before it, not the same one


def test_bad_answers_are_refused_with_what_to_do(folder, tmp_path):
    s = _session(folder, tmp_path / "labels.csv")
    pid = s.next_photo("alice").photo.photo_id
    for args, message in [(("alice", pid, "arm"), "needs a side"), (("alice", pid, "elbow"), "elbow"),
                          (("alice", "nope", "head"), "unknown photo id"), (("", pid, "head"), "rater name"),
                          (("a\nb", pid, "head"), "one line")]:
        with pytest.raises(LoscatError, match=message):
            s.submit(*args)
    with pytest.raises(LoscatError, match="quality 'ok'"):
        s.submit("alice", pid, "head", "ok")
    with pytest.raises(LoscatError, match="ask for the next photo first"):
        s.submit("bob", pid, "head", "good")  # bob has no photo on his screen yet
    assert not (tmp_path / "labels.csv").exists()  # nothing refused was written
    s.submit("alice", pid, "head", "good")
    with pytest.raises(LoscatError, match="no longer the one being graded.*press Back"):
        s.submit("alice", pid, "neck", "good")  # a second key press after the first moved on
    with pytest.raises(LoscatError, match="no longer the one being graded"):
        s.skip("alice", pid)
    assert [r["region"] for r in _rows(tmp_path / "labels.csv")] == ["head"]


def test_blind_and_resumed_after_a_restart(folder, tmp_path):
    out = tmp_path / "labels.csv"
    s = _session(folder, out)
    for _ in range(4):
        s.submit("alice", s.next_photo("alice").photo.photo_id, "left_thigh", "good")
    bob = s.next_photo("bob")
    assert bob.progress == "0 of 9 done" and bob.photo.image == "P000/img0.jpg"
    assert bob.earlier == "" and "thigh" not in bob.feedback  # nothing of alice's answer reaches bob
    restarted = _session(folder, out)  # a new process reads the file: alice goes on at photo 5
    shown = restarted.next_photo("alice")
    assert shown.progress == "4 of 9 done" and shown.photo.image == "P001/img1.jpg"


def test_random_order_is_one_seeded_order_for_every_rater(folder, tmp_path):
    s = _session(folder, tmp_path / "labels.csv", order="random")
    assert s.queue != sorted(s.queue, key=lambda pid: s.photos[pid].image)
    assert s.queue == _session(folder, tmp_path / "other.csv", order="random").queue
    assert s.next_photo("alice").photo == s.next_photo("bob").photo
    with pytest.raises(LoscatError, match="^order 'uncertain' needs a model"):
        _session(folder, tmp_path / "labels.csv", order="uncertain")


def test_the_model_orders_the_queue_and_suggests_after_the_answer(folder, tmp_path):
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "labels.csv"
    photos = list_photos(folder, exclude=[out])
    suggestions = model_suggestions(str(model), photos, out)
    assert set(suggestions) == {p.image for p in photos} and all(len(t) == 3 for t in suggestions.values())
    cached = list(tmp_path.glob("labels.model-*.csv"))
    assert len(cached) == 1  # kept beside the label file for the next start
    s = LabelSession(photos, LabelLog(out), load_taxonomy(), suggestions=suggestions)
    assert s.order == "uncertain"
    top1 = [suggestions[s.photos[pid].image][0][1] for pid in s.queue]
    assert top1 == sorted(top1)  # least sure first
    shown = s.next_photo("alice")
    assert shown.suggestion is None  # not before the answer
    after = s.submit("alice", shown.photo.photo_id, "head", "good")
    assert after.feedback.startswith("Model, for the photo you just graded (head): ")
    suggest = LabelSession(photos, LabelLog(out), load_taxonomy(), suggestions=suggestions, suggest=True)
    assert suggest.next_photo("bob").suggestion == suggestions[suggest.next_photo("bob").photo.image]


def test_model_suggestions_survive_a_photo_removed_between_starts(folder, tmp_path):
    """The suggestions file is a cache: rows `predict --resume` refuses (a photo gone since) are predicted
    afresh, never an app that will not start."""
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "labels.csv"
    photos = list_photos(folder, exclude=[out])
    first = model_suggestions(str(model), photos, out)
    photos[0].path.unlink()
    later = list_photos(folder, exclude=[out])
    again = model_suggestions(str(model), later, out)
    assert set(again) == {p.image for p in later} and set(again) < set(first)


def test_summary_counts_agreement_and_model(folder, tmp_path):
    out = tmp_path / "labels.csv"
    photos = list_photos(folder, exclude=[out])
    suggestions = {p.image: [("head", 0.6), ("neck", 0.3), ("chest", 0.1)] for p in photos}
    s = _session(folder, out, suggestions=suggestions, order="folder")
    answers = {"alice": ["head", "left_arm", "left_hand", "neck"],
               "bob": ["head", "right_arm", "left_foot", "neck"]}
    for rater, sites in answers.items():
        for site in sites:
            s.submit(rater, s.next_photo(rater).photo.photo_id, site, "good")
    s.submit("carol", s.next_photo("carol").photo.photo_id, "chest", "poor")  # left out of agreement
    summary = s.summary()
    assert summary["raters"] == [{"rater": r, "photos done": n, "of": 9}
                                 for r, n in (("alice", 4), ("bob", 4), ("carol", 1))]
    assert {"answer": "head", "answers": 2} in summary["sites"]
    report = summary["agreement"]
    assert report["n_photos_multi_rated"] == 4 and report["percent_agreement"] == 75.0  # arm == arm: classes
    assert [(p["rater_a"], p["rater_b"], p["n_photos"]) for p in report["pairs"]] == [("alice", "bob", 4)]
    assert report["most_confused"] == [{"labels": ["hand", "foot"], "count": 1}]
    model = {r["class"]: (r["answers"], r["model agrees %"]) for r in summary["model"]}
    # carol's was poor
    assert model["head"] == (2, 100.0) and model["arm"] == (2, 0.0) and "chest" not in model
    assert s.own_answers("bob") and all(a.rater == "bob" for a in s.own_answers("bob"))


# ------------------------------------------------------------------------------------------ the app
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def apps(folder, tmp_path):
    """start(rater) -> the URL of a label app for that rater; every app writes to the same labels.csv."""
    from loscat_hf.apps.labelling.app import launch_label

    out, running = tmp_path / "labels.csv", []

    def start(rater: str) -> str:
        port = _free_port()
        running.append(launch_label(str(folder), str(out), rater, port=port, prevent_thread_lock=True,
                                    quiet=True))
        return f"http://127.0.0.1:{port}/"

    start.out = out
    yield start
    for demo in running:
        demo.close()


def test_two_raters_label_through_the_api_and_prepare_packs_it(apps, folder, tmp_path, capsys):
    from gradio_client import Client

    out = apps.out
    sites = ["head", "neck", "chest", "abdomen", "left_arm", "right_arm", "left_hand", "right_foot",
             "unclear"]
    for rater, changed in (("alice", {}), ("bob", {7: "left_foot"})):
        url = apps(rater)
        client = Client(url, verbose=False)
        photo, pid, progress = client.predict(rater, api_name="/next_photo")
        assert progress == "0 of 9 done" and Path(photo).is_file()
        assert Image.open(photo).getexif() == {}  # re-encoded pixels: no metadata reaches the browser
        for k, site in enumerate(sites):
            photo, pid, progress = client.predict(rater, pid, changed.get(k, site), "good",
                                                  api_name="/submit_label")
        assert pid == "" and progress.startswith("All 9 photos done")
    _, pid, _ = client.predict("bob", api_name="/previous_photo")  # bob changes his last answer
    client.predict("bob", pid, "not gradable", "good", api_name="/submit_label")
    rows = _rows(out)
    assert len(rows) == 19 and {r["rater"] for r in rows} == {"alice", "bob"}
    assert all(r["patient_id"] == r["image"].split("/")[0] and r["labelled_at"] for r in rows)
    summary = Client(url, verbose=False).predict(api_name="/summary")
    assert summary["agreement"]["n_photos_multi_rated"] == 8  # 'unclear' is no class
    assert main(["prepare", "--annotations", str(out), "--images", str(folder), "--out", str(tmp_path / "ds"),
                 "--val-fraction", "0.34"]) == 0
    printed = capsys.readouterr().out
    assert "Inter-rater agreement (8 photos rated by >= 2 raters, 2 raters" in printed
    assert "alice vs bob" in printed and "foot" in printed
    assert "1 earlier answer(s) replaced by the same rater's later answer" in printed


def test_concurrent_raters_lose_nothing(apps):
    """Three raters' apps (one process, three servers) answer at once into one file."""
    from gradio_client import Client

    urls = {f"rater{k}": apps(f"rater{k}") for k in range(3)}

    def rate(rater: str) -> None:
        client = Client(urls[rater], verbose=False)
        _, pid, _ = client.predict(rater, api_name="/next_photo")
        while pid:
            _, pid, _ = client.predict(rater, pid, "lower_back", "good", api_name="/submit_label")

    threads = [threading.Thread(target=rate, args=(f"rater{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    rows = _rows(apps.out)
    assert len(rows) == 27 and len({(r["image"], r["rater"]) for r in rows}) == 27


def test_an_app_answers_only_for_its_own_rater(apps):
    from gradio_client import Client

    client = Client(apps("alice"), verbose=False)
    with pytest.raises(Exception, match="this app labels for 'alice'"):
        client.predict("bob", api_name="/next_photo")
    _, pid, _ = client.predict("alice", api_name="/next_photo")
    with pytest.raises(Exception, match="this app labels for 'alice'"):
        client.predict("bob", pid, "head", "good", api_name="/submit_label")
    assert not apps.out.exists()


def test_label_command_refuses_bad_input(folder, tmp_path, capsys):
    out = str(tmp_path / "labels.csv")
    for argv, message in [(["--host", "0.0.0.0"], "network: add auth 'USER:PASSWORD' (--auth)"),
                          (["--auth", "nopassword", "--host", "0.0.0.0"], "--auth must be 'USER:PASSWORD'"),
                          (["--order", "uncertain"], "error: --order 'uncertain' needs a model"),
                          (["--suggest"], "error: --suggest needs a model (--model)"),
                          (["--rater", " "], "rater name")]:
        code = main(["label", "--images", str(folder), "--out", out, "--rater", "alice", *argv])
        assert code == 2 and message in capsys.readouterr().err
    assert main(["label", "--images", str(tmp_path / "missing"), "--out", out, "--rater", "a"]) == 2
    assert "is not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ slow: processes
def _start(folder: Path, out: Path, rater: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "loscat_hf.cli", "label", "--images", str(folder), "--out",
                             str(out), "--rater", rater, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _client(port: int, proc: subprocess.Popen):
    from gradio_client import Client

    deadline = time.time() + 90
    while time.time() < deadline:
        assert proc.poll() is None, "the label app exited"
        try:
            return Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    raise TimeoutError("the label app did not start")


@pytest.mark.slow
def test_kill_and_restart_resumes_with_nothing_lost(folder, tmp_path):
    out, port = tmp_path / "labels.csv", _free_port()
    proc = _start(folder, out, "alice", port)
    try:
        client = _client(port, proc)
        _, pid, _ = client.predict("alice", api_name="/next_photo")
        for _ in range(5):
            _, pid, progress = client.predict("alice", pid, "left_leg", "good", api_name="/submit_label")
        assert progress == "5 of 9 done"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no clean shutdown
        proc.wait()
    assert len(_rows(out)) == 5
    proc = _start(folder, out, "alice", port)
    try:
        client = _client(port, proc)
        _, pid, progress = client.predict("alice", api_name="/next_photo")
        assert progress == "5 of 9 done"
        client.predict("alice", pid, "right_leg", "good", api_name="/submit_label")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    rows = _rows(out)
    # the restarted app went on with a new photo
    assert len(rows) == 6 and len({r["image"] for r in rows}) == 6


@pytest.mark.slow
def test_two_apps_appending_to_one_file_lose_nothing(folder, tmp_path):
    out, ports = tmp_path / "labels.csv", [_free_port(), _free_port()]
    procs = [_start(folder, out, rater, port) for rater, port in zip(("alice", "bob"), ports, strict=True)]
    try:
        clients = [_client(port, proc) for port, proc in zip(ports, procs, strict=True)]

        def rate(client, rater: str) -> None:
            _, pid, _ = client.predict(rater, api_name="/next_photo")
            while pid:
                _, pid, _ = client.predict(rater, pid, "upper_back", "good", api_name="/submit_label")

        threads = [threading.Thread(target=rate, args=(c, r))
                   for c, r in zip(clients, ("alice", "bob"), strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    rows = _rows(out)
    assert len(rows) == 18 and {(r["rater"], r["region"]) for r in rows} == {("alice", "upper_back"),
                                                                              ("bob", "upper_back")}


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                    reason="chromium not installed (apt-get install chromium)")
def test_browser_grades_a_photo_with_the_keyboard(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="playwright not installed (pip install playwright)")
    from loscat_hf.apps.labelling.app import launch_label
    from loscat_hf.demo.phantom import generate_demo_data

    generate_demo_data(tmp_path / "demo", n_patients=4, n_photos=12, image_size=(900, 600), n_unlabeled=0)
    out, port = tmp_path / "labels.csv", _free_port()
    demo = launch_label(str(tmp_path / "demo" / "images"), str(out), "rater-1", port=port,
                        prevent_thread_lock=True, quiet=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 980})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.querySelector('#progress')?.innerText.includes('0 of 12 done')",
                                   timeout=30_000)
            page.keyboard.press("k")  # quality: poor
            page.keyboard.press("s")  # right forearm
            page.wait_for_function("document.querySelector('#progress')?.innerText.includes('1 of 12 done')",
                                   timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "label.png"))
            page.get_by_role("tab", name="Summary").click()  # the summary loads when its tab opens
            page.wait_for_function("document.querySelector('#overview')?.innerText.includes('1 rater')",
                                   timeout=30_000)
            browser.close()
    finally:
        demo.close()
    rows = _rows(out)
    assert [(r["region"], r["quality"], r["rater"]) for r in rows] == [("right_forearm", "poor", "rater-1")]
    if os.environ.get("LOSCAT_SAVE_SCREENSHOT"):
        shutil.copy(tmp_path / "label.png", ROOT / "docs" / "label.png")


def test_nothing_identifying_reaches_the_browser(tmp_path):
    """Folder and file names carry a planted patient name and the photo's EXIF a planted id: the page,
    the API's answers and the photo sent to the browser hold none of them."""
    import urllib.request

    from gradio_client import Client

    from loscat_hf.apps.labelling.app import launch_label

    planted, mrn = "MUSTERMANN", "MRN4711"
    folder = tmp_path / "photos" / f"{planted}_{mrn}"
    folder.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x010E] = f"Erika {planted} {mrn}"  # ImageDescription
    Image.fromarray(np.full((80, 100, 3), 120, np.uint8)).save(folder / f"Erika_{planted}.jpg", exif=exif)
    port = _free_port()
    demo = launch_label(str(tmp_path / "photos"), str(tmp_path / "labels.csv"), "alice", port=port,
                        prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False)
        photo, pid, progress = client.predict("alice", api_name="/next_photo")
        shown = [Path(photo).read_bytes().decode("latin-1"), pid, progress, photo]
        shown.append(urllib.request.urlopen(url, timeout=30).read().decode("utf-8", "replace"))
        shown.append(urllib.request.urlopen(url + "config", timeout=30).read().decode("utf-8", "replace"))
        client.predict("alice", pid, "head", "good", api_name="/submit_label")
        shown.append(str(client.predict(api_name="/summary")))
    finally:
        demo.close()
    for text in shown:
        assert planted not in text and mrn not in text
    assert _rows(tmp_path / "labels.csv")[0]["patient_id"] == f"{planted}_{mrn}"  # the private file has it
