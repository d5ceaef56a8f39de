"""GATHER, GATHER_ND and EMBEDDING_LOOKUP against TFLM: every element type each kernel takes (and
some it refuses), axis and batch_dims (negative too), indices computed (different per sample) or
constant, and indices out of range — on which TFLM's Invoke fails and microref's ``run`` must
raise InvokeError for the same samples (GATHER_ND: only when the flat offset leaves the params,
as TFLM checks it). EMBEDDING_LOOKUP includes the int8-weights -> float32 hybrid lookup.
"""
from __future__ import annotations

import numpy as np
import pytest
from diff_support import SAMPLES, check_model, dims, note_case, record, run_examples, scales
from hypothesis import strategies as st
from test_diff_data_movement import check_dynamic, common, expect_refusal, parameter, quant, values

from interp.builder import ModelBuilder

OP_TYPES = {
    "GATHER": ["FLOAT32", "INT8", "INT16", "INT32"],
    "GATHER_ND": ["FLOAT32", "INT8", "INT32"],
    "EMBEDDING_LOOKUP": ["FLOAT32", "INT8", "HYBRID", "INT16"],
}
TFLM_REFUSES = {"GATHER": {"INT16", "INT32"}, "GATHER_ND": {"INT32"}, "EMBEDDING_LOOKUP": {"INT16"}}
OPS_AND_KINDS = [(op, kind) for op, kinds in OP_TYPES.items() for kind in kinds]
DIFF_OPS = set(OP_TYPES)  # the ops this module tests (see test_diff_regressions.py)


def shapes(min_rank=1, max_rank=4, hi=5):
    return st.integers(min_rank, max_rank).flatmap(lambda r: st.lists(dims(1, hi), min_size=r, max_size=r))


def index_samples(draw, good, bad):
    """SAMPLES index arrays: ``good()`` draws valid ones; rarely one sample gets ``bad()``."""
    arrays = [good() for _ in range(SAMPLES)]
    if draw(st.integers(0, 4)) == 0:
        arrays[draw(st.integers(0, SAMPLES - 1))] = bad()
    return arrays


# ---------------------------------------------------------------------------------- GATHER
@st.composite
def gather_cases(draw, kind):
    case = draw(common("GATHER", kind))
    shape = draw(shapes())
    rank = len(shape)
    axis = draw(st.integers(0, rank - 1))
    batch_dims = draw(st.integers(0, axis))
    extra = draw(st.lists(dims(1, 4), min_size=0, max_size=2))
    coords_shape = shape[:batch_dims] + extra
    axis_size = shape[axis]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))

    def good():
        return rng.integers(0, axis_size, coords_shape).tolist()

    def bad():
        c = np.array(good())
        c.reshape(-1)[rng.integers(0, max(c.size, 1))] = draw(st.sampled_from([-1, axis_size, axis_size + 3,
                                                                               -(2 ** 31), 2 ** 31 - 1]))
        return c.tolist()
    coords = index_samples(draw, good, bad)
    case.update(shape=shape, axis=axis - rank if draw(st.booleans()) else axis,
                batch_dims=batch_dims - len(coords_shape) if draw(st.integers(0, 3)) == 0 else batch_dims,
                coords_shape=coords_shape, coords=coords, as_input=draw(st.sampled_from([True, True, False])),
                coords_type=draw(st.sampled_from(["INT32"] * 10 + ["INT64", "INT16"])))
    return case


def build_gather(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    x = b.input("x", case["shape"], kind, **q)
    inputs.append(values(rng, case["shape"], kind, SAMPLES, case))
    coords = parameter(b, "coords", [np.array(c).reshape(case["coords_shape"]) for c in case["coords"]],
                       case["coords_type"], case["as_input"], inputs)
    axis = case["axis"] % len(case["shape"])
    bd = case["batch_dims"] + len(case["coords_shape"]) if case["batch_dims"] < 0 else case["batch_dims"]
    out_shape = case["shape"][:axis] + case["coords_shape"][bd:] + case["shape"][axis + 1:]
    y = b.tensor("y", out_shape, kind, **q)
    b.op("GATHER", [x, coords], [y], axis=case["axis"], batch_dims=case["batch_dims"])
    return y


# ---------------------------------------------------------------------------------- GATHER_ND
@st.composite
def gather_nd_cases(draw, kind):
    case = draw(common("GATHER_ND", kind))
    shape = draw(shapes(1, 5))
    nd = draw(st.integers(1, len(shape)))
    batch = draw(st.lists(dims(1, 4), min_size=0, max_size=2))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))

    def good():
        return np.stack([rng.integers(0, d, batch) for d in shape[:nd]], axis=-1).tolist()

    def bad():
        # An index past one dimension (TFLM accepts it while the flat offset stays inside the
        # params: it reads the next row) or negative.
        i = np.array(good())
        flat = i.reshape(-1, nd)
        row, j = rng.integers(0, flat.shape[0]), rng.integers(0, nd)
        flat[row, j] = draw(st.sampled_from([-1, shape[j], shape[j] + 1, 2 * shape[j] + 1]))
        return i.tolist()
    case.update(shape=shape, indices_shape=batch + [nd], indices=index_samples(draw, good, bad),
                as_input=draw(st.sampled_from([True, True, False])))
    return case


