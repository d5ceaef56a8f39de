"""More data-movement ops against TFLM: BATCH_TO_SPACE_ND, SPACE_TO_BATCH_ND, DEPTH_TO_SPACE,
SPACE_TO_DEPTH, BROADCAST_ARGS, BROADCAST_TO, FILL, SHAPE, SLICE, MIRROR_PAD, REVERSE_V2 and
DYNAMIC_UPDATE_SLICE (GATHER, GATHER_ND and EMBEDDING_LOOKUP: test_diff_data_movement_gather.py).

Every element type each kernel handles (and a few it refuses), parameter tensors both constant
and computed (fed as model inputs, different per sample), int32 and int64 parameter types, and
parameters that make TFLM's Invoke fail (microref must then raise InvokeError on the same
samples) or leave its result undefined (microref must refuse rather than return a value).
"""
from __future__ import annotations

import numpy as np
import pytest
from diff_support import (
    OUTCOMES,
    SAMPLES,
    Outcome,
    _assert_same,
    assert_tflm_aborts,
    check_model,
    dims,
    input_styles,
    note_case,
    random_inputs,
    record,
    run_examples,
    scales,
    seeds,
    tflm_run,
    zero_points,
)
from hypothesis import strategies as st

from interp.builder import ModelBuilder

OP_TYPES = {
    "BATCH_TO_SPACE_ND": ["FLOAT32", "INT8", "INT16"],
    "SPACE_TO_BATCH_ND": ["FLOAT32", "INT8", "INT32"],
    "DEPTH_TO_SPACE": ["FLOAT32", "INT8", "INT16"],
    "SPACE_TO_DEPTH": ["FLOAT32", "INT8", "INT32"],
    "BROADCAST_ARGS": ["INT32", "INT64"],
    "BROADCAST_TO": ["FLOAT32", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL", "FLOAT16", "FLOAT64",
                     "UINT32"],
    "FILL": ["FLOAT32", "INT32", "INT8", "INT16", "BOOL"],
    "SHAPE": ["FLOAT32", "INT8", "BOOL", "INT64"],
    "SLICE": ["FLOAT32", "INT8", "INT16", "INT32", "BOOL", "UINT8"],
    "MIRROR_PAD": ["FLOAT32", "INT8", "INT16"],
    "REVERSE_V2": ["FLOAT32", "INT8", "UINT8", "INT16", "INT32", "INT64", "BOOL", "FLOAT16"],
    "DYNAMIC_UPDATE_SLICE": ["FLOAT32", "INT8", "INT16", "INT32", "BOOL"],
}
# Kinds in OP_TYPES the kernel refuses (checked to be refused by both).
TFLM_REFUSES = {"BATCH_TO_SPACE_ND": {"INT16"}, "SPACE_TO_BATCH_ND": {"INT32"}, "DEPTH_TO_SPACE": {"INT16"},
                "SPACE_TO_DEPTH": {"INT32"}, "FILL": {"INT16", "BOOL"}, "SLICE": {"UINT8"},
                "MIRROR_PAD": {"INT16"}, "REVERSE_V2": {"FLOAT16"}, "DYNAMIC_UPDATE_SLICE": {"BOOL"}}
OPS_AND_KINDS = [(op, kind) for op, kinds in OP_TYPES.items() for kind in kinds]
DIFF_OPS = set(OP_TYPES)  # the ops this module tests (see test_diff_regressions.py)


# ---------------------------------------------------------------------------------- checking
def check_dynamic(data: bytes, inputs: list[np.ndarray], *, label: str, op_name: str) -> Outcome:
    """``check_model``, plus the case of computed parameters that make TFLM's Invoke fail: then
    every sample runs on its own through both, and must fail in both (microref raising
    InvokeError that names the operator) or give equal outputs."""
    from interp import Interpreter
    from interp.errors import InvokeError

    try:
        return check_model(data, inputs, label=label)
    except AssertionError as e:
        if "(invoke failed) but microref loads it" not in str(e):
            raise
    it = Interpreter.from_bytes(data)
    with pytest.raises(InvokeError, match=op_name):
        it.run_batch(inputs)
    failed = 0
    for s in range(inputs[0].shape[0]):
        sample = [x[s] for x in inputs]
        verdict, payload = tflm_run(data, [sample])
        if verdict == "invoke failed":
            failed += 1
            with pytest.raises(InvokeError, match=op_name):
                it.run(sample)
            continue
        assert verdict == "ok", payload
        got = it.run(sample)
        for j, want in enumerate(payload[0]):
            _assert_same(got[j], want, f"output {j}, run(), sample {s} on its own", it)
    assert failed, "TFLM failed on the batch but on no sample on its own"
    OUTCOMES[label]["invoke failed in both"] += 1
    return Outcome(False, "invoke failed")


