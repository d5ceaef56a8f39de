"""Run what TFLM runs: quantization values TFLM's kernels never read must not stop a model.

The audit (issue 15) mutated the quantization of every tensor of ~1,500 models the differential
tests compare (and the LSTM/SVDF tensors of the shared real models): scales of 0, -s, NaN and inf,
zero points past the type, quantization removed; each mutant ran in the tflite-micro wheel and
in microref. Findings:

* Many kernels never read some tensors' scales: data movement (RESHAPE, SPLIT, PACK, SLICE,
  GATHER, RESIZE_*, PAD, TRANSPOSE, ...), MAXIMUM/MINIMUM, ARG_MAX/MIN, SELECT_V2, the int8
  L2_NORMALIZATION output, the bias of CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV and of a
  per-channel FULLY_CONNECTED. TFLM runs such models (its own RESIZE_BILINEAR int8 tests use scale
  -128, its SPLIT int8 test scale 0) and gives the unmutated model's values. microref's kernels do
  too; what still refuses them is the model-wide check in interp/model/verify.py
  (check_quantization: "quantization scale ... must be finite and positive"), which runs before
  any kernel. The tests below run the kernels with that one check lifted (``relaxed_scales``).
  verify.py now checks only the scales some kernel reads (verify.quantization_readers: every
  scale of these operators, and the convolutions' biases, are left alone), so TFLM's own cases
  load (tests/test_run_what_tflm_runs_model.py audits the model layer).
* Kernels that do read a scale: a scale of 0, NaN or inf makes TFLM's QuantizeMultiplier /
  CheckedLog2 convert NaN or infinity to an integer (undefined behaviour): microref refuses them,
  naming the operator. Negative scales are ordinary arithmetic for most kernels and microref
  matches the wheel on them, except int16 LOGISTIC/TANH, where CheckedLog2 of a negative scale
  is undefined: now refused (it ran and differed).
* An int8 RELU6 zero point outside int8 is wrapped into int8 by TFLM (Relu6Quantized<int8_t>'s
  parameter); microref clipped it (tests/regressions/relu6_int8_zero_point_past_int8.json).

The property checked for every mutant: microref never runs a model differently from TFLM and never
runs one TFLM refuses; where TFLM does not read the value (its outputs equal the unmutated
model's), microref must run it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from diff_support import NO_ORACLE, ORACLE_AVAILABLE, TflmCrashed, tflm_run

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder

needs_oracle = pytest.mark.skipif(not ORACLE_AVAILABLE, reason=NO_ORACLE)

HOSTILE_SCALES = {"zero": 0.0, "minus128": -128.0, "negated": None, "nan": float("nan"), "inf": float("inf")}


@pytest.fixture
def relaxed_scales(monkeypatch):
    """interp/model/verify.py's check_quantization without its "finite and positive" scale check
    (its per-channel checks still run): the kernels decide, as they will once verify.py leaves
    scales to them."""
    import interp.model.verify as verify
    original = verify.check_quantization

    def check_without_scale_values(t, s, name="<bytes>"):
        q = t.quantization
        if q is None:
            return original(t, s, name)
        positive = dataclasses.replace(q, scales=np.ones_like(q.scales))
        return original(dataclasses.replace(t, quantization=positive), s, name)

    monkeypatch.setattr(verify, "check_quantization", check_without_scale_values)


# ---------------------------------------------------------------------------------- models
def _q(scale=0.05, zp=3):
    return dict(scale=scale, zero_point=zp)


def _int8(rng, shape, n=2):
    return rng.integers(-128, 128, size=(n,) + tuple(shape)).astype(np.int8)


def _one_op(op, in_shapes, out_shapes, *, consts=(), kind="INT8", options=None, const_first=False):
    """One operator: activations ``in_shapes`` (quantized ``kind``), then ``consts`` (name, array)
    as constant inputs (before the activations with ``const_first``), outputs ``out_shapes``."""
    rng = np.random.default_rng(len(op) + len(in_shapes))
    b = ModelBuilder()
    xs = [b.input(f"x{i}", s, kind, **_q()) for i, s in enumerate(in_shapes)]
    cs = [b.constant(name, value) for name, value in consts]
    ys = [b.tensor(f"y{i}", s, kind, **_q()) for i, s in enumerate(out_shapes)]
    b.op(op, cs + xs if const_first else xs + cs, ys, **(options or {}))
    b.output(*ys)
    dtype = np.int8 if kind == "INT8" else np.int16
    inputs = [rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, size=(2,) + tuple(s), endpoint=True)
              .astype(dtype) for s in in_shapes]
    return b.build(), inputs


def _i32(*v):
    return np.array(v, np.int32)


# Operators whose kernels never read the scale of any of their int8/int16 tensors.
SCALE_FREE = {
    "RESIZE_BILINEAR": lambda: _one_op("RESIZE_BILINEAR", [[1, 2, 2, 1]], [[1, 3, 3, 1]],
                                       consts=[("size", _i32(3, 3))]),
    "RESIZE_NEAREST_NEIGHBOR": lambda: _one_op("RESIZE_NEAREST_NEIGHBOR", [[1, 2, 2, 2]], [[1, 4, 3, 2]],
                                               consts=[("size", _i32(4, 3))], kind="INT16"),
    "SPLIT": lambda: _one_op("SPLIT", [[2, 4]], [[2, 2], [2, 2]], consts=[("axis", _i32(1))], const_first=True,
                             options={"num_splits": 2}),
    "SPLIT_V": lambda: _one_op("SPLIT_V", [[3, 4]], [[1, 4], [2, 4]], consts=[("sizes", _i32(1, 2)), ("axis", _i32(0))],
                               options={"num_splits": 2}),
    "RESHAPE": lambda: _one_op("RESHAPE", [[2, 3]], [[3, 2]], consts=[("shape", _i32(3, 2))]),
    "SQUEEZE": lambda: _one_op("SQUEEZE", [[1, 3, 1]], [[3]], options={"squeeze_dims": [0, 2]}),
    "EXPAND_DIMS": lambda: _one_op("EXPAND_DIMS", [[3, 2]], [[3, 1, 2]], consts=[("axis", _i32(1))], kind="INT16"),
    "TRANSPOSE": lambda: _one_op("TRANSPOSE", [[2, 3]], [[3, 2]], consts=[("perm", _i32(1, 0))]),
    "PACK": lambda: _one_op("PACK", [[3], [3]], [[2, 3]], options={"values_count": 2, "axis": 0}),
    "UNPACK": lambda: _one_op("UNPACK", [[2, 3]], [[3], [3]], options={"num": 2, "axis": 0}),
    "STRIDED_SLICE": lambda: _one_op("STRIDED_SLICE", [[4, 3]], [[2, 3]],
                                     consts=[("begin", _i32(1, 0)), ("end", _i32(3, 3)), ("strides", _i32(1, 1))]),
    "SLICE": lambda: _one_op("SLICE", [[4, 3]], [[2, 2]], consts=[("begin", _i32(1, 1)), ("size", _i32(2, 2))]),
    "PAD": lambda: _one_op("PAD", [[2, 2]], [[4, 3]], consts=[("pads", np.array([[1, 1], [0, 1]], np.int32))]),
    "MIRROR_PAD": lambda: _one_op("MIRROR_PAD", [[3, 3]], [[5, 3]],
                                  consts=[("pads", np.array([[1, 1], [0, 0]], np.int32))], options={"mode": "REFLECT"}),
    "REVERSE_V2": lambda: _one_op("REVERSE_V2", [[2, 3]], [[2, 3]], consts=[("axis", _i32(1))]),
    "GATHER": lambda: _one_op("GATHER", [[4, 2]], [[3, 2]], consts=[("idx", _i32(3, 0, 2))], options={"axis": 0}),
    "GATHER_ND": lambda: _one_op("GATHER_ND", [[3, 2]], [[2]], consts=[("idx", np.array([[1, 0], [2, 1]], np.int32))]),
    "DEPTH_TO_SPACE": lambda: _one_op("DEPTH_TO_SPACE", [[1, 1, 1, 4]], [[1, 2, 2, 1]], options={"block_size": 2}),
    "SPACE_TO_DEPTH": lambda: _one_op("SPACE_TO_DEPTH", [[1, 2, 2, 1]], [[1, 1, 1, 4]], options={"block_size": 2}),
    "BATCH_TO_SPACE_ND": lambda: _one_op("BATCH_TO_SPACE_ND", [[4, 1, 1, 1]], [[1, 2, 2, 1]],
                                         consts=[("block", _i32(2, 2)), ("crops", np.zeros((2, 2), np.int32))]),
    "SPACE_TO_BATCH_ND": lambda: _one_op("SPACE_TO_BATCH_ND", [[1, 2, 2, 1]], [[4, 1, 1, 1]],
                                         consts=[("block", _i32(2, 2)), ("pads", np.zeros((2, 2), np.int32))]),
    "BROADCAST_TO": lambda: _one_op("BROADCAST_TO", [[1, 3]], [[2, 3]], consts=[("shape", _i32(2, 3))]),
    "MAXIMUM": lambda: _one_op("MAXIMUM", [[2, 3], [2, 3]], [[2, 3]]),
    "MINIMUM": lambda: _one_op("MINIMUM", [[2, 3], [2, 3]], [[2, 3]], kind="INT16"),
    "ZEROS_LIKE": lambda: _one_op("ZEROS_LIKE", [[2, 3]], [[2, 3]]),
    "DYNAMIC_UPDATE_SLICE": lambda: _one_op("DYNAMIC_UPDATE_SLICE", [[3, 3], [1, 2]], [[3, 3]],
                                            consts=[("start", _i32(1, 1))]),
}


def _arg_max():
    b = ModelBuilder()
    x = b.input("x", [2, 5], "INT8", **_q())
    y = b.tensor("y", [2], "INT32")
    b.op("ARG_MAX", [x, b.constant("axis", _i32(1))], [y], output_type="INT32")
    b.output(y)
    return b.build(), [np.random.default_rng(1).integers(-128, 128, size=(2, 2, 5)).astype(np.int8)]


def _select_v2():
    b = ModelBuilder()
    c = b.input("c", [2, 3], "BOOL")
    xs = [b.input(n, [2, 3], "INT8", **_q()) for n in ("a", "b")]
    y = b.tensor("y", [2, 3], "INT8", **_q())
    b.op("SELECT_V2", [c] + xs, [y])
    b.output(y)
    rng = np.random.default_rng(2)
    return b.build(), [rng.integers(0, 2, size=(2, 2, 3)).astype(bool), _int8(rng, [2, 3]), _int8(rng, [2, 3])]


SCALE_FREE["ARG_MAX"] = _arg_max
SCALE_FREE["SELECT_V2"] = _select_v2


def _conv_bias():
    """int8 CONV_2D whose int32 bias scale is mutated (TFLM uses input x filter scales)."""
    rng = np.random.default_rng(3)
    b = ModelBuilder()
    x = b.input("x", [1, 3, 3, 2], "INT8", **_q(0.05, 1))
    w = b.constant("w", rng.integers(-127, 128, size=(2, 1, 1, 2)).astype(np.int8), "INT8",
                   scale=[0.02, 0.03], zero_point=0, quantized_dimension=0)
    bias = b.constant("bias", rng.integers(-500, 500, size=2).astype(np.int32), "INT32",
                      scale=[0.001, 0.0015], zero_point=0, quantized_dimension=0)
    y = b.tensor("y", [1, 3, 3, 2], "INT8", **_q(0.1, -2))
    b.op("CONV_2D", [x, w, bias], [y], padding="SAME", stride_h=1, stride_w=1)
    b.output(y)
    return b.build(), [_int8(rng, [1, 3, 3, 2])]


# Operators where only some tensors' scales go unread: (builder, tensor names whose scale TFLM ignores).
PARTLY_SCALE_FREE = {"CONV_2D bias": (_conv_bias, {"bias"})}

# Operators that read their scales: mutants must be refused or computed exactly as TFLM computes them.
SCALE_READING = {
    "ADD": lambda: _one_op("ADD", [[2, 3], [2, 3]], [[2, 3]]),
    "MUL": lambda: _one_op("MUL", [[2, 3], [2, 3]], [[2, 3]]),
    "LOGISTIC int16": lambda: _sigmoid("LOGISTIC"),
    "TANH int16": lambda: _sigmoid("TANH"),
    "RELU6": lambda: _one_op("RELU6", [[2, 5]], [[2, 5]]),
    "LEAKY_RELU": lambda: _one_op("LEAKY_RELU", [[2, 5]], [[2, 5]], options={"alpha": 0.25}),
    "QUANTIZE": lambda: _one_op("QUANTIZE", [[2, 5]], [[2, 5]]),
    "DEQUANTIZE": lambda: _dequantize(),
}


def _sigmoid(op):
    b = ModelBuilder()
    x = b.input("x", [2, 4], "INT16", scale=2.0 ** -12 * 1.5, zero_point=0)
    y = b.tensor("y", [2, 4], "INT16", scale=2.0 ** -15, zero_point=0)
    b.op(op, [x], [y])
    b.output(y)
    return b.build(), [np.random.default_rng(4).integers(-32768, 32768, size=(2, 2, 4)).astype(np.int16)]


def _dequantize():
    b = ModelBuilder()
    x = b.input("x", [2, 3], "INT8", **_q())
    y = b.tensor("y", [2, 3], "FLOAT32")
    b.op("DEQUANTIZE", [x], [y])
    b.output(y)
    return b.build(), [_int8(np.random.default_rng(5), [2, 3])]


# ---------------------------------------------------------------------------------- mutation
def _quantized_tensors(data: bytes) -> list[tuple[int, str]]:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(data, 0)
    return [(i, t.name.decode() if isinstance(t.name, bytes) else t.name)
            for i, t in enumerate(model.subgraphs[0].tensors)
            if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale)]


def with_scale(data: bytes, tensor: int, how: str) -> bytes:
    """The model with every scale of ``tensor`` replaced (HOSTILE_SCALES; "negated": -scale),
    written with the wheel's own schema."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(data, 0)
    q = model.subgraphs[0].tensors[tensor].quantization
    old = np.asarray(q.scale, np.float32)
    q.scale = list(-old if how == "negated" else np.full_like(old, HOSTILE_SCALES[how]))
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tflm(data, inputs):
    samples = [[x[i] for x in inputs] for i in range(inputs[0].shape[0])]
    try:
        return tflm_run(data, samples)
    except TflmCrashed as e:
        return "crashed", str(e)


