"""BLAS threads, limited only where the caller asks.

microref's matrix products are cache-sized blocks, for which OpenBLAS's own threads only add
synchronisation; on a busy machine their spin-waiting has cost 4-100x here, and run_batch
already spreads samples over cores with its own threads. Changing BLAS's thread count is
process-wide and costs about a millisecond each time (OpenBLAS re-creates its threads), so the
library never does it by itself: wrap a stretch of work in ``limited_blas_threads()`` (the
``microref`` command and benchmarks/bench.py do), and the previous setting is restored after.

    from interp import limited_blas_threads
    with limited_blas_threads():          # BLAS on one thread inside the block
        for batch in batches:
            outputs = it.run_batch([batch])
"""
from __future__ import annotations

import contextlib

from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def limited_blas_threads(limit: int = 1):
    """BLAS limited to ``limit`` threads inside the block (threadpoolctl), restored on exit."""
    with threadpool_limits(limits=limit, user_api="blas"):
        yield
