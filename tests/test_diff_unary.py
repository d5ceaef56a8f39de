"""Elementwise unary ops and CAST against TFLM: ABS, NEG, CEIL, FLOOR, ROUND, SQRT, RSQRT, SQUARE,
EXP, LOG, SIN, COS, LOGICAL_NOT, ZEROS_LIKE, ELU and CAST, over every input type each kernel runs
(and a few it refuses), shapes of rank 0-8, float inputs with halves, integers, denormals, values
past the overflow points of exp and of every integer type, int8/int16 quantization across scales
and zero points, and every CAST type pair the wheel converts."""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    check_model,
    dims,
    input_styles,
    note_case,
    random_inputs,
    record,
    run_examples,
    run_on_both,
    scales,
    seeds,
    tflm_run,
    zero_points,
)
from hypothesis import strategies as st

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder
from interp.errors import InvokeError

FLOAT_ONLY = ("NEG", "CEIL", "FLOOR", "ROUND", "SQRT", "SQUARE", "EXP", "LOG", "SIN", "COS")
# "INT16_RAW" is an int16 tensor without quantization parameters (ABS's plain integer path).
OP_TYPES = {**{op: ["FLOAT32"] for op in FLOAT_ONLY},
            "ABS": ["FLOAT32", "INT8", "INT16", "INT16_RAW"],
            "RSQRT": ["FLOAT32", "INT8", "INT16"],
            "ELU": ["FLOAT32", "INT8"],
            "LOGICAL_NOT": ["BOOL"],
            "ZEROS_LIKE": ["FLOAT32", "INT8", "INT32", "INT64"]}
# Types the kernels do not run: TFLM fails (at Prepare or Invoke) and microref must refuse at load.
REFUSED_TYPES = {"NEG": ["INT8", "INT32"], "FLOOR": ["INT8"], "CEIL": ["INT8"], "ROUND": ["INT16"],
                 "EXP": ["INT8"], "SQRT": ["INT8"], "LOG": ["INT16"], "SIN": ["INT32"], "COS": ["INT8"],
                 "SQUARE": ["INT32"], "ABS": ["INT32", "INT64"], "RSQRT": ["INT32"], "ELU": ["INT16"],
                 "LOGICAL_NOT": ["INT8"], "ZEROS_LIKE": ["INT16", "BOOL", "UINT8"]}
CAST_TYPES = ["INT8", "INT16", "INT32", "UINT32", "FLOAT32", "BOOL"]
CAST_REFUSED = [("INT64", "INT32"), ("INT32", "INT64"), ("UINT8", "FLOAT32"), ("FLOAT32", "UINT8"),
                ("FLOAT32", "FLOAT16"), ("INT16", "UINT16")]
OPS_AND_KINDS = [(op, kind) for op, kinds in OP_TYPES.items() for kind in kinds]
REFUSED = [(op, kind) for op, kinds in REFUSED_TYPES.items() for kind in kinds]
CAST_PAIRS = [(a, b) for a in CAST_TYPES for b in CAST_TYPES]
DIFF_OPS = set(OP_TYPES) | {"CAST"}  # the ops this module tests (see test_diff_regressions.py)
# Kernels that size their loop with ElementCount take any rank; the others copy the shape into a
# RuntimeShape of at most 6 dimensions (microref refuses more, see the test below).
ELEMENT_COUNT_OPS = {"ABS", "RSQRT", "SQRT", "LOG", "SIN", "COS", "SQUARE", "LOGICAL_NOT"}
INT_INFO = {"INT8": np.iinfo(np.int8), "INT16": np.iinfo(np.int16), "INT32": np.iinfo(np.int32),
            "UINT32": np.iinfo(np.uint32), "INT64": np.iinfo(np.int64)}


def shapes(max_rank=8):
    """Mostly rank 1-4 with small dims; at times a scalar, rank 5-8, or one long vector."""
    small = st.integers(0, 4).flatmap(lambda r: st.lists(dims(1, 6), min_size=r, max_size=r))
    deep = st.integers(5, max_rank).flatmap(lambda r: st.lists(dims(1, 2), min_size=r, max_size=r))
    return st.one_of(small, small, small, deep, st.just([]), st.integers(100, 700).map(lambda n: [n]))


