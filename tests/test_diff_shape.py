"""Data-movement ops against TFLM: RESHAPE, SQUEEZE, EXPAND_DIMS, TRANSPOSE, CONCATENATION,
STRIDED_SLICE, SPLIT, SPLIT_V, PACK and UNPACK, over ranks 1-5, negative axes, every element type
each kernel handles, constant operands, and quantization that must (or need not) match."""
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
    scales,
    seeds,
    zero_points,
)
from hypothesis import strategies as st

from interp.builder import ModelBuilder

OP_TYPES = {
    "RESHAPE": ["INT8", "INT16", "FLOAT32", "INT32", "BOOL"],
    "SQUEEZE": ["INT8", "FLOAT32", "INT32"],
    "EXPAND_DIMS": ["INT8", "INT16", "FLOAT32"],
    "TRANSPOSE": ["INT8", "INT16", "FLOAT32"],
    "CONCATENATION": ["INT8", "INT16", "FLOAT32", "INT32", "INT64", "BOOL"],
    "STRIDED_SLICE": ["INT8", "INT16", "FLOAT32", "INT32", "BOOL"],
    "SPLIT": ["INT8", "INT16", "FLOAT32", "INT32"],
    "SPLIT_V": ["INT8", "INT16", "FLOAT32", "INT32"],
    "PACK": ["INT8", "INT16", "FLOAT32", "INT32", "INT64"],
    "UNPACK": ["INT8", "INT16", "FLOAT32", "INT32"],
}
OPS_AND_KINDS = [(op, kind) for op, kinds in OP_TYPES.items() for kind in kinds]
DIFF_OPS = set(OP_TYPES)  # the ops this module tests (see test_diff_regressions.py)


def shapes(min_rank=1, max_rank=5, hi=6):
    return st.integers(min_rank, max_rank).flatmap(lambda r: st.lists(dims(1, hi), min_size=r, max_size=r))


def values(rng, shape, kind, n, case):
    if kind == "BOOL":
        return rng.integers(0, 2, (n,) + tuple(shape)).astype(np.bool_)
    return random_inputs(rng, shape, np.dtype(kind.lower()), n, zero_point=case.get("zero_point", 0),
                         style=case["style"])


def quant(case):
    if case["kind"] not in ("INT8", "INT16"):
        return {}
    return dict(scale=case["scale"], zero_point=case["zero_point"])


@st.composite
def common(draw, op, kind):
    case = dict(op=op, kind=kind, seed=draw(seeds), style=draw(input_styles))
    if kind in ("INT8", "INT16"):
        case["scale"] = draw(scales())
        case["zero_point"] = draw(zero_points("INT8")) if kind == "INT8" else 0
    return case


@st.composite
def reshape_cases(draw, kind):
    case = draw(common("RESHAPE", kind))
    shape = draw(shapes())
    # The output shape: the same elements regrouped into 1-5 dims.
    flat = [p for d in shape for p in _prime_factors(d)]
    perm = draw(st.permutations(flat)) if flat else []
    rank = draw(st.integers(1, 5))
    out = [1] * rank
    for p in perm:
        out[draw(st.integers(0, rank - 1))] *= p
    case.update(shape=shape, out_shape=out,
                shape_source=draw(st.sampled_from(["tensor", "option", "both", "none"])),
                unknown_dim=draw(st.sampled_from([None, None, 0]) | st.integers(0, rank - 1)))
    return case


def _prime_factors(n):
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@st.composite
def squeeze_cases(draw, kind):
    case = draw(common("SQUEEZE", kind))
    shape = [d if draw(st.integers(0, 2)) else 1 for d in draw(shapes(1, 6))]
    ones = [i for i, d in enumerate(shape) if d == 1]
    chosen = draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    case.update(shape=shape, squeeze_dims=[i - len(shape) if draw(st.booleans()) else i for i in chosen])
    return case


