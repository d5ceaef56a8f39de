#!/usr/bin/env python3
"""Build microref's golden conformance data: tiny int8 models, inputs, and TFLM's outputs.

Run from the project root with the generator environment (TensorFlow + the TFLM wheel):

    /work/gvenv/bin/python golden/make_golden.py            # rebuild everything
    /work/gvenv/bin/python golden/make_golden.py -k softmax # rebuild the cases whose name contains 'softmax'
    /work/gvenv/bin/python golden/make_golden.py --list     # list the case names
    python golden/make_golden.py --verify                   # re-run stored models in TFLM, compare (no TF needed)

For every case it builds a small tf.function / Keras model, converts it with
tf.lite.TFLiteConverter (full-integer quantization), checks which builtin ops the
flatbuffer really contains, runs a few seeded inputs through TFLM's Python interpreter
(the oracle) and writes

    golden/models/<case>.tflite
    golden/cases/<case>.npz     input_{i}, output_{j} (leading sample axis), arena_head
    golden/manifest.json

Expected values come from TFLM only.  This script must never import microref's own
`interp` / `ops` packages.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import struct
import sys
import tempfile
import time
import zipfile
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.join(HERE, "models")
CASES_DIR = os.path.join(HERE, "cases")
MANIFEST = os.path.join(HERE, "manifest.json")

TFLM_VERSION = "tflite-micro==0.dev20261023182759"
ARENA_SIZE = 16 << 20
REP_SAMPLES = 64  # representative-dataset size used for calibration
RANDOM_SAMPLES = 5  # uniformly drawn samples per case (plus 3 saturation samples)

# --------------------------------------------------------------------------- lazy TF
tf = None
keras = None


def _import_tf():
    global tf, keras
    if tf is None:
        import absl.logging
        import keras as _keras
        import tensorflow as _tf

        absl.logging.set_verbosity(absl.logging.ERROR)
        _tf.get_logger().setLevel("ERROR")
        tf, keras = _tf, _keras
    return tf


# --------------------------------------------------------------------------- utilities
@contextlib.contextmanager
def quiet_fds():
    """Silence fd 1 and fd 2 (the converter's C++ logging, Keras' export chatter).

    The captured text is re-raised with an exception so failures stay debuggable."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(1), os.dup(2)
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException as e:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            tmp.seek(0)
            log = tmp.read().decode("utf-8", "replace")
            e.converter_log = log  # type: ignore[attr-defined]
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def case_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def save_npz(path: str, arrays: dict) -> None:
    """np.savez_compressed with fixed zip timestamps, so regenerating gives identical bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


# --------------------------------------------------------------------------- flatbuffer inspection
def _op_names():
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def model_info(buf: bytes) -> dict:
    """Builtin op names (every subgraph), and whether any constant has per-channel scales."""
    import tflite

    names = _op_names()
    m = tflite.Model.GetRootAsModel(buf, 0)
    ops = set()
    per_channel = False
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for k in range(sg.OperatorsLength()):
            oc = m.OperatorCodes(sg.Operators(k).OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            name = names.get(code, f"BUILTIN_{code}")
            if name == "CUSTOM":
                name = "CUSTOM:" + (oc.CustomCode() or b"").decode()
            ops.add(name)
        for t in range(sg.TensorsLength()):
            q = sg.Tensors(t).Quantization()
            if q is not None and q.ScaleLength() > 1:
                per_channel = True
    main = m.Subgraphs(0)
    return {
        "ops": sorted(ops),
        "per_channel": per_channel,
        "n_inputs": main.InputsLength(),
        "n_outputs": main.OutputsLength(),
    }


def input_quantize_params(buf: bytes, input_pos: int):
    """(scale, zero_point) of the QUANTIZE op that consumes float graph input `input_pos`."""
    import tflite

    names = _op_names()
    m = tflite.Model.GetRootAsModel(buf, 0)
    sg = m.Subgraphs(0)
    tin = sg.Inputs(input_pos)
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())) != "QUANTIZE":
            continue
        if op.InputsLength() and op.Inputs(0) == tin:
            q = sg.Tensors(op.Outputs(0)).Quantization()
            return float(q.Scale(0)), int(q.ZeroPoint(0))
    return None


def patch_softmax_beta(buf: bytes, beta: float) -> bytes:
    """Rewrite SoftmaxOptions.beta in place (the converter always writes beta = 1)."""
    import tflite

    names = _op_names()
    data = bytearray(buf)
    m = tflite.Model.GetRootAsModel(data, 0)
    sg = m.Subgraphs(0)
    patched = 0
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        oc = m.OperatorCodes(op.OpcodeIndex())
        if names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())) != "SOFTMAX":
            continue
        tab = op.BuiltinOptions()
        opts = tflite.SoftmaxOptions()
        opts.Init(tab.Bytes, tab.Pos)
        o = opts._tab.Offset(4)
        if not o:
            raise RuntimeError("SoftmaxOptions.beta is not stored; cannot patch it in place")
        struct.pack_into("<f", data, opts._tab.Pos + o, beta)
        patched += 1
    if not patched:
        raise RuntimeError("no SOFTMAX op to patch")
    return bytes(data)


# --------------------------------------------------------------------------- TFLM
def _tflm_runtime():
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def tflm_arena_head(path: str) -> int:
    runtime = _tflm_runtime()
    it = runtime.Interpreter.from_file(path, arena_size=ARENA_SIZE)
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        m = re.search(rb"Arena allocation head (\d+) bytes", tmp.read())
    if not m:
        raise RuntimeError("TFLM did not print 'Arena allocation head'")
    return int(m.group(1))


def tflm_run(path: str, inputs: list[np.ndarray], n_out: int) -> list[np.ndarray]:
    """Run every sample (leading axis of each input) through TFLM; stack the outputs."""
    runtime = _tflm_runtime()
    it = runtime.Interpreter.from_file(path, arena_size=ARENA_SIZE)
    n = inputs[0].shape[0]
    outs = [[] for _ in range(n_out)]
    for s in range(n):
        for i, x in enumerate(inputs):
            it.set_input(np.ascontiguousarray(x[s]), i)
        it.invoke()
        for j in range(n_out):
            outs[j].append(np.array(it.get_output(j), copy=True))
    return [np.stack(o) for o in outs]


# --------------------------------------------------------------------------- case definitions
CASES: list[dict] = []


def case(
    name,
    description,
    shapes,
    build,
    expect,
    *,
    ranges=(-1.0, 1.0),
    mode="int8",
    per_tensor=False,
    bias32=False,
    keras_model=False,
    dynamic=None,
    beta=None,
    rep="uniform",
):
    """Register a case.

    shapes  list of input shapes (batch included).
    build   rng -> python callable on tf tensors (or, with keras_model=True, rng -> keras.Model).
    expect  builtin ops that must appear in the converted model (else the case is skipped).
    ranges  (lo, hi) of the representative data, for all inputs or one pair per input.
    mode    'int8' (int8 in/out), 'float_io' (float32 in/out: QUANTIZE/DEQUANTIZE at the edges),
            '16x8' (int16 activations, int8 weights; int16 in/out), 'float' (no quantization:
            float32 throughout, for the operators TFLM runs in float32 only).
    dynamic input signature with None dims (stored as 1 by the converter), to keep
            SQUEEZE/EXPAND_DIMS from being rewritten into RESHAPE.
    beta    patch SOFTMAX beta to this value after conversion.
    rep     'uniform' calibration data over `ranges`, or 'sparse': mostly zeros with a few
            entries at the ends of the range, so the calibrated output range is narrow and
            full-range int8 inputs drive the outputs into saturation.
    """
    assert re.fullmatch(r"[a-z0-9_]+", name), name
    assert not any(c["name"] == name for c in CASES), name
    if isinstance(ranges[0], (int, float)):
        ranges = [tuple(ranges)] * len(shapes)
    CASES.append(
        dict(
            name=name,
            description=description,
            shapes=[tuple(s) for s in shapes],
            build=build,
            expect=set(expect),
            ranges=list(ranges),
            mode=mode,
            per_tensor=per_tensor,
            bias32=bias32,
            keras_model=keras_model,
            dynamic=dynamic,
            beta=beta,
            rep=rep,
        )
    )


def C(a):
    return tf.constant(np.asarray(a, np.float32))


def weights(rng, shape, fan_in):
    return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32)


def bias(rng, n, scale=0.3):
    return rng.uniform(-scale, scale, (n,)).astype(np.float32)


ACT = {None: lambda y: y, "relu": lambda y: tf.nn.relu(y), "relu6": lambda y: tf.nn.relu6(y)}


def simple(fn):
    """A weightless model: the builder ignores the rng."""

    def build(rng):
        return fn

    return build


# ---- FULLY_CONNECTED
def fc(din, dout, use_bias=True, act=None):
    def build(rng):
        w = C(weights(rng, (din, dout), din))
        b = C(bias(rng, dout)) if use_bias else None

        def f(x):
            if x.shape.rank == 2:
                y = tf.matmul(x, w)
            else:
                y = tf.tensordot(x, w, 1)
            if b is not None:
                y = y + b
            return ACT[act](y)

        return f

    return build


for nm, shp, dout, kw, extra, desc in [
    ("fc_7x13", (1, 7), 13, {}, {}, "FC 7->13 with bias, per-channel weights"),
    ("fc_7x13_pt", (1, 7), 13, {}, {"per_tensor": True}, "FC 7->13 with bias, per-tensor weights"),
    ("fc_16x10_nobias", (1, 16), 10, {"use_bias": False}, {}, "FC 16->10 without bias (per-channel)"),
    (
        "fc_16x10_nobias_pt",
        (1, 16),
        10,
        {"use_bias": False},
        {"per_tensor": True},
        "FC 16->10 without bias, per-tensor",
    ),
    ("fc_7x13_relu", (1, 7), 13, {"act": "relu"}, {}, "FC 7->13 fused RELU"),
    ("fc_20x8_relu6", (1, 20), 8, {"act": "relu6"}, {}, "FC 20->8 fused RELU6"),
    ("fc_20x8_relu6_pt", (1, 20), 8, {"act": "relu6"}, {"per_tensor": True}, "FC 20->8 fused RELU6, per-tensor"),
    ("fc_3d_1x3x7_to_13", (1, 3, 7), 13, {}, {}, "FC on a 3-D input (1,3,7) -> (1,3,13), keep_num_dims"),
    ("fc_3d_2x4x9_to_5_relu", (2, 4, 9), 5, {"act": "relu"}, {}, "FC on a 3-D input (2,4,9) -> (2,4,5), fused RELU"),
    ("fc_3d_1x3x7_to_13_pt", (1, 3, 7), 13, {}, {"per_tensor": True}, "FC on a 3-D input, per-tensor weights"),
    ("fc_batch3_9x6", (3, 9), 6, {}, {}, "FC with a batch of 3 rows, 9->6"),
    ("fc_1x1", (1, 1), 1, {}, {}, "FC 1->1 (degenerate sizes)"),
    ("fc_64x32", (1, 64), 32, {}, {}, "FC 64->32 (longer accumulation)"),
    (
        "fc_7x13_tiny_scale",
        (1, 7),
        13,
        {},
        {"ranges": (-1e-3, 1e-3)},
        "FC 7->13, inputs calibrated to +-1e-3 (tiny scales)",
    ),
    (
        "fc_7x13_large_scale",
        (1, 7),
        13,
        {},
        {"ranges": (-1e3, 1e3)},
        "FC 7->13, inputs calibrated to +-1e3 (large scales)",
    ),
    (
        "fc_7x13_float_io",
        (1, 7),
        13,
        {},
        {"mode": "float_io"},
        "FC 7->13 with float32 input/output (QUANTIZE/DEQUANTIZE at the edges)",
    ),
    (
        "fc_7x13_asym_range",
        (1, 7),
        13,
        {},
        {"ranges": (-0.2, 3.0)},
        "FC 7->13, asymmetric input range (non-trivial input zero point)",
    ),
]:
    case(nm, desc, [shp], fc(shp[-1], dout, **kw), ["FULLY_CONNECTED"], **extra)


# ---- CONV_2D
def conv(k, cout, stride=1, padding="SAME", dilation=1, act=None, use_bias=True):
    kh, kw_ = (k, k) if isinstance(k, int) else k

    def build(rng):
        state = {}

        def f(x):
            cin = x.shape[-1]
            if "w" not in state:
                state["w"] = C(weights(rng, (kh, kw_, cin, cout), kh * kw_ * cin))
                state["b"] = C(bias(rng, cout)) if use_bias else None
            y = tf.nn.conv2d(x, state["w"], stride, padding, dilations=dilation)
            if state["b"] is not None:
                y = y + state["b"]
            return ACT[act](y)

        return f

    return build


for nm, shp, kw, extra, desc in [
    ("conv2d_k3x3_s1_same", (1, 8, 8, 3), dict(k=3, cout=8), {}, "CONV 3x3 stride 1 SAME"),
    (
        "conv2d_k3x3_s2_same_relu6",
        (1, 9, 9, 4),
        dict(k=3, cout=6, stride=2, act="relu6"),
        {},
        "CONV 3x3 stride 2 SAME, fused RELU6",
    ),
    (
        "conv2d_k3x3_s1_valid_relu",
        (1, 7, 6, 2),
        dict(k=3, cout=5, padding="VALID", act="relu"),
        {},
        "CONV 3x3 stride 1 VALID, fused RELU",
    ),
    (
        "conv2d_k5x3_s3_valid",
        (1, 11, 10, 3),
        dict(k=(5, 3), cout=4, stride=3, padding="VALID"),
        {},
        "CONV 5x3 stride 3 VALID",
    ),
    ("conv2d_k5x3_s2_same", (1, 9, 8, 2), dict(k=(5, 3), cout=3, stride=2), {}, "CONV 5x3 stride 2 SAME (odd padding)"),
    ("conv2d_k3x3_s3_same", (1, 10, 11, 3), dict(k=3, cout=4, stride=3), {}, "CONV 3x3 stride 3 SAME"),
    ("conv2d_k1x1_s1", (1, 5, 5, 8), dict(k=1, cout=6), {}, "CONV 1x1 (pointwise)"),
    ("conv2d_k1x1_s2_valid", (1, 6, 7, 5), dict(k=1, cout=7, stride=2, padding="VALID"), {}, "CONV 1x1 stride 2 VALID"),
    (
        "conv2d_k2x2_s2_valid",
        (1, 8, 8, 3),
        dict(k=2, cout=4, stride=2, padding="VALID"),
        {},
        "CONV 2x2 stride 2 VALID (even kernel)",
    ),
    ("conv2d_k3x3_d2_same", (1, 9, 9, 3), dict(k=3, cout=4, dilation=2), {}, "CONV 3x3 dilation 2 SAME"),
    (
        "conv2d_k3x3_d2_valid_relu6",
        (1, 9, 8, 2),
        dict(k=3, cout=4, dilation=2, padding="VALID", act="relu6"),
        {},
        "CONV 3x3 dilation 2 VALID, fused RELU6",
    ),
    (
        "conv2d_k3x3_s1_same_pt",
        (1, 8, 8, 3),
        dict(k=3, cout=8),
        {"per_tensor": True},
        "CONV 3x3 SAME, per-tensor weights",
    ),
    (
        "conv2d_k3x3_s2_valid_relu6_pt",
        (1, 9, 9, 4),
        dict(k=3, cout=6, stride=2, padding="VALID", act="relu6"),
        {"per_tensor": True},
        "CONV 3x3 stride 2 VALID, fused RELU6, per-tensor",
    ),
    (
        "conv2d_k3x3_nobias",
        (1, 6, 6, 3),
        dict(k=3, cout=4, use_bias=False),
        {},
        "CONV 3x3 SAME without bias in the source graph",
    ),
    ("conv2d_k3x3_batch2", (2, 5, 5, 2), dict(k=3, cout=3), {}, "CONV 3x3 SAME with batch 2"),
    ("conv2d_k3x3_1xw", (1, 1, 12, 3), dict(k=(1, 3), cout=4), {}, "CONV 1x3 on a 1-row image (1-D conv)"),
    (
        "conv2d_k3x3_tiny_scale",
        (1, 6, 6, 3),
        dict(k=3, cout=4),
        {"ranges": (-1e-3, 1e-3)},
        "CONV 3x3, inputs calibrated to +-1e-3",
    ),
    (
        "conv2d_k3x3_large_scale",
        (1, 6, 6, 3),
        dict(k=3, cout=4),
        {"ranges": (-1e3, 1e3)},
        "CONV 3x3, inputs calibrated to +-1e3",
    ),
    (
        "conv2d_k3x3_float_io",
        (1, 6, 6, 3),
        dict(k=3, cout=4, act="relu"),
        {"mode": "float_io"},
        "CONV 3x3 RELU with float32 input/output",
    ),
    (
        "conv2d_k3x3_asym_range_relu",
        (1, 6, 6, 3),
        dict(k=3, cout=4, act="relu"),
        {"ranges": (0.0, 6.0)},
        "CONV 3x3 RELU, input range [0,6] (input zero point -128)",
    ),
]:
    case(nm, desc, [shp], conv(**kw), ["CONV_2D"], **extra)


def keras_grouped_conv(cin_shape, filters, k, groups, stride=1, padding="same", act=None):
    def build(rng):
        inp = keras.Input(cin_shape[1:], batch_size=cin_shape[0])
        y = keras.layers.Conv2D(
            filters,
            k,
            strides=stride,
            padding=padding,
            groups=groups,
            activation=act,
            bias_initializer="random_uniform",
        )(inp)
        return keras.Model(inp, y)

    return build


case(
    "conv2d_grouped_g2_k3x3_same_relu",
    "Grouped CONV (keras Conv2D groups=2) 3x3 SAME RELU",
    [(1, 6, 6, 4)],
    keras_grouped_conv((1, 6, 6, 4), 8, 3, 2, act="relu"),
    ["CONV_2D"],
    keras_model=True,
)
case(
    "conv2d_grouped_g3_k1x1",
    "Grouped CONV (keras Conv2D groups=3) 1x1",
    [(1, 5, 5, 6)],
    keras_grouped_conv((1, 5, 5, 6), 9, 1, 3),
    ["CONV_2D"],
    keras_model=True,
)
case(
    "conv2d_grouped_g4_k3x3_s2_valid",
    "Grouped CONV (keras Conv2D groups=4) 3x3 stride 2 VALID",
    [(1, 7, 7, 8)],
    keras_grouped_conv((1, 7, 7, 8), 8, 3, 4, stride=2, padding="valid"),
    ["CONV_2D"],
    keras_model=True,
)


# ---- DEPTHWISE_CONV_2D
def dwconv(k, dm, stride=1, padding="SAME", dilation=1, act=None):
    kh, kw_ = (k, k) if isinstance(k, int) else k

    def build(rng):
        state = {}

        def f(x):
            cin = x.shape[-1]
            if "w" not in state:
                state["w"] = C(weights(rng, (kh, kw_, cin, dm), kh * kw_))
                state["b"] = C(bias(rng, cin * dm))
            y = tf.nn.depthwise_conv2d(
                x, state["w"], [1, stride, stride, 1], padding, dilations=[dilation, dilation] if dilation > 1 else None
            )
            return ACT[act](y + state["b"])

        return f

    return build


for nm, shp, kw, extra, desc in [
    ("dwconv_dm1_k3x3_s1_same", (1, 7, 7, 4), dict(k=3, dm=1), {}, "DEPTHWISE 3x3 dm1 SAME"),
    (
        "dwconv_dm2_k3x3_s2_valid",
        (1, 9, 9, 3),
        dict(k=3, dm=2, stride=2, padding="VALID"),
        {},
        "DEPTHWISE 3x3 dm2 stride 2 VALID",
    ),
    (
        "dwconv_dm3_k3x3_s1_same_relu6",
        (1, 6, 6, 2),
        dict(k=3, dm=3, act="relu6"),
        {},
        "DEPTHWISE 3x3 dm3 SAME fused RELU6",
    ),
    ("dwconv_dm1_k3x3_d2_same", (1, 9, 9, 3), dict(k=3, dm=1, dilation=2), {}, "DEPTHWISE 3x3 dm1 dilation 2 SAME"),
    (
        "dwconv_dm2_k3x3_d2_valid_relu",
        (1, 9, 9, 2),
        dict(k=3, dm=2, dilation=2, padding="VALID", act="relu"),
        {},
        "DEPTHWISE 3x3 dm2 dilation 2 VALID fused RELU",
    ),
    (
        "dwconv_dm1_k5x3_s2_same_relu",
        (1, 9, 8, 3),
        dict(k=(5, 3), dm=1, stride=2, act="relu"),
        {},
        "DEPTHWISE 5x3 dm1 stride 2 SAME fused RELU",
    ),
    (
        "dwconv_dm1_k3x3_s3_valid",
        (1, 10, 10, 4),
        dict(k=3, dm=1, stride=3, padding="VALID"),
        {},
        "DEPTHWISE 3x3 dm1 stride 3 VALID",
    ),
    (
        "dwconv_dm1_k3x3_s1_same_pt",
        (1, 7, 7, 4),
        dict(k=3, dm=1),
        {"per_tensor": True},
        "DEPTHWISE 3x3 dm1 SAME, per-tensor weights",
    ),
    (
        "dwconv_dm2_k3x3_s1_same_large_scale",
        (1, 5, 5, 2),
        dict(k=3, dm=2),
        {"ranges": (-1e3, 1e3)},
        "DEPTHWISE 3x3 dm2, inputs calibrated to +-1e3",
    ),
]:
    case(nm, desc, [shp], dwconv(**kw), ["DEPTHWISE_CONV_2D"], **extra)


# ---- ADD / SUB / MUL / MAXIMUM / MINIMUM
def binop(fn_name, const=None, act=None, scale_second=None):
    def build(rng):
        c = (
            None
            if const is None
            else C(rng.uniform(-1, 1, const).astype(np.float32) if isinstance(const, tuple) else const)
        )

        def f(*xs):
            a = xs[0]
            b = xs[1] if len(xs) > 1 else c
            if scale_second is not None:
                b = b * scale_second
            y = {"add": tf.add, "sub": tf.subtract, "mul": tf.multiply, "max": tf.maximum, "min": tf.minimum}[fn_name](
                a, b
            )
            return ACT[act](y)

        return f

    return build


for nm, shapes, kw, extra, expect, desc in [
    ("add_same_shape_1x16", [(1, 16), (1, 16)], {}, {}, ["ADD"], "ADD two inputs of the same shape"),
    ("add_same_shape_4d", [(1, 4, 4, 3), (1, 4, 4, 3)], {}, {}, ["ADD"], "ADD two 4-D inputs"),
    ("add_broadcast_1x8_8", [(1, 8), (8,)], {}, {}, ["ADD"], "ADD broadcast (1,8)+(8,)"),
    ("add_broadcast_3x1x7_1x5x1", [(3, 1, 7), (1, 5, 1)], {}, {}, ["ADD"], "ADD broadcast (3,1,7)+(1,5,1)"),
    ("add_broadcast_4d_channel", [(1, 3, 4, 5), (1, 1, 1, 5)], {}, {}, ["ADD"], "ADD broadcast (1,3,4,5)+(1,1,1,5)"),
    ("add_const_tensor", [(1, 4, 4, 3)], {"const": (4, 4, 3)}, {}, ["ADD"], "ADD a constant tensor"),
    ("add_const_scalar", [(1, 10)], {"const": 0.75}, {}, ["ADD"], "ADD a scalar constant"),
    ("add_relu", [(1, 12), (1, 12)], {"act": "relu"}, {}, ["ADD"], "ADD with fused RELU"),
    ("add_relu6", [(1, 3, 5), (1, 3, 5)], {"act": "relu6"}, {"ranges": (-4.0, 5.0)}, ["ADD"], "ADD with fused RELU6"),
    (
        "add_diff_scales",
        [(1, 12), (1, 12)],
        {},
        {"ranges": [(-1.0, 1.0), (-50.0, 50.0)]},
        ["ADD"],
        "ADD of inputs with very different scales",
    ),
    (
        "add_tiny_large_scales",
        [(1, 12), (1, 12)],
        {},
        {"ranges": [(-1e-3, 1e-3), (-1e3, 1e3)]},
        ["ADD"],
        "ADD of +-1e-3 and +-1e3 inputs",
    ),
    ("add_float_io", [(1, 12), (1, 12)], {}, {"mode": "float_io"}, ["ADD"], "ADD with float32 inputs/outputs"),
    ("sub_same_shape", [(1, 16), (1, 16)], {}, {}, ["SUB"], "SUB two inputs of the same shape"),
    ("sub_broadcast_2x1x5_3x1", [(2, 1, 5), (3, 1)], {}, {}, ["SUB"], "SUB broadcast (2,1,5)-(3,1)"),
    ("sub_const_tensor", [(1, 6, 4)], {"const": (6, 4)}, {}, ["SUB"], "SUB a constant tensor"),
    (
        "sub_diff_scales_relu",
        [(1, 10), (1, 10)],
        {"act": "relu"},
        {"ranges": [(-2.0, 2.0), (-0.1, 0.3)]},
        ["SUB"],
        "SUB, different scales, fused RELU",
    ),
    ("mul_same_shape", [(1, 16), (1, 16)], {}, {}, ["MUL"], "MUL two inputs of the same shape"),
    ("mul_broadcast_2x1x5_3x1", [(2, 1, 5), (3, 1)], {}, {}, ["MUL"], "MUL broadcast (2,1,5)*(3,1)"),
    (
        "mul_broadcast_1x8_8",
        [(1, 8), (8,)],
        {},
        {"ranges": [(-3.0, 3.0), (0.0, 2.0)]},
        ["MUL"],
        "MUL broadcast (1,8)*(8,)",
    ),
    ("mul_const_tensor", [(1, 4, 4, 3)], {"const": (3,)}, {}, ["MUL"], "MUL by a per-channel constant"),
    ("mul_relu", [(1, 12), (1, 12)], {"act": "relu"}, {"ranges": (-4.0, 4.0)}, ["MUL"], "MUL with fused RELU"),
    ("maximum_same_shape", [(1, 16), (1, 16)], {}, {}, ["MAXIMUM"], "MAXIMUM of two inputs"),
    ("maximum_broadcast", [(2, 3, 4), (1, 1, 4)], {}, {}, ["MAXIMUM"], "MAXIMUM broadcast (2,3,4),(1,1,4)"),
    ("maximum_const", [(1, 12)], {"const": 0.2}, {}, ["MAXIMUM"], "MAXIMUM with a scalar constant"),
    ("minimum_same_shape", [(1, 16), (1, 16)], {}, {}, ["MINIMUM"], "MINIMUM of two inputs"),
    ("minimum_broadcast", [(2, 3, 4), (3, 1)], {}, {}, ["MINIMUM"], "MINIMUM broadcast (2,3,4),(3,1)"),
    ("minimum_const", [(1, 3, 4)], {"const": -0.3}, {}, ["MINIMUM"], "MINIMUM with a scalar constant"),
]:
    op = nm.split("_")[0].replace("maximum", "max").replace("minimum", "min")
    case(nm, desc, shapes, binop(op, **kw), expect, **extra)


# ---- saturating: calibrated on sparse data, so full-range inputs overflow the output range
case(
    "fc_16x10_saturating",
    "FC 16->10 calibrated on sparse inputs: most outputs saturate at -128/127",
    [(1, 16)],
    fc(16, 10),
    ["FULLY_CONNECTED"],
    rep="sparse",
)
case(
    "fc_16x10_saturating_pt_relu",
    "FC 16->10 per-tensor, fused RELU, calibrated on sparse inputs (saturating)",
    [(1, 16)],
    fc(16, 10, act="relu"),
    ["FULLY_CONNECTED"],
    rep="sparse",
    per_tensor=True,
)
case(
    "conv2d_k3x3_saturating",
    "CONV 3x3 SAME calibrated on sparse inputs (saturating)",
    [(1, 6, 6, 4)],
    conv(3, 5),
    ["CONV_2D"],
    rep="sparse",
)
case(
    "dwconv_dm2_k3x3_saturating",
    "DEPTHWISE 3x3 dm2 calibrated on sparse inputs (saturating)",
    [(1, 6, 6, 3)],
    dwconv(3, 2),
    ["DEPTHWISE_CONV_2D"],
    rep="sparse",
)
case(
    "add_saturating",
    "ADD calibrated on sparse inputs (saturating)",
    [(1, 32), (1, 32)],
    binop("add"),
    ["ADD"],
    rep="sparse",
)
case(
    "sub_saturating",
    "SUB calibrated on sparse inputs (saturating)",
    [(1, 32), (1, 32)],
    binop("sub"),
    ["SUB"],
    rep="sparse",
)
case(
    "mul_saturating",
    "MUL calibrated on sparse inputs (saturating)",
    [(1, 32), (1, 32)],
    binop("mul"),
    ["MUL"],
    rep="sparse",
)
case(
    "mean_axes12_saturating",
    "MEAN over axes [1,2] calibrated on sparse inputs (saturating)",
    [(1, 4, 4, 8)],
    simple(lambda x: tf.reduce_mean(x, [1, 2])),
    ["MEAN"],
    rep="sparse",
)


# ---- SOFTMAX
def softmax_fn(scale=None, before=None):
    def build(rng):
        def f(x):
            if scale is not None:
                x = x * scale
            return tf.nn.softmax(x)

        return f

    return build


case("softmax_1x10", "SOFTMAX over 10 logits", [(1, 10)], softmax_fn(), ["SOFTMAX"])
case("softmax_2x7", "SOFTMAX over 2 rows of 7", [(2, 7)], softmax_fn(), ["SOFTMAX"], ranges=(-4.0, 4.0))
case(
    "softmax_4d_1x2x3x8",
    "SOFTMAX on a 4-D tensor (last axis)",
    [(1, 2, 3, 8)],
    softmax_fn(),
    ["SOFTMAX"],
    ranges=(-3.0, 3.0),
)
case(
    "softmax_wide_range",
    "SOFTMAX of logits in +-30 (many below diff_min)",
    [(1, 16)],
    softmax_fn(),
    ["SOFTMAX"],
    ranges=(-30.0, 30.0),
)
case("softmax_tiny_range", "SOFTMAX of logits in +-0.01", [(1, 12)], softmax_fn(), ["SOFTMAX"], ranges=(-0.01, 0.01))
case(
    "softmax_scaled_input",
    "SOFTMAX of x*2.5 (the converter keeps a separate MUL)",
    [(1, 10)],
    softmax_fn(scale=2.5),
    ["MUL", "SOFTMAX"],
)
case(
    "softmax_beta2p5",
    "SOFTMAX with beta=2.5 (SoftmaxOptions.beta patched after conversion)",
    [(1, 10)],
    softmax_fn(),
    ["SOFTMAX"],
    beta=2.5,
)
case(
    "softmax_4d_beta0p3",
    "4-D SOFTMAX with beta=0.3 (SoftmaxOptions.beta patched after conversion)",
    [(1, 2, 2, 9)],
    softmax_fn(),
    ["SOFTMAX"],
    ranges=(-6.0, 6.0),
    beta=0.3,
)
case(
    "softmax_float_io",
    "SOFTMAX with float32 input/output",
    [(1, 10)],
    softmax_fn(),
    ["SOFTMAX"],
    mode="float_io",
    ranges=(-5.0, 5.0),
)


# ---- simple single-op models (no weights)
def relu_after(kind, act):
    def f(*xs):
        if kind == "concat":
            y = tf.concat(list(xs), -1)
        elif kind == "pad":
            y = tf.pad(xs[0], [[0, 0], [1, 1], [2, 0]])
        elif kind == "transpose":
            y = tf.transpose(xs[0], [0, 2, 1])
        return tf.nn.relu(y) if act == "relu" else tf.nn.relu6(y)

    return f


def requant_concat(x, y):
    return tf.concat([x * 3.0, tf.tanh(y)], -1)


def dyn_squeeze(axes):
    return simple(lambda x: tf.squeeze(x, axes))


SIMPLE = [
    # name, shapes, fn, expect, extra, description
    (
        "reshape_1x4x6_to_1x24",
        [(1, 4, 6)],
        lambda x: tf.reshape(x, (1, 24)),
        ["RESHAPE"],
        {},
        "RESHAPE (1,4,6)->(1,24)",
    ),
    (
        "reshape_4d_to_3d",
        [(1, 2, 3, 4)],
        lambda x: tf.reshape(x, (1, 6, 4)),
        ["RESHAPE"],
        {},
        "RESHAPE (1,2,3,4)->(1,6,4)",
    ),
    (
        "reshape_squeeze_static",
        [(1, 4, 1, 3)],
        lambda x: tf.squeeze(x, [2]),
        ["RESHAPE"],
        {},
        "tf.squeeze with static shapes (the converter emits RESHAPE)",
    ),
    (
        "squeeze_axis2_dynamic",
        [(1, 6, 1, 5)],
        lambda x: tf.squeeze(x, [2]),
        ["SQUEEZE"],
        {"dynamic": [(None, 6, 1, None)]},
        "SQUEEZE axis 2 (signature (None,6,1,None), stored shape (1,6,1,1))",
    ),
    (
        "squeeze_axis1_dynamic",
        [(1, 1, 5, 4)],
        lambda x: tf.squeeze(x, [1]),
        ["SQUEEZE"],
        {"dynamic": [(None, 1, None, 4)]},
        "SQUEEZE axis 1 (signature (None,1,None,4), stored shape (1,1,1,4))",
    ),
    (
        "expand_dims_axis1",
        [(1, 4, 3)],
        lambda x: tf.expand_dims(x, 1),
        ["EXPAND_DIMS"],
        {"dynamic": [(None, 4, 3)]},
        "EXPAND_DIMS axis 1 (dynamic batch keeps it from becoming RESHAPE)",
    ),
    (
        "expand_dims_axis_last",
        [(1, 5, 2)],
        lambda x: tf.expand_dims(x, -1),
        ["EXPAND_DIMS"],
        {"dynamic": [(None, 5, 2)]},
        "EXPAND_DIMS axis -1 (dynamic batch)",
    ),
    (
        "avgpool_2x2_s2_valid",
        [(1, 8, 8, 3)],
        lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"),
        ["AVERAGE_POOL_2D"],
        {},
        "AVERAGE_POOL 2x2 stride 2 VALID",
    ),
    (
        "avgpool_3x3_s2_same",
        [(1, 7, 7, 3)],
        lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"),
        ["AVERAGE_POOL_2D"],
        {},
        "AVERAGE_POOL 3x3 stride 2 SAME (window > stride)",
    ),
    (
        "avgpool_3x3_s1_same",
        [(1, 5, 6, 2)],
        lambda x: tf.nn.avg_pool2d(x, 3, 1, "SAME"),
        ["AVERAGE_POOL_2D"],
        {},
        "AVERAGE_POOL 3x3 stride 1 SAME (edge windows partially outside)",
    ),
    (
        "avgpool_2x3_s1x2_valid",
        [(1, 6, 9, 4)],
        lambda x: tf.nn.avg_pool2d(x, (2, 3), (1, 2), "VALID"),
        ["AVERAGE_POOL_2D"],
        {},
        "AVERAGE_POOL 2x3 strides (1,2) VALID",
    ),
    (
        "avgpool_global_5x5",
        [(1, 5, 5, 6)],
        lambda x: tf.nn.avg_pool2d(x, 5, 5, "VALID"),
        ["AVERAGE_POOL_2D"],
        {},
        "AVERAGE_POOL over the whole 5x5 image",
    ),
    (
        "avgpool_3x3_s2_same_relu",
        [(1, 7, 7, 3)],
        lambda x: tf.nn.relu(tf.nn.avg_pool2d(x, 3, 2, "SAME")),
        ["AVERAGE_POOL_2D"],
        {},
        "AVERAGE_POOL 3x3 stride 2 SAME with fused RELU",
    ),
    (
        "avgpool_float_io",
        [(1, 6, 6, 2)],
        lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"),
        ["AVERAGE_POOL_2D"],
        {"mode": "float_io"},
        "AVERAGE_POOL 2x2 with float32 input/output",
    ),
    (
        "maxpool_2x2_s2_valid",
        [(1, 8, 8, 3)],
        lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"),
        ["MAX_POOL_2D"],
        {},
        "MAX_POOL 2x2 stride 2 VALID",
    ),
    (
        "maxpool_3x3_s2_same",
        [(1, 7, 7, 3)],
        lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"),
        ["MAX_POOL_2D"],
        {},
        "MAX_POOL 3x3 stride 2 SAME (window > stride)",
    ),
    (
        "maxpool_3x3_s1_same",
        [(1, 5, 6, 2)],
        lambda x: tf.nn.max_pool2d(x, 3, 1, "SAME"),
        ["MAX_POOL_2D"],
        {},
        "MAX_POOL 3x3 stride 1 SAME",
    ),
    (
        "maxpool_3x2_s2x1_valid",
        [(1, 9, 6, 4)],
        lambda x: tf.nn.max_pool2d(x, (3, 2), (2, 1), "VALID"),
        ["MAX_POOL_2D"],
        {},
        "MAX_POOL 3x2 strides (2,1) VALID",
    ),
    (
        "maxpool_2x2_s2_same_odd",
        [(1, 7, 5, 2)],
        lambda x: tf.nn.max_pool2d(x, 2, 2, "SAME"),
        ["MAX_POOL_2D"],
        {},
        "MAX_POOL 2x2 stride 2 SAME on odd sizes",
    ),
    (
        "maxpool_3x3_s2_same_relu6",
        [(1, 7, 7, 3)],
        lambda x: tf.nn.relu6(tf.nn.max_pool2d(x, 3, 2, "SAME")),
        ["MAX_POOL_2D"],
        {"ranges": (-3.0, 8.0)},
        "MAX_POOL 3x3 stride 2 SAME with fused RELU6",
    ),
    (
        "mean_axes12_keepdims",
        [(1, 4, 4, 3)],
        lambda x: tf.reduce_mean(x, [1, 2], keepdims=True),
        ["MEAN"],
        {},
        "MEAN over axes [1,2], keep_dims",
    ),
    ("mean_axes12", [(1, 5, 3, 4)], lambda x: tf.reduce_mean(x, [1, 2]), ["MEAN"], {}, "MEAN over axes [1,2]"),
    ("mean_axis_last", [(1, 4, 4, 3)], lambda x: tf.reduce_mean(x, -1), ["MEAN"], {}, "MEAN over axis -1"),
    ("mean_axis1", [(1, 6, 5)], lambda x: tf.reduce_mean(x, [1]), ["MEAN"], {}, "MEAN over axis 1 of a 3-D tensor"),
    (
        "mean_axis1_keepdims_4d",
        [(1, 7, 3, 2)],
        lambda x: tf.reduce_mean(x, [1], keepdims=True),
        ["MEAN"],
        {"ranges": (0.0, 4.0)},
        "MEAN over axis 1 keep_dims, asymmetric range",
    ),
    (
        "mean_axes12_large",
        [(1, 12, 12, 2)],
        lambda x: tf.reduce_mean(x, [1, 2]),
        ["MEAN"],
        {},
        "MEAN over 144 elements",
    ),
    ("pad_4d", [(1, 3, 4, 2)], lambda x: tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]), ["PAD"], {}, "PAD 4-D spatial"),
    (
        "pad_3d_all_axes",
        [(2, 3, 4)],
        lambda x: tf.pad(x, [[1, 0], [0, 2], [3, 1]]),
        ["PAD"],
        {},
        "PAD every axis of a 3-D tensor",
    ),
    (
        "pad_2d_asym",
        [(1, 5)],
        lambda x: tf.pad(x, [[0, 0], [3, 2]]),
        ["PAD"],
        {"ranges": (0.5, 3.0)},
        "PAD 2-D, range not containing 0",
    ),
    (
        "padv2_4d_const0p5",
        [(1, 3, 4, 2)],
        lambda x: tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]], constant_values=0.5),
        ["PADV2"],
        {},
        "PADV2 constant 0.5",
    ),
    (
        "padv2_2d_const_neg",
        [(2, 4)],
        lambda x: tf.pad(x, [[1, 1], [0, 3]], constant_values=-0.75),
        ["PADV2"],
        {},
        "PADV2 constant -0.75",
    ),
    (
        "transpose_0312",
        [(1, 2, 3, 4)],
        lambda x: tf.transpose(x, [0, 3, 1, 2]),
        ["TRANSPOSE"],
        {},
        "TRANSPOSE perm (0,3,1,2)",
    ),
    (
        "transpose_0213",
        [(1, 3, 4, 5)],
        lambda x: tf.transpose(x, [0, 2, 1, 3]),
        ["TRANSPOSE"],
        {},
        "TRANSPOSE perm (0,2,1,3)",
    ),
    ("transpose_2d", [(3, 7)], lambda x: tf.transpose(x), ["TRANSPOSE"], {}, "TRANSPOSE of a matrix"),
    (
        "transpose_3d_201",
        [(2, 3, 4)],
        lambda x: tf.transpose(x, [2, 0, 1]),
        ["TRANSPOSE"],
        {},
        "TRANSPOSE perm (2,0,1)",
    ),
    (
        "concat_axis_last_2in",
        [(1, 4), (1, 3)],
        lambda x, y: tf.concat([x, y], -1),
        ["CONCATENATION"],
        {},
        "CONCATENATION of 2 inputs, axis -1",
    ),
    (
        "concat_axis1_3in",
        [(1, 2, 3), (1, 4, 3), (1, 1, 3)],
        lambda x, y, z: tf.concat([x, y, z], 1),
        ["CONCATENATION"],
        {},
        "CONCATENATION of 3 inputs, axis 1",
    ),
    (
        "concat_4d_axis3",
        [(1, 2, 2, 3), (1, 2, 2, 5)],
        lambda x, y: tf.concat([x, y], 3),
        ["CONCATENATION"],
        {},
        "CONCATENATION 4-D channels",
    ),
    (
        "concat_float_io",
        [(1, 3), (1, 5)],
        lambda x, y: tf.concat([x, y], 1),
        ["CONCATENATION"],
        {"mode": "float_io"},
        "CONCATENATION with float32 input/output",
    ),
    (
        "quantize_requant_concat_tanh",
        [(1, 4), (1, 3)],
        requant_concat,
        ["QUANTIZE", "CONCATENATION", "TANH", "MUL"],
        {"ranges": [(-2.0, 2.0), (-3.0, 3.0)]},
        "CONCATENATION of x*3 and tanh(y): the converter requantizes (int8->int8 QUANTIZE) the tanh output",
    ),
    (
        "quantize_requant_concat_logistic",
        [(1, 4), (1, 3)],
        lambda x, y: tf.concat([x, tf.sigmoid(y)], 1),
        ["QUANTIZE", "CONCATENATION", "LOGISTIC"],
        {"ranges": [(-4.0, 4.0), (-3.0, 3.0)]},
        "CONCATENATION of x and sigmoid(y): int8->int8 QUANTIZE on the LOGISTIC output",
    ),
    (
        "strided_slice_stride2_neg_shrink",
        [(1, 6, 5, 4)],
        lambda x: x[:, 1:-1:2, ::-1, 2],
        ["STRIDED_SLICE"],
        {},
        "STRIDED_SLICE x[:,1:-1:2,::-1,2] (strides, negative, shrink axis)",
    ),
    (
        "strided_slice_masks",
        [(1, 6, 5, 4)],
        lambda x: x[:, :3, 2:, :],
        ["STRIDED_SLICE"],
        {},
        "STRIDED_SLICE x[:,:3,2:,:] (begin/end masks)",
    ),
    (
        "strided_slice_negative",
        [(2, 7)],
        lambda x: x[-1:, -5:-1],
        ["STRIDED_SLICE"],
        {},
        "STRIDED_SLICE x[-1:,-5:-1] (negative indices)",
    ),
    (
        "strided_slice_stride3_3d",
        [(1, 10, 3)],
        lambda x: x[:, 1::3, :2],
        ["STRIDED_SLICE"],
        {},
        "STRIDED_SLICE x[:,1::3,:2]",
    ),
    (
        "strided_slice_reverse_shrink0",
        [(3, 4, 5)],
        lambda x: x[1, ::-2, 1:4],
        ["STRIDED_SLICE"],
        {},
        "STRIDED_SLICE x[1,::-2,1:4] (shrink axis 0, reverse stride -2)",
    ),
    ("split_3_axis1", [(1, 6, 2)], lambda x: tf.split(x, 3, axis=1), ["SPLIT"], {}, "SPLIT into 3 along axis 1"),
    (
        "split_2_axis_last",
        [(1, 3, 3, 4)],
        lambda x: tf.split(x, 2, axis=-1),
        ["SPLIT"],
        {},
        "SPLIT into 2 along axis -1",
    ),
    (
        "split_v_1_3_2",
        [(1, 2, 6)],
        lambda x: tf.split(x, [1, 3, 2], axis=-1),
        ["SPLIT_V"],
        {},
        "SPLIT_V sizes [1,3,2] along axis -1",
    ),
    (
        "split_v_axis1_4_1",
        [(1, 5, 3)],
        lambda x: tf.split(x, [4, 1], axis=1),
        ["SPLIT_V"],
        {},
        "SPLIT_V sizes [4,1] along axis 1",
    ),
    ("pack_2_axis1", [(1, 4), (1, 4)], lambda x, y: tf.stack([x, y], 1), ["PACK"], {}, "PACK 2 tensors along axis 1"),
    (
        "pack_3_axis0",
        [(2, 3), (2, 3), (2, 3)],
        lambda x, y, z: tf.stack([x, y, z], 0),
        ["PACK"],
        {},
        "PACK 3 tensors along axis 0",
    ),
    (
        "pack_2_axis_last",
        [(1, 3, 2), (1, 3, 2)],
        lambda x, y: tf.stack([x, y], -1),
        ["PACK"],
        {},
        "PACK 2 tensors along axis -1",
    ),
    ("unpack_axis1", [(1, 3, 4)], lambda x: tf.unstack(x, axis=1), ["UNPACK"], {}, "UNPACK along axis 1 (3 outputs)"),
    (
        "unpack_axis_last",
        [(2, 3, 2)],
        lambda x: tf.unstack(x, axis=-1),
        ["UNPACK"],
        {},
        "UNPACK along axis -1 (2 outputs)",
    ),
    ("unpack_axis0", [(4, 5)], lambda x: tf.unstack(x, axis=0), ["UNPACK"], {}, "UNPACK along axis 0 (4 outputs)"),
    ("logistic_1x12", [(1, 12)], lambda x: tf.sigmoid(x), ["LOGISTIC"], {}, "LOGISTIC, input range +-1"),
    (
        "logistic_wide_range",
        [(1, 4, 6)],
        lambda x: tf.sigmoid(x),
        ["LOGISTIC"],
        {"ranges": (-10.0, 10.0)},
        "LOGISTIC, input range +-10 (saturating radius)",
    ),
    (
        "logistic_asym_range",
        [(1, 16)],
        lambda x: tf.sigmoid(x),
        ["LOGISTIC"],
        {"ranges": (-1.0, 6.0)},
        "LOGISTIC, asymmetric input range",
    ),
    ("tanh_1x12", [(1, 12)], lambda x: tf.tanh(x), ["TANH"], {}, "TANH, input range +-1"),
    ("tanh_wide_range", [(1, 4, 6)], lambda x: tf.tanh(x), ["TANH"], {"ranges": (-8.0, 8.0)}, "TANH, input range +-8"),
    (
        "tanh_asym_range",
        [(1, 16)],
        lambda x: tf.tanh(x),
        ["TANH"],
        {"ranges": (-0.5, 3.0)},
        "TANH, asymmetric input range",
    ),
    (
        "relu_after_concat",
        [(1, 4), (1, 3)],
        relu_after("concat", "relu"),
        ["CONCATENATION", "RELU"],
        {},
        "standalone RELU after a CONCATENATION",
    ),
    (
        "relu_after_transpose",
        [(1, 3, 5)],
        relu_after("transpose", "relu"),
        ["TRANSPOSE", "RELU"],
        {"ranges": (-2.0, 0.5)},
        "standalone RELU after a TRANSPOSE (requantizing RELU)",
    ),
    (
        "relu6_after_pad",
        [(1, 4, 3)],
        relu_after("pad", "relu6"),
        ["PAD", "RELU6"],
        {"ranges": (-4.0, 9.0)},
        "standalone RELU6 after a PAD",
    ),
    (
        "relu6_after_concat",
        [(1, 4), (1, 3)],
        relu_after("concat", "relu6"),
        ["CONCATENATION", "RELU6"],
        {"ranges": (-8.0, 8.0)},
        "standalone RELU6 after a CONCATENATION",
    ),
    ("leaky_relu_alpha0p2", [(1, 16)], lambda x: tf.nn.leaky_relu(x, 0.2), ["LEAKY_RELU"], {}, "LEAKY_RELU alpha 0.2"),
    (
        "leaky_relu_alpha1p5",
        [(1, 16)],
        lambda x: tf.raw_ops.LeakyRelu(features=x, alpha=1.5),
        ["LEAKY_RELU"],
        {},
        "LEAKY_RELU alpha 1.5",
    ),
    (
        "leaky_relu_alpha0p01_4d",
        [(1, 3, 3, 4)],
        lambda x: tf.nn.leaky_relu(x, 0.01),
        ["LEAKY_RELU"],
        {"ranges": (-5.0, 2.0)},
        "LEAKY_RELU alpha 0.01 on 4-D",
    ),
    (
        "hard_swish_1x16",
        [(1, 16)],
        lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,
        ["HARD_SWISH"],
        {"ranges": (-4.0, 4.0)},
        "HARD_SWISH, input range +-4",
    ),
    (
        "hard_swish_wide",
        [(1, 3, 3, 4)],
        lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,
        ["HARD_SWISH"],
        {"ranges": (-8.0, 10.0)},
        "HARD_SWISH, input range [-8,10]",
    ),
    (
        "hard_swish_small",
        [(1, 20)],
        lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,
        ["HARD_SWISH"],
        {"ranges": (-0.5, 0.5)},
        "HARD_SWISH, input range +-0.5",
    ),
    (
        "resize_nearest_2x",
        [(1, 3, 4, 2)],
        lambda x: tf.raw_ops.ResizeNearestNeighbor(
            images=x, size=[6, 8], align_corners=False, half_pixel_centers=False
        ),
        ["RESIZE_NEAREST_NEIGHBOR"],
        {},
        "RESIZE_NEAREST_NEIGHBOR 2x, no flags",
    ),
    (
        "resize_nearest_align_corners",
        [(1, 3, 4, 2)],
        lambda x: tf.raw_ops.ResizeNearestNeighbor(images=x, size=[7, 5], align_corners=True, half_pixel_centers=False),
        ["RESIZE_NEAREST_NEIGHBOR"],
        {},
        "RESIZE_NEAREST_NEIGHBOR to 7x5, align_corners",
    ),
    (
        "resize_nearest_half_pixel",
        [(1, 3, 4, 2)],
        lambda x: tf.raw_ops.ResizeNearestNeighbor(images=x, size=[7, 5], align_corners=False, half_pixel_centers=True),
        ["RESIZE_NEAREST_NEIGHBOR"],
        {},
        "RESIZE_NEAREST_NEIGHBOR to 7x5, half_pixel_centers",
    ),
    (
        "resize_nearest_down",
        [(1, 6, 7, 3)],
        lambda x: tf.raw_ops.ResizeNearestNeighbor(
            images=x, size=[4, 3], align_corners=False, half_pixel_centers=False
        ),
        ["RESIZE_NEAREST_NEIGHBOR"],
        {},
        "RESIZE_NEAREST_NEIGHBOR downscale 6x7 -> 4x3",
    ),
    (
        "resize_bilinear_2x",
        [(1, 3, 4, 2)],
        lambda x: tf.raw_ops.ResizeBilinear(images=x, size=[6, 8], align_corners=False, half_pixel_centers=False),
        ["RESIZE_BILINEAR"],
        {},
        "RESIZE_BILINEAR 2x, no flags",
    ),
    (
        "resize_bilinear_align_corners",
        [(1, 3, 4, 2)],
        lambda x: tf.raw_ops.ResizeBilinear(images=x, size=[7, 5], align_corners=True, half_pixel_centers=False),
        ["RESIZE_BILINEAR"],
        {},
        "RESIZE_BILINEAR to 7x5, align_corners",
    ),
    (
        "resize_bilinear_half_pixel",
        [(1, 3, 4, 2)],
        lambda x: tf.raw_ops.ResizeBilinear(images=x, size=[7, 5], align_corners=False, half_pixel_centers=True),
        ["RESIZE_BILINEAR"],
        {},
        "RESIZE_BILINEAR to 7x5, half_pixel_centers",
    ),
    (
        "resize_bilinear_down_half_pixel",
        [(1, 6, 7, 3)],
        lambda x: tf.raw_ops.ResizeBilinear(images=x, size=[4, 3], align_corners=False, half_pixel_centers=True),
        ["RESIZE_BILINEAR"],
        {},
        "RESIZE_BILINEAR downscale 6x7 -> 4x3, half_pixel_centers",
    ),
    (
        "arg_max_axis_last",
        [(1, 3, 10)],
        lambda x: tf.argmax(x, -1, output_type=tf.int32),
        ["ARG_MAX"],
        {},
        "ARG_MAX axis -1, int32 output",
    ),
    (
        "arg_max_axis1_4d",
        [(1, 4, 4, 5)],
        lambda x: tf.argmax(x, 1, output_type=tf.int32),
        ["ARG_MAX"],
        {},
        "ARG_MAX axis 1 of a 4-D tensor, int32 output",
    ),
    (
        "arg_min_axis_last",
        [(1, 3, 10)],
        lambda x: tf.argmin(x, -1, output_type=tf.int32),
        ["ARG_MIN"],
        {},
        "ARG_MIN axis -1, int32 output",
    ),
    (
        "arg_min_axis0",
        [(5, 4)],
        lambda x: tf.argmin(x, 0, output_type=tf.int32),
        ["ARG_MIN"],
        {},
        "ARG_MIN axis 0, int32 output",
    ),
]
for nm, shapes, fn, expect, extra, desc in SIMPLE:
    case(nm, desc, shapes, simple(fn), expect, **extra)


# ---- PRELU (only the Keras layer is recognised by the converter)
def keras_prelu(shape, shared_axes=None, lo=0.05, hi=0.6):
    def build(rng):
        inp = keras.Input(shape[1:], batch_size=shape[0])
        layer = keras.layers.PReLU(shared_axes=shared_axes)
        y = layer(inp)
        m = keras.Model(inp, y)
        (alpha,) = layer.get_weights()
        layer.set_weights([rng.uniform(lo, hi, alpha.shape).astype(np.float32)])
        return m

    return build


case(
    "prelu_3d_per_channel",
    "PRELU (keras PReLU) with one alpha per element of (3,12)",
    [(1, 3, 12)],
    keras_prelu((1, 3, 12)),
    ["PRELU"],
    keras_model=True,
)
case(
    "prelu_4d_shared_spatial",
    "PRELU with per-channel alpha shared over H,W (broadcast alpha)",
    [(1, 4, 4, 5)],
    keras_prelu((1, 4, 4, 5), shared_axes=[1, 2]),
    ["PRELU"],
    keras_model=True,
    ranges=(-3.0, 2.0),
)
case(
    "prelu_2d_negative_alpha",
    "PRELU with alphas in [-0.5, 1.5] (some negative, some > 1)",
    [(1, 10)],
    keras_prelu((1, 10), lo=-0.5, hi=1.5),
    ["PRELU"],
    keras_model=True,
)


# ---- 16x8 (int16 activations, int8 weights)
case("fc_7x13_16x8", "16x8 FC 7->13 (int64 bias)", [(1, 7)], fc(7, 13), ["FULLY_CONNECTED"], mode="16x8")
case(
    "fc_7x13_16x8_bias32",
    "16x8 FC 7->13 with int32 bias",
    [(1, 7)],
    fc(7, 13),
    ["FULLY_CONNECTED"],
    mode="16x8",
    bias32=True,
)
case(
    "fc_3d_16x8_relu",
    "16x8 FC on a 3-D input, fused RELU",
    [(1, 3, 9)],
    fc(9, 5, act="relu"),
    ["FULLY_CONNECTED"],
    mode="16x8",
)
case(
    "conv2d_k3x3_s1_same_16x8", "16x8 CONV 3x3 SAME (int64 bias)", [(1, 6, 6, 3)], conv(3, 4), ["CONV_2D"], mode="16x8"
)
case(
    "conv2d_k3x3_s2_valid_relu6_16x8_bias32",
    "16x8 CONV 3x3 stride 2 VALID RELU6 with int32 bias",
    [(1, 7, 7, 2)],
    conv(3, 4, stride=2, padding="VALID", act="relu6"),
    ["CONV_2D"],
    mode="16x8",
    bias32=True,
)
case(
    "dwconv_dm2_k3x3_same_16x8",
    "16x8 DEPTHWISE 3x3 dm2 SAME",
    [(1, 5, 5, 3)],
    dwconv(3, 2),
    ["DEPTHWISE_CONV_2D"],
    mode="16x8",
)
case(
    "add_same_shape_16x8",
    "16x8 ADD of two inputs",
    [(1, 16), (1, 16)],
    binop("add"),
    ["ADD"],
    mode="16x8",
    ranges=[(-1.0, 1.0), (-4.0, 4.0)],
)
case("add_broadcast_16x8", "16x8 ADD broadcast (2,1,5)+(3,1)", [(2, 1, 5), (3, 1)], binop("add"), ["ADD"], mode="16x8")
case(
    "softmax_1x10_16x8",
    "16x8 SOFTMAX (int16 in/out)",
    [(1, 10)],
    softmax_fn(),
    ["SOFTMAX"],
    mode="16x8",
    ranges=(-4.0, 4.0),
)
case(
    "softmax_4d_16x8",
    "16x8 SOFTMAX on a 4-D tensor",
    [(1, 2, 3, 6)],
    softmax_fn(),
    ["SOFTMAX"],
    mode="16x8",
    ranges=(-8.0, 8.0),
)


# ---- small multi-op networks (also exercise the arena planner)
def tiny_cnn(rng):
    w1 = C(weights(rng, (3, 3, 2, 6), 18))
    b1 = C(bias(rng, 6))
    wd = C(weights(rng, (3, 3, 6, 1), 9))
    bd = C(bias(rng, 6))
    wf = C(weights(rng, (6 * 4 * 4, 5), 96))
    bf = C(bias(rng, 5))

    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + b1)
        y = tf.nn.relu6(tf.nn.depthwise_conv2d(y, wd, [1, 2, 2, 1], "SAME") + bd)
        y = tf.nn.avg_pool2d(y, 2, 1, "SAME")
        y = tf.reshape(y, (1, 96))
        return tf.nn.softmax(tf.matmul(y, wf) + bf)

    return f


def residual_block(rng):
    w1 = C(weights(rng, (3, 3, 4, 4), 36))
    b1 = C(bias(rng, 4))
    w2 = C(weights(rng, (1, 1, 4, 4), 4))
    b2 = C(bias(rng, 4))

    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + b1)
        y = tf.nn.conv2d(y, w2, 1, "SAME") + b2
        y = tf.nn.relu(y + x)
        return tf.reduce_mean(y, [1, 2])

    return f


def two_outputs(rng):
    w = C(weights(rng, (12, 6), 12))
    b = C(bias(rng, 6))

    def f(x, y):
        h = tf.matmul(tf.concat([x, y], -1), w) + b
        return tf.nn.softmax(h), tf.tanh(h), tf.maximum(x, y)

    return f


def mobile_block(rng):
    we = C(weights(rng, (1, 1, 4, 12), 4))
    be = C(bias(rng, 12))
    wd = C(weights(rng, (3, 3, 12, 1), 9))
    bd = C(bias(rng, 12))
    wp = C(weights(rng, (1, 1, 12, 4), 12))
    bp = C(bias(rng, 4))

    def f(x):
        y = tf.nn.relu6(tf.nn.conv2d(x, we, 1, "SAME") + be)
        y = tf.nn.relu6(tf.nn.depthwise_conv2d(y, wd, [1, 1, 1, 1], "SAME") + bd)
        y = tf.nn.conv2d(y, wp, 1, "SAME") + bp
        y = y + x
        y = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]])
        return tf.nn.max_pool2d(y, 3, 2, "VALID")

    return f


case(
    "net_tiny_cnn",
    "conv RELU -> depthwise s2 RELU6 -> avgpool -> reshape -> FC -> softmax",
    [(1, 8, 8, 2)],
    tiny_cnn,
    ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"],
)
case(
    "net_residual_block",
    "conv3x3 RELU -> conv1x1 -> ADD skip RELU -> MEAN",
    [(1, 6, 6, 4)],
    residual_block,
    ["CONV_2D", "ADD", "MEAN"],
)
case(
    "net_two_inputs_three_outputs",
    "concat -> FC -> (softmax, tanh), plus maximum of the inputs",
    [(1, 6), (1, 6)],
    two_outputs,
    ["CONCATENATION", "FULLY_CONNECTED", "SOFTMAX", "TANH", "MAXIMUM"],
)
case(
    "net_mobile_block",
    "inverted residual: expand 1x1 RELU6 -> dw 3x3 RELU6 -> project 1x1 -> ADD -> PAD -> MAX_POOL",
    [(1, 6, 6, 4)],
    mobile_block,
    ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "MAX_POOL_2D"],
)
case(
    "net_tiny_cnn_float_io",
    "the tiny CNN with float32 input/output",
    [(1, 8, 8, 2)],
    tiny_cnn,
    ["QUANTIZE", "DEQUANTIZE", "CONV_2D", "SOFTMAX"],
    mode="float_io",
)


# ---- issue 15: the operators TFLM registers beyond the first 41 (what the converter emits for them)
def tconv(k, cout, stride, padding="SAME", use_bias=True):
    """tf.nn.conv2d_transpose (+ bias): the converter's TRANSPOSE_CONV."""

    def build(rng):
        state = {}

        def f(x):
            n, h, w, cin = x.shape
            if "w" not in state:
                state["w"] = C(weights(rng, (k, k, cout, cin), k * k * cin))
                state["b"] = C(bias(rng, cout)) if use_bias else None
            oh = h * stride if padding == "SAME" else (h - 1) * stride + k
            ow = w * stride if padding == "SAME" else (w - 1) * stride + k
            y = tf.nn.conv2d_transpose(x, state["w"], (n, oh, ow, cout), stride, padding)
            return y + state["b"] if state["b"] is not None else y

        return f

    return build


