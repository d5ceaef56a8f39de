"""Single-precision C math functions, computed by the C library itself.

TFLM's float kernels call ``std::exp(float)`` and friends, i.e. the platform libm's ``expf``; numpy
has its own SIMD implementations that differ from glibc's in the last bit for some inputs. When
the C library is loadable (Linux, macOS) these wrappers call it element by element, so float
outputs match a TFLM built against the same libm; elsewhere they fall back to numpy.
"""
from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np


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
