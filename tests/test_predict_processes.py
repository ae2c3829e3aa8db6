"""`predict` (and `explain`) over several processes: shards, parts, the merge, and resume across them.

The fast tests run the processes as threads that meet at a `threading.Barrier` (the protocol, without torch's
process group); the slow ones run the real `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo),
kill a process and resume.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loscat_hf import hardware
from loscat_hf.errors import LoscatError
from loscat_hf.infer import resume as runs
from loscat_hf.infer import shards
from loscat_hf.infer.folder import COLUMNS, predict_folder


def _photos(folder: Path, n: int = 13) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.jpg")
    (folder / "notes.txt").write_text("not a photo\n")  # an error row, in rank 1's shard below
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- shards, parts, devices, cores ------------------------------------------------------------------------

@pytest.mark.parametrize("n, batch, count", [(14, 2, 2), (14, 2, 3), (5, 4, 3), (0, 2, 2), (31, 8, 4)])
def test_shards_are_disjoint_whole_batches_in_order(n, batch, count):
    items = list(range(n))
    parts = [shards.shard(items, batch, i, count) for i in range(count)]
    assert [x for part in parts for x in part] == items  # every item once, in order
    starts = [part[0] for part in parts if part]
    assert all(s % batch == 0 for s in starts)  # each batch is one of the one-process run's batches
    sizes = sorted(-(-len(part) // batch) for part in parts)
    assert sizes[-1] - sizes[0] <= 1  # as even as whole batches allow


def test_other_parts_are_found_whatever_the_process_count(tmp_path):
    out = tmp_path / "a+b (1).csv"  # regex characters in the name are taken literally
    for name in ("a+b (1).csv.partial", "a+b (1).csv.3.partial", "a+b (1).csv.12.partial",
                 "a+b (1).csv.x.partial", "a+b (1).csv.2.partial.tmp", "aab (1).csv.1.partial"):
        (tmp_path / name).write_text("")
    assert [p.name for p in shards.other_parts(out)] == ["a+b (1).csv.3.partial", "a+b (1).csv.12.partial"]
    assert shards.part_path(out, 0).name == "a+b (1).csv.partial"
    assert shards.part_path(out, 3).name == "a+b (1).csv.3.partial"
    assert shards.other_parts(tmp_path / "missing" / "x.csv") == []


def test_each_process_gets_its_own_device(monkeypatch):
    import torch

    one = shards.Processes()
    assert one.device(None) is None and one.device("cuda:1") == "cuda:1"
    third = shards.Processes(index=2, count=3, local_index=2)
    assert third.device("cpu") == "cpu"
    for gpus, expected in ((1, "cuda:0"), (2, "cuda:0"), (4, "cuda:2")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda n=gpus: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda n=gpus: n)
        assert third.device(None) == third.device("cuda") == expected  # more processes than GPUs share them
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert third.device(None) is None and third.device("cuda") == "cuda"  # as one process: cuda fails to load
    with pytest.raises(LoscatError, match="its own GPU"):
        third.device("cuda:0")


def test_one_process_unless_launched(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert shards.launched().count == 1
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert shards.launched().count == 1


def test_cores_threads_and_workers_are_shared_between_processes(monkeypatch):
    monkeypatch.setattr(hardware, "usable_cores", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    shares = (hardware.cores_per_process, hardware.compute_threads, lambda: hardware.default_workers(8))
    assert [f() for f in shares] == [16, 16, 8]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # accelerate launch with 4 processes on this machine
    assert [f() for f in shares] == [4, 4, 3]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what the launcher (or the user) set wins for the threads
    assert hardware.compute_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert (hardware.cores_per_process(), hardware.default_workers(8)) == (1, 0)


def test_cpu_description_names_the_vector_units():
    text = hardware.cpu_description()
    assert f"({hardware.usable_cores()} cores; " in text
    assert "AVX2" in text or "vector units unknown" in text


# --- the protocol, with threads as processes ---------------------------------------------------------------

class _ThreadProcesses(shards.Processes):
    """A process of a launch, played by a thread: barriers and gathers through `threading`."""

    def __init__(self, index: int, count: int, barrier: threading.Barrier, board: dict,
                 local_index: int | None = None) -> None:
        super().__init__(index=index, count=count, local_index=index if local_index is None else local_index)
        self.barrier, self.board = barrier, board

    def wait(self) -> None:
        self.barrier.wait(timeout=20)  # a process left waiting for one that stopped: BrokenBarrierError

    def gather(self, value):
        self.board[self.index] = value
        self.wait()
        seen = [self.board[i] for i in range(self.count)]
        self.wait()
        return seen

    def device(self, requested):
        return requested

    def close(self) -> None:
        pass


def _as_processes(monkeypatch, count: int, fn, errors: dict | None = None, per_node: int | None = None):
    """Run fn() in `count` threads, each one process of a launch; returns their results in process order.
    `errors`: filled with each process's exception instead of raising the first; `per_node`: processes per
    node (their local index), else all on one node."""
    barrier, board, results = threading.Barrier(count), {}, {}
    caught = {} if errors is None else errors
    local = threading.local()
    monkeypatch.setattr(shards, "launched", lambda device=None: local.procs)

    def run(index: int) -> None:
        local.procs = _ThreadProcesses(index, count, barrier, board,
                                       None if per_node is None else index % per_node)
        try:
            results[index] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            caught[index] = exc  # (no barrier.abort(): it would also break a barrier just passed)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if caught and errors is None:
        raise next(e for e in caught.values() if not isinstance(e, threading.BrokenBarrierError))
    return [results.get(i) for i in range(count)]


def test_two_processes_write_the_csv_one_process_writes(tmp_path, predictor, monkeypatch):
    images = _photos(tmp_path / "img")
    one = tmp_path / "one.csv"
    predict_folder(predictor, images, one, batch_size=2, progress=False)
    two = tmp_path / "out" / "two.csv"
    first, second = _as_processes(monkeypatch, 2, lambda: predict_folder(predictor, images, two, batch_size=2,
                                                                         progress=False))
    assert two.read_bytes() == one.read_bytes()
    assert (first.main, first.total, first.by_status) == (True, 14, {"ok": 13, "not_an_image": 1})
    assert (second.main, second.total) == (False, 8)  # 7 batches of 2: 3 for the first, 4 for the second
    assert sorted(p.name for p in two.parent.iterdir()) == ["two.csv", "two.csv.run.json"]  # no part left
    assert two.stat().st_mode & 0o777 == 0o600


def _leftovers(out: Path, reference: list[dict[str, str]], predictor, parts: dict[int, slice]) -> int:
    """The files a killed run of several processes leaves: each part with its rows so far, the record."""
    from loscat_hf.infer.folder import TOP_K
    from loscat_hf.io.csvsafe import SafeDictWriter

    for index, rows in parts.items():
        with open(shards.part_path(out, index), "w", newline="", encoding="utf-8") as f:
            writer = SafeDictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(reference[rows])
    name = predictor.folder.name
    runs.write_record(out, runs.run_record(predictor, name, tta=False, top_k=TOP_K, columns=COLUMNS))
    return sum(len(reference[rows]) for rows in parts.values())


@pytest.mark.parametrize("count", [1, 2])
def test_resume_reads_the_parts_of_any_number_of_processes(tmp_path, predictor, monkeypatch, count):
    images = _photos(tmp_path / "img")
    reference = tmp_path / "ref.csv"
    predict_folder(predictor, images, reference, batch_size=2, progress=False)
    rows = _rows(reference)
    out = tmp_path / "out.csv"
    # a run of 4 processes killed midway: each part holds the first batches of its shard
    kept = _leftovers(out, rows, predictor, {0: slice(0, 2), 1: slice(4, 6), 3: slice(10, 13)})

    def run():
        return predict_folder(predictor, images, out, batch_size=2, resume=True, progress=False)

    summary = run() if count == 1 else _as_processes(monkeypatch, count, run)[0]
    assert out.read_bytes() == reference.read_bytes()  # nothing lost, nothing twice
    assert summary.resumed == kept == 7
    assert not shards.other_parts(out) and not shards.part_path(out, 0).exists()


def test_a_fresh_run_drops_the_parts_of_an_earlier_one(tmp_path, predictor, monkeypatch):
    """Without resume, an earlier run's parts go before the new record is written: a later --resume cannot
    take their rows for this run's."""
    images = _photos(tmp_path / "img")
    reference = tmp_path / "ref.csv"
    predict_folder(predictor, images, reference, batch_size=2, progress=False)
    out = images / "out.csv"  # inside the photo folder: the parts must not be listed as photos either
    rows = _rows(reference)
    bogus = [r | {"region": r["top2"], "top1": r["top2"]} if r["status"] == "ok" else r for r in rows]
    _leftovers(out, bogus, predictor, {2: slice(0, 14)})
    _as_processes(monkeypatch, 2, lambda: predict_folder(predictor, images, out, batch_size=2,
                                                         progress=False))
    assert out.read_bytes() == reference.read_bytes()
    assert not shards.other_parts(out)


