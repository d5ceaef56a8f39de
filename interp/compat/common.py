"""What both compat interpreters share: microref's errors re-raised as the exception types LiteRT
and TFLM raise, the model loaded and prepared with their failure messages, and tensor details.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..api import Interpreter as _Interpreter
from ..errors import MicrorefError, ModelError, UnsupportedOpError
from ..model import Model, Tensor, load_model
from ..model.parse import TENSOR_TYPES

_TYPE_NAMES = {dtype: name for name, dtype, _ in TENSOR_TYPES.values() if dtype is not None and name != "INT4"}


def _type_name(dtype) -> str:
    dtype = np.dtype(dtype)
    return _TYPE_NAMES.get(dtype, dtype.name.upper())


_MIXED: dict[tuple[type, type], type] = {}


def _as(error: MicrorefError, base: type[Exception]) -> Exception:
    """``error`` re-raised as a class deriving from both its own type and ``base`` (ValueError,
    RuntimeError), so callers written for LiteRT / TFLM and for microref both catch it."""
    key = (type(error), base)
    cls = _MIXED.get(key)
    if cls is None:
        # The mixed class is shown as interp.compat's (the package), as before the package split.
        cls = _MIXED[key] = type(type(error).__name__, (type(error), base), {"__module__": __package__})
    mixed = cls.__new__(cls)
    mixed.args = error.args
    mixed.__dict__.update(error.__dict__)
    return mixed


def _load(source) -> Model:
    try:
        return load_model(source)
    except ModelError as e:
        raise _as(e, ValueError) from None


def _prepare(model: Model, options: dict, failure: str) -> _Interpreter:
    try:
        return _Interpreter(model, **options)
    except (ModelError, UnsupportedOpError) as e:
        e.args = (f"{failure}: {e}",)
        raise _as(e, RuntimeError) from None


def _interpreter_options(numerics, kernels: str, max_while_iterations: int | None) -> dict:
    options: dict[str, Any] = {"numerics": numerics, "kernels": kernels}
    if max_while_iterations is not None:
        options["max_while_iterations"] = max_while_iterations
    return options


def _quantization_parameters(t: Tensor) -> tuple[tuple[float, int], dict[str, Any]]:
    q = t.quantization
    if q is None:
        return (0.0, 0), {"scales": np.zeros(0, np.float32), "zero_points": np.zeros(0, np.int32),
                          "quantized_dimension": 0}
    legacy = (0.0, 0) if q.per_channel else (q.scale, q.zero_point)
    return legacy, {"scales": q.scales.astype(np.float32), "zero_points": q.zero_points.astype(np.int32),
                    "quantized_dimension": int(q.quantized_dimension)}