@st.composite
def expand_dims_cases(draw, kind):
    case = draw(common("EXPAND_DIMS", kind))
    shape = draw(shapes(0, 4))
    rank = len(shape)
    case.update(shape=shape, axis=draw(st.integers(-rank - 1, rank)),
                axis_shape=draw(st.sampled_from([[], [1]])))
    return case


@st.composite
def transpose_cases(draw, kind):
    case = draw(common("TRANSPOSE", kind))
    shape = draw(shapes(1, 5))
    case.update(shape=shape, perm=list(draw(st.permutations(range(len(shape))))))
    return case


@st.composite
def concatenation_cases(draw, kind):
    case = draw(common("CONCATENATION", kind))
    shape = draw(shapes(1, 5))
    rank = len(shape)
    axis = draw(st.integers(0, rank - 1))
    count = draw(st.integers(1, 5))
    sizes = [draw(dims(1, 4)) for _ in range(count)]
    case.update(shape=shape, axis=axis - rank if draw(st.booleans()) else axis, sizes=sizes,
                constant=[draw(st.integers(0, 3)) == 0 for _ in range(count)],
                # Rarely a fused activation or mismatched input quantization (TFLM refuses both).
                activation=draw(st.sampled_from(["NONE"] * 12 + ["RELU"])),
                mismatched_input=draw(st.sampled_from([None] * 10 + [0])))
    return case


@st.composite
def strided_slice_cases(draw, kind):
    case = draw(common("STRIDED_SLICE", kind))
    shape = draw(shapes(1, 4, hi=8))
    rank = len(shape)
    shrink = draw(st.sampled_from([0, 0]) | st.integers(0, 2 ** rank - 1))
    begin, end, strides = [], [], []
    for axis, size in enumerate(shape):
        shrunk = bool(shrink & (1 << axis))
        # A shrunk axis with a negative stride, or indexing outside the input, leaves TFLM's
        # output unwritten (whatever the arena held): microref refuses those as unsupported.
        stride = draw(st.sampled_from([1, 1, 2, 3] if shrunk else [1, 1, 2, 3, -1, -2]))
        if shrunk or draw(st.integers(0, 2)):
            # Mostly a non-empty slice inside the input (an empty one is a TFLM Prepare failure),
            # with indices written as negative numbers at times.
            first = draw(st.integers(0, size - 1))
            count = draw(st.integers(1, size))
            last = first + stride * count
            b = first - size if draw(st.integers(0, 3)) == 0 else first
            e = last - size if (draw(st.integers(0, 3)) == 0 and 0 <= last - size < size) else last
        else:
            b, e = draw(st.integers(-9, 9)), draw(st.integers(-9, 9))
        begin.append(b)
        end.append(e)
        strides.append(stride)
    case.update(shape=shape, begin=begin, end=end, strides=strides,
                begin_mask=draw(st.integers(0, 2 ** rank - 1)), end_mask=draw(st.integers(0, 2 ** rank - 1)),
                shrink_axis_mask=shrink,
                # TFLM ignores these two; rarely set them.
                ellipsis_mask=draw(st.sampled_from([0] * 10 + [1])),
                new_axis_mask=draw(st.sampled_from([0] * 10 + [1])))
    return case


@st.composite
def split_cases(draw, kind, op):
    case = draw(common(op, kind))
    shape = draw(shapes(1, 5))
    rank = len(shape)
    axis = draw(st.integers(0, rank - 1))
    if op == "SPLIT":
        num = draw(st.integers(1, 4))
        shape[axis] = num * draw(dims(1, 3))
        case.update(num_splits=num)
    else:
        sizes = draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))
        shape[axis] = max(sum(sizes), 1)
        if sum(sizes) == 0:
            sizes[0] = 1
        unknown = draw(st.sampled_from([None, None]) | st.integers(0, len(sizes) - 1))
        case.update(size_splits=sizes, unknown_split=unknown, num_splits=len(sizes))
    case.update(shape=shape, axis=axis - rank if draw(st.booleans()) else axis)
    return case


