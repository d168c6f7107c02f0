"""Keep freed tensor memory in the process, so that a sampler's steps reuse pages instead of faulting them in.

glibc serves every allocation above its mmap threshold (32 MB at most) with a fresh ``mmap`` and unmaps it
on free, and returns the top of its heap to the kernel once more than a threshold of it is free. A
receiver's activations are that large at full width (one ``[2, 512, 64, 128]`` fp32 tensor is 33.5 MB), so
every step asked the kernel for them again, page by zeroed page: 0.2-0.6 s of system time in a guided step
at 64x128 on one thread, the first kernel to write a fresh output paying the faults (docs/runtime.md).
Serving everything from the heap (``M_MMAP_MAX = 0``) and trimming it only above 2 GB free
(``M_TRIM_THRESHOLD``; the documented -1, "never", still trims on this glibc, measured) makes a step reuse
the pages the previous one freed. What loading freed is handed back once it is done
(``malloc_trim``), so that the kept heap is what a step needs, not the loader's transients. jemalloc or
tcmalloc under ``LD_PRELOAD`` would do this for the whole process but need the launch command changed;
three glibc calls need nothing. Other C libraries are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

#: glibc's ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4

#: The most free heap kept: ``mallopt`` takes an int.
KEEP_BYTES = 2**31 - 1

#: Set to ``0`` to leave the C library's allocator as it is.
ENV = "QGESCO_KEEP_FREED_MEMORY"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc with its allocator set to keep freed memory, or None (not glibc, or declined)."""
    if os.environ.get(ENV, "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, libc.malloc_trim.argtypes = libc.mallopt, [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators are left alone
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc if mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) else None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse from now on (``QGESCO_KEEP_FREED_MEMORY=0`` declines) and hand
    back what is free now: called when a model is loaded. Whether glibc now keeps it."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
    return libc is not None