def float_values(rng, shape, n, op=""):
    """float32 samples that reach every branch of the float kernels: halves and integers (ROUND,
    CEIL, FLOOR), tiny and denormal values, exp's overflow (88.72) and underflow (-103.97) edges,
    large trig arguments, negatives and zeros (LOG, SQRT, RSQRT), and values far beyond every
    integer type (CAST)."""
    size = (n,) + tuple(shape)
    pick = rng.integers(0, 9, size)
    magnitude = 10.0 ** rng.uniform(-3, 3, size)
    v = rng.normal(0, 1, size) * magnitude
    v = np.where(pick == 1, rng.integers(-300, 300, size) + rng.choice([0.5, -0.5, 0.0, 0.25], size), v)
    v = np.where(pick == 2, rng.choice([0.0, -0.0, 1e-40, -1e-42, 1.2e-38, 0.5, -0.5, 1.5, -2.5, 2.5], size), v)
    v = np.where(pick == 3, rng.uniform(-110, 95, size), v)
    v = np.where(pick == 4, rng.choice([88.72, 88.7228, 89.0, -87.33, -103.97, -104.0, 1e5, -1e5], size), v)
    v = np.where(pick == 5, rng.choice([-1, 1], size) * 10.0 ** rng.uniform(4, 38, size), v)
    v = np.where(pick == 6, rng.choice([127.5, 128.0, -128.9, -129.0, 32767.9, 32768.0, -32769.0, 2147483520.0,
                                        2147483648.0, -2147483904.0, 4294967040.0, 4294967296.0, -0.999, 0.999,
                                        8388609.5, -8388608.5, 16777217.0], size), v)
    v = np.where(pick == 7, rng.integers(-2 ** 24, 2 ** 24, size) + rng.choice([0.0, 0.5], size), v)
    with np.errstate(over="ignore"):
        v = v.astype(np.float32)
    return np.where(np.isfinite(v), v, np.float32(1.0)).astype(np.float32)


def int_values(rng, shape, kind, n, style, zero_point=0):
    if kind == "BOOL":
        return rng.integers(0, 2, (n,) + tuple(shape)).astype(np.bool_)
    if kind in ("UINT32", "INT64"):
        info = INT_INFO[kind]
        size = (n,) + tuple(shape)
        v = rng.integers(info.min, info.max, size, endpoint=True, dtype=np.int64 if kind == "INT64" else np.uint64)
        small = rng.integers(-300, 300, size)
        if kind == "UINT32":
            small = np.abs(small)
        return np.where(rng.integers(0, 3, size) == 0, small, v).astype(kind.lower())
    return random_inputs(rng, shape, np.dtype(kind.lower()), n, zero_point=zero_point, style=style)


@st.composite
def unary_cases(draw, op, kind):
    case = dict(op=op, kind=kind, shape=draw(shapes(8 if op in ELEMENT_COUNT_OPS else 6)), seed=draw(seeds),
                style=draw(input_styles))
    if kind == "INT8" or (kind == "INT16" and op in ("ABS", "RSQRT")):
        case["input_scale"] = draw(scales())
        # Equal scales skip ABS's rescaling; at times the output scale is the input's.
        case["output_scale"] = case["input_scale"] if draw(st.integers(0, 3)) == 0 else draw(scales())
        if kind == "INT8":
            case["input_zp"] = draw(zero_points("INT8"))
            case["output_zp"] = draw(zero_points("INT8"))
        else:  # int16 zero points must be 0; rarely not, which TFLM refuses
            case["input_zp"] = draw(st.sampled_from([0] * 15 + [1]))
            case["output_zp"] = draw(st.sampled_from([0] * 15 + [-2]))
    return case


def tensor_type(kind):
    return "INT16" if kind == "INT16_RAW" else kind


def build_unary(case: dict):
    rng = np.random.default_rng(case["seed"])
    op, kind, shape = case["op"], case["kind"], case["shape"]
    ttype = tensor_type(kind)
    q_in = dict(scale=case["input_scale"], zero_point=case["input_zp"]) if "input_scale" in case else {}
    q_out = dict(scale=case["output_scale"], zero_point=case["output_zp"]) if "output_scale" in case else {}
    if ttype == "INT8" and not q_in:  # ZEROS_LIKE int8, or a refused int8 op: any quantization
        q_in = q_out = dict(scale=0.5, zero_point=3)
    b = ModelBuilder()
    x = b.input("x", shape, ttype, **q_in)
    out_type = "BOOL" if op == "LOGICAL_NOT" else ttype
    y = b.tensor("y", shape, out_type, **q_out)
    b.op(op, [x], [y])
    b.output(y)
    if ttype == "FLOAT32":
        values = float_values(rng, shape, SAMPLES, op)
    else:
        values = int_values(rng, shape, ttype, SAMPLES, case["style"], case.get("input_zp", 0))
    if op == "RSQRT" and ttype != "FLOAT32":
        # Values below the zero point make TFLM's Eval fail (see the dedicated test).
        values = np.maximum(values, np.clip(case.get("input_zp", 0), -128, 127)).astype(values.dtype)
    return b.build(), [values]


