"""Multi-subgraph models (IF / WHILE / CALL_ONCE) and variable tensors, planned as TFLM's
AllocationInfoBuilder does: every model here is built with ModelBuilder and its head compared
with the tflite-micro wheel's "Arena allocation head"."""
from __future__ import annotations

import numpy as np
import pytest
from planner_support import Q, needs_tflm, tflm_allocations

from interp.builder import ModelBuilder
from interp.model import Model, Operator, Subgraph, Tensor, load_model
from interp.planner import check_plan, plan_arena, write_offline_plan

pytestmark = pytest.mark.skipif(not hasattr(ModelBuilder(), "subgraph"),
                                reason="this ModelBuilder cannot write several subgraphs yet")


def add_chain(g, n: int, length: int = 2, *, name: str = "x"):
    """A subgraph body: input -> ADD(x, x) -> ... (``length`` ADDs) -> output; returns (in, out)."""
    x = g.input(name, [1, n], "INT8", **Q)
    cur = x
    for k in range(length):
        nxt = g.tensor(f"{name}{k}", [1, n], "INT8", **Q)
        g.op("ADD", [cur, x], [nxt])
        cur = nxt
    g.output(cur)
    return x, cur


def if_model(n: int = 64, then_len: int = 3, else_len: int = 1) -> bytes:
    b = ModelBuilder()
    c = b.input("cond", [1], "BOOL")
    x = b.input("x", [1, n], "INT8", **Q)
    y = b.tensor("y", [1, n], "INT8", **Q)
    z = b.tensor("z", [1, n], "INT8", **Q)
    add_chain(b.subgraph("then"), n, then_len)
    add_chain(b.subgraph("else"), n, else_len)
    b.op("IF", [c, x], [y], then_subgraph_index=1, else_subgraph_index=2)
    b.op("ADD", [y, x], [z])
    b.output(z)
    return b.build()


def while_model(n: int = 48) -> bytes:
    """i, x -> WHILE(i < 3: i + 1, x + x + x) -> z = x_out + x."""
    b = ModelBuilder()
    i = b.input("i", [1], "INT32")
    x = b.input("x", [1, n], "INT8", **Q)
    i2 = b.tensor("i2", [1], "INT32")
    x2 = b.tensor("x2", [1, n], "INT8", **Q)
    z = b.tensor("z", [1, n], "INT8", **Q)
    cond = b.subgraph("cond")
    ci = cond.input("ci", [1], "INT32")
    cond.input("cx", [1, n], "INT8", **Q)
    lim = cond.constant("lim", np.array([3], np.int32))
    cb = cond.tensor("cb", [1], "BOOL")
    cond.op("LESS", [ci, lim], [cb])
    cond.output(cb)
    body = b.subgraph("body")
    bi = body.input("bi", [1], "INT32")
    bx = body.input("bx", [1, n], "INT8", **Q)
    one = body.constant("one", np.array([1], np.int32))
    bi2 = body.tensor("bi2", [1], "INT32")
    bt = body.tensor("bt", [1, 4 * n], "INT8", **Q)  # a large temporary inside the loop
    bx2 = body.tensor("bx2", [1, n], "INT8", **Q)
    body.op("ADD", [bi, one], [bi2])
    body.op("CONCATENATION", [bx, bx, bx, bx], [bt], axis=1)
    body.op("STRIDED_SLICE", [bt, body.constant("b", np.array([0, 0], np.int32)),
                              body.constant("e", np.array([1, n], np.int32)),
                              body.constant("s", np.array([1, 1], np.int32))], [bx2])
    body.output(bi2, bx2)
    b.op("WHILE", [i, x], [i2, x2], cond_subgraph_index=1, body_subgraph_index=2)
    b.op("ADD", [x2, x], [z])
    b.output(z)
    return b.build()


def call_once_model(n: int = 32) -> bytes:
    """CALL_ONCE runs an init subgraph that assigns a resource variable; main reads it and adds."""
    b = ModelBuilder()
    x = b.input("x", [1, n], "INT8", **Q)
    h = b.tensor("h", [1], "RESOURCE")
    v = b.tensor("v", [1, n], "INT8", **Q)
    y = b.tensor("y", [1, n], "INT8", **Q)
    init = b.subgraph("init")
    ih = init.tensor("ih", [1], "RESOURCE")
    val = init.constant("val", np.full((1, n), 3, np.int8), **Q)
    init.op("VAR_HANDLE", [], [ih], shared_name="state")
    init.op("ASSIGN_VARIABLE", [ih, val], [])
    b.op("CALL_ONCE", [], [], init_subgraph_index=1)
    b.op("VAR_HANDLE", [], [h], shared_name="state")
    b.op("READ_VARIABLE", [h], [v])
    b.op("ADD", [x, v], [y])
    b.output(y)
    return b.build()