def xla_dynamic_update_slice(x, update, start):
    """tf2xla's dynamic_update_slice, which the converter turns into DYNAMIC_UPDATE_SLICE."""
    from tensorflow.compiler.tf2xla.python import xla

    return xla.dynamic_update_slice(x, update, tf.constant(start, tf.int32))


def select_v2(x, y):
    return tf.where(x > y, x, y * 0.5)


ISSUE15 = [
    # name, shapes, build, expect, extra, description
    (
        "transpose_conv_k3_s2_same",
        [(1, 4, 4, 3)],
        tconv(3, 4, 2),
        ["TRANSPOSE_CONV"],
        {},
        "TRANSPOSE_CONV 3x3 stride 2 SAME with bias (per-channel int8 filters)",
    ),
    (
        "transpose_conv_k2_s2_valid_pt",
        [(1, 3, 3, 2)],
        tconv(2, 3, 2, "VALID"),
        ["TRANSPOSE_CONV"],
        {"per_tensor": True},
        "TRANSPOSE_CONV 2x2 stride 2 VALID, per-tensor filters",
    ),
    (
        "transpose_conv_k3_s1_same_16x8",
        [(1, 3, 3, 2)],
        tconv(3, 2, 1),
        ["TRANSPOSE_CONV"],
        {"mode": "16x8"},
        "16x8 TRANSPOSE_CONV 3x3 stride 1 SAME (int64 bias)",
    ),
    (
        "batch_matmul_2x3x4_2x4x5",
        [(2, 3, 4), (2, 4, 5)],
        simple(lambda a, b: tf.matmul(a, b)),
        ["BATCH_MATMUL"],
        {},
        "BATCH_MATMUL of two activations (2,3,4)x(2,4,5)",
    ),
    (
        "batch_matmul_adj_y",
        [(1, 3, 6), (1, 5, 6)],
        simple(lambda a, b: tf.matmul(a, b, transpose_b=True)),
        ["BATCH_MATMUL"],
        {},
        "BATCH_MATMUL with adj_y",
    ),
    (
        "gather_axis0",
        [(6, 4)],
        simple(lambda x: tf.gather(x, tf.constant([5, 0, 2, 2], tf.int32))),
        ["GATHER"],
        {},
        "GATHER rows [5,0,2,2] of a (6,4) input",
    ),
    (
        "gather_axis2_4d",
        [(1, 3, 5, 2)],
        simple(lambda x: tf.gather(x, tf.constant([4, 1], tf.int32), axis=2)),
        ["GATHER"],
        {},
        "GATHER along axis 2 of a 4-D input",
    ),
    (
        "gather_nd_pairs",
        [(4, 3, 2)],
        simple(lambda x: tf.gather_nd(x, tf.constant([[3, 1], [0, 2], [1, 0]], tf.int32))),
        ["GATHER_ND"],
        {},
        "GATHER_ND of (row, column) pairs",
    ),
    (
        "l2_normalization_last_axis",
        [(1, 3, 8)],
        simple(lambda x: tf.math.l2_normalize(x, -1)),
        ["L2_NORMALIZATION"],
        {},
        "L2_NORMALIZATION over the last axis",
    ),
    (
        "depth_to_space_b2",
        [(1, 2, 3, 8)],
        simple(lambda x: tf.nn.depth_to_space(x, 2)),
        ["DEPTH_TO_SPACE"],
        {},
        "DEPTH_TO_SPACE block 2",
    ),
    (
        "space_to_depth_b2",
        [(1, 4, 6, 2)],
        simple(lambda x: tf.nn.space_to_depth(x, 2)),
        ["SPACE_TO_DEPTH"],
        {},
        "SPACE_TO_DEPTH block 2",
    ),
    (
        "space_to_batch_nd_b2",
        [(1, 4, 4, 3)],
        simple(lambda x: tf.space_to_batch_nd(x, [2, 2], [[0, 0], [0, 0]])),
        ["SPACE_TO_BATCH_ND"],
        {},
        "SPACE_TO_BATCH_ND block 2x2",
    ),
    (
        "batch_to_space_nd_b2",
        [(4, 2, 2, 3)],
        simple(lambda x: tf.batch_to_space(x, [2, 2], [[0, 0], [0, 0]])),
        ["BATCH_TO_SPACE_ND"],
        {},
        "BATCH_TO_SPACE_ND block 2x2",
    ),
    (
        "mirror_pad_reflect",
        [(1, 4, 5, 2)],
        simple(lambda x: tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]], "REFLECT")),
        ["MIRROR_PAD"],
        {},
        "MIRROR_PAD REFLECT",
    ),
    (
        "mirror_pad_symmetric",
        [(3, 4)],
        simple(lambda x: tf.pad(x, [[1, 1], [0, 3]], "SYMMETRIC")),
        ["MIRROR_PAD"],
        {},
        "MIRROR_PAD SYMMETRIC",
    ),
    (
        "slice_3d",
        [(2, 5, 4)],
        simple(lambda x: tf.slice(x, [1, 1, 0], [1, 3, 3])),
        ["SLICE"],
        {},
        "SLICE of a 3-D input",
    ),
    (
        "log_softmax_1x10",
        [(1, 10)],
        simple(lambda x: tf.nn.log_softmax(x)),
        ["LOG_SOFTMAX"],
        {"ranges": (-4.0, 4.0)},
        "LOG_SOFTMAX over 10 logits",
    ),
    ("reverse_v2_axis1", [(2, 5, 3)], simple(lambda x: tf.reverse(x, [1])), ["REVERSE_V2"], {}, "REVERSE_V2 axis 1"),
    (
        "squared_difference",
        [(1, 12), (1, 12)],
        simple(lambda a, b: tf.math.squared_difference(a, b)),
        ["SQUARED_DIFFERENCE"],
        {},
        "SQUARED_DIFFERENCE of two inputs",
    ),
    (
        "rsqrt_positive",
        [(1, 16)],
        simple(lambda x: tf.math.rsqrt(x)),
        ["RSQRT"],
        {"ranges": (0.05, 4.0)},
        "RSQRT of positive inputs",
    ),
    ("abs_1x16", [(1, 16)], simple(lambda x: tf.abs(x)), ["ABS"], {"ranges": (-3.0, 2.0)}, "ABS"),
    ("elu_1x16", [(1, 16)], simple(lambda x: tf.nn.elu(x)), ["ELU"], {"ranges": (-4.0, 2.0)}, "ELU"),
    ("sum_axis1", [(1, 6, 4)], simple(lambda x: tf.reduce_sum(x, 1)), ["SUM"], {}, "SUM over axis 1"),
    (
        "reduce_max_axes12",
        [(1, 4, 3, 5)],
        simple(lambda x: tf.reduce_max(x, [1, 2])),
        ["REDUCE_MAX"],
        {},
        "REDUCE_MAX over axes [1,2]",
    ),
    (
        "reduce_min_axis_last",
        [(2, 3, 7)],
        simple(lambda x: tf.reduce_min(x, -1)),
        ["REDUCE_MIN"],
        {},
        "REDUCE_MIN over the last axis",
    ),
    (
        "select_v2_where",
        [(2, 6), (1, 6)],
        simple(select_v2),
        ["SELECT_V2"],
        {},
        "tf.where(x > y, x, y/2) with broadcasting (SELECT_V2; same shapes give SELECT, which TFLM lacks)",
    ),
    (
        "comparisons_int8",
        [(1, 10), (1, 10)],
        simple(lambda a, b: (tf.less(a, b), tf.greater_equal(a, b), tf.not_equal(a, b))),
        ["LESS", "GREATER_EQUAL", "NOT_EQUAL"],
        {"ranges": [(-1.0, 1.0), (-0.5, 2.0)]},
        "LESS, GREATER_EQUAL, NOT_EQUAL of int8 inputs with different scales (bool outputs)",
    ),
    (
        "greater_int8",
        [(1, 10), (1, 10)],
        simple(lambda a, b: tf.greater(a, b)),
        ["GREATER"],
        {},
        "GREATER of int8 inputs with different scales (bool output)",
    ),
    ("equal_const", [(1, 10)], simple(lambda a: tf.equal(a, 0.25)), ["EQUAL"], {}, "EQUAL to a constant (bool output)"),
    (
        "less_equal_broadcast",
        [(2, 5), (1, 5)],
        simple(lambda a, b: tf.less_equal(a, b)),
        ["LESS_EQUAL"],
        {},
        "LESS_EQUAL with broadcasting (bool output)",
    ),
    (
        "div_int8",
        [(1, 10), (1, 10)],
        simple(lambda a, b: a / b),
        ["DIV"],
        {"ranges": [(-2.0, 2.0), (0.5, 3.0)]},
        "DIV of int8 inputs",
    ),
    (
        "broadcast_to_3x4",
        [(1, 4)],
        simple(lambda x: tf.broadcast_to(x, (3, 4))),
        ["BROADCAST_TO"],
        {},
        "BROADCAST_TO (1,4) -> (3,4)",
    ),
    ("cumsum_axis1", [(1, 8)], simple(lambda x: tf.cumsum(x, 1)), ["CUMSUM"], {}, "CUMSUM along axis 1"),
    # float32 models: the ops TFLM runs in float32 only, and the float paths of the others
    (
        "float_unary_chain",
        [(1, 12)],
        simple(lambda x: (tf.floor(x) + tf.math.ceil(x * 0.5) + tf.round(x * 3.0) - tf.abs(x), tf.negative(x))),
        ["FLOOR", "CEIL", "ROUND", "ABS", "NEG"],
        {"mode": "float", "ranges": (-4.0, 4.0)},
        "float32 FLOOR, CEIL, ROUND (half to even), ABS, NEG",
    ),
    (
        "float_transcendentals",
        [(1, 12)],
        simple(
            lambda x: (
                tf.exp(x) + tf.math.log(tf.abs(x) + 0.1) + tf.sin(x) * tf.cos(x) + tf.sqrt(tf.abs(x)) + tf.square(x)
            )
        ),
        ["EXP", "LOG", "SIN", "COS", "SQRT", "SQUARE"],
        {"mode": "float", "ranges": (-3.0, 3.0)},
        "float32 EXP, LOG, SIN, COS, SQRT, SQUARE (the host libm's, as the wheel's)",
    ),
    (
        "float_floor_div_mod",
        [(1, 10), (1, 10)],
        simple(lambda a, b: tf.math.floordiv(a, b) + tf.math.floormod(a, b)),
        ["FLOOR_DIV", "FLOOR_MOD"],
        {"mode": "float", "ranges": [(-5.0, 5.0), (0.5, 2.0)]},
        "float32 FLOOR_DIV and FLOOR_MOD",
    ),
    (
        "float_logical",
        [(1, 10), (1, 10)],
        simple(lambda a, b: tf.logical_or(tf.logical_not(tf.logical_and(a > 0.0, b < 0.5)), a > b + 1.0)),
        ["LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT"],
        {"mode": "float"},
        "LOGICAL_AND/OR/NOT of comparisons (bool output)",
    ),
    (
        "float_reduce_all",
        [(2, 6)],
        simple(lambda a: tf.reduce_all(a > -0.5, axis=1)),
        ["REDUCE_ALL"],
        {"mode": "float"},
        "REDUCE_ALL of a comparison",
    ),
    (
        "float_add_n",
        [(1, 6), (1, 6), (1, 6)],
        simple(lambda a, b, c: tf.add_n([a, b, c])),
        ["ADD_N"],
        {"mode": "float"},
        "ADD_N of three inputs",
    ),
    (
        "float_cast_int32",
        [(1, 8)],
        simple(lambda a: tf.cast(tf.cast(a * 10.0, tf.int32), tf.float32) * 0.5),
        ["CAST"],
        {"mode": "float", "ranges": (-20.0, 20.0)},
        "CAST float32 -> int32 -> float32",
    ),
    (
        "float_log_softmax_l2norm",
        [(2, 7)],
        simple(lambda x: tf.nn.log_softmax(x) + tf.math.l2_normalize(x, -1)),
        ["LOG_SOFTMAX", "L2_NORMALIZATION"],
        {"mode": "float", "ranges": (-6.0, 6.0)},
        "float32 LOG_SOFTMAX and L2_NORMALIZATION",
    ),
    (
        "float_batch_matmul_gather",
        [(2, 3, 4), (2, 4, 3)],
        simple(lambda a, b: tf.gather(tf.matmul(a, b), tf.constant([1, 0, 2], tf.int32), axis=2)),
        ["BATCH_MATMUL", "GATHER"],
        {"mode": "float"},
        "float32 BATCH_MATMUL then GATHER",
    ),
    (
        "float_transpose_conv",
        [(1, 3, 3, 2)],
        tconv(3, 2, 2),
        ["TRANSPOSE_CONV"],
        {"mode": "float"},
        "float32 TRANSPOSE_CONV 3x3 stride 2 SAME",
    ),
    (
        "float_cumsum_exclusive_reverse",
        [(2, 6)],
        simple(lambda x: tf.cumsum(x, 1, exclusive=True, reverse=True)),
        ["CUMSUM"],
        {"mode": "float"},
        "float32 CUMSUM exclusive, reverse",
    ),
    (
        "dynamic_update_slice_const_index",
        [(4, 5), (2, 3)],
        simple(lambda x, u: xla_dynamic_update_slice(x, u, [1, 2])),
        ["DYNAMIC_UPDATE_SLICE"],
        {"mode": "float"},
        "DYNAMIC_UPDATE_SLICE (XlaDynamicUpdateSlice) at a constant index",
    ),
    (
        "dynamic_update_slice_int8",
        [(4, 5), (2, 3)],
        simple(lambda x, u: xla_dynamic_update_slice(x, u, [3, 4])),
        ["DYNAMIC_UPDATE_SLICE"],
        {},
        "DYNAMIC_UPDATE_SLICE with int8 I/O (the converter keeps it float32 between DEQUANTIZE and QUANTIZE) "
        "whose start index TFLM clamps (3,4 -> 2,2)",
    ),
    (
        "float_broadcast_args",
        [(1, 3), (2, 1)],
        simple(lambda a, b: (a + b, tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b)))),
        ["BROADCAST_ARGS"],
        {"mode": "float", "dynamic": [(None, 3), (None, 1)]},
        "BROADCAST_ARGS of two dynamic shapes (TFLM's BROADCAST_TO takes only a constant shape, so it is an output)",
    ),
    (
        "float_zeros_like_shape",
        [(1, 5)],
        simple(lambda x: (tf.zeros_like(x) + x, tf.shape(x))),
        ["ZEROS_LIKE", "SHAPE"],
        {"mode": "float", "dynamic": [(None, 5)]},
        "ZEROS_LIKE and SHAPE of a dynamic-batch input (a FILL of computed dims is refused by TFLM)",
    ),
]
for nm, shapes, build, expect, extra, desc in ISSUE15:
    case(nm, desc, shapes, build, expect, **extra)