def run_unary(case: dict):
    note_case(**case)
    data, inputs = build_unary(case)
    label = f"{case['op']} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


def run_case(op: str, case: dict):
    """Replay one case (tests/regressions/*.json)."""
    (run_cast if op == "CAST" else run_unary)(case)


# Cheap float kernels need fewer examples than the quantized, tabulated ones.
FRACTION = {"INT8": 0.4, "INT16": 0.4}


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_unary_matches_tflm(op, kind):
    run_examples(unary_cases(op, kind), run_unary, fraction=FRACTION.get(kind, 0.25))


@pytest.mark.parametrize("op, kind", REFUSED, ids=[f"{o}-{k}" for o, k in REFUSED])
def test_unary_types_tflm_refuses_are_refused(op, kind):
    def check(case):
        note_case(**case)
        data, inputs = build_unary(case)
        outcome = check_model(data, inputs, label=f"{op} {kind} (refused)")
        assert not outcome.compared, f"TFLM now runs {op} on {kind}: add it to OP_TYPES"
    run_examples(unary_cases(op, kind), check, fraction=0.05)


# ------------------------------------------------------------------------------ CAST

@st.composite
def cast_cases(draw, source, target):
    return dict(op="CAST", source=source, target=target, shape=draw(shapes(6)), seed=draw(seeds),
                style=draw(input_styles))


def build_cast(case: dict):
    rng = np.random.default_rng(case["seed"])
    source, target, shape = case["source"], case["target"], case["shape"]
    b = ModelBuilder()
    x = b.input("x", shape, source)
    y = b.tensor("y", shape, target)
    b.op("CAST", [x], [y])
    b.output(y)
    if source == "FLOAT32":
        values = float_values(rng, shape, SAMPLES)
    elif source in ("FLOAT16", "UINT8", "UINT16"):
        values = rng.integers(0, 200, (SAMPLES,) + tuple(shape)).astype(source.lower())
    else:
        values = int_values(rng, shape, source, SAMPLES, case["style"])
    return b.build(), [values]


def run_cast(case: dict):
    note_case(**case)
    data, inputs = build_cast(case)
    label = f"CAST {case['source']}->{case['target']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("source, target", CAST_PAIRS, ids=[f"{a}-{b}" for a, b in CAST_PAIRS])
def test_cast_matches_tflm(source, target):
    run_examples(cast_cases(source, target), run_cast, fraction=0.15)


@pytest.mark.parametrize("source, target", CAST_REFUSED, ids=[f"{a}-{b}" for a, b in CAST_REFUSED])
def test_cast_type_pairs_tflm_refuses_are_refused(source, target):
    data, inputs = build_cast(dict(source=source, target=target, shape=[3], seed=1, style="uniform"))
    assert not check_model(data, inputs, label=f"CAST {source}->{target} (refused)").compared


def test_cast_float_conversions_at_every_boundary_are_bit_exact():
    # Saturation bounds, NaN-free halves and the float32 neighbours of each integer limit.
    edges = []
    for info in (np.iinfo(np.int8), np.iinfo(np.int16), np.iinfo(np.int32), np.iinfo(np.uint32)):
        for v in (info.min, info.max):
            f = np.float32(v)
            edges += [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf)),
                      f + np.float32(0.5), f - np.float32(0.5)]
    x = np.array(edges + [0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38], np.float32)
    for target in CAST_TYPES:
        b = ModelBuilder()
        xi = b.input("x", [x.size], "FLOAT32")
        y = b.tensor("y", [x.size], target)
        b.op("CAST", [xi], [y])
        b.output(y)
        run_on_both(b.build(), x)


# ------------------------------------------------------------------------------ special cases

def _one_op(op, x_type, y_type, shape, q_in=None, q_out=None):
    b = ModelBuilder()
    x = b.input("x", shape, x_type, **(q_in or {}))
    y = b.tensor("y", shape, y_type, **(q_out or {}))
    b.op(op, [x], [y])
    b.output(y)
    return b.build()