def test_explain_over_two_processes_gives_every_photo_in_order(tmp_path, model_dir, monkeypatch):
    from loscat_hf.infer.explain import explain_folder

    images = _photos(tmp_path / "img", n=7)
    one = explain_folder(str(model_dir), [images], tmp_path / "one", batch_size=3)
    first, second = _as_processes(monkeypatch, 2, lambda: explain_folder(str(model_dir), [images],
                                                                         tmp_path / "two", batch_size=3))
    assert [row[:3] for row in first.answers()] == [row[:3] for row in one.answers()]  # photo, answer, scores
    assert first.skipped == one.skipped == second.skipped and (first.main, second.main) == (True, False)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in one.overlays)


def test_processes_that_see_other_files_are_refused(monkeypatch):
    def run():
        me = shards.launched()
        me.check_same("files", f"listing-{me.index}", "images")

    with pytest.raises(LoscatError, match="process 1 of 2 sees other files than process 0"):
        _as_processes(monkeypatch, 2, run)


def test_the_model_loads_on_process_0_first_then_on_each_other_node_first(monkeypatch):
    spans: dict[int, tuple[float, float]] = {}

    def run():
        me = shards.launched()
        with me.main_first():
            start = time.monotonic()
            time.sleep(0.05)  # a later turn that did not wait would start within this
            spans[me.index] = (start, time.monotonic())

    _as_processes(monkeypatch, 4, run, per_node=2)  # processes 0, 1 on one node, 2, 3 on another
    assert spans[0][1] <= spans[2][0]  # process 0 first
    assert spans[2][1] <= min(spans[1][0], spans[3][0])  # then the first of the other node, then the rest


