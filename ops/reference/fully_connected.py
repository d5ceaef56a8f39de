"""FULLY_CONNECTED: reference_integer_ops::FullyConnected / FullyConnectedPerChannel and
reference_ops::FullyConnected (float).

    for b, out_c:
        acc = Σ_d filter[out_c, d]·(input[b, d] + input_offset)     (int32; int64 for 16x8 + int64 bias)
        acc += bias[out_c]
        output[b, out_c] = clamp(MBQM(acc, M[out_c], shift[out_c]) + output_offset)
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..common import clamp_float
from ..params import FullyConnectedParams
from .requantize import requantize


def fully_connected(p: FullyConnectedParams, input: np.ndarray, filter: np.ndarray, bias: np.ndarray | None,
                    steps: dict | None = None) -> np.ndarray:
    """(N, …) input rows of accum_depth values -> (N, rows, output_depth); ``filter`` (O, D) and
    ``bias`` (O,) without a sample axis. ``steps`` records the accumulator and the requantization."""
    n = input.shape[0]
    rows = input.reshape(n, -1, p.accum_depth)
    weights = filter.reshape(-1, p.accum_depth)[: p.output_depth]
    if p.kind == "FLOAT32":
        return _fully_connected_float(p, rows, weights, bias)
    x = rows.astype(np.int64) + p.input_offset
    w = weights.astype(np.int64) + p.weights_offset
    acc = x @ w.T  # Σ_d (input + input_offset)·(filter + filter_offset), exact in int64
    if steps is not None:
        steps["sum_of_products"] = acc
    if bias is not None:
        acc = acc + bias.reshape(-1)[: p.output_depth].astype(np.int64)
    if not p.requantize.int64_accumulator:
        acc = fp.wrap_int32(acc)  # C's int32 accumulator wraps
    if steps is not None:
        steps["accumulator"] = acc
    return requantize(acc, p.requantize, steps)


def _fully_connected_float(p, rows, weights, bias):
    """total = 0.f; for d: total += input[d]·filter[d] (in order); + bias; activation."""
    x = rows.astype(np.float32)
    w = weights.astype(np.float32)
    total = np.zeros(x.shape[:-1] + (w.shape[0],), np.float32)
    for d in range(p.accum_depth):
        total += x[..., d:d + 1] * w[:, d]
    # total + bias_value, with bias_value 0.0f when there is no bias
    total = total + (bias.reshape(-1)[: p.output_depth].astype(np.float32) if bias is not None else np.float32(0))
    return clamp_float(total, p.float_activation_min, p.float_activation_max)

