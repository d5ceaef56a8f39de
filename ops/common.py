"""Parameter work shared by many kernels: activation clamps, padding, requantization."""
from __future__ import annotations

import numpy as np

from interp.model import Tensor
from . import fixedpoint as fp

ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}

TYPE_RANGES = {
    "INT8": (-128, 127),
    "UINT8": (0, 255),
    "INT16": (-32768, 32767),
    "INT32": (fp.INT32_MIN, fp.INT32_MAX),
}


def type_range(tensor: Tensor) -> tuple[int, int]:
    return TYPE_RANGES[tensor.type_name]


def _float_to_int32_like_x86(v: np.float32) -> int:
    """static_cast<int32_t>(float): out-of-range values give INT32_MIN, as cvttss2si does."""
    if not np.isfinite(v) or v >= 2.0 ** 31 or v < -(2.0 ** 31):
        return fp.INT32_MIN
    return int(v)


def quantize_float_for_activation(f: float, scale: float, zero_point: int) -> int:
    """zero_point + int(roundf(float32(f) / float32(scale))), as CalculateActivationRangeQuantized."""
    q = np.float32(f) / np.float32(scale)
    rounded = fp.tflite_round(np.float32(q))
    return int(fp.wrap_int32(zero_point + _float_to_int32_like_x86(rounded)))


def activation_range_quantized(activation: int, output: Tensor) -> tuple[int, int]:
    """TFLM CalculateActivationRangeQuantized: the integer clamp for a fused activation.

    The clamp is applied after the output zero point is added. TANH, SIGN_BIT and unknown codes
    clamp to the type range only, as in TFLM.
    """
    qmin, qmax = type_range(output)
    scale, zp = output.quantization.scale, output.quantization.zero_point
    q = lambda f: quantize_float_for_activation(f, scale, zp)  # noqa: E731
    if activation == 1:
        return max(qmin, q(0.0)), qmax
    if activation == 3:
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == 2:
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    return qmin, qmax


def activation_range_float(activation: int) -> tuple[float, float]:
    """TFLM CalculateActivationRange<float>."""
    if activation == 1:
        return 0.0, float(np.finfo(np.float32).max)
    if activation == 3:
        return 0.0, 6.0
    if activation == 2:
        return -1.0, 1.0
    return float(-np.finfo(np.float32).max), float(np.finfo(np.float32).max)


def apply_float_activation(x: np.ndarray, activation: int) -> np.ndarray:
    if activation in (1, 2, 3):
        lo, hi = activation_range_float(activation)
        return np.minimum(np.maximum(x, np.float32(lo)), np.float32(hi))
    return x


def padding_and_output_size(padding: int, in_size: int, filter_size: int, stride: int, dilation: int):
    """TFLM ComputePaddingHeightWidth for one spatial dim: (output size, padding before).

    padding: 0 = SAME, 1 = VALID. The odd extra padding pixel (SAME) goes at the end implicitly.
    """
    effective = (filter_size - 1) * dilation + 1
    if padding == 0:
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size - effective + stride) // stride
    total = max((out - 1) * stride + effective - in_size, 0)
    return out, total // 2


def requantize(acc, multiplier, shift, zero_point: int, act_min: int, act_max: int, numerics=None):
    """clamp(MultiplyByQuantizedMultiplier(acc, M, shift) + zero_point, act_min, act_max)."""
    if numerics is not None and numerics.rounding == "single":
        scaled = fp.multiply_by_quantized_multiplier_single_rounding(acc, multiplier, shift)
    else:
        scaled = fp.multiply_by_quantized_multiplier(acc, multiplier, shift)
    return np.clip(scaled + zero_point, act_min, act_max)


def real_multiplier(numerics, *factors: float, divisor: float) -> float:
    """Product of float32 scales over a divisor, in double (the wheel) or float32 (older TFLM)."""
    if numerics is not None and numerics.scale_precision == "float32":
        p = np.float32(1.0)
        for f in factors:
            p = np.float32(p * np.float32(f))
        return float(np.float32(p / np.float32(divisor)))
    p = 1.0
    for f in factors:
        p *= float(f)
    return p / float(divisor)


def quantize_channel_multipliers(real: np.ndarray):
    """Vector of (M, shift) from QuantizeMultiplier for each real multiplier, as int64 arrays."""
    pairs = [fp.quantize_multiplier(float(r)) for r in np.asarray(real, dtype=np.float64).ravel()]
    return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))


def exact_integer_matmul(a: np.ndarray, b: np.ndarray, bound: int | None = None) -> np.ndarray:
    """a @ b for integer-valued arrays, exact, as int64.

    float64 BLAS is exact while every partial sum stays below 2^53; ``bound`` is a proven upper
    bound of sum_k |a[i,k]|·|b[k,j]| (computed at prepare time). Without one, or beyond 2^53,
    numpy's int64 matmul is used.
    """
    if bound is not None and bound < (1 << 53):
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def float_sequential_sum_of_products(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_d x[..., d] * w[o, d] accumulated in float32 in the order d = 0, 1, …

    Reproduces a C float32 loop bit for bit (a BLAS sgemm sums in another order).
    x: (B, D) float32, w: (O, D) float32 -> (B, O) float32.
    """
    acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.float32)
    for d in range(x.shape[1]):
        acc += x[:, d:d + 1] * w[None, :, d]
    return acc


def sliding_windows(x: np.ndarray, out_hw: tuple[int, int], kernel_hw: tuple[int, int],
                    stride_hw: tuple[int, int], dilation_hw: tuple[int, int], pad_tl: tuple[int, int],
                    fill=0) -> np.ndarray:
    """Every (KH, KW) receptive field of an NHWC batch, as a strided view (N, OH, OW, KH, KW, C).

    Taps outside the image read ``fill``; for convolutions that is 0 on the zero-point-corrected
    input, which is what skipping out-of-image taps (as TFLM does) amounts to.
    """
    n, h, w, c = x.shape
    (oh, ow), (kh, kw), (sh, sw), (dh, dw), (pt, pl) = out_hw, kernel_hw, stride_hw, dilation_hw, pad_tl
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    pb = max(0, need_h - h - pt)
    pr = max(0, need_w - w - pl)
    if pt or pl or pb or pr:
        padded = np.full((n, h + pt + pb, w + pl + pr, c), fill, dtype=x.dtype)
        padded[:, pt:pt + h, pl:pl + w, :] = x
    else:
        padded = np.ascontiguousarray(x)
    s = padded.strides
    return np.lib.stride_tricks.as_strided(
        padded, shape=(n, oh, ow, kh, kw, c),
        strides=(s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), writeable=False)
