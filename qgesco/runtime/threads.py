"""How the command line runs torch's CPU threads when other processes share the cores.

torch starts one OpenMP thread per core, and by default an OpenMP thread that waits for the
others at the end of a parallel region spins on its core. When another process holds one of
those cores, every region waits for the thread that lost its core while the rest spin against
the other process: each verb runs tens of times slower. Letting waiting threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) removes that, and then using every core this process may run on
was faster under load than dropping to the cores left idle (bench/threads_under_load.py,
docs/runtime.md). So the CLI sets the passive policy before torch loads and runs one thread per
core of its affinity mask (``os.sched_getaffinity``: what a container or ``taskset`` allows,
which torch's own count ignores); ``--threads`` or ``QGESCO_THREADS`` overrides.
"""

from __future__ import annotations

import os


def passive_wait() -> None:
    """Ask OpenMP to let waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy;
    it is read once, when torch loads its OpenMP runtime, so this must run before ``import torch``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_threads(requested: int | None = None) -> int:
    """The thread count to run with: ``requested`` when given (``--threads``), else ``QGESCO_THREADS``,
    else :func:`usable_cores`."""
    if requested:
        return requested
    text = os.environ.get("QGESCO_THREADS", "")
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"QGESCO_THREADS={text!r}: give a positive integer, or unset it to use every core")
        return int(text)
    return usable_cores()