def _microref(data, inputs):
    try:
        it = Interpreter.from_bytes(data)
    except (ModelError, UnsupportedOpError) as e:
        return "refused", f"{type(e).__name__}: {e}"
    return "ok", [it.run([x[i] for x in inputs]) for i in range(inputs[0].shape[0])]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y, equal_nan=np.asarray(x).dtype.kind == "f") and x.dtype == y.dtype
               for xs, ys in zip(a, b) for x, y in zip(xs, ys))


def audit(data, inputs, *, must_run: set[str] | None = None):
    """Every hostile scale on every quantized tensor: microref refuses or equals TFLM; never runs
    what TFLM refuses; runs (and equals) the mutants of tensors named in ``must_run`` (None: all)."""
    verdict, base = _tflm(data, inputs)
    assert verdict == "ok", base
    seen = 0
    for index, name in _quantized_tensors(data):
        for how in HOSTILE_SCALES:
            mutant = with_scale(data, index, how)
            t_verdict, t_out = _tflm(mutant, inputs)
            m_verdict, m_out = _microref(mutant, inputs)
            where = f"tensor {index} '{name}' with scale {how}"
            seen += 1
            if t_verdict != "ok":
                assert m_verdict == "refused", f"{where}: TFLM {t_verdict} ({t_out}) but microref runs it"
                continue
            if must_run is None or name in must_run:
                assert _same(t_out, base), f"{where}: TFLM reads this scale after all"
                assert m_verdict == "ok", f"{where}: TFLM runs it (its values unchanged) but microref: {m_out}"
            if m_verdict == "ok":
                assert _same(m_out, t_out), f"{where}: microref runs it and differs from TFLM"
    assert seen > 0


