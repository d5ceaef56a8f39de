"""Values of tensors as the runtime holds them: their dtype, a variable's reset value, and the
real values of quantized integers."""
from __future__ import annotations

import numpy as np

from ..model import Tensor


def value_dtype(t: Tensor) -> np.dtype | None:
    """The dtype of a tensor's values in the runtime: a RESOURCE handle holds an int32 id."""
    return np.dtype(np.int32) if t.type_name == "RESOURCE" else t.dtype


def variable_reset_value(t: Tensor) -> np.ndarray:
    """A variable tensor's value after TFLM's ResetTensorData: every byte set to an int8 tensor's
    zero point (memset takes it modulo 256), else to 0."""
    q = t.quantization
    byte = int(q.zero_points[0]) & 0xFF if t.type_name == "INT8" and q is not None and q.zero_points.size else 0
    return np.full(t.nbytes, byte, np.uint8).view(t.dtype).reshape(t.shape)


def dequantize_tensor(t: Tensor, q: np.ndarray) -> np.ndarray:
    if t.quantization is None or t.dtype is None or t.dtype.kind == "f":
        return np.asarray(q, dtype=np.float64)
    qz = t.quantization
    q64 = np.asarray(q, dtype=np.float64)
    if qz.per_channel:
        shape = [1] * q64.ndim
        dim = qz.quantized_dimension
        if dim >= len(t.shape):
            # A 1-D bias keeps its filter's quantized dimension; its only axis is the channel axis.
            dim = len(t.shape) - 1
        axis = dim + (q64.ndim - len(t.shape))
        shape[axis] = -1
        return qz.scales.astype(np.float64).reshape(shape) * (q64 - qz.zero_points.reshape(shape))
    return qz.scale * (q64 - qz.zero_point)
