"""Process settings for batch work, changed only where the caller asks: BLAS threads and the
C heap.

microref's matrix products are cache-sized blocks, for which OpenBLAS's own threads only add
synchronisation; on a busy machine their spin-waiting has cost 4-100x here, and run_batch
already spreads samples over cores with its own threads. Changing BLAS's thread count is
process-wide and costs about a millisecond each time (OpenBLAS re-creates its threads), so the
library never does it by itself: wrap a stretch of work in ``limited_blas_threads()``.

Every operator returns a fresh array. glibc's malloc serves arrays above its mmap threshold
(128 KiB, raised dynamically up to 32 MiB) with fresh pages and trims freed heap memory above
128 KiB, so a batch's large activations are page-faulted in anew on every call: on MobileNetV2-224
at batch 8 that was 3,500 page faults and a fifth of the CPU time per call. ``retained_heap()``
keeps freed memory in the process for the next call instead (mallopt M_MMAP_THRESHOLD and
M_TRIM_THRESHOLD); the process's resident memory then stays at its peak while inside the block.
This too is process-wide, so the library never does it by itself.

``batch_tuning()`` does both; the ``microref`` command, the evaluation engines and
benchmarks/bench.py run inside it:

    from interp import batch_tuning
    with batch_tuning():                  # BLAS on one thread, freed memory kept, inside the block
        for batch in batches:
            outputs = it.run_batch([batch])
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import threading

from threadpoolctl import threadpool_limits

__all__ = ["limited_blas_threads", "retained_heap", "retain_heap_for_process", "batch_tuning"]

# glibc's mallopt parameters and defaults (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DEFAULT_THRESHOLD = 128 * 1024
# The fallback where a glibc refuses _KEEP_FREED as the mmap threshold (some cap it at
# HEAP_MAX_SIZE / 2, 32 MiB on 64-bit).
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
_KEEP_FREED = 1 << 30

_heap_lock = threading.Lock()
_heap_depth = 0


@contextlib.contextmanager
def limited_blas_threads(limit: int = 1):
    """BLAS limited to ``limit`` threads inside the block (threadpoolctl), restored on exit."""
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


@functools.cache
def _mallopt():
    """glibc's mallopt, or None (another C library: musl, macOS, Windows). Cached: libc_ver()
    reads the Python executable."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a glibc without mallopt
        return None


def _set_heap(mallopt, keep: bool) -> None:
    if keep:
        if not mallopt(_M_MMAP_THRESHOLD, _KEEP_FREED):
            mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED)
    else:
        # glibc's static defaults (its dynamic raising of the mmap threshold stays off afterwards).
        mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)


@contextlib.contextmanager
def retained_heap():
    """Inside the block, memory freed to glibc's malloc stays in the process for the next
    allocation (no fresh pages per call); on exit glibc's default thresholds are set again and
    the kept memory is returned (malloc_trim). A no-op where the C library is not glibc. Nested
    and concurrent blocks are counted: the outermost one restores."""
    global _heap_depth
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    with _heap_lock:
        _heap_depth += 1
        if _heap_depth == 1:
            _set_heap(mallopt, True)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_depth -= 1
            if _heap_depth == 0:
                _set_heap(mallopt, False)
                ctypes.CDLL(None).malloc_trim(0)


def retain_heap_for_process() -> None:
    """``retained_heap()``'s setting for the rest of the process: for processes microref owns
    (the evaluation engines' spawned workers), which end with their work."""
    global _heap_depth
    mallopt = _mallopt()
    if mallopt is not None:
        with _heap_lock:
            _heap_depth += 1
            if _heap_depth == 1:
                _set_heap(mallopt, True)


@contextlib.contextmanager
def batch_tuning(blas_threads: int = 1):
    """``limited_blas_threads(blas_threads)`` and ``retained_heap()`` together."""
    with limited_blas_threads(blas_threads), retained_heap():
        yield