def build_gather_nd(b, rng, case, inputs):
    kind, q = case["kind"], quant(case)
    x = b.input("params", case["shape"], kind, **q)
    inputs.append(values(rng, case["shape"], kind, SAMPLES, case))
    idx = parameter(b, "indices", [np.array(i).reshape(case["indices_shape"]) for i in case["indices"]], "INT32",
                    case["as_input"], inputs)
    nd = case["indices_shape"][-1]
    y = b.tensor("y", case["indices_shape"][:-1] + case["shape"][nd:], kind, **q)
    b.op("GATHER_ND", [x, idx], [y])
    return y


# ---------------------------------------------------------------------------------- EMBEDDING_LOOKUP
@st.composite
def embedding_cases(draw, kind):
    case = draw(common("EMBEDDING_LOOKUP", "INT8" if kind == "HYBRID" else kind))
    case["kind"] = kind
    rows = draw(dims(1, 8))
    value_shape = [rows] + draw(st.lists(dims(1, 4), min_size=1, max_size=3))
    count = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))

    def bad():
        ids = rng.integers(0, rows, count)
        ids[rng.integers(0, count)] = draw(st.sampled_from([-1, rows, rows + 5, -(2 ** 31)]))
        return ids.tolist()
    case.update(value_shape=value_shape, ids=index_samples(draw, lambda: rng.integers(0, rows, count).tolist(), bad),
                as_input=draw(st.sampled_from([True, True, False])),
                value_input=draw(st.sampled_from([False, False, True])),
                # Output dims past the value's rank: TFLM keeps them; a 2 leaves half unwritten.
                extra_dims=draw(st.sampled_from([[], [], [], [1], [2]])),
                # Hybrid: the weights' scale (per channel at times: TFLM uses the first), and rarely
                # a zero point TFLM refuses.
                weight_scale=draw(scales()), per_channel=draw(st.booleans()),
                weight_zp=draw(st.sampled_from([0] * 8 + [3])))
    return case


def build_embedding(b, rng, case, inputs):
    kind = case["kind"]
    value_type = "INT8" if kind == "HYBRID" else kind
    out_type = "FLOAT32" if kind == "HYBRID" else kind
    if kind == "HYBRID":
        channels = case["value_shape"][0]
        scale = (list(case["weight_scale"] * (1 + np.arange(channels) / 7)) if case["per_channel"]
                 else case["weight_scale"])
        vq = dict(scale=scale, zero_point=case["weight_zp"])
        oq = {}
    else:
        vq = oq = quant(case)
    ids = parameter(b, "ids", [np.array(i) for i in case["ids"]], "INT32", case["as_input"], inputs)
    w = values(rng, case["value_shape"], value_type, SAMPLES, case)
    if case["value_input"]:
        value = b.input("value", case["value_shape"], value_type, **vq)
        inputs.append(w)
    else:
        value = b.constant("value", w[0], value_type, **vq)
    if not inputs:  # constant ids and weights: feed an unused scalar
        b.input("unused", [], "FLOAT32")
        inputs.append(np.zeros((SAMPLES,), np.float32))
    out_shape = [len(case["ids"][0])] + case["value_shape"][1:] + case["extra_dims"]
    y = b.tensor("y", out_shape, out_type, **oq)
    b.op("EMBEDDING_LOOKUP", [ids, value], [y])
    return y


# ---------------------------------------------------------------------------------- the property
STRATEGIES = {"GATHER": gather_cases, "GATHER_ND": gather_nd_cases, "EMBEDDING_LOOKUP": embedding_cases}
BUILDERS = {"GATHER": build_gather, "GATHER_ND": build_gather_nd, "EMBEDDING_LOOKUP": build_embedding}


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
    if case["kind"] in TFLM_REFUSES[op]:
        assert not check_model(data, inputs, label=label).compared, f"TFLM's {op} now takes {case['kind']}"
        return
    if op == "EMBEDDING_LOOKUP" and case["extra_dims"] == [2] and not (case["kind"] == "HYBRID" and case["weight_zp"]):
        expect_refusal(data, inputs, label=label, match="unwritten")
        return
    record(check_dynamic(data, inputs, label=label, op_name=op), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_gather_op_matches_tflm(op, kind):
    run_examples(STRATEGIES[op](kind), lambda case: run_case(op, case), fraction=0.4)


def test_gather_nd_index_past_a_dimension_reads_the_next_row():
    # TFLM checks only the flat offset of each slice: [0, 5] in a [4, 3] params is offset 5.
    b = ModelBuilder()
    x = b.input("params", [4, 3], "FLOAT32")
    idx = b.input("indices", [1, 2], "INT32")
    y = b.tensor("y", [1], "FLOAT32")
    b.op("GATHER_ND", [x, idx], [y])
    b.output(y)
    params = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    outcome = check_model(b.build(), [params, np.array([[[0, 5]]], np.int32)], label="GATHER_ND fixed")
    assert outcome.compared
