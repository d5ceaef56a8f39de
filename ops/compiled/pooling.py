"""Compiled AVERAGE_POOL_2D for int8 and int16: TFLM's reference loop
(reference/integer_ops/pooling.h, AveragePool) in one pass over the input.

Exactness. Integer arithmetic only, as TFLM's loop does it: the in-image taps of each window
are summed (in int64, then wrapped to int32: a sum modulo 2^32 does not depend on the order of
its terms, so this equals C's wrapping int32 accumulation), the count of those taps is
(fy_end - fy_start)·(fx_end - fx_start) with TFLM's window bounds, then
``acc > 0 ? (acc + count/2) / count : (acc - count/2) / count`` with the ±count/2 wrapping in
int32 and C's truncating division, then the clamp to the activation range and the narrowing
to the output type. No float operation is involved. Prepare (ops/pooling.py) guarantees what
the loop relies on: every window holds at least one in-image tap, and the window origins fit
int32.
"""
from __future__ import annotations

import numpy as np

from . import lazy_njit

__all__ = ["average_pool_int"]


@lazy_njit
def average_pool_int(x, stride_h, stride_w, pad_top, pad_left, filter_h, filter_w, act_min, act_max, out):
    """out[b, oy, ox, c] = TFLM's int8/int16 AveragePool of x (B, H, W, C) with the window
    (filter_h, filter_w) at origin (oy·stride_h - pad_top, ox·stride_w - pad_left)."""
    batches, in_h, in_w, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    acc = np.zeros(channels, np.int64)
    for b in range(batches):
        for oy in range(out_h):
            in_y_origin = oy * stride_h - pad_top
            fy_start = max(0, -in_y_origin)
            fy_end = min(filter_h, in_h - in_y_origin)
            for ox in range(out_w):
                in_x_origin = ox * stride_w - pad_left
                fx_start = max(0, -in_x_origin)
                fx_end = min(filter_w, in_w - in_x_origin)
                for c in range(channels):
                    acc[c] = 0
                count = 0
                for fy in range(fy_start, fy_end):
                    iy = in_y_origin + fy
                    for fx in range(fx_start, fx_end):
                        ix = in_x_origin + fx
                        count += 1
                        for c in range(channels):
                            acc[c] += x[b, iy, ix, c]
                half = count // 2
                for c in range(channels):
                    a = ((acc[c] + 2147483648) & 4294967295) - 2147483648  # the int32 sum
                    if a > 0:
                        a = ((a + half + 2147483648) & 4294967295) - 2147483648
                    else:
                        a = ((a - half + 2147483648) & 4294967295) - 2147483648
                    if a >= 0:  # C's division truncates toward zero
                        q = a // count
                    else:
                        q = -((-a) // count)
                    if q < act_min:
                        q = act_min
                    if q > act_max:
                        q = act_max
                    out[b, oy, ox, c] = q
