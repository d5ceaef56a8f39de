#!/usr/bin/env python3
"""What a compiled kernel would give over microref's numpy kernels, byte for byte (issue 20's
dependency question). Not part of microref: it needs numba, which microref does not depend on.

microref's batched time is spent in passes over whole tensors: a 3x3 depthwise tap costs two
float32 passes (multiply, add), the requantization five to seven float64 passes. A compiled loop
does each output element once, in TFLM's own int32/int64 arithmetic (so exactness needs no float
bound at all). This script times, on MobileNetV2-224's layers, a plain numba loop of TFLM's
depthwise kernel and of MultiplyByQuantizedMultiplier against microref's fast kernels, after
checking that the bytes are the same.

    pip install numba   # in a separate environment is fine
    python benchmarks/compiled_probe.py [MODELS_DIR]
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from interp import Interpreter, limited_blas_threads  # noqa: E402
from ops.common import blocks  # noqa: E402

try:
    import numba
    from numba import njit
except ImportError:  # pragma: no cover
    sys.exit("this probe needs numba (pip install numba)")


@njit(cache=False)
def _mbqm(acc, m, shift):
    """TFLM MultiplyByQuantizedMultiplier (double rounding) for shift <= 0, in int64."""
    right = -shift
    h = (np.int64(acc) * np.int64(m) + (np.int64(1) << 30)) >> 31  # SaturatingRoundingDoublingHighMul
    if right == 0:
        return h
    mask = (np.int64(1) << right) - 1  # RoundingDivideByPOT
    threshold = (mask >> 1) + (1 if h < 0 else 0)
    return (h >> right) + (1 if (h & mask) > threshold else 0)


@njit(cache=False)
def _requantize(acc, bias, mult, shift, zp, lo, hi, out):
    n, c = acc.shape
    for i in range(n):
        for j in range(c):
            out[i, j] = min(max(_mbqm(np.int64(acc[i, j]) + bias[j], mult[j], shift[j]) + zp, lo), hi)


@njit(cache=False)
def _depthwise3x3(xp, w, bias, mult, shift, zp, lo, hi, out):
    """xp: (N, H, W, C) input minus its zero point, padded (pads are 0 then)."""
    n_, oh_, ow_, c_ = out.shape
    acc = np.empty(c_, np.int32)
    for n in range(n_):
        for oy in range(oh_):
            for ox in range(ow_):
                for c in range(c_):
                    acc[c] = bias[c]
                for ky in range(3):
                    for kx in range(3):
                        for c in range(c_):
                            acc[c] += np.int32(xp[n, oy + ky, ox + kx, c]) * np.int32(w[ky, kx, c])
                for c in range(c_):
                    out[n, oy, ox, c] = min(max(_mbqm(acc[c], mult[c], shift[c]) + zp, lo), hi)


def best(fn, repeat=11):
    times = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return min(times)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    models = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "models")
    path = os.path.join(models, "mobilenet_v2_quantized_1x3x224x224.tflite")
    if not os.path.exists(path):
        sys.exit(f"{path} not found")
    it = Interpreter.from_file(path)
    rng = np.random.default_rng(0)
    print(f"numba {numba.__version__}, numpy {np.__version__}; one thread, CPU time, best of 11")
    for index, (op, k) in enumerate(zip(it.subgraph.operators, it.kernels)):
        if op.op_name != "DEPTHWISE_CONV_2D" or k.kernel_hw != (3, 3) or k.stride != (1, 1) or k.kind != "INT8":
            continue
        h, w, c = k.in_hwc
        (oh, ow), (pt, pl) = k.out_hw, (k.pad_top, k.pad_left)
        x = rng.integers(-128, 128, (4, 1, h, w, c)).astype(np.int8)
        want = k.eval([x])[0].reshape(4, oh, ow, c)
        xp = np.full((4, max(oh + 2, h + pt), max(ow + 2, w + pl), c), k.pad_value, np.int16)
        xp[:, pt:pt + h, pl:pl + w] = x[:, 0]
        xp += np.int16(k.input_offset)
        weights = np.asarray(it.tensors[op.inputs[1]].data, np.int16).reshape(3, 3, c)
        bias = np.asarray(k.bias if k.bias is not None else np.zeros(c), np.int32)
        mult = np.broadcast_to(k.multiplier, (c,)).astype(np.int64)
        shift = np.broadcast_to(k.shift, (c,)).astype(np.int64)
        out = np.empty((4, oh, ow, c), np.int8)
        args = (xp, weights, bias, mult, shift, k.output_offset, k.act_min, k.act_max, out)
        _depthwise3x3(*args)
        assert out.tobytes() == want.tobytes(), "the compiled depthwise differs from microref"
        compiled, ours = best(lambda: _depthwise3x3(*args)), best(lambda: k.eval([x]))  # noqa: B023
        print(f"  depthwise op {index:2d} {h}x{w}x{c}: compiled {compiled / out.size * 1e9:5.2f} ns per output, "
              f"microref {ours / out.size * 1e9:5.2f} ns ({ours / compiled:.1f}x), same bytes")
    k = next(k for op, k in zip(it.subgraph.operators, it.kernels)
             if op.op_name == "CONV_2D" and k.out_tensor.shape[3] >= 96 and k.requantizer.use_float)
    channels = k.out_tensor.shape[3]
    acc = rng.integers(-(1 << 18), 1 << 18, (4 * 56 * 56, channels)).astype(np.float32)
    want = k.requantizer(acc)
    out = np.empty_like(want)
    args = (acc, np.broadcast_to(k.bias_folded, (channels,)).astype(np.int64),
            np.broadcast_to(k.multiplier, (channels,)).astype(np.int64),
            np.broadcast_to(k.shift, (channels,)).astype(np.int64), k.output_offset, k.act_min, k.act_max, out)
    _requantize(*args)
    assert out.tobytes() == want.tobytes(), "the compiled requantization differs from microref"

    def ours():
        for part in blocks(acc.shape[0], 2 * channels):
            k.requantizer(acc[part])

    compiled, mine = best(lambda: _requantize(*args)), best(ours)
    print(f"  requantization of a float32 accumulator ({channels} channels): compiled "
          f"{compiled / acc.size * 1e9:.2f} ns per value, microref {mine / acc.size * 1e9:.2f} ns "
          f"({mine / compiled:.1f}x), same bytes")


if __name__ == "__main__":
    with limited_blas_threads():
        main()
