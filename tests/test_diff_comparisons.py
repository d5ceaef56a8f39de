"""EQUAL, NOT_EQUAL, GREATER, GREATER_EQUAL, LESS, LESS_EQUAL, LOGICAL_AND, LOGICAL_OR and SELECT_V2
against TFLM: every input type each kernel runs, broadcast shapes of rank 0-8 (with 1s, equal
shapes, scalars against tensors, constant operands), int8 comparisons across scales and zero
points (the two inputs rescaled to a common scale before comparing, with many pairs that are
equal or nearly equal in real value), float comparisons with equal values and signed zeros, and
SELECT_V2 with operands of unrelated quantization."""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    assert_tflm_aborts,
    check_model,
    dims,
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

ORDERED = ("GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL")
OP_TYPES = {"EQUAL": ["BOOL", "FLOAT32", "INT32", "INT64", "INT8"],
            "NOT_EQUAL": ["BOOL", "FLOAT32", "INT32", "INT64", "INT8"],
            **{op: ["FLOAT32", "INT32", "INT64", "INT8"] for op in ORDERED},
            "LOGICAL_AND": ["BOOL"], "LOGICAL_OR": ["BOOL"],
            "SELECT_V2": ["FLOAT32", "INT8", "INT16"]}
REFUSED_TYPES = {"EQUAL": ["INT16", "UINT8"], "NOT_EQUAL": ["INT16"], "LESS": ["INT16", "BOOL"],
                 "GREATER_EQUAL": ["BOOL"], "GREATER": ["BOOL"], "LESS_EQUAL": ["UINT8"],
                 "SELECT_V2": ["INT32", "BOOL"]}
OPS_AND_KINDS = [(op, kind) for op, kinds in OP_TYPES.items() for kind in kinds]
REFUSED = [(op, kind) for op, kinds in REFUSED_TYPES.items() for kind in kinds]
DIFF_OPS = set(OP_TYPES)  # the ops this module tests (see test_diff_regressions.py)
# int8 comparison scales must lie in (0, 1): QuantizeMultiplierSmallerThanOneExp aborts otherwise.
comparison_scales = st.one_of(scales(-6, -0.0005), st.sampled_from([0.5, 0.25, 1 / 255, 0.999]))


def output_shapes():
    """Mostly rank 0-4, at times 5-6 (small dims), at times one long vector. (TFLM copies shapes into
    RuntimeShapes of at most 6 dimensions; rank 8 broadcasts compare the wrong elements.)"""
    small = st.integers(0, 4).flatmap(lambda r: st.lists(dims(1, 5), min_size=r, max_size=r))
    deep = st.integers(5, 6).flatmap(lambda r: st.lists(dims(1, 2), min_size=r, max_size=r))
    return st.one_of(small, small, small, deep, st.integers(100, 500).map(lambda n: [n]))


@st.composite
def operand_shape(draw, out_shape):
    """A shape that broadcasts to ``out_shape``: a suffix of it with some dims set to 1."""
    layout = draw(st.sampled_from(["same", "same", "suffix"]))
    if layout == "same":
        return list(out_shape)
    kept = draw(st.integers(0, len(out_shape)))
    return [d if draw(st.integers(0, 2)) else 1 for d in out_shape[len(out_shape) - kept:]]


@st.composite
def comparison_cases(draw, op, kind):
    out_shape = draw(output_shapes())
    case = dict(op=op, kind=kind, out_shape=out_shape, seed=draw(seeds),
                shapes=[draw(operand_shape(out_shape)) for _ in range(3 if op == "SELECT_V2" else 2)],
                constant=draw(st.sampled_from([None, None, None, 0, 1])),
                # "tied": the second operand copies values of the first (equal real values).
                values=draw(st.sampled_from(["uniform", "tied", "tied", "extremes"])))
    if kind in ("INT8", "INT16"):
        scale_strategy = comparison_scales if op != "SELECT_V2" else scales()
        zps = zero_points(kind) if kind == "INT8" else st.sampled_from([0, 0, 5, -7])
        relation = draw(st.sampled_from(["equal", "double", "any", "any"]))
        s1 = draw(scale_strategy)
        s2 = {"equal": s1, "double": s1 * 2 if s1 < 0.49 else s1 / 2}.get(relation) or draw(scale_strategy)
        case["quant"] = [(s1, draw(zps)), (s2, draw(zps))] + ([(draw(scales()), draw(zps))] * (op == "SELECT_V2"))
    # Make sure the output's shape is what the operands broadcast to.
    rank = max(len(s) for s in case["shapes"])
    ext = [[1] * (rank - len(s)) + s for s in case["shapes"]]
    case["out_shape"] = [max(col) if min(col) > 0 else 0 for col in zip(*ext)] if rank else []
    return case