@needs_oracle
@pytest.mark.parametrize("op", sorted(SCALE_FREE))
def test_scales_a_kernel_never_reads_do_not_stop_it(op, relaxed_scales):
    data, inputs = SCALE_FREE[op]()
    audit(data, inputs)


@needs_oracle
@pytest.mark.parametrize("op", sorted(PARTLY_SCALE_FREE))
def test_an_unread_bias_scale_does_not_stop_the_convolution(op, relaxed_scales):
    build, unread = PARTLY_SCALE_FREE[op]
    data, inputs = build()
    audit(data, inputs, must_run=unread)


@needs_oracle
@pytest.mark.parametrize("op", sorted(SCALE_READING))
def test_kernels_reading_a_hostile_scale_refuse_it_or_compute_as_tflm(op, relaxed_scales):
    data, inputs = SCALE_READING[op]()
    audit(data, inputs, must_run=set())


# ------------------------------------------------------------------------- TFLM's own test cases
def _tflm_resize_bilinear_test_model():
    # kernels/resize_bilinear_test.cc, HorizontalResizeInt8: CreateQuantizedTensor(data, dims, -128, 127),
    # i.e. scale -128, zero point 127, on the input and the output.
    b = ModelBuilder()
    x = b.input("x", [1, 1, 2, 1], "INT8", scale=1.0, zero_point=127)
    y = b.tensor("y", [1, 1, 3, 1], "INT8", scale=1.0, zero_point=127)
    b.op("RESIZE_BILINEAR", [x, b.constant("size", _i32(1, 3))], [y])
    b.output(y)
    data = b.build()
    for i, _ in _quantized_tensors(data):
        data = with_scale(data, i, "minus128")
    return data, [np.array([3, 6], np.int8).reshape(1, 1, 1, 2, 1)]


