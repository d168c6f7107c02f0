"""Keep freed tensor memory in the process, so that a sampler's steps reuse pages instead of faulting them in.

glibc serves an allocation above its mmap threshold (raised as the process frees such chunks, to 32 MB
at most) with a fresh ``mmap`` and unmaps it on free, and returns the top of its heap to the kernel once
more than twice that threshold is free there. A receiver's activations are that large at full width
(``[2, 256, 64, 128]`` fp32 is 16.8 MB, ``[2, 512, 64, 128]`` 33.5 MB), so every step asked the kernel for
them again, page by zeroed page, inside whichever kernel first wrote them: 0.2-0.6 s of system time in a
guided step at 64x128 on one thread (docs/runtime.md). By default the loaders fix the mmap threshold at
its maximum and keep up to 2 GB of free heap (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``), so tensors of up
to 32 MB reuse the pages the previous step freed; larger ones still get their own mapping, which keeps
the heap from fragmenting. ``QGESCO_KEEP_FREED_MEMORY=all`` serves every allocation from the heap
(``M_MMAP_MAX = 0``): no faults at any size, but at 256x512 the fragmented heap peaks near twice as high
(measured, docs/runtime.md). What loading freed is handed back once it is done (``malloc_trim``), so the
kept heap is what a step needs, not the loader's transients. jemalloc or tcmalloc under ``LD_PRELOAD``
would manage this for the whole process but need the launch command changed. The documented
``M_TRIM_THRESHOLD = -1`` ("never trim") still trims on glibc 2.36 (measured), hence 2 GB. Other C
libraries are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

import torch

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4

#: glibc's largest mmap threshold on 64-bit systems: allocations up to it can come from the heap.
MAX_HEAP_ALLOCATION = 32 * 2**20

#: The most free heap kept: ``mallopt`` takes an int.
KEEP_BYTES = 2**31 - 1

#: ``0`` leaves the C library's allocator as it is; ``all`` keeps every freed allocation (see above).
ENV = "QGESCO_KEEP_FREED_MEMORY"
MODES = ("0", "1", "all")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc with its allocator set to keep freed memory as ``QGESCO_KEEP_FREED_MEMORY`` says, or None (not
    glibc, or declined)."""
    mode = os.environ.get(ENV, "1")
    if mode not in MODES:
        raise ValueError(f"{ENV}={mode!r}: give 1 (the default), all, or 0 to leave the allocator alone")
    if mode == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, libc.malloc_trim.argtypes = libc.mallopt, [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators are left alone
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mapped = mallopt(M_MMAP_MAX, 0) if mode == "all" else mallopt(M_MMAP_THRESHOLD, MAX_HEAP_ALLOCATION)
    return libc if mapped and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) else None


def keep_freed_memory(device: str | torch.device = "cpu") -> bool:
    """Make glibc keep freed memory for reuse from now on (``QGESCO_KEEP_FREED_MEMORY``: ``1`` by default,
    ``all``, or ``0`` to decline) and hand back what is free now: called when a model is loaded onto
    ``device`` (nothing for a GPU's). Whether glibc now keeps it."""
    libc = _glibc() if torch.device(device).type == "cpu" else None
    if libc is not None:
        libc.malloc_trim(0)
    return libc is not None