def expect_refusal(data: bytes, inputs: list[np.ndarray], *, label: str, match: str) -> Outcome:
    """A model whose TFLM result is undefined (a read outside a tensor, output left unwritten):
    microref must refuse it, at load (constant parameters) or at run (computed ones)."""
    from interp import Interpreter
    from interp.errors import InvokeError, ModelError, UnsupportedOpError

    try:
        it = Interpreter.from_bytes(data)
    except (ModelError, UnsupportedOpError) as e:
        assert match in str(e), str(e)
        OUTCOMES[label]["undefined: refused at load"] += 1
        return Outcome(False, str(e))
    with pytest.raises(InvokeError, match=match):
        it.run_batch(inputs)
    OUTCOMES[label]["undefined: refused at run"] += 1
    return Outcome(False, "refused at run")


# ---------------------------------------------------------------------------------- values
NP_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
            "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "UINT32": np.uint32,
            "BOOL": np.bool_}


def values(rng, shape, kind, n, case):
    dtype = np.dtype(NP_TYPES[kind])
    if kind == "BOOL":
        return rng.integers(0, 2, (n,) + tuple(shape)).astype(np.bool_)
    if kind == "UINT32":
        return rng.integers(0, 2 ** 32, (n,) + tuple(shape), dtype=np.uint64).astype(np.uint32)
    if dtype.kind == "f" and dtype != np.float32:
        v = random_inputs(rng, shape, np.float32, n, style=case["style"])
        return np.clip(v, -60000, 60000).astype(dtype)  # finite in float16 too
    return random_inputs(rng, shape, dtype, n, zero_point=case.get("zero_point", 0), style=case["style"])


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


def parameter(b, name, per_sample: list[np.ndarray], type_name: str, as_input: bool, inputs: list):
    """A parameter tensor: a constant (the first sample's values) or a model input fed
    ``per_sample`` values (samples cycle through the list)."""
    arrays = [np.asarray(v).astype(NP_TYPES[type_name]) for v in per_sample]
    if not as_input:
        return b.constant(name, arrays[0], type_name)
    t = b.input(name, list(arrays[0].shape), type_name)
    inputs.append(np.stack([arrays[s % len(arrays)] for s in range(SAMPLES)]))
    return t


