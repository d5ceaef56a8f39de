"""Optional compiled kernels: TFLM's integer loops compiled by numba, for dataset-scale speed.

microref's kernels are numpy: a whole-tensor pass costs 0.1–0.4 ns per value, and a depthwise
convolution or a requantization takes many passes where a compiled loop touches each value once.
When numba is installed (``pip install 'microref[fast]'``), the kernels that a benchmark showed it
pays for run such loops instead (2.8–4.2x per sample on the benchmark models: benchmarks/bench.py
times both in the same rounds). They compute TFLM's own integer arithmetic (int32 accumulators,
the int64 MultiplyByQuantizedMultiplier), so their exactness needs no float bound at all, only the
integer ranges of C, which each kernel's prepare checks (each module states its proof); and
tests/test_compiled_*.py pin each one to the plain kernels of ``ops.reference`` byte for byte.

| module | kernel |
|---|---|
| gemm_u8 | CONV_2D, int8: byte dot products (AVX512-VNNI ``vpdpbusd``, on hosts that have it) |
| pointwise_small | CONV_2D 1x1 int8: byte dot products per chunk of pixels, requantized in the same call (VNNI hosts) |
| first_conv | CONV_2D int8, <= 64 input channels: byte dot products, requantized in registers (VNNI + VBMI) |
| conv_u8_fused | CONV_2D int8, >= 8 input channels: 16 pixels of a row per vector, requantized in registers (VNNI) |
| small_conv | CONV_2D: first and narrow layers, whole filter rows as the reduction |
| gemm | CONV_2D: int16 pair dot products (an LLVM IR intrinsic, ``vpdpwssd`` with VNNI) |
| depthwise_vnni | DEPTHWISE_CONV_2D, int8: four taps per byte dot product (VNNI hosts) |
| depthwise_narrow | DEPTHWISE_CONV_2D, int8, 8 channels: 2 pixels per dot product vector (VNNI + VBMI) |
| depthwise | DEPTHWISE_CONV_2D with the requantization fused |
| requantize | MultiplyByQuantizedMultiplier + offset + clamp + narrowing in one pass |
| pooling | AVERAGE_POOL_2D |
| elementwise | int8/int16 ADD, SUB, MUL, SQUARED_DIFFERENCE |
| softmax | int8-input SOFTMAX, every row of a batch in one call |

A ``lazy_njit`` function cannot be called from inside another compiled function (it is not a
numba dispatcher until its first call), which is why the kernels inline their small helpers.

Nothing here is imported at load or prepare: numba itself (~0.3 s to import) and each compiled
function (compiled once per signature, then cached on disk) are loaded on the first call that is
large enough to use them, so ``from_bytes`` and tiny models never pay for it.

``MICROREF_COMPILED=0`` in the environment turns the compiled kernels off (numpy everywhere);
``use_compiled(False)`` does so in a block (tests force both ways with it).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import threading

__all__ = ["available", "enabled", "use_compiled", "lazy_njit"]

_OFF_WORDS = {"0", "off", "no", "false"}

# None: follow availability; True/False: forced by use_compiled (process-wide, for tests and
# benchmarks; kernels read it at eval, so a block switches every kernel at once).
_forced: bool | None = None
_available: bool | None = None
_lock = threading.Lock()


def available() -> bool:
    """numba is installed and the environment does not turn compiled kernels off.

    Checked without importing numba (find_spec), so asking costs nothing.
    """
    global _available
    if _available is None:
        off = os.environ.get("MICROREF_COMPILED", "").strip().lower() in _OFF_WORDS
        _available = not off and importlib.util.find_spec("numba") is not None
    return _available


def enabled() -> bool:
    """Whether kernels should take their compiled paths now."""
    if _forced is not None:
        return _forced and available()
    return available()


@contextlib.contextmanager
def use_compiled(on: bool):
    """Force the compiled paths on (where numba is available) or off inside the block."""
    global _forced
    before = _forced
    _forced = bool(on)
    try:
        yield
    finally:
        _forced = before


class _LazyDispatcher:
    """A function compiled by numba on its first call (thread-safe), then called directly."""

    def __init__(self, function, options: dict):
        self.function = function
        self.options = options
        self.compiled = None
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__

    def __call__(self, *args):
        compiled = self.compiled
        if compiled is None:
            compiled = self._compile()
        return compiled(*args)

    def _compile(self):
        with _lock:
            if self.compiled is None:
                import numba  # only here: importing numba costs ~0.3 s

                self.compiled = numba.njit(**self.options)(self.function)
            return self.compiled


def lazy_njit(function=None, **options):
    """numba.njit, applied on first call: ``cache=True`` (compiled code kept on disk between
    processes), ``nogil=True`` (run_batch's threads run compiled kernels in parallel), and
    ``error_model="numpy"`` (no Python exception checks in integer division). Never fastmath:
    the kernels' arithmetic is integer, and no float reassociation may creep in."""
    settings = {"cache": True, "nogil": True, "error_model": "numpy", **options}
    if settings.get("fastmath"):
        raise ValueError("compiled kernels never use fastmath")

    def wrap(f):
        return _LazyDispatcher(f, settings)

    return wrap(function) if function is not None else wrap
