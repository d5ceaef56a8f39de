#!/usr/bin/env python3
"""CONV_2D's compiled integer direct convolution (ops/compiled/gemm.py) against its float32 GEMM
path (im2col + OpenBLAS sgemm + the compiled requantization), layer by layer, on the real models
(issue 20). Same process, one thread, CPU time, the two alternating, median of 7; the bytes are
checked equal first.

Measured (AMD EPYC Zen 4 with AVX512-VNNI, 2 cores shared with other work; numba 0.68; batch 32,
4 for MobileNetV2-224's 112x112 and 56x56 layers; G MAC/s, float32 path -> compiled):

    pretrainedResnet 3x3 32x32x3->16       9.1 -> 12.1  (1.33x)
                     3x3 32x32x16->16     17.2 -> 49.6  (2.89x)
                     3x3/2 32x32x16->32   22.8 -> 50.5  (2.22x)
                     3x3 16x16x32->32     29.0 -> 74.7  (2.58x)
                     3x3/2 16x16x32->64   34.4 -> 78.7  (2.29x)
                     3x3 8x8x64->64       33.6 -> 91.0  (2.71x)
                     1x1/2 16x16x32->64   19.0 -> 24.1  (1.27x)
                     1x1/2 32x32x16->32    9.8 -> 10.1  (1.03x)
    vww_96           1x1 K=32..256        16.8-39.6 -> 21.3-78.1 (1.27-1.97x)
                     1x1 K=16 -> 32       12.4 -> 12.5  (1.01x)
                     1x1 K=8 -> 16         7.9 ->  4.4  (0.56x: not taken, K < COMPILED_MIN_DEPTH)
                     3x3/2 3->8            4.5 ->  4.2  (0.93x: not taken, 8 channels padded to 16)
    MobileNetV2-224  3x3/2 3->32          12.9 -> 14.7  (1.14x)
                     1x1 K=16..960        13.4-41.4 -> 16.0-93.9 (1.14-2.31x; K >= 96: 1.5-2.3x)

The bare 4x4-block kernel reaches ~85-117 G MAC/s on one core (OpenBLAS sgemm: ~43 on the same
shapes). Isolated probes that did not make it: a 4x4 register-blocked dot-product kernel in plain
numba (LLVM picks 4-lane vectors and vpmulld: 35 G MAC/s, slower than sgemm); the same as an LLVM
IR intrinsic over im2col rows (82-90 G MAC/s in the GEMM, but the numba im2col gather and the
per-block horizontal sums made whole layers 0.2-1.6x).

    python benchmarks/gemm_probe.py [MODELS_DIR]
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from interp import Interpreter, limited_blas_threads  # noqa: E402
from ops import compiled  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

DEFAULT_MIN_ELEMENTS = Conv2D.COMPILED_MIN_ELEMENTS
MODELS = ("pretrainedResnet_quant", "vww_96_int8", "mobilenet_v2_quantized_1x3x224x224")


def alternating(functions, repeat=7):
    times = [[] for _ in functions]
    for _ in range(repeat):
        for i, f in enumerate(functions):
            t0 = time.thread_time()
            f()
            times[i].append(time.thread_time() - t0)
    return [float(np.median(t)) for t in times]


def main():
    if not compiled.available():
        sys.exit("this probe needs numba (pip install 'microref[fast]') and MICROREF_COMPILED unset")
    here = os.path.dirname(os.path.abspath(__file__))
    models = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "models")
    rng = np.random.default_rng(0)
    print("one thread, CPU time, median of 7, alternating; G MAC/s float32 path -> compiled")
    for name in MODELS:
        path = os.path.join(models, name + ".tflite")
        if not os.path.exists(path):
            print(f"{name}: not found")
            continue
        # Every eligible layer gets its compiled plan (the thresholds only gate eval).
        saved = Conv2D.COMPILED_MIN_DEPTH, Conv2D.COMPILED_MAX_PADDING
        Conv2D.COMPILED_MIN_DEPTH, Conv2D.COMPILED_MAX_PADDING = 0, 100.0
        try:
            it = Interpreter.from_file(path)
        finally:
            Conv2D.COMPILED_MIN_DEPTH, Conv2D.COMPILED_MAX_PADDING = saved
        print(name)
        seen = set()
        for index, (op, k) in enumerate(zip(it.subgraph.operators, it.kernels)):
            if op.op_name != "CONV_2D" or k.compiled_gemm is None:
                continue
            oc = k.out_tensor.shape[3]
            key = (k.in_hwc, k.out_hw, k.kernel_hw, k.stride, oc)
            if key in seen:
                continue
            seen.add(key)
            batch = 32 if k.out_hw[0] * k.out_hw[1] <= 48 * 48 else 4
            x = rng.integers(-128, 128, (batch,) + tuple(it.tensors[op.inputs[0]].shape)).astype(np.int8)

            def gemm_path(k=k, x=x):
                Conv2D.COMPILED_MIN_ELEMENTS = 1 << 62
                try:
                    return k.eval([x])[0]
                finally:
                    Conv2D.COMPILED_MIN_ELEMENTS = DEFAULT_MIN_ELEMENTS

            def compiled_path(k=k, x=x):
                Conv2D.COMPILED_MIN_ELEMENTS = 0
                try:
                    return k.eval([x])[0]
                finally:
                    Conv2D.COMPILED_MIN_ELEMENTS = DEFAULT_MIN_ELEMENTS

            assert gemm_path().tobytes() == compiled_path().tobytes(), f"op {index} differs"
            old, new = alternating([gemm_path, compiled_path])
            macs = batch * k.out_hw[0] * k.out_hw[1] * oc * k.weights.shape[0]
            taken = "" if k.weights.shape[0] >= Conv2D.COMPILED_MIN_DEPTH and \
                -(-oc // 16) * 16 <= Conv2D.COMPILED_MAX_PADDING * oc else "  (not taken by default)"
            print(f"  op {index:3d} {k.kernel_hw[0]}x{k.kernel_hw[1]}/{k.stride[0]} {k.in_hwc} -> {oc:4d} "
                  f"K={k.weights.shape[0]:4d} batch {batch}: {macs / old / 1e9:5.1f} -> {macs / new / 1e9:5.1f} "
                  f"({old / new:.2f}x){taken}", flush=True)


if __name__ == "__main__":
    with compiled.use_compiled(True), limited_blas_threads():
        main()