# ------------------------------------------------------------------ BATCH_TO_SPACE_ND / SPACE_TO_BATCH_ND
@st.composite
def space_batch_cases(draw, op, kind):
    case = draw(common(op, kind))
    rank = draw(st.sampled_from([3, 4]))
    bh = draw(st.integers(1, 3))
    bw = draw(st.integers(1, 3)) if rank == 4 else 1
    batch = draw(st.integers(1, 3))
    depth = draw(dims(1, 4))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4)) if rank == 4 else 1
    # Crops (BATCH_TO_SPACE_ND) or paddings (SPACE_TO_BATCH_ND), each side < block.
    top, bottom = draw(st.integers(0, bh - 1)), draw(st.integers(0, bh - 1))
    left, right = (draw(st.integers(0, bw - 1)), draw(st.integers(0, bw - 1))) if rank == 4 else (0, 0)
    if op == "BATCH_TO_SPACE_ND":
        in_shape = [batch * bh * bw, h, w, depth]
        out_shape = [batch, h * bh - top - bottom, w * bw - left - right, depth]
        if out_shape[1] <= 0 or out_shape[2] <= 0:
            top = bottom = left = right = 0
            out_shape = [batch, h * bh, w * bw, depth]
    else:
        in_shape = [batch, h * bh - top - bottom, w * bw - left - right, depth]
        if in_shape[1] <= 0 or in_shape[2] <= 0:
            top = bottom = left = right = 0
            in_shape = [batch, h * bh, w * bw, depth]
        out_shape = [batch * bh * bw, h, w, depth]
    if rank == 3:
        in_shape, out_shape = [in_shape[0], in_shape[1], depth], [out_shape[0], out_shape[1], depth]
    pads = [[top, bottom], [left, right]][: 1 if rank == 3 else 2]
    # Rarely parameters that do not fit the shapes: crops/paddings past a block or negative, a
    # block height of 0 or a negative block, an output dim off by one. SPACE_TO_BATCH_ND still
    # writes every output element (pad or copy); BATCH_TO_SPACE_ND may leave some unwritten.
    odd = draw(st.sampled_from([None] * 6 + ["pads", "block", "shape"]))
    if odd == "pads":
        pads = [[draw(st.integers(-1, 2 * b_)), draw(st.integers(-1, 2 * b_))] for b_ in [bh, bw][: len(pads)]]
    elif odd == "block":
        bh = draw(st.sampled_from([0, -1, -2]))
        bw = draw(st.sampled_from([bw, -1])) if rank == 4 else 1
    elif odd == "shape":
        axis = draw(st.integers(1, rank - 2))
        out_shape[axis] = max(1, out_shape[axis] + draw(st.sampled_from([-1, 1])))
    # With computed parameters, other samples may swap the two sides (same output shape).
    swapped = [[p[1], p[0]] for p in pads]
    case.update(rank=rank, block=[bh, bw][: rank - 2], pads=pads, odd=odd, swapped=swapped, in_shape=in_shape,
                out_shape=out_shape, as_input=draw(st.sampled_from([False, False, True])),
                vary=draw(st.booleans()),
                # 3-D models sometimes pass a [2, 2] crops tensor, as converters may.
                pad_rows=draw(st.sampled_from([None, None, 2])) if rank == 3 else None)
    return case


