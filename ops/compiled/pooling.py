"""Compiled AVERAGE_POOL_2D for int8 and int16: TFLM's reference loop
(reference/integer_ops/pooling.h, AveragePool) in one pass over the input.

Exactness. Integer arithmetic as TFLM's loop does it, except one division (below):

* The in-image taps of each window are summed into int32 accumulators, one per channel, that
  wrap (each store truncates modulo 2^32); four taps of a window row are first added together
  (exactly: |sum| <= 4·32768). A sum modulo 2^32 does not depend on the order or grouping of its
  terms, so each accumulator equals C's wrapping int32 accumulation whatever the window size.
* The count of those taps is (fy_end - fy_start)·(fx_end - fx_start) with TFLM's window bounds,
  then ``acc > 0 ? (acc + count/2) / count : (acc - count/2) / count`` with the ±count/2 wrapping
  in int32, then the clamp to the activation range and the narrowing to the output type.
* C's truncating division a / count (a an int32, 1 <= count, both exact in float64) is computed
  as trunc(fl(a / count)), the float64 quotient correctly rounded, then truncated (numba's
  float-to-int conversion, LLVM's fptosi, truncates toward zero). Equal: if a / count is an
  integer it is representable (|a| < 2^53) and fl returns it exactly; otherwise it lies at least
  1/count from every integer, and fl's error is at most |a / count|·2^-53 < 1/count (since
  |a| <= 2^31 < 2^53), so fl(a / count) lies strictly between the same two integers (or on the
  one toward zero never crossed) and truncates to the same value. No fastmath: the division is
  IEEE's correctly rounded one. (It vectorises: 8 lanes per vdivpd, where an integer division is
  one scalar idiv per channel: vww's 3x3x256 pool 37 -> 14 µs per 64 samples.)

Prepare (ops/pooling.py) guarantees what the loop relies on: every window holds at least one
in-image tap, and the window origins fit int32.

Measured (1 thread, CPU, median of 9 alternating rounds, the previous kernel with int64
accumulators and a channel array reset per window -> this one): kws_ref_model op 9
(25x5x64 -> 1x1, batch 128) 134 -> 51 µs (2.6x), vww_96 op 27 (3x3x256, batch 64) 68 -> 14 µs
(4.8x), pretrainedResnet op 12 (8x8x64, batch 128) 81 -> 23 µs (3.5x).
"""
from __future__ import annotations

import numpy as np

from . import lazy_njit

__all__ = ["average_pool_int"]


@lazy_njit
def average_pool_int(x, stride_h, stride_w, pad_top, pad_left, filter_h, filter_w, act_min, act_max, out):
    """out[b, oy, ox, c] = TFLM's int8/int16 AveragePool of x (B, H, W, C), C-contiguous, with
    the window (filter_h, filter_w) at origin (oy·stride_h - pad_top, ox·stride_w - pad_left);
    out (B, OH, OW, C) C-contiguous."""
    batches, in_h, in_w, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    flat = x.reshape(-1)
    flat_out = out.reshape(-1)
    acc = np.zeros(channels, np.int32)
    o = 0
    for b in range(batches):
        for oy in range(out_h):
            in_y_origin = oy * stride_h - pad_top
            fy_start = max(0, -in_y_origin)
            fy_end = min(filter_h, in_h - in_y_origin)
            for ox in range(out_w):
                in_x_origin = ox * stride_w - pad_left
                fx_start = max(0, -in_x_origin)
                fx_end = min(filter_w, in_w - in_x_origin)
                width = max(fx_end - fx_start, 0)
                for c in range(channels):
                    acc[c] = 0
                for fy in range(fy_start, fy_end):
                    start = ((b * in_h + in_y_origin + fy) * in_w + in_x_origin + fx_start) * channels
                    run = flat[start:start + width * channels]
                    fx = 0
                    while fx + 4 <= width:  # four taps per pass over the accumulators
                        r0 = run[fx * channels:(fx + 1) * channels]
                        r1 = run[(fx + 1) * channels:(fx + 2) * channels]
                        r2 = run[(fx + 2) * channels:(fx + 3) * channels]
                        r3 = run[(fx + 3) * channels:(fx + 4) * channels]
                        for c in range(channels):  # (the int32 store wraps modulo 2^32)
                            acc[c] += (np.int32(r0[c]) + np.int32(r1[c])) + (np.int32(r2[c]) + np.int32(r3[c]))
                        fx += 4
                    while fx < width:
                        row = run[fx * channels:(fx + 1) * channels]
                        for c in range(channels):
                            acc[c] += np.int32(row[c])
                        fx += 1
                count = max(fy_end - fy_start, 0) * width
                half = np.int32(count // 2)
                divisor = np.float64(count)
                dst = flat_out[o:o + channels]
                for c in range(channels):
                    a = acc[c]
                    a = np.int32(a + half) if a > 0 else np.int32(a - half)  # wraps as C's int32
                    q = np.int32(np.float64(a) / divisor)  # C's truncating division (docstring)
                    if q < act_min:
                        q = act_min
                    if q > act_max:
                        q = act_max
                    dst[c] = q
                o += channels