@st.composite
def pack_cases(draw, kind, op):
    case = draw(common(op, kind))
    shape = draw(shapes(0 if op == "PACK" else 1, 4))
    if op == "PACK":
        rank = len(shape) + 1
        case.update(shape=shape, count=draw(st.integers(1, 5)), axis=draw(st.integers(-rank, rank - 1)))
    else:
        rank = len(shape)
        case.update(shape=shape, axis=draw(st.integers(-rank, rank - 1)))
    return case


STRATEGIES = {
    "RESHAPE": reshape_cases, "SQUEEZE": squeeze_cases, "EXPAND_DIMS": expand_dims_cases,
    "TRANSPOSE": transpose_cases, "CONCATENATION": concatenation_cases, "STRIDED_SLICE": strided_slice_cases,
    "SPLIT": lambda kind: split_cases(kind, "SPLIT"), "SPLIT_V": lambda kind: split_cases(kind, "SPLIT_V"),
    "PACK": lambda kind: pack_cases(kind, "PACK"), "UNPACK": lambda kind: pack_cases(kind, "UNPACK"),
}


def build_shape_op(case: dict):
    rng = np.random.default_rng(case["seed"])
    op, kind = case["op"], case["kind"]
    b = ModelBuilder()
    q = quant(case)
    if op == "CONCATENATION":
        return _build_concatenation(b, rng, case)
    if op == "PACK":
        ins, inputs = [], []
        for i in range(case["count"]):
            ins.append(b.input(f"x{i}", case["shape"], kind, **q))
            inputs.append(values(rng, case["shape"], kind, SAMPLES, case))
        out_shape = list(np.stack([np.empty(case["shape"])] * case["count"], axis=case["axis"]).shape)
        y = b.tensor("y", out_shape, kind, **q)
        b.op("PACK", ins, [y], values_count=case["count"], axis=case["axis"])
        b.output(y)
        return b.build(), inputs
    x = b.input("x", case["shape"], kind, **q)
    inputs = [values(rng, case["shape"], kind, SAMPLES, case)]
    probe = np.empty(case["shape"])
    if op == "RESHAPE":
        shape_values = list(case["out_shape"])
        if case["unknown_dim"] is not None and case["unknown_dim"] < len(shape_values):
            shape_values[case["unknown_dim"]] = -1
        op_inputs = [x]
        options = {}
        if case["shape_source"] in ("tensor", "both"):
            op_inputs.append(b.constant("shape", np.array(shape_values, np.int32)))
        if case["shape_source"] in ("option", "both"):
            options["new_shape"] = shape_values
        y = b.tensor("y", case["out_shape"], kind, **q)
        b.op("RESHAPE", op_inputs, [y], **options)
    elif op == "SQUEEZE":
        squeezed = [i % len(case["shape"]) for i in case["squeeze_dims"]] or \
                   [i for i, d in enumerate(case["shape"]) if d == 1]
        out_shape = [d for i, d in enumerate(case["shape"]) if i not in squeezed]
        y = b.tensor("y", out_shape, kind, **q)
        b.op("SQUEEZE", [x], [y], squeeze_dims=case["squeeze_dims"])
    elif op == "EXPAND_DIMS":
        axis = b.constant("axis", np.array(case["axis"], np.int32).reshape(case["axis_shape"]))
        y = b.tensor("y", list(np.expand_dims(probe, case["axis"]).shape), kind, **q)
        b.op("EXPAND_DIMS", [x, axis], [y])
    elif op == "TRANSPOSE":
        perm = b.constant("perm", np.array(case["perm"], np.int32))
        y = b.tensor("y", list(np.transpose(probe, case["perm"]).shape), kind, **q)
        b.op("TRANSPOSE", [x, perm], [y])
    elif op == "STRIDED_SLICE":
        y = b.tensor("y", _python_slice_shape(case), kind, **q)
        b.op("STRIDED_SLICE", [x, b.constant("begin", np.array(case["begin"], np.int32)),
                               b.constant("end", np.array(case["end"], np.int32)),
                               b.constant("strides", np.array(case["strides"], np.int32))], [y],
             begin_mask=case["begin_mask"], end_mask=case["end_mask"], shrink_axis_mask=case["shrink_axis_mask"],
             ellipsis_mask=case["ellipsis_mask"], new_axis_mask=case["new_axis_mask"])
    elif op in ("SPLIT", "SPLIT_V"):
        axis_t = b.constant("axis", np.array(case["axis"], np.int32))
        if op == "SPLIT":
            parts = np.split(probe, case["num_splits"], axis=case["axis"])
        else:
            parts = np.split(probe, np.cumsum(case["size_splits"])[:-1], axis=case["axis"])
        outs = [b.tensor(f"y{i}", list(p.shape), kind, **q) for i, p in enumerate(parts)]
        if op == "SPLIT":
            b.op("SPLIT", [axis_t, x], outs, num_splits=case["num_splits"])
        else:
            sizes = list(case["size_splits"])
            if case["unknown_split"] is not None:
                sizes[case["unknown_split"]] = -1
            b.op("SPLIT_V", [x, b.constant("size_splits", np.array(sizes, np.int32)), axis_t], outs,
                 num_splits=case["num_splits"])
        b.output(*outs)
        return b.build(), inputs
    elif op == "UNPACK":
        num = case["shape"][case["axis"]]
        parts = [np.take(probe, i, axis=case["axis"]) for i in range(num)]
        outs = [b.tensor(f"y{i}", list(p.shape), kind, **q) for i, p in enumerate(parts)]
        b.op("UNPACK", [x], outs, num=num, axis=case["axis"])
        b.output(*outs)
        return b.build(), inputs
    b.output(y)
    return b.build(), inputs