def build_space_batch(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    x = b.input("x", case["in_shape"], kind, **q)
    inputs.append(values(rng, case["in_shape"], kind, SAMPLES, case))
    pads = [np.array(case["pads"]), np.array(case["swapped"])] if case["vary"] else [np.array(case["pads"])]
    if case["pad_rows"]:
        pads = [np.vstack([p, [[0, 0]]]) for p in pads]
    block = parameter(b, "block_shape", [np.array(case["block"])], "INT32", case["as_input"], inputs)
    pad_t = parameter(b, "crops" if case["op"] == "BATCH_TO_SPACE_ND" else "paddings", pads, "INT32",
                      case["as_input"], inputs)
    y = b.tensor("y", case["out_shape"], kind, **q)
    b.op(case["op"], [x, block, pad_t], [y])
    return y


# ---------------------------------------------------------------------------------- DEPTH_TO_SPACE / SPACE_TO_DEPTH
@st.composite
def depth_space_cases(draw, op, kind):
    case = draw(common(op, kind))
    bs = draw(st.integers(1, 4))
    batch, h, w, c = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(dims(1, 4))
    if op == "DEPTH_TO_SPACE":
        in_shape, out_shape = [batch, h, w, c * bs * bs], [batch, h * bs, w * bs, c]
    else:
        in_shape, out_shape = [batch, h * bs, w * bs, c], [batch, h, w, c * bs * bs]
    case.update(block_size=bs, in_shape=in_shape, out_shape=out_shape)
    return case


def build_depth_space(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    x = b.input("x", case["in_shape"], kind, **q)
    inputs.append(values(rng, case["in_shape"], kind, SAMPLES, case))
    y = b.tensor("y", case["out_shape"], kind, **q)
    b.op(case["op"], [x], [y], block_size=case["block_size"])
    return y


# ---------------------------------------------------------------------------------- BROADCAST_ARGS
@st.composite
def broadcast_args_cases(draw, kind):
    case = draw(common("BROADCAST_ARGS", kind))
    out = draw(st.lists(st.integers(1, 6), min_size=0, max_size=5))

    def operand():
        rank = draw(st.integers(0, len(out)))
        return [1 if draw(st.integers(0, 2)) == 0 else d for d in out[len(out) - rank:]]
    s1, s2 = operand(), operand()
    if kind == "INT64" and s1 and draw(st.integers(0, 3)) == 0:
        # Values pass through C int: 2**32 + d reads as d.
        s1[draw(st.integers(0, len(s1) - 1))] += 2 ** 32
    case.update(s1=s1, s2=s2, out_len=max(len(s1), len(s2)) + draw(st.sampled_from([0, 0, 0, 1, -1])),
                # An empty constant has no buffer (a tensor nothing writes): feed it instead.
                s1_input=draw(st.booleans()) or not s1)
    case["out_len"] = max(case["out_len"], 0)
    return case


def build_broadcast_args(b, rng, case, inputs):
    kind = case["kind"]
    s2 = b.input("s2", [len(case["s2"])], kind)
    inputs.append(np.stack([np.array(case["s2"], NP_TYPES[kind])] * SAMPLES))
    s1 = parameter(b, "s1", [np.array(case["s1"], np.int64)], kind, case["s1_input"], inputs)
    y = b.tensor("y", [case["out_len"]], kind)
    b.op("BROADCAST_ARGS", [s1, s2], [y])
    return y


# ---------------------------------------------------------------------------------- BROADCAST_TO
@st.composite
def broadcast_to_cases(draw, kind):
    case = draw(common("BROADCAST_TO", kind))
    out = draw(st.lists(st.integers(1, 5), min_size=draw(st.sampled_from([1] * 6 + [0])), max_size=5))
    rank = draw(st.integers(0, len(out)))
    in_shape = [1 if draw(st.integers(0, 2)) == 0 else d for d in out[len(out) - rank:]]
    case.update(in_shape=in_shape, out_shape=out, shape_type=draw(st.sampled_from(["INT32", "INT64"])))
    return case


def build_broadcast_to(b, rng, case, inputs):
    kind = case["kind"]
    x = b.input("x", case["in_shape"], kind, **quant(case))
    inputs.append(values(rng, case["in_shape"], kind, SAMPLES, case))
    shape = b.constant("shape", np.array(case["out_shape"], NP_TYPES[case["shape_type"]]), case["shape_type"])
    y = b.tensor("y", case["out_shape"], kind, **quant(case))
    b.op("BROADCAST_TO", [x, shape], [y])
    return y


# ---------------------------------------------------------------------------------- FILL
@st.composite
def fill_cases(draw, kind):
    case = draw(common("FILL", kind))
    case.update(out_shape=draw(st.lists(st.integers(1, 5), min_size=1, max_size=5)),
                dims_type=draw(st.sampled_from(["INT32", "INT32", "INT64", "INT16", "INT8"])),
                value_input=draw(st.sampled_from([True, True, False])))
    return case


def build_fill(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    v = values(rng, [], kind, SAMPLES, case)
    if case["value_input"]:
        value = b.input("value", [], kind, **q)
        inputs.append(v)
    else:
        value = b.constant("value", v[0], kind, **q)
        # Something to feed: the model's first input is an unused scalar.
        b.input("unused", [], "FLOAT32")
        inputs.append(np.zeros((SAMPLES,), np.float32))
    dims_t = b.constant("dims", np.array(case["out_shape"], NP_TYPES[case["dims_type"]]), case["dims_type"])
    y = b.tensor("y", case["out_shape"], kind, **q)
    b.op("FILL", [dims_t, value], [y])
    return y


# ---------------------------------------------------------------------------------- SHAPE
@st.composite
def shape_cases(draw, kind):
    case = draw(common("SHAPE", kind))
    case.update(in_shape=draw(st.lists(st.integers(1, 5), min_size=0, max_size=6)),
                out_type=draw(st.sampled_from(["INT32", "INT32", "INT32", "INT64"])))
    return case


def build_shape(b, rng, case, inputs):
    kind = case["kind"]
    x = b.input("x", case["in_shape"], kind, **quant(case))
    inputs.append(values(rng, case["in_shape"], kind, SAMPLES, case))
    y = b.tensor("y", [len(case["in_shape"])], case["out_type"])
    b.op("SHAPE", [x], [y], out_type=case["out_type"])
    return y


# ---------------------------------------------------------------------------------- SLICE
@st.composite
def slice_cases(draw, kind):
    case = draw(common("SLICE", kind))
    shape = draw(st.lists(dims(1, 6), min_size=1, max_size=5))
    begin, size, alt_begin = [], [], []
    for d in shape:
        b0 = draw(st.integers(0, d - 1))
        s = draw(st.integers(1, d - b0))
        begin.append(b0)
        # Another sample's begin, keeping the size in range.
        alt_begin.append(draw(st.integers(0, d - s)))
        size.append(-1 if (b0 + s == d and draw(st.integers(0, 2)) == 0) else s)
    # Rarely a begin past the end of one dimension: TFLM addresses flat, so this reads the next
    # row while inside the tensor (mirrored), or outside it (undefined: refused).
    odd = draw(st.sampled_from([None] * 8 + ["overrun"]))
    if odd:
        axis = draw(st.integers(0, len(shape) - 1))
        begin[axis] = shape[axis] - (size[axis] if size[axis] > 0 else 1) + draw(st.integers(1, 2))
        if size[axis] == -1:
            size[axis] = 1
    case.update(shape=shape, begin=begin, size=size, alt_begin=alt_begin, odd=odd,
                index_type=draw(st.sampled_from(["INT32", "INT32", "INT64"])),
                as_input=draw(st.sampled_from([False, True])), vary=draw(st.booleans()))
    return case


def slice_reads(shape, begin, size):
    """The flat input offsets SLICE reads (numpy's row-major strides), independent of microref."""
    strides = np.cumprod([1] + list(shape[::-1]))[:-1][::-1]
    axes = [np.arange(b0, b0 + (d - b0 if s == -1 else s)) * st_ for b0, s, d, st_ in zip(begin, size, shape,
                                                                                          strides)]
    grid = np.zeros([len(a) for a in axes], np.int64)
    for i, a in enumerate(axes):
        grid = grid + a.reshape([-1 if j == i else 1 for j in range(len(axes))])
    return grid


def build_slice(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    x = b.input("x", case["shape"], kind, **q)
    inputs.append(values(rng, case["shape"], kind, SAMPLES, case))
    begins = [np.array(case["begin"])]
    if case["vary"] and not case["odd"] and -1 not in case["size"]:
        begins.append(np.array(case["alt_begin"]))
    begin = parameter(b, "begin", begins, case["index_type"], case["as_input"], inputs)
    size = parameter(b, "size", [np.array(case["size"])], case["index_type"], case["as_input"], inputs)
    out_shape = list(slice_reads(case["shape"], case["begin"], case["size"]).shape)
    y = b.tensor("y", out_shape, kind, **q)
    b.op("SLICE", [x, begin, size], [y])
    return y


# ---------------------------------------------------------------------------------- MIRROR_PAD
@st.composite
def mirror_pad_cases(draw, kind):
    case = draw(common("MIRROR_PAD", kind))
    mode = draw(st.sampled_from(["REFLECT", "SYMMETRIC"]))
    shape = draw(st.lists(dims(1, 5), min_size=1, max_size=4))
    limit = (lambda d: d - 1) if mode == "REFLECT" else (lambda d: d)
    pads = [[draw(st.integers(0, limit(d))), draw(st.integers(0, limit(d)))] for d in shape]
    # Rarely: a right pad wider than the input (TFLM clamps: defined), a left one (reads
    # outside the input: undefined), or a negative one.
    odd = draw(st.sampled_from([None] * 8 + ["wide right", "wide left", "negative"]))
    if odd:
        axis = draw(st.integers(0, len(shape) - 1))
        if odd == "wide right":
            pads[axis][1] = shape[axis] + draw(st.integers(0, 3))
        elif odd == "wide left":
            pads[axis][0] = shape[axis] + draw(st.integers(0, 2))
        else:
            pads[axis][draw(st.integers(0, 1))] = -draw(st.integers(0, shape[axis] - 1)) if shape[axis] > 1 else 0
    case.update(mode=mode, shape=shape, pads=pads, odd=odd,
                pad_type=draw(st.sampled_from(["INT32", "INT32", "INT64", "INT64", "INT16"])),
                as_input=draw(st.sampled_from([False, False, True])))
    return case


def mirror_pad_reads(case):
    """Whether TFLM reads inside the input: only a left pad wider than the reflected range reads
    outside it (indices computed here with numpy's own padding where it is defined)."""
    offset = 1 if case["mode"] == "REFLECT" else 0
    pads = case["pads"] if case["pad_type"] != "INT16" else [[0, 0]] * len(case["shape"])
    return all(left <= d - offset or d - offset <= 0 and left <= 0 for (left, _), d in zip(pads, case["shape"]))


def build_mirror_pad(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    x = b.input("x", case["shape"], kind, **q)
    inputs.append(values(rng, case["shape"], kind, SAMPLES, case))
    pad_t = parameter(b, "paddings", [np.array(case["pads"])], case["pad_type"], case["as_input"], inputs)
    pads = case["pads"] if case["pad_type"] != "INT16" else [[0, 0]] * len(case["shape"])
    out_shape = [d + lo + hi for d, (lo, hi) in zip(case["shape"], pads)]
    if any(d <= 0 for d in out_shape):
        out_shape = [max(d, 1) for d in out_shape]
    y = b.tensor("y", out_shape, kind, **q)
    b.op("MIRROR_PAD", [x, pad_t], [y], mode=case["mode"])
    return y


# ---------------------------------------------------------------------------------- REVERSE_V2
@st.composite
def reverse_cases(draw, kind):
    case = draw(common("REVERSE_V2", kind))
    shape = draw(st.lists(dims(1, 5), min_size=1, max_size=6))
    rank = len(shape)

    def contiguous():
        lo = draw(st.integers(0, rank - 1))
        hi = draw(st.integers(lo, rank - 1))
        axes = list(range(lo, hi + 1))
        axes = [a - rank if draw(st.booleans()) else a for a in axes]
        return list(draw(st.permutations(axes)))
    axes = contiguous()
    alt = contiguous()
    # Rarely axes TFLM's Eval refuses: out of range, repeated, or not contiguous.
    bad = draw(st.sampled_from([None] * 6 + ["range", "repeat", "gap"]))
    if bad == "range":
        axes[0] = draw(st.sampled_from([rank, rank + 1, -rank - 1]))
    elif bad == "repeat" and len(axes) < rank:
        axes.append(axes[0])
    elif bad == "gap" and rank >= 3:
        axes = [0, rank - 1]
    case.update(shape=shape, axes=axes, alt=alt if len(alt) == len(axes) else axes,
                as_input=draw(st.sampled_from([False, True])))
    return case


def build_reverse(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    x = b.input("x", case["shape"], kind, **q)
    inputs.append(values(rng, case["shape"], kind, SAMPLES, case))
    axis = parameter(b, "axis", [np.array(case["axes"]), np.array(case["alt"])], "INT32", case["as_input"], inputs)
    y = b.tensor("y", case["shape"], kind, **q)
    b.op("REVERSE_V2", [x, axis], [y])
    return y


# ---------------------------------------------------------------------------------- DYNAMIC_UPDATE_SLICE
@st.composite
def dynamic_update_slice_cases(draw, kind):
    case = draw(common("DYNAMIC_UPDATE_SLICE", kind))
    shape = draw(st.lists(dims(1, 6), min_size=1, max_size=6))
    update = [draw(st.integers(1, d)) for d in shape]
    index_type = draw(st.sampled_from(["INT32", "INT64"]))
    big = 2 ** 40 if index_type == "INT64" else 2 ** 31 - 1

    def start():
        # Mostly in range; at times negative or past the end (TFLM clamps).
        return [draw(st.sampled_from([0, 1, -1, -big, big, 3, d - u, d])) if draw(st.booleans())
                else draw(st.integers(0, d - u)) for d, u in zip(shape, update)]
    case.update(shape=shape, update=update, index_type=index_type, starts=[start(), start(), start()],
                as_input=draw(st.sampled_from([False, True, True])), update_input=draw(st.booleans()))
    return case


def build_dynamic_update_slice(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    operand = b.input("operand", case["shape"], kind, **q)
    inputs.append(values(rng, case["shape"], kind, SAMPLES, case))
    u = values(rng, case["update"], kind, SAMPLES, case)
    if case["update_input"]:
        update = b.input("update", case["update"], kind, **q)
        inputs.append(u)
    else:
        update = b.constant("update", u[0], kind, **q)
    idx = parameter(b, "start", [np.array(s, np.int64) for s in case["starts"]], case["index_type"],
                    case["as_input"], inputs)
    y = b.tensor("y", case["shape"], kind, **q)
    b.op("DYNAMIC_UPDATE_SLICE", [operand, update, idx], [y])
    return y


# ---------------------------------------------------------------------------------- the property
STRATEGIES = {
    "BATCH_TO_SPACE_ND": lambda kind: space_batch_cases("BATCH_TO_SPACE_ND", kind),
    "SPACE_TO_BATCH_ND": lambda kind: space_batch_cases("SPACE_TO_BATCH_ND", kind),
    "DEPTH_TO_SPACE": lambda kind: depth_space_cases("DEPTH_TO_SPACE", kind),
    "SPACE_TO_DEPTH": lambda kind: depth_space_cases("SPACE_TO_DEPTH", kind),
    "BROADCAST_ARGS": broadcast_args_cases, "BROADCAST_TO": broadcast_to_cases, "FILL": fill_cases,
    "SHAPE": shape_cases, "SLICE": slice_cases, "MIRROR_PAD": mirror_pad_cases, "REVERSE_V2": reverse_cases,
    "DYNAMIC_UPDATE_SLICE": dynamic_update_slice_cases,
}
BUILDERS = {
    "BATCH_TO_SPACE_ND": build_space_batch, "SPACE_TO_BATCH_ND": build_space_batch,
    "DEPTH_TO_SPACE": build_depth_space, "SPACE_TO_DEPTH": build_depth_space,
    "BROADCAST_ARGS": build_broadcast_args, "BROADCAST_TO": build_broadcast_to, "FILL": build_fill,
    "SHAPE": build_shape, "SLICE": build_slice, "MIRROR_PAD": build_mirror_pad, "REVERSE_V2": build_reverse,
    "DYNAMIC_UPDATE_SLICE": build_dynamic_update_slice,
}


def build_case(case: dict):
    rng = np.random.default_rng(case["seed"])
    b = ModelBuilder()
    inputs: list[np.ndarray] = []
    y = BUILDERS[case["op"]](b, rng, case, inputs)
    b.output(y)
    return b.build(), inputs


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_case(case)
    label = f"{op} {case['kind']}"
    if case["kind"] in TFLM_REFUSES.get(op, ()):
        outcome = check_model(data, inputs, label=label)
        assert not outcome.compared, f"TFLM's {op} now takes {case['kind']}"
        return
    if op == "SLICE" and case["odd"]:
        reads = slice_reads(case["shape"], case["begin"], case["size"])
        if reads.max() >= int(np.prod(case["shape"])):
            expect_refusal(data, inputs, label=label, match="read outside the input")
            return
    if op == "BATCH_TO_SPACE_ND" and case["odd"]:
        # Parameters that may leave output pixels unwritten: microref refuses those, and must
        # match TFLM on the rest.
        from interp.errors import InvokeError, UnsupportedOpError
        try:
            record(check_dynamic(data, inputs, label=label, op_name=op), label)
        except (AssertionError, InvokeError, UnsupportedOpError) as e:
            if "never written" not in str(e):
                raise
            OUTCOMES[label]["undefined: refused"] += 1
        return
    if op == "MIRROR_PAD" and not mirror_pad_reads(case):
        expect_refusal(data, inputs, label=label, match="outside the input")
        return
    record(check_dynamic(data, inputs, label=label, op_name=op), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_data_movement_op_matches_tflm(op, kind):
    run_examples(STRATEGIES[op](kind), lambda case: run_case(op, case), fraction=0.25)


# ---------------------------------------------------------------------------------- fixed cases
def _model(op, ins, out_shape, out_type, **options):
    """A one-op model: ``ins`` is a list of ("input", name, array) or ("const", name, array, type)."""
    b = ModelBuilder()
    tensors, feed = [], []
    for entry in ins:
        if entry[0] == "input":
            _, name, arr = entry
            type_name = entry[3] if len(entry) > 3 else None
            tensors.append(b.input(name, list(arr.shape), type_name or arr.dtype))
            feed.append(arr[None])
        else:
            _, name, arr, type_name = entry
            tensors.append(b.constant(name, arr, type_name))
    y = b.tensor("y", out_shape, out_type)
    b.op(op, tensors, [y], **options)
    b.output(y)
    return b.build(), feed


def test_space_to_batch_pads_with_zero_bytes_not_the_zero_point():
    # TFLM memsets the padding with an OpData field it never initialises (0 in a fresh arena).
    from interp import Interpreter
    b = ModelBuilder()
    x = b.input("x", [1, 2, 2, 1], "INT8", scale=0.5, zero_point=-7)
    y = b.tensor("y", [4, 2, 2, 1], "INT8", scale=0.5, zero_point=-7)
    b.op("SPACE_TO_BATCH_ND", [x, b.constant("b", np.array([2, 2], np.int32)),
                               b.constant("p", np.array([[1, 1], [1, 1]], np.int32))], [y])
    b.output(y)
    data = b.build()
    xs = np.full((1, 1, 2, 2, 1), 5, np.int8)
    assert check_model(data, [xs], label="SPACE_TO_BATCH_ND fixed").compared
    got = Interpreter.from_bytes(data).run([xs[0]])[0]
    assert sorted(got.reshape(-1).tolist()) == [0] * 12 + [5] * 4


@pytest.mark.parametrize("op", ["SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"])
def test_int64_block_shape_divides_by_its_high_word(op):
    # TFLM reads block_shape as int32 words whatever its type: [2, 2] as int64 is 2, 0, 2, 0 and
    # the block width 0 is a division by zero (the wheel dies of SIGFPE). microref refuses.
    from interp import Interpreter
    from interp.errors import ModelError
    ishape, oshape = ([1, 4, 4, 1], [4, 2, 2, 1]) if op == "SPACE_TO_BATCH_ND" else ([4, 2, 2, 1], [1, 4, 4, 1])
    data, feed = _model(op, [("input", "x", np.zeros(ishape, np.float32)),
                             ("const", "b", np.array([2, 2], np.int64), "INT64"),
                             ("const", "p", np.zeros((2, 2), np.int64), "INT64")], oshape, "FLOAT32")
    assert_tflm_aborts(data, feed)
    with pytest.raises(ModelError, match="block width 0"):
        Interpreter.from_bytes(data)


def test_broadcast_args_on_unbroadcastable_shapes_aborts_tflm():
    from interp import Interpreter
    from interp.errors import InvokeError, ModelError
    data, feed = _model("BROADCAST_ARGS", [("input", "a", np.array([2, 3], np.int32)),
                                           ("const", "b", np.array([3, 3], np.int32), "INT32")], [2], "INT32")
    assert_tflm_aborts(data, feed)
    with pytest.raises(InvokeError, match="BROADCAST_ARGS.*do not broadcast"):
        Interpreter.from_bytes(data).run([np.array([2, 3], np.int32)])
    # Constant shapes that do not broadcast are refused at load.
    b = ModelBuilder()
    b.input("unused", [1], "FLOAT32")
    y = b.tensor("y", [2], "INT32")
    b.op("BROADCAST_ARGS", [b.constant("a", np.array([2, 3], np.int32)), b.constant("b", np.array([4, 3], np.int32))],
         [y])
    b.output(y)
    with pytest.raises(ModelError, match="do not broadcast"):
        Interpreter.from_bytes(b.build())


def test_reverse_with_an_empty_axis_tensor_crashes_tflm():
    from interp import Interpreter
    from interp.errors import UnsupportedOpError
    data, feed = _model("REVERSE_V2", [("input", "x", np.zeros((2, 3), np.float32)),
                                       ("const", "a", np.zeros(0, np.int32), "INT32")], [2, 3], "FLOAT32")
    assert_tflm_aborts(data, feed)
    # (refused as undefined before the kernel sees it: a zero-element tensor reaches only the
    # operators checked against TFLM on them; the kernel's own check is in test_ops_data_movement.py)
    with pytest.raises(UnsupportedOpError, match="no elements"):
        Interpreter.from_bytes(data)


@pytest.mark.parametrize("pad_type", ["INT16", "FLOAT32"])
def test_mirror_pad_ignores_paddings_of_other_types(pad_type):
    # GetPadding is only called for int32 and int64 paddings: others leave every pad at 0, and
    # the output is filled by mirroring past the input's end.
    b = ModelBuilder()
    x = b.input("x", [3, 4], "FLOAT32")
    y = b.tensor("y", [5, 8], "FLOAT32")
    b.op("MIRROR_PAD", [x, b.constant("p", np.ones((2, 2)), pad_type)], [y], mode="REFLECT")
    b.output(y)
    xs = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    assert check_model(b.build(), [xs], label="MIRROR_PAD fixed").compared
