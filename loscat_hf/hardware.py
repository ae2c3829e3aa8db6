"""What this machine offers the data loaders: usable CPU cores and default worker counts."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity: a container's or a scheduler's limit), not the host's
    count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(cap: int) -> int:
    """DataLoader workers: every usable core but one, which the process running the model needs; at most
    `cap`."""
    return max(0, min(cap, usable_cores() - 1))
