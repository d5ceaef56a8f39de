"""``quantize`` / ``dequantize``: real values to a tensor's integers and back, exactly as TFLM's
QUANTIZE and DEQUANTIZE operators compute them.

    from interp import Interpreter, quantize, dequantize

    it = Interpreter.from_file("model.tflite")
    x_q = quantize(x_float, it.input_details[0])       # what TFLM's QUANTIZE (float32 -> int) gives
    y = dequantize(it.run([x_q])[0], it.output_details[0])   # what TFLM's DEQUANTIZE gives

``details`` is a tensor description as ``Interpreter.input_details`` / ``output_details`` (and
``interp.compat.Interpreter.get_input_details()``, LiteRT's and TFLM's Python interpreters) return
it — a dict with ``dtype`` and ``quantization_parameters`` (``scales``, ``zero_points``) or
``quantization`` (scale, zero point) — or an ``interp.Tensor``.

The arithmetic is the kernels' own (ops/quantize.py): QUANTIZE divides in float32,
``float32(x) / float32(scale)``, rounds half away from zero (TfLiteRound), converts to int32 as
x86's cvttss2si does (NaN and out-of-range values become INT32_MIN), adds the zero point with
int32 wraparound and clamps to the output type; DEQUANTIZE computes
``float32(double(scale) * (q - zero_point))``. Like the operators, both take per-tensor parameters
only: per-channel details raise ``ValueError``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ops import fixedpoint as fp
from ops.quantize import float32_to_int32_like_x86

from .model import Tensor

__all__ = ["dequantize", "quantize"]

# The integer types TFLM's QUANTIZE writes from float32 (and their ranges; its Eval has no float32
# -> int32 or uint8 kernel), and those its DEQUANTIZE reads.
QUANTIZE_OUTPUT_TYPES = {np.dtype(np.int8): (-128, 127), np.dtype(np.int16): (-32768, 32767)}
DEQUANTIZE_INPUT_TYPES = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.uint8))


def _parameters(details: Mapping[str, Any] | Tensor, what: str) -> tuple[np.dtype, np.float32, int]:
    """(dtype, scale as the float32 the model stores, zero point) of per-tensor quantized details."""
    if isinstance(details, Tensor):
        name, dtype, q = details.name, details.dtype, details.quantization
        scales = q.scales if q is not None else np.zeros(0, np.float32)
        zero_points = q.zero_points if q is not None else np.zeros(0, np.int64)
    elif isinstance(details, Mapping):
        name, dtype = details.get("name", "?"), details.get("dtype")
        params = details.get("quantization_parameters")
        if params is not None:
            scales = np.asarray(params.get("scales", ()), np.float32).reshape(-1)
            zero_points = np.asarray(params.get("zero_points", ()), np.int64).reshape(-1)
        elif details.get("quantization") is not None:
            scale, zero_point = details["quantization"]
            scales = np.asarray([scale] if scale else [], np.float32)
            zero_points = np.asarray([zero_point], np.int64)
        else:
            raise ValueError(f"{what}: the details of {name!r} have neither 'quantization_parameters' nor "
                             f"'quantization'")
    else:
        raise TypeError(f"{what}: details must be a dict as input_details/output_details give, or an "
                        f"interp.Tensor, not {type(details).__name__}")
    if dtype is None:
        raise ValueError(f"{what}: the details of {name!r} have no dtype")
    dtype = np.dtype(dtype)
    if scales.size == 0:
        raise ValueError(f"{what}: tensor {name!r} is not quantized (no scale)")
    if scales.size > 1:
        raise ValueError(f"{what}: tensor {name!r} is quantized per channel ({scales.size} scales); TFLM's "
                         f"QUANTIZE and DEQUANTIZE take one scale and zero point")
    zero_point = int(zero_points[0]) if zero_points.size else 0
    return dtype, np.float32(scales[0]), zero_point


def quantize(x_float, details: Mapping[str, Any] | Tensor) -> np.ndarray:
    """Real values to the integers of the tensor ``details`` describes, as TFLM's QUANTIZE
    (float32 input) computes them: ``clamp(int32(round(float32(x) / float32(scale))) + zero_point)``.

    ``x_float`` is converted to float32 first (the QUANTIZE input is a float32 tensor). NaN and
    values beyond int32 after the division become INT32_MIN before the zero point is added, as
    x86's conversion makes them, so they end at the type's minimum. Returns an array of the
    details' dtype (int8 or int16, the types TFLM's float32 QUANTIZE writes) and of ``x_float``'s
    shape.
    """
    dtype, scale, zero_point = _parameters(details, "quantize")
    if dtype not in QUANTIZE_OUTPUT_TYPES:
        raise ValueError(f"quantize: TFLM's QUANTIZE writes int8 or int16 from float32, not {dtype}")
    low, high = QUANTIZE_OUTPUT_TYPES[dtype]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        quotient = np.asarray(x_float, np.float32) / scale
        rounded = fp.tflite_round(quotient)
    unclamped = fp.wrap_int32(float32_to_int32_like_x86(rounded) + zero_point)
    return np.clip(unclamped, low, high).astype(dtype)


def dequantize(q, details: Mapping[str, Any] | Tensor) -> np.ndarray:
    """The real values of a tensor's integers, as TFLM's DEQUANTIZE computes them:
    ``float32(double(scale) * (q - zero_point))``, per tensor. Returns float32."""
    dtype, scale, zero_point = _parameters(details, "dequantize")
    if dtype not in DEQUANTIZE_INPUT_TYPES:
        raise ValueError(f"dequantize: TFLM's DEQUANTIZE reads int8, int16 or uint8, not {dtype}")
    values = np.asarray(q)
    if values.dtype.kind not in "iub":
        raise ValueError(f"dequantize: expected the tensor's integers ({dtype}), got {values.dtype} values")
    info = np.iinfo(dtype)
    wide = values.astype(np.int64)
    if wide.size and (wide.min() < info.min or wide.max() > info.max):
        raise ValueError(f"dequantize: values outside the {dtype} range [{info.min}, {info.max}] cannot be "
                         f"the tensor's")
    return (np.float64(scale) * (wide - zero_point).astype(np.float64)).astype(np.float32)
