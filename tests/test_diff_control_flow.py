"""Control flow and resource variables against TFLM, call after call: IF, WHILE, CALL_ONCE,
VAR_HANDLE, READ_VARIABLE and ASSIGN_VARIABLE.

Every model here keeps state (resource variables, CALL_ONCE's flag) or sends samples different
ways (an IF's condition, a WHILE's trip count are inputs). Each example is compared with the
wheel for 10 consecutive calls without reset, then after reset() for 3 more (TFLM's invokes on
one interpreter, reset with MicroInterpreter::Reset), and run_batch is compared sample by
sample with a fresh TFLM interpreter's first call.
"""
import numpy as np
import pytest
from diff_support import (
    check_stateful,
    dims,
    note_case,
    random_inputs,
    run_examples,
    scales,
    seeds,
    tflm_run,
    zero_points,
)
from hypothesis import strategies as st

from interp.builder import ModelBuilder

DIFF_OPS = {"IF", "WHILE", "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}

CALLS = 10  # consecutive calls without reset
AFTER_RESET = 3  # calls after reset()
BATCH = 3  # run_batch samples, each compared with a fresh interpreter's first call
KINDS = ["INT8", "INT16", "FLOAT32", "INT32"]
UPDATES = ["ADD", "SUB", "MUL"]


def check_calls(data: bytes, calls: list[list[np.ndarray]], label: str) -> bool:
    """microref against TFLM over ``calls``: CALLS consecutive calls, reset(), the rest; then
    run_batch on the first BATCH calls, each against a fresh interpreter's first call. Returns
    whether the model was compared (False: both refuse)."""
    sequence = calls[:CALLS] + [None] + calls[CALLS:]
    return check_stateful(data, sequence, label=label, stateful=None, batch_calls=BATCH,
                          fresh=tuple(range(BATCH))).compared


# ---------------------------------------------------------------------------- building blocks

def quant(kind, scale, zp):
    if kind == "INT8":
        return dict(scale=scale, zero_point=zp)
    if kind == "INT16":
        return dict(scale=scale, zero_point=0)
    return {}


def values(rng, shape, kind, n, zp=0, small=False):
    if kind == "INT32":
        return rng.integers(-1000 if small else -(1 << 20), 1000 if small else 1 << 20,
                            (n,) + tuple(shape)).astype(np.int32)
    if kind == "FLOAT32":
        return rng.normal(0, 4, (n,) + tuple(shape)).astype(np.float32)
    return random_inputs(rng, shape, np.dtype(kind.lower()), n, zero_point=zp)


def update(g, op, a, b, out):
    """out = a op b (ADD / SUB / MUL, no fused activation)."""
    g.op(op, [a, b], [out], fused_activation_function="NONE")


@st.composite
def arithmetic(draw):
    kind = draw(st.sampled_from(KINDS))
    return dict(kind=kind, op=draw(st.sampled_from(UPDATES)), scale=draw(scales(-3, 1)),
                zp=draw(zero_points("INT8")) if kind == "INT8" else 0)


# ---------------------------------------------------------------------------- resource variables

@st.composite
def resource_cases(draw):
    case = draw(arithmetic())
    case.update(seed=draw(seeds), shape=draw(st.lists(dims(1, 5), min_size=0, max_size=3)),
                init=draw(st.sampled_from(["call_once", "none", "constant_id"])),
                # (init's container, the main graph's): main's VAR_HANDLE is prepared first and creates
                # the variable; init's handle without a container matches it (the reverse crashes TFLM,
                # see test_var_handle_null_container_after_named_one).
                containers=draw(st.sampled_from([(None, None), ("", ""), ("c", "c"), (None, "c")])),
                second=draw(st.booleans()), read_after_assign=draw(st.booleans()))
    return case


def resource_model(case):
    """A streaming accumulator: state = state op x, kept in a resource variable, optionally set
    once by a CALL_ONCE init subgraph; outputs the value read before (and after) the update."""
    kind, shape = case["kind"], case["shape"]
    q = quant(kind, case["scale"], case["zp"])
    first, later = case["containers"]
    b = ModelBuilder()
    x = b.input("x", shape, kind, **q)
    if case["init"] == "call_once":
        init = b.subgraph("init")
        h0 = init.tensor("h", [], "RESOURCE")
        c = init.constant("start", values(np.random.default_rng(case["seed"]), shape, kind, 1, case["zp"])[0],
                          kind, **q)
        init.op("VAR_HANDLE", [], [h0], **_names(first, "acc"))
        init.op("ASSIGN_VARIABLE", [h0, c], [])
        b.op("CALL_ONCE", [], [], init_subgraph_index=init.index)
    h = b.tensor("h", [], "RESOURCE")
    old = b.tensor("old", shape, kind, **q)
    new = b.tensor("new", shape, kind, **q)
    b.op("VAR_HANDLE", [], [h], **_names(later if case["init"] == "call_once" else first, "acc"))
    b.op("READ_VARIABLE", [h], [old])
    update(b, case["op"], old, x, new)
    if case["init"] == "constant_id":
        # The handle as an INT32 constant holding the id (ASSIGN_VARIABLE accepts it).
        b.op("ASSIGN_VARIABLE", [b.constant("id", np.array(0, np.int32)), new], [])
    else:
        b.op("ASSIGN_VARIABLE", [h, new], [])
    outputs = [old]
    if case["read_after_assign"]:
        again = b.tensor("again", shape, kind, **q)
        b.op("READ_VARIABLE", [h], [again])
        outputs.append(again)
    if case["second"]:
        # A second variable of another type, counting calls.
        h2 = b.tensor("h2", [1], "RESOURCE")
        count, count2 = b.tensor("count", [1], "INT32"), b.tensor("c2", [1], "INT32")
        b.op("VAR_HANDLE", [], [h2], **_names(first, "calls"))
        b.op("READ_VARIABLE", [h2], [count])
        b.op("ADD", [count, b.constant("one", np.array([1], np.int32))], [count2], fused_activation_function="NONE")
        b.op("ASSIGN_VARIABLE", [h2, count2], [])
        outputs.append(count)
    b.output(*outputs)
    return b.build()


def _names(container, shared):
    return {"shared_name": shared} if container is None else {"container": container, "shared_name": shared}


def test_resource_variables_match_tflm_call_after_call_and_after_reset():
    def check(case):
        note_case(**case)
        rng = np.random.default_rng(case["seed"])
        small = case["op"] == "MUL"
        calls = [[values(rng, case["shape"], case["kind"], 1, case["zp"], small)[0]]
                 for _ in range(CALLS + AFTER_RESET)]
        check_calls(resource_model(case), calls, f"ASSIGN_VARIABLE {case['kind']} {case['init']}")
    run_examples(resource_cases(), check, fraction=0.5)


# ---------------------------------------------------------------------------- IF

@st.composite
def if_cases(draw):
    case = draw(arithmetic())
    case.update(seed=draw(seeds), shape=draw(st.lists(dims(1, 5), min_size=1, max_size=3)),
                else_op=draw(st.sampled_from(UPDATES)), flat_branch=draw(st.booleans()),
                counter=draw(st.booleans()), cond_shape=draw(st.sampled_from([[], [1], [1, 1]])))
    return case


def branch(b, name, case, op, shape, with_counter):
    """A branch subgraph: y = x op c, and (optionally) counts its calls in a resource variable."""
    kind = case["kind"]
    q = quant(kind, case["scale"], case["zp"])
    g = b.subgraph(name)
    x = g.input("x", shape, kind, **q)
    y = g.tensor("y", shape, kind, **q)
    c = g.constant("c", values(np.random.default_rng(case["seed"] + len(name)), shape, kind, 1, case["zp"], True)[0],
                   kind, **q)
    update(g, op, x, c, y)
    if with_counter:
        h, n, n2 = g.tensor("h", [], "RESOURCE"), g.tensor("n", [], "INT32"), g.tensor("n2", [], "INT32")
        g.op("VAR_HANDLE", [], [h], shared_name="taken")
        g.op("READ_VARIABLE", [h], [n])
        g.op("ADD", [n, g.constant("one", np.array(1, np.int32))], [n2], fused_activation_function="NONE")
        g.op("ASSIGN_VARIABLE", [h, n2], [])
    g.output(y)
    return g.index


def if_model(case):
    kind, shape = case["kind"], case["shape"]
    q = quant(kind, case["scale"], case["zp"])
    inner = [int(np.prod(shape))] if case["flat_branch"] else shape  # copies keep the bytes, not the shape
    b = ModelBuilder()
    cond = b.input("cond", case["cond_shape"], "BOOL")
    x = b.input("x", shape, kind, **q)
    y = b.tensor("y", shape, kind, **q)
    then = branch(b, "then", case, case["op"], inner, case["counter"])
    other = branch(b, "else", case, case["else_op"], inner, False)
    b.op("IF", [cond, x], [y], then_subgraph_index=then, else_subgraph_index=other)
    outputs = [y]
    if case["counter"]:
        h, n = b.tensor("h", [], "RESOURCE"), b.tensor("taken", [], "INT32")
        b.op("VAR_HANDLE", [], [h], shared_name="taken")
        b.op("READ_VARIABLE", [h], [n])
        outputs.append(n)
    b.output(*outputs)
    return b.build()


def test_if_matches_tflm_both_branches_call_after_call():
    def check(case):
        note_case(**case)
        rng = np.random.default_rng(case["seed"])
        calls = [[rng.integers(0, 2, case["cond_shape"]).astype(bool),
                  values(rng, case["shape"], case["kind"], 1, case["zp"], case["op"] == "MUL")[0]]
                 for _ in range(CALLS + AFTER_RESET)]
        calls[0][0][...], calls[1][0][...] = True, False  # run_batch's samples take both branches
        check_calls(if_model(case), calls, f"IF {case['kind']}")
    run_examples(if_cases(), check, fraction=0.5)


# ---------------------------------------------------------------------------- WHILE

@st.composite
def while_cases(draw):
    case = draw(arithmetic())
    case.update(seed=draw(seeds), shape=draw(st.lists(dims(1, 4), min_size=1, max_size=2)),
                steps=draw(st.integers(2, 6)), resource=draw(st.booleans()), init=draw(st.booleans()))
    return case


def while_model(case):
    """Loop values (schedule, acc, x): while schedule[0]: acc = acc op x; schedule shifts left
    (a False comes in). The trip count is the schedule's leading Trues, an input. With
    ``resource`` the body also adds x into a resource variable the main graph reads after."""
    kind, shape, steps = case["kind"], case["shape"], case["steps"]
    q = quant(kind, case["scale"], case["zp"])
    rng = np.random.default_rng(case["seed"])
    b = ModelBuilder()
    sched = b.input("schedule", [steps], "BOOL")
    x = b.input("x", shape, kind, **q)
    acc0 = b.constant("acc0", values(rng, shape, kind, 1, case["zp"], True)[0], kind, **q)
    outs = [b.tensor("schedule_out", [steps], "BOOL"), b.tensor("acc", shape, kind, **q),
            b.tensor("x_out", shape, kind, **q)]

    cond = b.subgraph("cond")
    cs = cond.input("schedule", [steps], "BOOL")
    cond.input("acc", shape, kind, **q)
    cond.input("x", shape, kind, **q)
    go = cond.tensor("go", [1], "BOOL")
    cond.op("STRIDED_SLICE", [cs, cond.constant("b", np.array([0], np.int32)),
                              cond.constant("e", np.array([1], np.int32)),
                              cond.constant("s", np.array([1], np.int32))], [go])
    cond.output(go)

    body = b.subgraph("body")
    bs = body.input("schedule", [steps], "BOOL")
    ba = body.input("acc", shape, kind, **q)
    bx = body.input("x", shape, kind, **q)
    rest = body.tensor("rest", [steps - 1], "BOOL")
    body.op("STRIDED_SLICE", [bs, body.constant("b", np.array([1], np.int32)),
                              body.constant("e", np.array([steps], np.int32)),
                              body.constant("s", np.array([1], np.int32))], [rest])
    shifted = body.tensor("shifted", [steps], "BOOL")
    body.op("CONCATENATION", [rest, body.constant("off", np.array([False]))], [shifted], axis=0,
            fused_activation_function="NONE")
    ba2 = body.tensor("acc2", shape, kind, **q)
    update(body, case["op"], ba, bx, ba2)
    if case["resource"]:
        h = body.tensor("h", [], "RESOURCE")
        old, new = body.tensor("old", shape, kind, **q), body.tensor("new", shape, kind, **q)
        body.op("VAR_HANDLE", [], [h], shared_name="sum")
        body.op("READ_VARIABLE", [h], [old])
        body.op("ADD" if kind != "INT32" else "SUB", [old, bx], [new], fused_activation_function="NONE")
        body.op("ASSIGN_VARIABLE", [h, new], [])
    body.output(shifted, ba2, bx)

    b.op("WHILE", [sched, acc0, x], outs, cond_subgraph_index=cond.index, body_subgraph_index=body.index)
    outputs = [outs[1], outs[0]]
    if case["resource"]:
        if case["init"]:
            init = b.subgraph("init")
            hi = init.tensor("h", [], "RESOURCE")
            init.op("VAR_HANDLE", [], [hi], shared_name="sum")
            init.op("ASSIGN_VARIABLE", [hi, init.constant("start", values(rng, shape, kind, 1, case["zp"], True)[0],
                                                          kind, **q)], [])
            b.op("CALL_ONCE", [], [], init_subgraph_index=init.index)
        h, total = b.tensor("h", [], "RESOURCE"), b.tensor("total", shape, kind, **q)
        b.op("VAR_HANDLE", [], [h], shared_name="sum")
        b.op("READ_VARIABLE", [h], [total])
        outputs.append(total)
    b.output(*outputs)
    return b.build()


def schedule(rng, steps):
    """Leading Trues (0..steps of them), then anything: the loop runs for the leading Trues."""
    k = int(rng.integers(0, steps + 1))
    s = rng.integers(0, 2, steps).astype(bool)
    s[:k] = True
    if k < steps:
        s[k] = False
    return s


def test_while_matches_tflm_trip_counts_differ_per_call():
    def check(case):
        note_case(**case)
        rng = np.random.default_rng(case["seed"])
        calls = [[schedule(rng, case["steps"]), values(rng, case["shape"], case["kind"], 1, case["zp"], True)[0]]
                 for _ in range(CALLS + AFTER_RESET)]
        calls[0][0][:] = True  # the batch's samples loop 'steps', 0 and some other number of times
        calls[1][0][:] = False
        check_calls(while_model(case), calls, f"WHILE {case['kind']}")
    run_examples(while_cases(), check, fraction=0.5)


# ---------------------------------------------------------------------------- refusals

def _if_with_branch_output(shape_out, index_shift=0):
    """An IF whose else branch gives a tensor of ``shape_out`` into an INT8[4] output."""
    b = ModelBuilder()
    cond = b.input("cond", [], "BOOL")
    x = b.input("x", [4], "INT8", scale=0.5, zero_point=0)
    y = b.tensor("y", [4], "INT8", scale=0.5, zero_point=0)
    then = b.subgraph("then")
    tx = then.input("x", [4], "INT8", scale=0.5, zero_point=0)
    then.output(tx)
    other = b.subgraph("else")
    ex = other.input("x", [4], "INT8", scale=0.5, zero_point=0)
    ey = other.tensor("y", shape_out, "INT8", scale=0.5, zero_point=0)
    other.op("RESHAPE", [ex, other.constant("s", np.array(shape_out, np.int32))], [ey])
    other.output(ey)
    b.op("IF", [cond, x], [y], then_subgraph_index=then.index, else_subgraph_index=other.index + index_shift)
    b.output(y)
    return b.build()


def _refused_by_both(data, inputs, match):
    from interp import Interpreter
    from interp.errors import ModelError
    verdict, payload = tflm_run(data, [inputs])
    assert verdict != "ok", payload
    with pytest.raises(ModelError, match=match):
        Interpreter.from_bytes(data)


def test_if_branch_index_outside_the_model_is_refused_by_both():
    _refused_by_both(_if_with_branch_output([4], index_shift=1), [np.array(False), np.zeros(4, np.int8)],
                     r"operator 0 \(IF\).*else_subgraph_index 3 is not a subgraph")


def test_if_branch_output_of_other_byte_count_is_refused_by_both():
    # TFLM's copy of the branch's output fails at Invoke (bytes differ); microref refuses at load.
    _refused_by_both(_if_with_branch_output([2, 1]), [np.array(False), np.zeros(4, np.int8)],
                     r"operator 0 \(IF\).*subgraph 2 output 0 into output 0.*equal byte counts")


def test_if_branch_output_of_other_shape_same_bytes_is_copied_by_both():
    data = _if_with_branch_output([2, 2])
    x = np.arange(4, dtype=np.int8)
    assert check_calls(data, [[np.array(k % 2 == 0), x + k] for k in range(CALLS + AFTER_RESET)], "IF reshaped")


def test_var_handle_null_container_after_named_one_crashes_tflm_and_is_refused():
    """TFLM's FindId strcmp()s a handle's container against a variable created without one: a null
    pointer (the wheel dies with SIGSEGV). microref refuses the model, naming the operator."""
    from diff_support import assert_tflm_aborts

    from interp import Interpreter
    from interp.errors import ModelError
    case = dict(kind="INT8", op="ADD", scale=0.5, zp=1, seed=1, shape=[2], init="call_once",
                containers=("c", None), second=False, read_after_assign=False)
    data = resource_model(case)
    assert_tflm_aborts(data, [np.zeros((1, 2), np.int8)])
    with pytest.raises(ModelError, match=r"subgraph 1, operator 0 \(VAR_HANDLE\).*null.*container"):
        Interpreter.from_bytes(data)


def test_resource_handle_passed_into_a_while_body_matches_tflm():
    """The body gets the handle as a subgraph input (unknown at prepare: its ASSIGN_VARIABLE
    allocates nothing) and updates the variable the main graph's ASSIGN_VARIABLE allocated."""
    b = ModelBuilder()
    sched, x = b.input("s", [3], "BOOL"), b.input("x", [2], "INT32")
    h = b.tensor("h", [], "RESOURCE")
    b.op("VAR_HANDLE", [], [h], shared_name="v")
    so, ho, total = b.tensor("so", [3], "BOOL"), b.tensor("ho", [], "RESOURCE"), b.tensor("total", [2], "INT32")
    ints = lambda g, name, v: g.constant(name, np.array(v, np.int32))  # noqa: E731
    c = b.subgraph("cond")
    cs = c.input("s", [3], "BOOL")
    c.input("h", [], "RESOURCE")
    go = c.tensor("go", [1], "BOOL")
    c.op("STRIDED_SLICE", [cs, ints(c, "b", [0]), ints(c, "e", [1]), ints(c, "t", [1])], [go])
    c.output(go)
    g = b.subgraph("body")
    gs, gh = g.input("s", [3], "BOOL"), g.input("h", [], "RESOURCE")
    rest, shifted = g.tensor("rest", [2], "BOOL"), g.tensor("shifted", [3], "BOOL")
    g.op("STRIDED_SLICE", [gs, ints(g, "b", [1]), ints(g, "e", [3]), ints(g, "t", [1])], [rest])
    g.op("CONCATENATION", [rest, g.constant("f", np.array([False]))], [shifted], axis=0,
         fused_activation_function="NONE")
    old, new = g.tensor("old", [2], "INT32"), g.tensor("new", [2], "INT32")
    g.op("READ_VARIABLE", [gh], [old])
    g.op("ADD", [old, ints(g, "step", [1, 10])], [new], fused_activation_function="NONE")
    g.op("ASSIGN_VARIABLE", [gh, new], [])
    g.output(shifted, gh)
    b.op("ASSIGN_VARIABLE", [h, x], [])
    b.op("WHILE", [sched, h], [so, ho], cond_subgraph_index=c.index, body_subgraph_index=g.index)
    b.op("READ_VARIABLE", [ho], [total])
    b.output(total)
    rng = np.random.default_rng(5)
    calls = [[schedule(rng, 3), rng.integers(-1000, 1000, 2).astype(np.int32)] for _ in range(CALLS + AFTER_RESET)]
    calls[0][0][:] = True
    calls[1][0][:] = False
    assert check_calls(b.build(), calls, "WHILE resource handle")
