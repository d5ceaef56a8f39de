"""The kernel under test: a hand-written numpy int8 CONV_2D (NHWC input, OHWI weights,
per-channel weights), written the way an engineer porting TFLM's arithmetic to a new target would.

``conv2d_int8(..., rounding="double")`` requantizes as TFLM's reference kernels do
(SaturatingRoundingDoublingHighMul then RoundingDivideByPOT); ``rounding="single"`` is the
deliberately broken variant of the README: one rounding step (TFLITE_SINGLE_ROUNDING), which
differs from the TFLM wheel by one LSB on some elements.
"""
from __future__ import annotations

import math

import numpy as np


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    multiplier = round(mantissa * (1 << 31))  # std::round: halves away from zero (positive here)
    if multiplier == 1 << 31:
        multiplier //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return multiplier, shift


def requantize_double(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = (acc.astype(np.int64) << left).astype(np.int64)
    x = ((x + (1 << 31)) % (1 << 32)) - (1 << 31)  # the shifted value is an int32 in C
    product = x * multiplier.astype(np.int64)
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    high = (product + nudge) // (1 << 31)
    high = np.where(product + nudge < 0, -((-(product + nudge)) // (1 << 31)), high)  # C division truncates
    high = np.where((x == -(1 << 31)) & (multiplier == -(1 << 31)), (1 << 31) - 1, high)
    mask = (np.int64(1) << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + (remainder > threshold)


def requantize_single(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    total_shift = 31 - shift
    rounding = np.int64(1) << (total_shift - 1)
    return (acc.astype(np.int64) * multiplier.astype(np.int64) + rounding) >> total_shift


def conv2d_int8(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, input_scale: float, input_zero_point: int,
                filter_scales: np.ndarray, output_scale: float, output_zero_point: int, stride: int = 1,
                padding: str = "VALID", relu: bool = False, rounding: str = "double") -> np.ndarray:
    n, h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-wd // stride)
        pad_h = max((oh - 1) * stride + kh - h, 0) // 2
        pad_w = max((ow - 1) * stride + kw - wd, 0) // 2
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
        pad_h = pad_w = 0
    xs = x.astype(np.int64) - input_zero_point
    padded = np.zeros((n, h + 2 * kh, wd + 2 * kw, cin), np.int64)  # zero (after offset) outside the image
    padded[:, kh:kh + h, kw:kw + wd, :] = xs
    acc = np.zeros((n, oh, ow, cout), np.int64)
    for fy in range(kh):
        for fx in range(kw):
            ys = kh + np.arange(oh) * stride - pad_h + fy
            xs_ = kw + np.arange(ow) * stride - pad_w + fx
            taps = padded[:, ys][:, :, xs_]  # (n, oh, ow, cin)
            acc += taps @ w[:, fy, fx, :].astype(np.int64).T
    if bias is not None:
        acc += bias.astype(np.int64)
    acc = ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32 accumulator
    real = [float(np.float64(input_scale) * np.float64(s) / np.float64(output_scale)) for s in filter_scales]
    multiplier, shift = (np.array(v, np.int64) for v in zip(*(quantize_multiplier(r) for r in real)))
    scaled = (requantize_double if rounding == "double" else requantize_single)(acc, multiplier, shift)
    out = scaled + output_zero_point
    low = max(output_zero_point, -128) if relu else -128
    return np.clip(out, low, 127).astype(np.int8)
