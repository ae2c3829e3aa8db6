"""What this machine offers: usable CPU cores, their share per process of a launch, default worker and thread
counts, and the CPU's name and vector units (benchmarks name the CPU they ran on: speeds differ by 2x between
hosts)."""

from __future__ import annotations

import os
import platform

# the vector units that decide CPU inference speed, as /proc/cpuinfo names them
CPU_UNITS = {"AVX2": ("avx2",), "AVX-512": ("avx512f",), "VNNI": ("avx512_vnni", "avx_vnni"),
             "BF16": ("avx512_bf16",), "AMX": ("amx_bf16", "amx_int8", "amx_tile")}


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity: a container's or a scheduler's limit), not the host's
    count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def cores_per_process() -> int:
    """This process's share of the usable cores: all of them, or 1/N under `accelerate launch`/torchrun with N
    processes on this machine (LOCAL_WORLD_SIZE), so N processes do not each start a full set of workers."""
    return max(1, usable_cores() // (_env_int("LOCAL_WORLD_SIZE") or 1))


def compute_threads() -> int:
    """Threads for a model's forward pass outside torch (ONNX Runtime): OMP_NUM_THREADS when set (as torch
    honours it; launchers set it per process), else this process's share of the cores."""
    return _env_int("OMP_NUM_THREADS") or cores_per_process()


def default_workers(cap: int) -> int:
    """DataLoader or decoding workers: every core of this process's share but one, which the process running
    the model needs; at most `cap`."""
    return max(0, min(cap, cores_per_process() - 1))


def cpu_description() -> str:
    """The CPU by model name and vector units: 'AMD EPYC (2 cores; AVX2; no AVX-512, VNNI, BF16, AMX)'."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    if not flags:
        return f"{name} ({usable_cores()} cores; vector units unknown)"
    has = [unit for unit, names in CPU_UNITS.items() if flags & set(names)]
    lacks = [unit for unit in CPU_UNITS if unit not in has]
    units = "; ".join(part for part in (", ".join(has), "no " + ", ".join(lacks) if lacks else "") if part)
    return f"{name} ({usable_cores()} cores; {units})"
