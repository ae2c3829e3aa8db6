"""Label one archive with several processes: `accelerate launch -m loscat_hf.cli predict ...` (GPUs, nodes,
or CPU processes), and `explain` the same way.

Each process takes a contiguous run of whole batches of the photos left to do (`shard`), so a photo meets the
model in the same batch as in a one-process run and gets the same answer. It appends its rows to its own
resumable part (`part_path`: `<out>.partial` for the first process, as a one-process run writes, and
`<out>.<i>.partial` for process i); once every process has finished, the first merges the parts into the CSV,
in input order. The processes meet only at a few barriers (after reading the earlier files, after the first
has prepared the run, at the end); a step each process takes on its own (listing the input, opening its part)
runs inside `Processes.together`, so an error on one is raised on all of them instead of leaving the others at
a barrier. A process that dies takes the launch down (torchrun stops the others), and `--resume` reads every
part, whatever the number of processes that wrote them. Several nodes need the photos and `--out` on a
filesystem all of them see: `Processes.check_same` refuses a run where they differ.

The processes talk over gloo, GPUs or not: they exchange only barriers and small objects, and NCCL would
refuse two processes on one GPU (more processes than GPUs add decoding processes per GPU).

`launched()` is the one place that asks accelerate whether this process is one of several; a plain run never
imports torch here (predict's fast start stays torch-free).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from loscat_hf.errors import LoscatError

T = TypeVar("T")
# A process that finished its shard waits at a barrier for the slowest one; torch's defaults (30 minutes on
# gloo, 10 on NCCL) would end a long archive run whose shards finish minutes apart. A process that dies
# does not leave the others waiting: torchrun stops them.
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass
class Processes:
    """This process's place among those `accelerate launch` (or torchrun) started: one, unless launched."""

    index: int = 0
    count: int = 1
    local_index: int = 0
    state: Any = None  # accelerate's PartialState when there are several

    @property
    def main(self) -> bool:
        return self.index == 0

    def wait(self) -> None:
        """A barrier: every process gets here before any goes on."""
        if self.count > 1:
            self.state.wait_for_everyone()

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in process order, on every process (picklable objects, on gloo too)."""
        if self.count == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Process 0 runs the block first, then the first process of every other node, then the rest: a
        model download or an ONNX graph export happens once per cache (a node's own disk, or one they share),
        and the others read it from there. Should it fail in one, the others still run the block (and meet
        the same error, e.g. a model folder that does not exist)."""
        turn = 0 if self.main else 1 if self.local_index == 0 else 2
        for _ in range(turn if self.count > 1 else 0):
            self.wait()
        try:
            yield
        finally:
            for _ in range(turn, 2 if self.count > 1 else 0):
                self.wait()

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """A step each process takes on its own: an error in any process is raised in every one (the others'
        as a LoscatError naming the process), so none waits at a barrier for a process that has stopped."""
        failed: Exception | None = None
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - handed to every process below, then raised here as it was
            failed = exc
        if self.count > 1:
            seen = self.gather(None if failed is None else
                               (str(failed), failed.params if isinstance(failed, LoscatError) else ()))
            first = next(((i, what) for i, what in enumerate(seen) if what), None)
            if failed is None and first is not None:
                (index, (message, params)) = first
                raise LoscatError(f"process {index} of {self.count} stopped: {message}", param=params)
        if failed is not None:
            raise failed

    def check_same(self, what: str, value: str | None, param: str,
                   hint: str = "with several nodes, give every node the same path on a filesystem they all "
                   "share") -> None:
        """Refuse, on every process, a run where the processes see different `value`s (e.g. a listing of
        `--images` that a node without the shared filesystem lists differently)."""
        seen = self.gather(value)
        if odd := [i for i, v in enumerate(seen) if v != seen[0]]:
            raise LoscatError(f"{param}: process {odd[0]} of {self.count} sees other {what} than process 0; "
                              f"{hint}", param=param)

    def device(self, requested: str | None) -> str | None:
        """The device this process runs on: each process of a multi-GPU launch its own GPU (more processes
        than GPUs share them in turn: more decoding processes per GPU). Without a GPU, `cuda` stays `cuda`, so
        loading fails as in a one-process run."""
        if self.count == 1 or requested == "cpu":
            return requested
        if requested not in (None, "cuda"):
            raise LoscatError(f"device {requested!r}: under several processes each runs on its own GPU "
                              "(cuda:LOCAL_RANK); leave device out, or give cuda or cpu", param="device")
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"cuda:{self.local_index % gpus}" if gpus else requested


def position() -> tuple[int, int]:
    """(this process's index, the number of processes) as `accelerate launch`/torchrun set them (RANK,
    WORLD_SIZE); (0, 1) for a plain run. The environment only: no torch, no process group."""
    try:
        return int(os.environ.get("RANK", "0")), max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 0, 1


def launched() -> Processes:
    """Processes of this launch: several when `accelerate launch`/torchrun set WORLD_SIZE > 1 (accelerate's
    PartialState over gloo; its process group lives as long as the process, as accelerate's does, and one
    the caller set up already is used as it is), else one, without importing torch."""
    count = position()[1]
    if count == 1:
        return Processes()
    from accelerate import PartialState

    state = PartialState(cpu=True, timeout=BARRIER_TIMEOUT)
    if state.num_processes != count:
        raise LoscatError(f"WORLD_SIZE is {count} but accelerate set up {state.num_processes} process(es): "
                          "launch with `accelerate launch --multi_gpu --num_processes N` (on CPU too) or "
                          "torchrun")
    return Processes(state.process_index, state.num_processes, state.local_process_index, state)


def shard(items: Sequence[T], batch_size: int, index: int, count: int) -> list[T]:
    """Process `index`'s share of `items`: a contiguous run of whole batches (of the one-process batching), as
    even as whole batches allow; the shares of all processes are disjoint and cover every item in order."""
    batches = -(-len(items) // batch_size)
    first, last = batches * index // count, batches * (index + 1) // count
    return list(items[first * batch_size:last * batch_size])


def part_path(out: Path, index: int) -> Path:
    """Where process `index` appends its rows: `<out>.partial` for the first (a one-process run's file)."""
    return out.with_name(f"{out.name}.partial" if index == 0 else f"{out.name}.{index}.partial")


def other_parts(out: Path) -> list[Path]:
    """The parts of processes other than the first on disk, from a run with any number of processes, in
    process order."""
    if not out.parent.is_dir():
        return []
    pattern = re.compile(re.escape(out.name) + r"\.([0-9]+)\.partial")
    found = [(int(m.group(1)), path) for path in out.parent.iterdir()
             if (m := pattern.fullmatch(path.name)) and path.is_file()]
    return [path for _, path in sorted(found)]


def digest(keys: Sequence[str]) -> str:
    """A short fingerprint of a listing, to compare what several processes see."""
    return hashlib.sha256("\n".join(keys).encode("utf-8", "surrogateescape")).hexdigest()
