"""C's behaviour where numpy's differs: what TFLM's compiled kernels compute, and numpy does not
by default. Everything that emulates the C language or its library lives here.

* **libm**: TFLM's float kernels call ``std::exp(float)`` and friends, i.e. the platform libm's
  ``expf``; numpy has its own SIMD implementations that differ from glibc's in the last bit for
  some inputs. When the C library is loadable (Linux, macOS) these wrappers call it element by
  element, so float outputs match a TFLM built against the same libm; elsewhere they fall back to
  numpy. Double-precision functions (``std::exp(double)``) likewise.
* **float → int conversion** as x86-64's cvttss2si/cvttsd2si does ``static_cast<int32_t>``:
  truncation, and INT32_MIN for NaN and values outside the int32 range.
* **C-order float sums**: a C loop ``total += v[i]`` adds left to right in float32; BLAS and
  numpy's pairwise summation add in other orders, which changes the last bits.

Integer fixed-point arithmetic (TFLM's and gemmlowp's named primitives, int32 wraparound, x86 shift
masking inside them) is in ``ops.fixedpoint``.
"""
from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from . import fixedpoint as fp


def _load_libm():
    for name in (ctypes.util.find_library("m"), "libm.so.6", "libSystem.dylib"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


_LIBM = _load_libm()


def _unary(name: str, fallback):
    fn = getattr(_LIBM, name, None) if _LIBM is not None else None
    if fn is None:
        return lambda x: fallback(np.asarray(x, np.float32)).astype(np.float32)
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    vectorized = np.frompyfunc(fn, 1, 1)

    def apply(x):
        x = np.asarray(x, np.float32)
        if x.size == 0:
            return x.copy()
        return np.asarray(vectorized(x), dtype=np.float32).reshape(x.shape)
    apply.__doc__ = f"C {name} on every element (float32 in, float32 out)."
    return apply


expf = _unary("expf", np.exp)
tanhf = _unary("tanhf", np.tanh)
logf = _unary("logf", np.log)

_BY_NAME = {"exp": expf, "tanh": tanhf, "log": logf}


def float_function(name: str):
    """The C library's single-precision ``name``f as a numpy function (e.g. "exp" -> expf)."""
    if name not in _BY_NAME:
        _BY_NAME[name] = _unary(name + "f", getattr(np, name))
    return _BY_NAME[name]


def double_function(name: str):
    """The C library's double-precision ``name`` (e.g. "exp": std::exp(double)) as a numpy function,
    element by element; numpy's own where the C library cannot be loaded."""
    fn = getattr(_LIBM, name, None) if _LIBM is not None else None
    if fn is None:
        return getattr(np, name)
    fn.restype = ctypes.c_double
    fn.argtypes = [ctypes.c_double]
    vectorized = np.frompyfunc(fn, 1, 1)
    return lambda x: np.asarray(vectorized(x), np.float64).reshape(np.shape(x))


# ------------------------------------------------------------------------------ float -> int

def float_to_int32_x86(v) -> np.ndarray:
    """static_cast<int32_t>(float or double) as cvttss2si / cvttsd2si compute it: truncation, and
    INT32_MIN for NaN and values outside the int32 range. Arrays in, int64 arrays out."""
    v = np.asarray(v, dtype=np.float64)
    inside = np.isfinite(v) & (v >= -(2.0 ** 31)) & (v < 2.0 ** 31)
    return np.where(inside, np.trunc(np.where(inside, v, 0.0)), fp.INT32_MIN).astype(np.int64)


def float_to_int32_x86_scalar(v) -> int:
    """float_to_int32_x86 of one value, as a Python int."""
    if not np.isfinite(v) or v >= 2.0 ** 31 or v < -(2.0 ** 31):
        return fp.INT32_MIN
    return int(v)


# ------------------------------------------------------------------------------ C-order float sums

def float_sequential_sum(values: np.ndarray) -> np.ndarray:
    """sum over the last axis as C's `float total = 0; total += v[i]` loop, bit for bit.

    cumsum accumulates strictly left to right in float32; adding +0.0 at the end reproduces the
    C loop's initial +0.0 (which only matters when every term is -0.0).
    """
    if values.shape[-1] == 0:
        return np.zeros(values.shape[:-1], dtype=np.float32)
    return np.cumsum(values, axis=-1, dtype=np.float32)[..., -1] + np.float32(0.0)


def float_sequential_sum_of_products(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_d x[..., d] * w[o, d] accumulated in float32 in the order d = 0, 1, …

    Reproduces a C float32 loop bit for bit (a BLAS sgemm sums in another order).
    x: (B, D) float32, w: (O, D) float32 -> (B, O) float32.
    """
    acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.float32)
    for d in range(x.shape[1]):
        acc += x[:, d:d + 1] * w[None, :, d]
    return acc