def _tflm_split_test_model():
    # kernels/split_test.cc, TwoSplitFourDimensionalQuantized: CreateQuantizedTensor(..., 0, 10), scale 0.
    b = ModelBuilder()
    x = b.input("x", [2, 2, 2, 2], "INT8", scale=1.0, zero_point=10)
    ys = [b.tensor(f"y{i}", [1, 2, 2, 2], "INT8", scale=1.0, zero_point=10) for i in range(2)]
    b.op("SPLIT", [b.constant("axis", _i32(0)), x], ys, num_splits=2)
    b.output(*ys)
    data = b.build()
    for i, _ in _quantized_tensors(data):
        data = with_scale(data, i, "zero")
    return data, [np.arange(1, 17, dtype=np.int8).reshape(1, 2, 2, 2, 2)]


TFLM_OWN = {"RESIZE_BILINEAR scale -128": _tflm_resize_bilinear_test_model,
            "SPLIT scale 0": _tflm_split_test_model}


@needs_oracle
@pytest.mark.parametrize("case", sorted(TFLM_OWN))
def test_tflms_own_test_quantization_runs_in_the_kernels(case, relaxed_scales):
    data, inputs = TFLM_OWN[case]()
    verdict, want = _tflm(data, inputs)
    assert verdict == "ok", want
    got = Interpreter.from_bytes(data).run([x[0] for x in inputs])
    assert _same([got], want)
    if case.startswith("RESIZE"):
        assert want[0][0].ravel().tolist() == [3, 5, 6]  # the test's expected values
    else:
        assert want[0][0].ravel().tolist() == list(range(1, 9)) and want[0][1].ravel().tolist() == list(range(9, 17))