def operand_values(rng, shape, kind, n, case, quant=None):
    if kind == "BOOL":
        return rng.integers(0, 2, (n,) + tuple(shape)).astype(np.bool_)
    if kind == "FLOAT32":
        size = (n,) + tuple(shape)
        v = rng.normal(0, 1, size) * 10.0 ** rng.integers(-3, 4, size)
        v = np.where(rng.integers(0, 4, size) == 0, rng.choice([0.0, -0.0, 1.0, -1.0, 0.5, 1e-40], size), v)
        return v.astype(np.float32)
    if kind in ("INT32", "INT64"):
        info = np.iinfo(kind.lower())
        size = (n,) + tuple(shape)
        wide = rng.integers(info.min, info.max, size, endpoint=True, dtype=np.int64)
        return np.where(rng.integers(0, 3, size) == 0, rng.integers(-3, 4, size), wide).astype(kind.lower())
    zp = quant[1] if quant else 0
    return random_inputs(rng, shape, np.dtype(kind.lower()), n, zero_point=zp,
                         style="extremes" if case["values"] == "extremes" else "uniform")


def tie(rng, first, second, kind, case):
    """Copy (broadcast) values of the first operand into the second where their shapes allow,
    requantized to the second operand's quantization so that real values coincide."""
    try:
        source = np.broadcast_to(first, second.shape[:1] + np.broadcast_shapes(first.shape[1:], second.shape[1:]))
        source = source.reshape(second.shape)
    except ValueError:
        return second
    if kind in ("INT8", "INT16") and "quant" in case:
        (s1, z1), (s2, z2) = case["quant"][:2]
        info = np.iinfo(kind.lower())
        real = s1 * (source.astype(np.float64) - z1)
        source = np.clip(np.round(real / s2) + z2, info.min, info.max).astype(kind.lower())
    mask = rng.integers(0, 3, second.shape) > 0
    return np.where(mask, source, second).astype(second.dtype)


