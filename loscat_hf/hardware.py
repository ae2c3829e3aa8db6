"""What this machine offers the data loaders: usable CPU cores and default worker counts."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity: a container's or a scheduler's limit), not the host's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(cap: int) -> int:
    """DataLoader workers: every usable core but one, which the process running the model needs; at most `cap`.

    On 2 cores, 2 decoding workers slowed int8 ViT-B/16-384 labelling from 1.6 to 1.4 photos/s: each time a
    worker ran, one of the two matmul threads stalled (scripts/benchmark.py label --workers 0|1|2).
    """
    return max(0, min(cap, usable_cores() - 1))