# --------------------------------------------------------------------------- conversion
def convert(c: dict, rng) -> bytes:
    _import_tf()
    shapes, ranges = c["shapes"], c["ranges"]
    built = c["build"](rng)
    if c["keras_model"]:
        converter = tf.lite.TFLiteConverter.from_keras_model(built)
    else:
        sig_shapes = c["dynamic"] or shapes
        sig = [tf.TensorSpec(s, tf.float32) for s in sig_shapes]
        concrete = tf.function(built, input_signature=sig).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    rep_rng = np.random.default_rng(case_seed(c["name"]) + 1)
    if c["rep"] == "sparse":

        def draw(s, lo, hi):
            x = np.zeros(s, np.float32)
            flat = x.reshape(-1)
            idx = rep_rng.choice(flat.size, size=max(1, flat.size // 16), replace=False)
            flat[idx] = rep_rng.choice([lo, hi], size=idx.size)
            return x
    else:

        def draw(s, lo, hi):
            return rep_rng.uniform(lo, hi, s).astype(np.float32)

    rep = [[draw(s, lo, hi) for s, (lo, hi) in zip(shapes, ranges)] for _ in range(REP_SAMPLES)]
    if c["rep"] != "sparse":  # make sure the calibration sees the ends of the range
        rep.append([np.full(s, lo, np.float32) for s, (lo, hi) in zip(shapes, ranges)])
        rep.append([np.full(s, hi, np.float32) for s, (lo, hi) in zip(shapes, ranges)])
    if c["mode"] == "float":  # float32 throughout: no quantization at all
        with quiet_fds():
            return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(rep)
    if c["mode"] == "16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
        if c["bias32"]:
            converter._experimental_full_integer_quantization_bias_type = tf.int32
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if c["mode"] == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:  # float_io: QUANTIZE / DEQUANTIZE at the edges
            converter.inference_input_type = tf.float32
            converter.inference_output_type = tf.float32
    if c["per_tensor"]:
        converter._experimental_disable_per_channel = True
    with quiet_fds():
        model = converter.convert()
    if c["beta"] is not None:
        model = patch_softmax_beta(model, c["beta"])
    return model


def make_samples(c: dict, model: bytes, in_details: list[dict], rng) -> list[np.ndarray]:
    """RANDOM_SAMPLES uniform draws over the full integer range + all-min, all-max and an
    alternating min/max sample.  Float inputs: normal draws, half-way values, saturation."""
    n = RANDOM_SAMPLES + 3
    xs = []
    multi = len(in_details) > 1
    for i, d in enumerate(in_details):
        dt = np.dtype(d["dtype"])
        shape = tuple(int(v) for v in d["shape"])
        out = np.empty((n,) + shape, dt)
        if dt.kind == "i":
            lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
            out[:RANDOM_SAMPLES] = rng.integers(lo, hi, (RANDOM_SAMPLES,) + shape, endpoint=True)
            out[RANDOM_SAMPLES] = lo
            out[RANDOM_SAMPLES + 1] = hi
            if multi:
                out[RANDOM_SAMPLES + 2] = hi if i % 2 == 0 else lo
            else:
                alt = (np.indices(shape).sum(axis=0) % 2 == 0) if shape else np.bool_(True)
                out[RANDOM_SAMPLES + 2] = np.where(alt, hi, lo)
        else:
            lo, hi = c["ranges"][i]
            mid, spread = (lo + hi) / 2, (hi - lo) / 2
            out[:RANDOM_SAMPLES] = rng.normal(mid, spread / 2, (RANDOM_SAMPLES,) + shape)
            qp = input_quantize_params(model, i)
            if qp is not None:  # values (k + 0.5) * scale: exact ties for QUANTIZE's roundf
                s, zp = qp
                k = rng.integers(-128 - zp, 127 - zp, shape, endpoint=True)
                out[RANDOM_SAMPLES] = (k + 0.5) * np.float32(s)
            else:
                out[RANDOM_SAMPLES] = rng.normal(mid, spread, shape)
            out[RANDOM_SAMPLES + 1] = rng.normal(mid, spread * 4, shape)  # saturates
            big = max(abs(lo), abs(hi)) * 3
            alt = (np.indices(shape).sum(axis=0) % 2 == 0) if shape else np.bool_(True)
            out[RANDOM_SAMPLES + 2] = np.where(alt, big, -big)
        xs.append(out)
    return xs


def tflm_input_details(path: str, n_in: int) -> list[dict]:
    runtime = _tflm_runtime()
    it = runtime.Interpreter.from_file(path, arena_size=ARENA_SIZE)
    return [it.get_input_details(i) for i in range(n_in)]


def build_case(c: dict) -> dict:
    name = c["name"]
    seed = case_seed(name)
    rng = np.random.default_rng(seed)
    _import_tf()
    keras.utils.set_random_seed(seed % (2**31))
    model = convert(c, rng)
    info = model_info(model)
    missing = c["expect"] - set(info["ops"])
    if missing:
        raise SkipCase(f"converter produced {info['ops']}, missing {sorted(missing)}")
    if c["mode"] == "float_io":
        edge = {"QUANTIZE", "DEQUANTIZE"} - set(info["ops"])
        if edge:
            raise SkipCase(f"float_io model lacks {sorted(edge)}")
    model_path = os.path.join(MODELS_DIR, name + ".tflite")
    with open(model_path, "wb") as f:
        f.write(model)
    try:
        ins = tflm_input_details(model_path, info["n_inputs"])
        xs = make_samples(c, model, ins, np.random.default_rng(seed + 2))
        ys = tflm_run(model_path, xs, info["n_outputs"])
        head = tflm_arena_head(model_path)
    except Exception as e:
        os.remove(model_path)
        raise SkipCase(f"TFLM cannot run the model: {type(e).__name__}: {e}") from e
    arrays = {f"input_{i}": x for i, x in enumerate(xs)}
    arrays.update({f"output_{j}": y for j, y in enumerate(ys)})
    arrays["arena_head"] = np.int64(head)
    save_npz(os.path.join(CASES_DIR, name + ".npz"), arrays)
    return {
        "case": name,
        "ops": info["ops"],
        "description": c["description"],
        "tflm_version": TFLM_VERSION,
        "tf_version": tf.__version__,
        "quantization": c["mode"] + (" per-tensor" if c["per_tensor"] else "") + (" int32-bias" if c["bias32"] else ""),
        "per_channel": info["per_channel"],
        "model": f"models/{name}.tflite",
        "data": f"cases/{name}.npz",
        "samples": int(xs[0].shape[0]),
        "inputs": [{"shape": list(x.shape[1:]), "dtype": str(x.dtype)} for x in xs],
        "outputs": [{"shape": list(y.shape[1:]), "dtype": str(y.dtype)} for y in ys],
        "arena_head": head,
    }


class SkipCase(Exception):
    pass


# --------------------------------------------------------------------------- verify
def verify() -> int:
    """Re-run every stored model in TFLM on the stored inputs; compare with the stored outputs."""
    with open(MANIFEST) as f:
        manifest = json.load(f)
    bad = 0
    for entry in manifest:
        path = os.path.join(HERE, entry["model"])
        data = np.load(os.path.join(HERE, entry["data"]))
        xs = [data[f"input_{i}"] for i in range(len(entry["inputs"]))]
        ys = tflm_run(path, xs, len(entry["outputs"]))
        ok = len(ys) == len(entry["outputs"]) and all(
            y.dtype == data[f"output_{j}"].dtype and np.array_equal(y, data[f"output_{j}"]) for j, y in enumerate(ys)
        )
        ok = ok and tflm_arena_head(path) == int(data["arena_head"])
        if not ok:
            bad += 1
            print(f"MISMATCH {entry['case']}")
    print(f"verify: {len(manifest) - bad}/{len(manifest)} cases reproduce with TFLM")
    return 1 if bad else 0


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "-k",
        dest="pattern",
        action="append",
        help="only (re)build cases whose name contains this substring (repeatable: any of them)",
    )
    ap.add_argument("--list", action="store_true", help="list the case names and exit")
    ap.add_argument("--verify", action="store_true", help="re-run stored models in TFLM and compare")
    args = ap.parse_args(argv)
    if args.list:
        for c in CASES:
            print(c["name"])
        return 0
    if args.verify:
        return verify()

    os.makedirs(MODELS_DIR, exist_ok=True)
    os.makedirs(CASES_DIR, exist_ok=True)
    selected = [c for c in CASES if not args.pattern or any(p in c["name"] for p in args.pattern)]
    previous = {}
    if args.pattern and os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            previous = {e["case"]: e for e in json.load(f)}
    t0 = time.perf_counter()
    built, skipped = {}, []
    for c in selected:
        t = time.perf_counter()
        try:
            entry = build_case(c)
        except SkipCase as e:
            skipped.append((c["name"], str(e)))
            print(f"SKIP  {c['name']}: {e}", flush=True)
            continue
        except Exception as e:
            last_line = str(e).strip().splitlines()[-1][:300] if str(e).strip() else ""
            reason = f"converter failed: {type(e).__name__}: {last_line}"
            skipped.append((c["name"], reason))
            print(f"SKIP  {c['name']}: {reason}", flush=True)
            continue
        built[c["name"]] = entry
        print(
            f"ok    {c['name']:44s} {','.join(entry['ops']):50s} head={entry['arena_head']:6d} "
            f"[{time.perf_counter() - t:.2f}s]",
            flush=True,
        )

    # manifest in case-definition order; with -k keep the other entries as they were
    manifest = []
    for c in CASES:
        if c["name"] in built:
            manifest.append(built[c["name"]])
        elif args.pattern and c["name"] in previous and c not in selected:
            manifest.append(previous[c["name"]])
    if not args.pattern:  # drop stale files of cases that no longer exist or were skipped
        keep = {e["case"] for e in manifest}
        for d, ext in ((MODELS_DIR, ".tflite"), (CASES_DIR, ".npz")):
            for fn in os.listdir(d):
                if fn.endswith(ext) and fn[: -len(ext)] not in keep:
                    os.remove(os.path.join(d, fn))
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(
        f"\n{len(built)} cases built, {len(skipped)} skipped, {len(manifest)} in the manifest, "
        f"{time.perf_counter() - t0:.1f}s"
    )
    for name, why in skipped:
        print(f"  skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