def build_comparison(case: dict):
    rng = np.random.default_rng(case["seed"])
    op, kind = case["op"], case["kind"]
    b = ModelBuilder()
    tensors, inputs = [], []
    if op == "SELECT_V2":
        types = ["BOOL", kind, kind]
    else:
        types = [kind, kind]
    values = []
    for i, (shape, ttype) in enumerate(zip(case["shapes"], types)):
        quant = None
        if "quant" in case:
            quant = case["quant"][i - 1] if op == "SELECT_V2" else case["quant"][i]
        if ttype == "BOOL":
            quant = None
        v = operand_values(rng, shape, ttype, SAMPLES, case, quant)
        first_value = 1 if op == "SELECT_V2" else 0
        if case["values"] == "tied" and i == first_value + 1:
            v = tie(rng, values[first_value], v, kind, case)
        values.append(v)
        q = dict(scale=quant[0], zero_point=quant[1]) if quant else {}
        if case["constant"] == i:
            tensors.append(b.constant(f"c{i}", v[0], ttype, **q))
        else:
            tensors.append(b.input(f"x{i}", shape, ttype, **q))
            inputs.append(v)
    out_type = kind if op == "SELECT_V2" else "BOOL"
    q_out = {}
    if op == "SELECT_V2" and "quant" in case:
        q_out = dict(scale=case["quant"][2][0], zero_point=case["quant"][2][1])
    y = b.tensor("y", case["out_shape"], out_type, **q_out)
    b.op(op, tensors, [y])
    b.output(y)
    return b.build(), inputs


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_comparison(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


FRACTION = {"INT8": 0.35}


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_comparison_matches_tflm(op, kind):
    run_examples(comparison_cases(op, kind), lambda case: run_case(op, case), fraction=FRACTION.get(kind, 0.2))


@pytest.mark.parametrize("op, kind", REFUSED, ids=[f"{o}-{k}" for o, k in REFUSED])
def test_types_tflm_does_not_run_are_refused(op, kind):
    case = dict(op=op, kind=kind, out_shape=[3], shapes=[[3]] * (3 if op == "SELECT_V2" else 2), seed=3,
                constant=None, values="uniform")
    if kind in ("INT16", "UINT8"):
        case["quant"] = [(0.5, 0), (0.25, 0), (0.5, 0)]
    data, inputs = build_comparison(case)
    assert not check_model(data, inputs, label=f"{op} {kind} (refused)").compared


def _comparison_model(op, kind, q1, q2, shape=(4,)):
    b = ModelBuilder()
    x1 = b.input("a", list(shape), kind, **(q1 or {}))
    x2 = b.input("b", list(shape), kind, **(q2 or {}))
    y = b.tensor("y", list(shape), "BOOL")
    b.op(op, [x1, x2], [y])
    b.output(y)
    return b.build()


@pytest.mark.parametrize("q1, q2", [(dict(scale=1.0, zero_point=0), dict(scale=0.5, zero_point=0)),
                                    (dict(scale=0.5, zero_point=0), dict(scale=3.0, zero_point=0)),
                                    (None, None)],
                         ids=["scale-1", "scale-3", "unquantized"])
def test_int8_comparison_scales_outside_0_1_abort_tflm_and_are_refused(q1, q2):
    data = _comparison_model("LESS", "INT8", q1, q2)
    x = np.zeros(4, np.int8)
    assert_tflm_aborts(data, [x[None], x[None]])
    with pytest.raises(ModelError, match="QuantizeMultiplierSmallerThanOneExp"):
        Interpreter.from_bytes(data)


def test_int16_greater_reads_uninitialised_parameters_and_is_refused():
    # TFLM runs it, but only int8 gets ComparisonParams: in a fresh arena every answer is false.
    data = _comparison_model("GREATER", "INT16", dict(scale=0.5, zero_point=0), dict(scale=0.25, zero_point=3))
    a, b = np.array([-1, 0, 2, 4], np.int16), np.array([0, 0, 3, -4], np.int16)
    verdict, _ = tflm_run(data, [[a, b]])
    assert verdict == "ok"
    with pytest.raises(UnsupportedOpError, match="uninitialised"):
        Interpreter.from_bytes(data)


def test_int8_comparisons_of_every_value_pair_against_tflm():
    # All 65536 (x1, x2) pairs, at scale pairs where rescaled values tie and nearly tie.
    grid1, grid2 = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    a, b = grid1.astype(np.int8).ravel(), grid2.astype(np.int8).ravel()
    for (s1, z1), (s2, z2) in [((0.5, 0), (0.25, 0)), ((0.1, -5), (0.1000001, 7)), ((1 / 255, -128), (0.02, 127)),
                               ((0.999, 3), (0.0009765625, -1))]:
        for op in ("EQUAL", "LESS_EQUAL", "GREATER"):
            data = _comparison_model(op, "INT8", dict(scale=s1, zero_point=z1), dict(scale=s2, zero_point=z2),
                                     shape=(a.size,))
            verdict, payload = tflm_run(data, [[a, b]])
            assert verdict == "ok"
            got = Interpreter.from_bytes(data).run([a, b])[0]
            assert np.array_equal(got, payload[0][0]), (op, s1, z1, s2, z2)


def test_rank_7_and_8_broadcasts_are_refused():
    # The wheel gets rank-8 broadcasts wrong (its RuntimeShape holds 6 dimensions; more overrun it).
    b = ModelBuilder()
    x1 = b.input("a", [1, 1, 1, 1, 1, 1, 2, 3], "FLOAT32")
    x2 = b.input("b", [1, 3], "FLOAT32")
    y = b.tensor("y", [1, 1, 1, 1, 1, 1, 2, 3], "BOOL")
    b.op("LESS", [x1, x2], [y])
    b.output(y)
    with pytest.raises(UnsupportedOpError, match="RuntimeShape"):
        Interpreter.from_bytes(b.build())


def test_select_v2_scalar_condition_and_mixed_scalars():
    # A scalar condition against tensors (broadcast), and one-element tensors of different ranks.
    for cond_shape, x_shape, y_shape, out_shape in [([], [2, 3], [2, 3], [2, 3]), ([1], [], [1, 1], [1, 1]),
                                                    ([1, 1], [1], [], [1])]:
        b = ModelBuilder()
        c = b.input("c", cond_shape, "BOOL")
        x = b.input("x", x_shape, "FLOAT32")
        y = b.input("y", y_shape, "FLOAT32")
        o = b.tensor("o", out_shape, "FLOAT32")
        b.op("SELECT_V2", [c, x, y], [o])
        b.output(o)
        data = b.build()
        rng = np.random.default_rng(0)
        for flag in (False, True):
            inputs = [np.full((1,) + tuple(cond_shape), flag),
                      rng.normal(size=(1,) + tuple(x_shape)).astype(np.float32),
                      rng.normal(size=(1,) + tuple(y_shape)).astype(np.float32)]
            assert check_model(data, inputs, label="SELECT_V2 mixed scalars").compared


def test_select_v2_unbroadcastable_shapes_are_refused_like_tflm():
    b = ModelBuilder()
    c = b.input("c", [2, 3], "BOOL")
    x = b.input("x", [3, 3], "INT8", scale=0.1, zero_point=0)
    y = b.input("y", [1, 3], "INT8", scale=0.1, zero_point=0)
    o = b.tensor("o", [3, 3], "INT8", scale=0.1, zero_point=0)
    b.op("SELECT_V2", [c, x, y], [o])
    b.output(o)
    data = b.build()
    verdict, _ = tflm_run(data, [[np.zeros((2, 3), bool), np.zeros((3, 3), np.int8), np.zeros((1, 3), np.int8)]])
    assert verdict == "rejected"
    with pytest.raises(ModelError, match="not broadcastable"):
        Interpreter.from_bytes(data)


def test_float_equal_treats_signed_zeros_as_equal_bytes_exact():
    b = ModelBuilder()
    x1 = b.input("a", [5], "FLOAT32")
    x2 = b.constant("b", np.array([0.0, -0.0, 1e-45, -1.0, 3e38], np.float32))
    y = b.tensor("y", [5], "BOOL")
    b.op("EQUAL", [x1, x2], [y])
    b.output(y)
    run_on_both(b.build(), np.array([-0.0, 0.0, 1e-45, -1.0, 3.0000001e38], np.float32))