@needs_oracle
@pytest.mark.parametrize("case", sorted(TFLM_OWN))
def test_tflms_own_test_quantization_loads(case):
    # (A strict xfail until verify.py stopped checking scales no kernel reads.)
    data, inputs = TFLM_OWN[case]()
    verdict, want = _tflm(data, inputs)
    assert verdict == "ok", want
    assert _same([Interpreter.from_bytes(data).run([x[0] for x in inputs])], want)


# ------------------------------------------------------------------------- TFLM-free
def _relu6_model(zero_point: int):
    b = ModelBuilder()
    x = b.input("x", [6], "INT8", scale=0.05, zero_point=zero_point)
    y = b.tensor("y", [6], "INT8", scale=0.05, zero_point=0)
    b.op("RELU6", [x], [y])
    b.output(y)
    return b.build()


def test_relu6_wraps_an_int8_zero_point_past_int8_as_tflms_int8_parameter_does():
    x = np.array([-128, 0, 43, 44, 45, 127], np.int8)
    # 300 wraps to 44: values below 44 are raised to it; the upper clamp q(6.0) = 120 + 300 clamps to 127.
    assert Interpreter.from_bytes(_relu6_model(300)).run([x])[0].tolist() == [44, 44, 44, 44, 45, 127]
    # -200 wraps to 56; q(6.0) = 120 - 200 = -80 is below it: Relu6Quantized takes x > upper first.
    assert Interpreter.from_bytes(_relu6_model(-200)).run([x])[0].tolist() == [56, -80, -80, -80, -80, -80]