def test_a_run_killed_after_its_record_keeps_no_row_of_an_earlier_run(tmp_path, predictor, monkeypatch):
    """The first process removes an earlier run's parts before it writes this run's record: a run killed
    right after the record leaves no part for the record to vouch for."""
    images = _photos(tmp_path / "img")
    reference = tmp_path / "ref.csv"
    predict_folder(predictor, images, reference, batch_size=2, progress=False)
    out = tmp_path / "out.csv"
    _leftovers(out, _rows(reference), predictor, {2: slice(0, 14)})
    runs.write_record(out, runs.run_record(predictor, "m", tta=True, top_k=3, columns=COLUMNS))  # another run
    write = runs.write_record

    def killed(*args, **kw):
        write(*args, **kw)
        raise KeyboardInterrupt  # the run stops the moment its record is on disk

    monkeypatch.setattr(runs, "write_record", killed)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, images, out, batch_size=2, progress=False)
    monkeypatch.setattr(runs, "write_record", write)
    summary = predict_folder(predictor, images, out, batch_size=2, resume=True, progress=False)
    assert summary.resumed == 0  # the tta run's rows are gone, not taken for this run's
    assert out.read_bytes() == reference.read_bytes()


def test_an_error_in_one_process_stops_every_process(monkeypatch):
    def run():
        me = shards.launched()
        with me.together():
            if me.index == 1:
                raise LoscatError("images 'x' does not exist", param="images")
        return "went on"

    errors: dict = {}
    _as_processes(monkeypatch, 2, run, errors)
    assert str(errors[1]) == "images 'x' does not exist"  # where it happened, as it was
    # and process 0, which met no error of its own, stops too, rather than wait for process 1 at a barrier
    assert isinstance(errors[0], LoscatError) and errors[0].params == ("images",)
    assert str(errors[0]) == "process 1 of 2 stopped: images 'x' does not exist"


def test_processes_whose_answers_would_differ_are_refused(tmp_path, predictor, monkeypatch):
    """One run record vouches for every part: a process computing in other numerics (a node without a GPU,
    a GPU without bf16) is refused before any photo runs."""
    images = _photos(tmp_path / "img")
    numerics = runs.numerics
    monkeypatch.setattr(runs, "numerics", lambda p: "bf16" if shards.launched().index == 1 else numerics(p))
    with pytest.raises(LoscatError, match="process 1 of 2 sees other settings"):
        _as_processes(monkeypatch, 2, lambda: predict_folder(predictor, images, tmp_path / "o.csv",
                                                             batch_size=2, progress=False))
    assert not list(tmp_path.glob("o.csv*"))