def check_against_tflm(data: bytes):
    plan = plan_arena(load_model(data))
    check_plan(plan)
    head, _, _ = tflm_allocations(data)
    assert plan.arena_bytes == head
    assert plan.exact
    return plan


# ---------------------------------------------------------------------- lifetimes, by hand
def test_if_runs_both_branches_in_nested_scopes():
    # IF at scope 1 enters "then" at scope 2 (its ADDs at 3, 4, 5) and "else" at 6 (ADD at 7);
    # the IF's inputs and output are last used after both (scope 7); the next ADD runs at 8.
    plan = plan_arena(load_model(if_model()))
    assert plan.lifetimes[1] == (0, 8)  # x: read by the IF and by the final ADD
    assert plan.lifetimes[2] == (1, 8)  # y: the IF's output, read at 8
    assert plan.lifetimes[(1, 0)] == (2, 5)  # then's input: created on entry, read by 3 ADDs
    assert plan.lifetimes[(1, 3)] == (5, 5)  # then's output, live to then's last scope
    assert plan.lifetimes[(2, 0)] == (6, 7) and plan.lifetimes[(2, 1)] == (7, 7)
    assert plan.timeline[2].op_name == "(enter subgraph 1)"


def test_control_flow_scratch_spans_the_called_subgraphs():
    # A scratch request of a control-flow operator lives from its own scope through the scopes of
    # the subgraphs it runs; one in a branch lives during that branch's operator only.
    def t(i, shape=(1, 16)):
        return Tensor(i, f"t{i}", tuple(shape), "INT8", np.dtype(np.int8), 1, None, None, 0)

    sg0 = Subgraph(0, "main", [t(0, (1,)), t(1), t(2)],
                   [Operator(0, "IF", 1, (0, 1), (2,), {"then_subgraph_index": 1, "else_subgraph_index": 2})],
                   (0, 1), (2,))
    branches = [Subgraph(s, f"b{s}", [t(0), t(1)], [Operator(0, "ADD", 1, (0, 0), (1,))], (0,), (1,))
                for s in (1, 2)]
    model = Model(3, "", [sg0] + branches, {}, 0)
    plan = plan_arena(model, scratch={(0, 0): [8], (1, 0): [32]})
    assert plan.lifetimes[0] == plan.lifetimes[1] == (0, 5)
    assert plan.lifetimes[(1, 0)] == (2, 3) and plan.lifetimes[(2, 1)] == (5, 5)
    assert plan.lifetimes["scratch:0"] == (1, 5)  # the IF's own
    assert plan.lifetimes["scratch:1"] == (3, 3)  # the then-branch ADD's
    check_plan(plan)


def test_a_subgraph_that_calls_itself_is_refused():
    def t(i):
        return Tensor(i, f"t{i}", (1, 4), "INT8", np.dtype(np.int8), 1, None, None, 0)
    loop = Operator(0, "CALL_ONCE", 1, (), (), {"init_subgraph_index": 1})
    model = Model(3, "", [Subgraph(0, "main", [t(0)], [loop], (0,), (0,)),
                          Subgraph(1, "init", [t(0)], [loop], (), ())], {}, 0)
    from interp.errors import ModelError
    with pytest.raises(ModelError, match="calls itself"):
        plan_arena(model)


# ---------------------------------------------------------------------- against the wheel
@needs_tflm
@pytest.mark.parametrize("then_len,else_len", [(3, 1), (1, 3), (2, 2)])
def test_if_models_match_tflm(then_len, else_len):
    check_against_tflm(if_model(64, then_len, else_len))


@needs_tflm
def test_while_model_matches_tflm():
    plan = check_against_tflm(while_model())
    # The body's 192-byte temporary lives inside the WHILE's scopes, with the WHILE's operands.
    bt = plan.lifetimes[(2, 3)]
    assert plan.lifetimes[1][0] <= bt[0] <= bt[1] <= plan.lifetimes[1][1]


@needs_tflm
def test_call_once_and_resource_variables_match_tflm():
    check_against_tflm(call_once_model())


