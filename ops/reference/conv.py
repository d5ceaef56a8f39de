"""CONV_2D and DEPTHWISE_CONV_2D: reference_integer_ops::ConvPerChannel / DepthwiseConvPerChannel
(int8, and 16x8 with an int32 or int64 accumulator) and reference_ops::Conv / DepthwiseConv (float).

    for b, out_y, out_x, out_c:
        acc = 0
        for filter_y, filter_x (in_y = out_y·stride - pad + filter_y·dilation, likewise in_x):
            if (in_y, in_x) is inside the image:          # taps outside are skipped
                for in_c of out_c's group (conv) / in_c = out_c // depth_multiplier (depthwise):
                    acc += filter[…]·(input[b, in_y, in_x, in_c] + input_offset)
        acc += bias[out_c]; requantize

The loops over filter taps are kept; everything else (samples, output positions, channels) is
vectorised, as the C loops treat them independently.
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..common import clamp_float
from ..params import ConvParams
from .requantize import requantize


def tap_positions(p: ConvParams, filter_y: int, filter_x: int, height: int, width: int):
    """For one filter tap: the input rows and columns it reads per output row / column (clipped
    into the image), and whether each lies inside the image."""
    in_y = np.arange(p.output_height) * p.stride_height - p.padding_top + filter_y * p.dilation_height_factor
    in_x = np.arange(p.output_width) * p.stride_width - p.padding_left + filter_x * p.dilation_width_factor
    inside = ((in_y >= 0) & (in_y < height))[:, None] & ((in_x >= 0) & (in_x < width))[None, :]
    return np.clip(in_y, 0, max(height - 1, 0)), np.clip(in_x, 0, max(width - 1, 0)), inside


def _tap_values(p: ConvParams, images: np.ndarray, filter_y: int, filter_x: int):
    """(B, OH, OW, C) input values one tap reads, and the (OH, OW) in-image mask."""
    rows, cols, inside = tap_positions(p, filter_y, filter_x, images.shape[1], images.shape[2])
    return images[:, rows][:, :, cols], inside


def conv_2d(p: ConvParams, input: np.ndarray, filter: np.ndarray, bias: np.ndarray | None,
            steps: dict | None = None) -> np.ndarray:
    """input (N, B, H, W, C) or (N·B, H, W, C); filter (OC, KH, KW, C / groups); -> (N·B, OH, OW, OC)."""
    images = input.reshape((-1,) + input.shape[-3:])
    out_c, kh, kw, filter_depth = filter.shape
    groups = images.shape[3] // filter_depth
    per_group = out_c // groups
    if p.kind == "FLOAT32":
        return _conv_float(p, images, filter, bias, groups)
    w = filter.astype(np.int64)
    acc = np.zeros((images.shape[0], p.output_height, p.output_width, out_c), np.int64)
    for fy in range(kh):
        for fx in range(kw):
            values, inside = _tap_values(p, images, fy, fx)
            x = np.where(inside[None, :, :, None], values.astype(np.int64) + p.input_offset, 0)
            for g in range(groups):
                channels = slice(g * per_group, (g + 1) * per_group)
                acc[..., channels] += x[..., g * filter_depth:(g + 1) * filter_depth] @ w[channels, fy, fx, :].T
    return _finish(p, acc, bias, steps)


def depthwise_conv_2d(p: ConvParams, input: np.ndarray, filter: np.ndarray, bias: np.ndarray | None,
                      steps: dict | None = None) -> np.ndarray:
    """input (…, H, W, C); filter (1, KH, KW, C·dm); -> (N·B, OH, OW, C·dm)."""
    images = input.reshape((-1,) + input.shape[-3:])
    _, kh, kw, out_c = filter.shape
    in_channel = np.arange(out_c) // p.depth_multiplier  # output channel oc reads input channel oc // dm
    if p.kind == "FLOAT32":
        return _depthwise_float(p, images, filter, bias, in_channel)
    w = filter.astype(np.int64)
    acc = np.zeros((images.shape[0], p.output_height, p.output_width, out_c), np.int64)
    for fy in range(kh):
        for fx in range(kw):
            values, inside = _tap_values(p, images, fy, fx)
            x = np.where(inside[None, :, :, None], values[..., in_channel].astype(np.int64) + p.input_offset, 0)
            acc += x * w[0, fy, fx, :]
    return _finish(p, acc, bias, steps)


def _finish(p: ConvParams, acc: np.ndarray, bias, steps):
    if steps is not None:
        steps["sum_of_products"] = acc
    if bias is not None:
        acc = acc + bias.reshape(-1).astype(np.int64)
    if not p.requantize.int64_accumulator:
        acc = fp.wrap_int32(acc)  # C's int32 accumulator wraps
    if steps is not None:
        steps["accumulator"] = acc
    return requantize(acc, p.requantize, steps)


def _conv_float(p: ConvParams, images, filter, bias, groups):
    """total = 0.f; for filter_y, filter_x, in_channel (in order, in-image taps only):
    total += input·filter; then total + bias, the activation clamp."""
    out_c, kh, kw, filter_depth = filter.shape
    per_group = out_c // groups
    w = filter.astype(np.float32)
    total = np.zeros((images.shape[0], p.output_height, p.output_width, out_c), np.float32)
    group_of = np.arange(out_c) // per_group
    with np.errstate(all="ignore"):  # inf/NaN arithmetic is C's, not an error
        for fy in range(kh):
            for fx in range(kw):
                values, inside = _tap_values(p, images.astype(np.float32), fy, fx)
                for c in range(filter_depth):
                    x = values[..., group_of * filter_depth + c]  # (B, OH, OW, OC): each output's in-channel c
                    total += np.where(inside[None, :, :, None], x * w[:, fy, fx, c], np.float32(0))
        total = total + (bias.reshape(-1).astype(np.float32) if bias is not None else np.float32(0))
        return clamp_float(total, p.float_activation_min, p.float_activation_max)


def _depthwise_float(p: ConvParams, images, filter, bias, in_channel):
    w = filter.astype(np.float32)
    total = np.zeros((images.shape[0], p.output_height, p.output_width, filter.shape[3]), np.float32)
    with np.errstate(all="ignore"):
        for fy in range(filter.shape[1]):
            for fx in range(filter.shape[2]):
                values, inside = _tap_values(p, images.astype(np.float32), fy, fx)
                total += np.where(inside[None, :, :, None], values[..., in_channel] * w[0, fy, fx, :], np.float32(0))
        total = total + (bias.reshape(-1).astype(np.float32) if bias is not None else np.float32(0))
        return clamp_float(total, p.float_activation_min, p.float_activation_max)