# --- the real launch: accelerate, gloo, a killed process --------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], cwd: Path, env: dict, processes: int = 2, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "loscat_hf.cli", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def _env(marker: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LOSCAT_TEST_RUN": marker}


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loscat_hf.cli", *args], cwd=cwd, env=_env("one"),
                          capture_output=True, text=True, timeout=300)


PREDICT = ["--batch-size", "2", "--num-workers", "0", "--backend", "torch"]


@pytest.mark.slow
def test_accelerate_launch_two_processes_gives_the_one_process_csv(tmp_path, model_dir):
    _photos(tmp_path / "img")
    one = _cli(["predict", "--model", str(model_dir), "--images", "img", "--out", "one.csv", *PREDICT],
               tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    proc = _launch(["predict", "--model", str(model_dir), "--images", "img", "--out", "two.csv", *PREDICT],
                   tmp_path, _env("two"))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert stdout.count("14 photos (not_an_image 1, ok 13)") == 1  # the first process speaks for the run
    assert not list(tmp_path.glob("*.partial")) and (tmp_path / "two.csv").stat().st_mode & 0o777 == 0o600


def _pids_of(marker: str, rank: str) -> list[int]:
    """The processes of this test's launch with RANK=rank (their environment says so)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOSCAT_TEST_RUN={marker}".encode() in env and f"RANK={rank}".encode() in env:
            found.append(int(entry.name))
    return found


def _data_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text(encoding="utf-8").splitlines()) - 1)
    except OSError:
        return 0


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/proc/self/environ").exists(),
                    reason="needs a FIFO and /proc")
def test_a_killed_process_and_resume_lose_and_duplicate_nothing(tmp_path, model_dir):
    """Process 1 stalls on a photo that is a FIFO (its open blocks until a writer comes), after writing its
    first batch; it is killed (SIGKILL), torchrun stops process 0, and `--resume` under two processes finishes
    the CSV a one-process run writes."""
    folder = _photos(tmp_path / "img")
    names = sorted(p.name for p in folder.iterdir())
    names.insert(10, "slow.jpg")  # batch 6 of 8: in process 1's shard (batches 5-8), after its first batch
    (tmp_path / "list.csv").write_text("image\n" + "".join(f"img/{n}\n" for n in names))
    os.mkfifo(folder / "slow.jpg")
    out = tmp_path / "p.csv"
    args = ["predict", "--model", str(model_dir), "--images", "list.csv", "--out", "p.csv", *PREDICT]
    marker = uuid.uuid4().hex
    proc = _launch(args, tmp_path, _env(marker))
    try:
        deadline = time.monotonic() + 240
        while not (_data_rows(shards.part_path(out, 0)) == 8 and _data_rows(shards.part_path(out, 1)) == 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        victims = _pids_of(marker, "1")
        assert victims, "no process of rank 1 found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and not out.exists()
    for index in (0, 1):  # each process's part: owner-only, as the CSV
        assert shards.part_path(out, index).stat().st_mode & 0o777 == 0o600
    (folder / "slow.jpg").unlink()  # the photo is a plain file now
    buf = io.BytesIO()
    Image.fromarray(np.full((50, 70, 3), 90, np.uint8)).save(buf, "JPEG")
    (folder / "slow.jpg").write_bytes(buf.getvalue())

    proc = _launch([*args, "--resume"], tmp_path, _env(marker + "r"))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "10 rows kept from an earlier run" in stdout
    reference = _cli(["predict", "--model", str(model_dir), "--images", "list.csv", "--out", "ref.csv",
                      *PREDICT], tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert len({r["image"] for r in _rows(out)}) == len(_rows(out)) == 15
    assert not list(tmp_path.glob("*.partial"))


def test_an_error_names_the_process_that_hit_it(tmp_path, monkeypatch, capsys):
    from loscat_hf.cli import main

    monkeypatch.setenv("RANK", "1")  # as accelerate launch sets them; the processes themselves are not needed
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(shards, "launched", shards.Processes)
    assert main(["predict", "--model", "m", "--images", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("loscat-hf: error (process 1 of 2): --out ")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(["predict", "--model", "m", "--images", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("loscat-hf: error: --out ")