@pytest.mark.parametrize("scale", [-1.5 * 2.0 ** -12, 0.0, float("nan"), float("inf")])
@pytest.mark.parametrize("op", ["LOGISTIC", "TANH"])
def test_int16_sigmoids_refuse_an_input_scale_checkedlog2_cannot_take(op, scale, relaxed_scales):
    b = ModelBuilder()
    x = b.input("x", [4], "INT16", scale=1.0, zero_point=0)
    y = b.tensor("y", [4], "INT16", scale=2.0 ** -15, zero_point=0)
    b.op(op, [x], [y])
    b.output(y)
    data = b.build()
    # ModelBuilder writes the scale as given; patch it in the bytes (float32 1.0 -> the hostile scale).
    one = np.float32(1.0).tobytes()
    assert data.count(one) == 1
    data = data.replace(one, np.float32(scale).tobytes())
    with pytest.raises(UnsupportedOpError, match="CheckedLog2"):
        Interpreter.from_bytes(data)


# ------------------------------------------------------------------------- option values
# The same audit over every builtin option field (0, -1, 1, 2, 7, 100, int32 extremes; 0, -1,
# NaN, inf for floats) found models TFLM refuses while parsing options that microref ran
# (ops/parse_checks.py), a depthwise multiplier of 0 that microref read as 1 (TFLM writes no
# output), and pooling strides whose int window arithmetic overflows in TFLM.
def with_option(data: bytes, field: str, value) -> bytes:
    """The model with builtin option ``field`` (the wheel's schema name, camelCase) of operator 0 set."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(data, 0)
    setattr(model.subgraphs[0].operators[0].builtinOptions, field, value)
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _cast():
    b = ModelBuilder()
    x = b.input("x", [2, 3], "INT8", **_q())
    y = b.tensor("y", [2, 3], "INT32")
    b.op("CAST", [x], [y], in_data_type="INT8", out_data_type="INT32")
    b.output(y)
    return b.build(), [_int8(np.random.default_rng(6), [2, 3])]


def _fc(bias_type="INT32"):
    rng = np.random.default_rng(7)
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", **_q(0.05, 1))
    w = b.constant("w", rng.integers(-127, 128, size=(3, 4)).astype(np.int8), "INT8", scale=0.02, zero_point=0)
    bias = b.constant("bias", rng.integers(-300, 300, size=3).astype(np.int32), "INT32", scale=0.001, zero_point=0)
    y = b.tensor("y", [1, 3], "INT8", **_q(0.1, -2))
    b.op("FULLY_CONNECTED", [x, w, bias], [y])
    b.output(y)
    return b.build(), [_int8(rng, [1, 4])]


def _transpose_conv():
    rng = np.random.default_rng(8)
    b = ModelBuilder()
    shape = b.constant("shape", _i32(1, 4, 4, 1))
    w = b.constant("w", rng.integers(-127, 128, size=(1, 2, 2, 1)).astype(np.int8), "INT8", scale=0.02, zero_point=0)
    x = b.input("x", [1, 2, 2, 1], "INT8", **_q(0.05, 1))
    y = b.tensor("y", [1, 4, 4, 1], "INT8", **_q(0.1, -2))
    b.op("TRANSPOSE_CONV", [shape, w, x], [y], padding="SAME", stride_h=2, stride_w=2)
    b.output(y)
    return b.build(), [_int8(rng, [1, 2, 2, 1])]


def _shape():
    b = ModelBuilder()
    x = b.input("x", [2, 3], "INT8", **_q())
    y = b.tensor("y", [2], "INT32")
    b.op("SHAPE", [x], [y], out_type="INT32")
    b.output(y)
    return b.build(), [_int8(np.random.default_rng(14), [2, 3])]


# (builder, camelCase option field, value TFLM's parser refuses)
PARSER_REFUSES = {
    "CAST out_data_type 100": (_cast, "outDataType", 100),
    "CAST in_data_type -1": (_cast, "inDataType", -1),
    "ARG_MAX output_type 23": (_arg_max, "outputType", 23),
    "CONV_2D quantized_bias_type 100": (_conv_bias, "quantizedBiasType", 100),
    "FULLY_CONNECTED quantized_bias_type 7000": (_fc, "quantizedBiasType", 100),
    "FULLY_CONNECTED weights_format 2": (_fc, "weightsFormat", 2),
    "TRANSPOSE_CONV quantized_bias_type -3": (_transpose_conv, "quantizedBiasType", -3),
    "RESHAPE new_shape of 9": (SCALE_FREE["RESHAPE"], "newShape", [1] * 7 + [3, 2]),
    "SQUEEZE squeeze_dims of 9": (SCALE_FREE["SQUEEZE"], "squeezeDims", [0, 2] * 4 + [0]),
    "SHAPE out_type 40": (lambda: _shape(), "outType", 40),
}
# Values the parser accepts and the kernel never reads: both run the model unchanged.
PARSER_ACCEPTS = {
    "CAST out_data_type FLOAT8_E5M2 (22)": (_cast, "outDataType", 22),
    "FULLY_CONNECTED weights_format SHUFFLED4x16INT8": (_fc, "weightsFormat", 1),
    "CONV_2D quantized_bias_type INT64": (_conv_bias, "quantizedBiasType", 4),
}


@needs_oracle
@pytest.mark.parametrize("case", sorted(PARSER_REFUSES))
def test_option_values_tflms_parser_refuses_are_refused(case):
    build, field, value = PARSER_REFUSES[case]
    data, inputs = build()
    mutant = with_option(data, field, value)
    verdict, message = _tflm(mutant, inputs)
    assert verdict == "rejected", message
    with pytest.raises(ModelError, match="parser"):
        Interpreter.from_bytes(mutant)


@needs_oracle
@pytest.mark.parametrize("case", sorted(PARSER_ACCEPTS))
def test_option_values_tflm_parses_and_ignores_run(case):
    build, field, value = PARSER_ACCEPTS[case]
    data, inputs = build()
    mutant = with_option(data, field, value)
    verdict, want = _tflm(mutant, inputs)
    assert verdict == "ok", want
    assert _same(_tflm(data, inputs)[1], want)  # TFLM ignores the value
    assert _same(_microref(mutant, inputs)[1], want)


def _depthwise(channels=3):
    rng = np.random.default_rng(9)
    b = ModelBuilder()
    x = b.input("x", [1, 3, 3, channels], "INT8", **_q(0.05, 1))
    w = b.constant("w", rng.integers(-127, 128, size=(1, 2, 2, channels)).astype(np.int8), "INT8",
                   scale=0.02, zero_point=0)
    y = b.tensor("y", [1, 3, 3, channels], "INT8", **_q(0.1, -2))
    bias = b.constant("bias", rng.integers(-300, 300, size=channels).astype(np.int32), "INT32", scale=0.001,
                      zero_point=0)
    # (Without a bias, the wheel crashes on depth_multiplier 0.)
    b.op("DEPTHWISE_CONV_2D", [x, w, bias], [y], padding="SAME", stride_h=1, stride_w=1, depth_multiplier=1)
    b.output(y)
    return b.build(), [_int8(rng, [1, 3, 3, channels], n=3)]


@needs_oracle
def test_a_depth_multiplier_of_zero_leaves_tflms_output_unwritten_and_is_refused():
    data, inputs = _depthwise()
    mutant = with_option(data, "depthMultiplier", 0)
    verdict, outs = _tflm(mutant, inputs)
    assert verdict == "ok", outs
    # Three different inputs, one output: whatever the arena held, not a function of the input.
    assert _same([outs[0]], [outs[1]]) and _same([outs[0]], [outs[2]])
    assert not _same(_tflm(data, inputs)[1][:1], outs[:1])
    with pytest.raises(UnsupportedOpError, match="depth_multiplier 0"):
        Interpreter.from_bytes(mutant)


def _max_pool(stride: int):
    # Three output rows: the third origin is 2 * stride.
    b = ModelBuilder()
    x = b.input("x", [1, 6, 4, 1], "INT8", **_q())
    y = b.tensor("y", [1, 3, 2, 1], "INT8", **_q())
    b.op("MAX_POOL_2D", [x], [y], padding="SAME", stride_h=stride, stride_w=2, filter_height=2, filter_width=2)
    b.output(y)
    return b.build(), [_int8(np.random.default_rng(10), [1, 6, 4, 1])]


@pytest.mark.parametrize("stride", [2 ** 31 - 1, -(2 ** 31)])
def test_pool_strides_that_overflow_tflms_int_origins_are_refused(stride):
    data, _ = _max_pool(stride)
    with pytest.raises(UnsupportedOpError, match="overflows TFLM's int window arithmetic"):
        Interpreter.from_bytes(data)


@needs_oracle
@pytest.mark.parametrize("stride", [0, -1, 2 ** 30 // 2])
def test_pool_strides_whose_origins_fit_int32_still_run_as_tflm(stride):
    data, inputs = _max_pool(stride)
    verdict, want = _tflm(data, inputs)
    assert verdict == "ok", want
    assert _same(_microref(data, inputs)[1], want)


def _concat():
    b = ModelBuilder()
    xs = [b.input(f"x{i}", [2, 2], "INT8", **_q()) for i in range(2)]
    y = b.tensor("y", [2, 4], "INT8", **_q())
    b.op("CONCATENATION", xs, [y], axis=1)
    b.output(y)
    rng = np.random.default_rng(11)
    return b.build(), [_int8(rng, [2, 2]), _int8(rng, [2, 2])]


def _l2norm():
    b = ModelBuilder()
    x = b.input("x", [2, 4], "INT8", **_q())
    y = b.tensor("y", [2, 4], "INT8", scale=1 / 128, zero_point=0)
    b.op("L2_NORMALIZATION", [x], [y])
    b.output(y)
    return b.build(), [_int8(np.random.default_rng(12), [2, 4])]


def _avg_pool():
    b = ModelBuilder()
    x = b.input("x", [1, 5, 5, 2], "INT8", **_q())
    y = b.tensor("y", [1, 3, 3, 2], "INT8", **_q())
    b.op("AVERAGE_POOL_2D", [x], [y], padding="SAME", stride_h=2, stride_w=2, filter_height=3, filter_width=3)
    b.output(y)
    return b.build(), [_int8(np.random.default_rng(13), [1, 5, 5, 2])]


# Enum values outside the schema's: ConvertActivation makes them NONE, ConvertPadding
# kTfLitePaddingUnknown (the padding helper then leaves the padding 0). TFLM runs the models.
UNKNOWN_ENUMS = {
    "CONCATENATION activation 7": (_concat, "fusedActivationFunction", 7),
    "CONCATENATION activation -1": (_concat, "fusedActivationFunction", -1),
    "L2_NORMALIZATION activation 100": (_l2norm, "fusedActivationFunction", 100),
    "AVERAGE_POOL_2D padding 2": (_avg_pool, "padding", 2),
    "MAX_POOL_2D padding -1": (lambda: _max_pool(2), "padding", -1),
}


@needs_oracle
@pytest.mark.parametrize("case", sorted(UNKNOWN_ENUMS))
def test_enum_values_past_the_schema_run_as_tflm_converts_them(case):
    build, field, value = UNKNOWN_ENUMS[case]
    data, inputs = build()
    mutant = with_option(data, field, value)
    verdict, want = _tflm(mutant, inputs)
    assert verdict == "ok", want
    got = _microref(mutant, inputs)
    assert got[0] == "ok", got[1]
    assert _same(got[1], want)


@needs_oracle
@pytest.mark.parametrize("value", [1, 3])
def test_a_concatenation_relu_is_still_refused_as_tflm_refuses_it(value):
    data, inputs = _concat()
    mutant = with_option(data, "fusedActivationFunction", value)
    assert _tflm(mutant, inputs)[0] == "rejected"
    with pytest.raises(ModelError, match="is not NONE"):
        Interpreter.from_bytes(mutant)


@needs_oracle
def test_a_depth_multiplier_disagreeing_with_the_shapes_is_refused_as_undefined():
    data, inputs = _depthwise()
    mutant = with_option(data, "depthMultiplier", 2)  # TFLM writes channels 0..5 of a 3-channel output
    with pytest.raises(UnsupportedOpError, match="outside the output"):
        Interpreter.from_bytes(mutant)