@needs_tflm
def test_one_subgraph_called_by_two_operators_matches_tflm():
    # Both IFs run subgraphs 1 and 2: each is marked twice, its buffers live from the first call
    # to the end of the second.
    n = 32
    b = ModelBuilder()
    c = b.input("cond", [1], "BOOL")
    x = b.input("x", [1, n], "INT8", **Q)
    y = b.tensor("y", [1, n], "INT8", **Q)
    z = b.tensor("z", [1, 2 * n], "INT8", **Q)
    w = b.tensor("w", [1, n], "INT8", **Q)
    add_chain(b.subgraph("then"), n, 2)
    add_chain(b.subgraph("else"), n, 1)
    b.op("IF", [c, x], [y], then_subgraph_index=1, else_subgraph_index=2)
    b.op("CONCATENATION", [x, y], [z], axis=1)
    b.op("IF", [c, y], [w], then_subgraph_index=1, else_subgraph_index=2)
    b.output(w, z)
    data = b.build()
    plan = check_against_tflm(data)
    first_then = plan.lifetimes[(1, 0)]
    assert first_then[0] == 2 and first_then[1] > plan.lifetimes[3][0]  # spans the second IF too


@needs_tflm
def test_variables_live_in_the_tail_not_the_head_in_every_subgraph():
    # A variable tensor read by an ADD in subgraph 0 and one in a branch: neither is planned in
    # the head (TFLM allocates variables in the persistent tail); their bytes are in the tail
    # estimate.
    n = 64
    b = ModelBuilder()
    c = b.input("cond", [1], "BOOL")
    x = b.input("x", [1, n], "INT8", **Q)
    state = b.tensor("state", [1, n], "INT8", variable=True, **Q)
    y = b.tensor("y", [1, n], "INT8", **Q)
    z = b.tensor("z", [1, n], "INT8", **Q)
    for name in ("then", "else"):
        g = b.subgraph(name)
        gi = g.input("i", [1, n], "INT8", **Q)
        gv = g.tensor("gstate", [1, 3 * n], "INT8", variable=True, **Q)
        gs = g.tensor("gs", [1, n], "INT8", **Q)
        go = g.tensor("go", [1, n], "INT8", **Q)
        g.op("STRIDED_SLICE", [gv, g.constant("b", np.array([0, 0], np.int32)),
                               g.constant("e", np.array([1, n], np.int32)),
                               g.constant("s", np.array([1, 1], np.int32))], [gs])
        g.op("ADD", [gi, gs], [go])
        g.output(go)
    b.op("ADD", [x, state], [y])
    b.op("IF", [c, y], [z], then_subgraph_index=1, else_subgraph_index=2)
    b.output(z)
    data = b.build()
    plan = check_against_tflm(data)
    assert 2 not in plan.offsets and (1, 1) not in plan.offsets and (2, 1) not in plan.offsets
    assert plan.tail_estimate["variable_tensors"] == 64 + 2 * 192
    # Pinned by an offline plan, a variable moves to the head, at its offset.
    pinned = write_offline_plan(data, {2: 4096})
    plan = plan_arena(load_model(pinned))
    assert plan.offsets[2] == 4096 and plan.tail_estimate["variable_tensors"] == 2 * 192
    assert plan.arena_bytes == tflm_allocations(pinned)[0] == 4096 + 64


@needs_tflm
def test_offline_offsets_in_a_called_subgraph_match_tflm():
    data = if_model(64, 3, 1)
    model = load_model(data)
    plan = plan_arena(model)
    # Pin the then-branch's tensors above everything else; TFLM fits the rest around them.
    pins = {(1, t): 1000 + 64 * k for k, t in enumerate(range(len(model.subgraphs[1].tensors)))}
    moved = write_offline_plan(data, pins)
    replanned = plan_arena(load_model(moved))
    check_plan(replanned)
    assert replanned.arena_bytes == tflm_allocations(moved)[0] > plan.arena_bytes
    assert all(replanned.offsets[k] == v for k, v in pins.items())


@pytest.mark.parametrize("make", [if_model, while_model, call_once_model], ids=["IF", "WHILE", "CALL_ONCE"])
def test_interpreter_plan_of_a_control_flow_model_equals_the_model_plan(make):
    # The Interpreter's prepared kernels (every subgraph's) give the same scratch requests and so
    # the same plan as the parsed model alone.
    from interp import Interpreter, UnsupportedOpError
    data = make()
    try:
        it = Interpreter.from_bytes(data)
    except UnsupportedOpError as e:
        pytest.skip(f"the runtime cannot run it yet: {str(e).splitlines()[-1].strip()}")
    assert it.plan.offsets == plan_arena(load_model(data)).offsets
