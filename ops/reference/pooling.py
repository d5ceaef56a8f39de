"""AVERAGE_POOL_2D and MAX_POOL_2D: reference_integer_ops::AveragePool / MaxPool (int8, int16) and
reference_ops::AveragePool / MaxPool (float).

    for b, out_y, out_x, channel:
        over the filter taps inside the image (in_y = out_y·stride - pad + filter_y, likewise x):
            average: sum (int32) and count them;  max: keep the largest (from the type's lowest)
        average = (sum > 0 ? sum + count/2 : sum - count/2) / count   (C's truncating division)
        output = clamp(average or max, activation_min, activation_max)

Float: the average sums in float32 in tap order and divides by the count; the max is
std::max(max, value) from the lowest float.
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..common import clamp_float
from ..params import PoolParams

TYPE_LOWEST = {"INT8": -128, "INT16": -32768, "FLOAT32": np.finfo(np.float32).min}


def _taps(p: PoolParams, images: np.ndarray):
    """(values (B, OH, OW, C), inside (OH, OW)) for every filter tap, in TFLM's loop order."""
    h, w = images.shape[1:3]
    for fy in range(p.filter_height):
        in_y = np.arange(p.output_height) * p.stride_height - p.padding_top + fy
        for fx in range(p.filter_width):
            in_x = np.arange(p.output_width) * p.stride_width - p.padding_left + fx
            inside = ((in_y >= 0) & (in_y < h))[:, None] & ((in_x >= 0) & (in_x < w))[None, :]
            values = images[:, np.clip(in_y, 0, h - 1)][:, :, np.clip(in_x, 0, w - 1)]
            yield values, inside


def average_pool(p: PoolParams, input: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """With ``steps`` (a dict), the int kernels record ``sum`` (the int32 sum of the in-image taps),
    ``count`` (how many, per output position), ``average`` (after the rounded division) and
    ``output`` (clamped), for ``explain``."""
    images = input.reshape((-1,) + input.shape[-3:])
    shape = (images.shape[0], p.output_height, p.output_width, images.shape[3])
    floating = p.kind == "FLOAT32"
    total = np.zeros(shape, np.float32 if floating else np.int64)
    count = np.zeros((p.output_height, p.output_width), np.int64)
    with np.errstate(all="ignore"):  # float inf/NaN arithmetic is C's, not an error
        for values, inside in _taps(p, images):
            mask = inside[None, :, :, None]
            total = np.where(mask, total + values, total).astype(total.dtype)
            count += inside
        if floating:
            return clamp_float(total / count.astype(np.float32)[None, :, :, None], p.activation_min,
                               p.activation_max)
    total = fp.wrap_int32(total)  # TFLM's int32 accumulator
    count = count[None, :, :, None]
    average = fp.truncating_divide(fp.wrap_int32(np.where(total > 0, total + count // 2, total - count // 2)), count)
    output = np.minimum(np.maximum(average, p.activation_min), p.activation_max)
    if steps is not None:
        steps.update(sum=total, count=np.broadcast_to(count, total.shape), average=average, output=output)
    return output


def max_pool(p: PoolParams, input: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """With ``steps``, the int kernels record ``max`` (the largest in-image tap) and ``output``."""
    images = input.reshape((-1,) + input.shape[-3:])
    shape = (images.shape[0], p.output_height, p.output_width, images.shape[3])
    floating = p.kind == "FLOAT32"
    best = np.full(shape, TYPE_LOWEST[p.kind], np.float32 if floating else np.int64)
    for values, inside in _taps(p, images):
        # std::max(best, value) is (best < value) ? value : best: NaN never wins.
        best = np.where(inside[None, :, :, None] & (best < values), values, best).astype(best.dtype)
    if floating:
        return clamp_float(best, p.activation_min, p.activation_max)
    output = np.minimum(np.maximum(best, p.activation_min), p.activation_max)
    if steps is not None:
        steps.update(max=best, output=output)
    return output
