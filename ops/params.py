"""Prepared parameters, one frozen dataclass per op family, named like TFLM's OpData structs.

Prepare computes them once from the model (TFLM's Prepare / CalculateOpData*); the reference
kernels in ``ops.reference`` read nothing else, and ``describe`` / ``explain`` / ``compare``
show them. The fast kernels keep their own plans (layouts, thresholds, cached constants) apart
from these. Arrays here are read-only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def frozen_array(values, dtype=np.int64) -> np.ndarray:
    """A read-only copy, so that a shared kernel's parameters cannot be changed by accident."""
    a = np.array(values, dtype=dtype).reshape(-1)
    a.flags.writeable = False
    return a


def params_as_dict(params) -> dict:
    """The parameters as plain Python values (lists for arrays, dicts for nested parameters),
    for describe() and JSON."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v.tolist() if isinstance(v, np.ndarray) else v
    return plain(asdict(params))


@dataclass(frozen=True)
class QuantizedOutput:
    """How an integer accumulator becomes an output value (the requantization step)."""
    output_multiplier: np.ndarray  # QuantizeMultiplier's M per output channel (repeated when per tensor)
    output_shift: np.ndarray       # its exponent per output channel (negative: a right shift)
    output_offset: int             # the output zero point, added after the scaling (int32, wraps)
    activation_min: int            # the fused activation's clamp, in output units
    activation_max: int
    rounding: str = "double"       # "double" (the wheel's SRDHM + RDBPOT) or "single" (TFLITE_SINGLE_ROUNDING)
    int64_accumulator: bool = False  # 16x8 kernels with an int64 bias: int64 sum, the int64 MBQM


@dataclass(frozen=True)
class FullyConnectedParams:
    """OpDataFullyConnected + FullyConnectedParams (fully_connected_common.cc)."""
    kind: str                      # "INT8", "INT16" or "FLOAT32": the input and output type
    accum_depth: int               # values summed per output (the filter's last dim)
    output_depth: int              # outputs per row (the output's last dim)
    input_offset: int              # -input zero point (0 for int16)
    weights_offset: int            # -filter zero point; per-tensor int8 only (per channel TFLM ignores it)
    requantize: QuantizedOutput | None  # None for float32
    float_activation_min: float = 0.0   # float32 kernels: the fused activation's range
    float_activation_max: float = 0.0


@dataclass(frozen=True)
class ConvParams:
    """OpDataConv + ConvParams / DepthwiseParams (conv_common.cc, depthwise_conv_common.cc).

    Strides, dilations and paddings are int16_t in TFLM's ConvParams: held here as the kernel
    sees them, wrapped."""
    kind: str                      # "INT8", "INT16" or "FLOAT32"
    stride_height: int
    stride_width: int
    dilation_height_factor: int
    dilation_width_factor: int
    padding_top: int               # rows of padding before the image (the odd one goes after)
    padding_left: int
    output_height: int             # the output tensor's own dims: TFLM loops over them
    output_width: int
    input_offset: int              # -input zero point (0 for 16x8)
    requantize: QuantizedOutput | None
    depth_multiplier: int = 0      # depthwise only: output channel oc reads input channel oc // dm
    float_activation_min: float = 0.0
    float_activation_max: float = 0.0


@dataclass(frozen=True)
class PoolParams:
    """OpDataPooling + PoolParams (pooling_common.cc). Filter and padding are the window TFLM's
    loops actually visit: taps no output position can see inside the image are trimmed."""
    kind: str
    stride_height: int
    stride_width: int
    filter_height: int
    filter_width: int
    padding_top: int
    padding_left: int
    output_height: int
    output_width: int
    activation_min: int | float    # the fused activation's clamp (output units, or float)
    activation_max: int | float


@dataclass(frozen=True)
class SoftmaxParams:
    """SoftmaxParams (softmax_common.cc), int8 input."""
    input_multiplier: int          # beta·input_scale·2^26 as QuantizeMultiplierGreaterThanOne's M
    input_left_shift: int
    diff_min: int                  # -CalculateInputRadius(5, input_left_shift): smaller differences give 0
    output_bits: int               # 8 (int8 output) or 16 (int16 output)