def _python_slice_shape(case):
    """The slice's shape by Python's slicing rules (TFLM's Prepare refuses the model where it disagrees)."""
    index = []
    for axis, _size in enumerate(case["shape"]):
        bit = 1 << axis
        begin = None if case["begin_mask"] & bit else case["begin"][axis]
        end = None if case["end_mask"] & bit else case["end"][axis]
        if case["shrink_axis_mask"] & bit:
            index.append(case["begin"][axis])
        else:
            index.append(slice(begin, end, case["strides"][axis]))
    return list(np.empty(case["shape"])[tuple(index)].shape)


def _build_concatenation(b, rng, case):
    kind, q = case["kind"], quant(case)
    axis = case["axis"] % len(case["shape"])
    ins, inputs = [], []
    for i, (size, constant) in enumerate(zip(case["sizes"], case["constant"])):
        shape = list(case["shape"])
        shape[axis] = size
        q_i = q
        if case["mismatched_input"] == i and q:
            q_i = dict(scale=q["scale"] * 2, zero_point=q["zero_point"])
        v = values(rng, shape, kind, SAMPLES, case)
        if constant:
            ins.append(b.constant(f"c{i}", v[0], kind, **q_i))
        else:
            ins.append(b.input(f"x{i}", shape, kind, **q_i))
            inputs.append(v)
    if not inputs:
        # At least one activation input, so that the model has something to run on.
        shape = list(case["shape"])
        shape[axis] = 1
        ins.append(b.input("x_last", shape, kind, **q))
        inputs.append(values(rng, shape, kind, SAMPLES, case))
    out_shape = list(case["shape"])
    out_shape[axis] = sum(s for s in case["sizes"]) + (1 if len(ins) > len(case["sizes"]) else 0)
    y = b.tensor("y", out_shape, kind, **q)
    b.op("CONCATENATION", ins, [y], axis=case["axis"], fused_activation_function=case["activation"])
    b.output(y)
    return b.build(), inputs


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_shape_op(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_shape_op_matches_tflm(op, kind):
    # Pure data movement: fewer examples than the arithmetic ops need.
    run_examples(STRATEGIES[op](kind), lambda case: run_case(op, case), fraction=0.4)
