"""How the command line runs torch's CPU threads when other processes share the cores.

torch starts one OpenMP thread per core, and by default an OpenMP thread that waits for the
others at the end of a parallel region spins on its core. When another process holds one of
those cores, every region waits for the thread that lost its core while the rest spin against
the other process: each verb runs tens of times slower. Letting waiting threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) removes the spinning, but a thread sharing its core with a busy
process still holds back every region (docs/runtime.md, "Threads on a shared machine"). So the
CLI sets the passive policy before torch loads and runs one thread per core of its affinity mask
(``os.sched_getaffinity``: what a container or ``taskset`` allows, which torch's own count ignores)
that is idle over a short sample of ``/proc/stat``; ``--threads`` or ``QGESCO_THREADS`` overrides.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def passive_wait() -> None:
    """Ask OpenMP to let waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy;
    it is read once, when torch loads its OpenMP runtime, so this must run before ``import torch``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def busy_cores(before: dict[str, list[int]], after: dict[str, list[int]], cores) -> int:
    """How many of ``cores`` were more than half busy between two ``/proc/stat`` samples."""
    busy = 0
    for core in cores:
        a, b = before.get(f"cpu{core}"), after.get(f"cpu{core}")
        if a is None or b is None:
            continue
        total = sum(b) - sum(a)
        idle = (b[3] + b[4]) - (a[3] + a[4])  # idle + iowait
        busy += total > 0 and (total - idle) / total > 0.5
    return busy


def _cpu_times() -> dict[str, list[int]]:
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    return {f[0]: [int(v) for v in f[1:8]] for f in (line.split() for line in lines) if f and f[0][3:].isdigit()}


def free_cores(sample_s: float = 0.2) -> int:
    """The cores of the affinity mask that other processes leave idle (at least one), from ``/proc/stat``
    sampled over ``sample_s``; all of them where it cannot be read."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(usable_cores())
    before = _cpu_times()
    if not before:
        return usable_cores()
    time.sleep(sample_s)
    return max(1, len(cores) - busy_cores(before, _cpu_times(), cores))


def choose_threads(requested: int | None = None) -> int:
    """The thread count to run with: ``requested`` when given (``--threads``), else ``QGESCO_THREADS``,
    else :func:`free_cores`."""
    if requested:
        return requested
    text = os.environ.get("QGESCO_THREADS", "")
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"QGESCO_THREADS={text!r}: give a positive integer, or unset it to use every core")
        return int(text)
    return free_cores()