@pytest.mark.parametrize("op", ["CEIL", "FLOOR", "ROUND", "NEG", "ABS"])
def test_signed_zeros_and_halves_match_tflm_bit_for_bit(op):
    # check_model's array_equal treats -0.0 as 0.0; run_on_both compares the bytes.
    x = np.array([-0.0, 0.0, -0.3, 0.3, -0.5, 0.5, -1.5, 1.5, -2.5, 2.5, 8388607.5, -8388607.5, 1e-45, -1e-45,
                  -0.9999999, 3e38, -3e38], np.float32)
    run_on_both(_one_op(op, "FLOAT32", "FLOAT32", [x.size]), x)


def test_rsqrt_int8_below_zero_point_fails_in_tflm_and_raises_invoke_error():
    data = _one_op("RSQRT", "INT8", "INT8", [4], dict(scale=0.1, zero_point=5), dict(scale=0.05, zero_point=-3))
    x = np.array([5, 6, 4, 127], np.int8)  # 4 is below the zero point
    verdict, _ = tflm_run(data, [[x]])
    assert verdict == "invoke failed"
    it = Interpreter.from_bytes(data)
    with pytest.raises(InvokeError, match="below the input zero point"):
        it.run([x])
    assert it.run([np.array([5, 6, 7, 127], np.int8)])[0].dtype == np.int8


def test_rsqrt_int16_exhaustive_against_tflm():
    # Every int16 input at or above the zero point, at a few scale pairs (the inverse square root's
    # Newton iteration and both rescalings over the whole table).
    x = np.arange(0, 32768, dtype=np.int16)
    for s_in, s_out in ((1e-3, 1e-3), (2.0 ** -10, 2.0 ** -12), (0.37, 1e-5), (1e-6, 3.0)):
        data = _one_op("RSQRT", "INT16", "INT16", [x.size], dict(scale=s_in, zero_point=0),
                       dict(scale=s_out, zero_point=0))
        run_on_both(data, x)


def test_int8_tables_exhaustive_against_tflm():
    # ABS, RSQRT and ELU on all 256 int8 values (RSQRT from the zero point up).
    x = np.arange(-128, 128, dtype=np.int8)
    rng = np.random.default_rng(7)
    for _ in range(6):
        zp_in, zp_out = (int(v) for v in rng.integers(-128, 128, 2))
        s_in, s_out = (float(np.float32(10.0 ** e)) for e in rng.uniform(-4, 1, 2))
        for op in ("ABS", "ELU", "RSQRT"):
            data = _one_op(op, "INT8", "INT8", [x.size], dict(scale=s_in, zero_point=zp_in),
                           dict(scale=s_out, zero_point=zp_out))
            run_on_both(data, np.maximum(x, zp_in).astype(np.int8) if op == "RSQRT" else x)


@pytest.mark.parametrize("op", ["CEIL", "FLOOR", "NEG", "ELU", "ZEROS_LIKE", "CAST"])
def test_rank_over_6_is_refused_where_tflm_overruns_its_runtime_shape(op):
    with pytest.raises(UnsupportedOpError, match="RuntimeShape"):
        Interpreter.from_bytes(_one_op(op, "FLOAT32", "FLOAT32", [1, 1, 1, 1, 1, 1, 2]))


def test_unquantized_int16_rsqrt_is_refused():
    # TFLM computes no rescaling for it and evaluates with the OpData it never initialised.
    with pytest.raises(UnsupportedOpError, match="uninitialised"):
        Interpreter.from_bytes(_one_op("RSQRT", "INT16", "INT16", [4]))


@pytest.mark.parametrize("op", ["NEG", "FLOOR"])
def test_float_kernels_without_prepare_refuse_other_output_types(op):
    # NEG and FLOOR write float32 values whatever the output's type; TFLM runs such a model.
    with pytest.raises(UnsupportedOpError, match="writes float32"):
        Interpreter.from_bytes(_one_op(op, "FLOAT32", "INT32", [4]))


@pytest.mark.parametrize("op", ["CEIL", "ROUND", "EXP"])
def test_prepare_refuses_a_reshaped_output_like_tflm(op):
    b = ModelBuilder()
    x = b.input("x", [2, 3], "FLOAT32")
    y = b.tensor("y", [3, 2], "FLOAT32")
    b.op(op, [x], [y])
    b.output(y)
    data = b.build()
    verdict, _ = tflm_run(data, [[np.zeros((2, 3), np.float32)]])
    assert verdict == "rejected"
    with pytest.raises(ModelError, match="differs from input shape"):
        Interpreter.from_bytes(data)
