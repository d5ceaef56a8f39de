"""Streaming models without the TFLM wheel: control flow (IF, WHILE, CALL_ONCE) and resource
variables — the state API (state(), reset(), run_batch from a fresh state), the values TFLM's
rules give (pinned from the wheel in tests/test_diff_control_flow.py), and the typed errors for
bad models."""
import numpy as np
import pytest

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder


def accumulator(kind="INT8", zero_point=3, init=None, shape=(2,)):
    """state += x in a resource variable "acc" (set to ``init`` once by CALL_ONCE); outputs the
    value read before the update."""
    b = ModelBuilder()
    q = dict(scale=0.5, zero_point=zero_point) if kind in ("INT8", "INT16") else {}
    x = b.input("x", list(shape), kind, **q)
    if init is not None:
        g = b.subgraph("init")
        h0 = g.tensor("h", [], "RESOURCE")
        g.op("VAR_HANDLE", [], [h0], shared_name="acc")
        g.op("ASSIGN_VARIABLE", [h0, g.constant("c", np.full(shape, init, kind.lower()), **q)], [])
        b.op("CALL_ONCE", [], [], init_subgraph_index=g.index)
    h = b.tensor("h", [], "RESOURCE")
    old, new = b.tensor("old", list(shape), kind, **q), b.tensor("new", list(shape), kind, **q)
    b.op("VAR_HANDLE", [], [h], shared_name="acc")
    b.op("READ_VARIABLE", [h], [old])
    b.op("ADD", [old, x], [new], fused_activation_function="NONE")
    b.op("ASSIGN_VARIABLE", [h, new], [])
    b.output(old)
    return Interpreter.from_bytes(b.build())


def test_resource_variable_persists_across_calls_and_reset_restores_its_zero_point():
    it = accumulator(init=None)
    x = np.array([4, 5], np.int8)
    assert it.stateful
    # Unassigned: every byte is the int8 zero point (3).
    assert it.run([x])[0].tolist() == [3, 3]
    assert it.run([x])[0].tolist() == [4, 5]  # 0.5*(3-3) + 0.5*(4-3) -> 4, ...
    assert it.state()["resources"]["acc"].tolist() == [5, 7]
    it.reset()
    assert it.state()["resources"]["acc"].tolist() == [3, 3]
    assert it.run([x])[0].tolist() == [3, 3]


def test_int16_resource_default_is_the_zero_point_byte_repeated():
    # TFLM memsets the buffer with (int8)zero_point whatever the type: 0x0303 = 771 (wheel-checked).
    b = ModelBuilder()
    x = b.input("x", [2], "INT16", scale=0.5, zero_point=3)
    h, old = b.tensor("h", [], "RESOURCE"), b.tensor("old", [2], "INT16", scale=0.5, zero_point=3)
    b.op("VAR_HANDLE", [], [h], shared_name="v")
    b.op("READ_VARIABLE", [h], [old])
    b.op("ASSIGN_VARIABLE", [h, x], [])
    b.output(old)
    it = Interpreter.from_bytes(b.build())
    assert it.run([np.array([1, 2], np.int16)])[0].tolist() == [771, 771]
    assert it.run([np.array([7, 8], np.int16)])[0].tolist() == [1, 2]


def test_call_once_runs_on_the_first_call_only_and_reset_does_not_rearm_it():
    it = accumulator(init=7)
    x = np.array([4, 5], np.int8)
    assert it.run([x])[0].tolist() == [7, 7]
    assert it.run([x])[0].tolist() == [8, 9]
    it.reset()  # TFLM: the init subgraph does not run again; "acc" is back at its zero point
    assert it.run([x])[0].tolist() == [3, 3]
    # run_batch: every sample is a fresh interpreter's first call (CALL_ONCE runs), and run()'s
    # stream is untouched.
    batch = it.run_batch([np.stack([x, x + 1, x - 1])])[0]
    assert batch.tolist() == [[7, 7]] * 3
    assert it.run([x])[0].tolist() == [4, 5]


def test_state_before_and_after_a_kept_call():
    it = accumulator(init=7)
    x = np.array([4, 5], np.int8)
    it.run([x])
    it.run([x], keep=True)
    assert it.state(before=True)["resources"]["acc"].tolist() == [8, 9]
    assert it.state()["resources"]["acc"].tolist() == [9, 11]
    assert it.tensor("old").tolist() == [8, 9]
    it.run([x])
    with pytest.raises(KeyError, match="keep=True"):
        it.state(before=True)


def counting_loop(max_iterations=None, forever=False):
    """WHILE over (schedule, count): count += 1 while schedule[0]; the body shifts the schedule
    left (or, ``forever``, keeps it)."""
    b = ModelBuilder()
    sched = b.input("schedule", [4], "BOOL")
    count0 = b.constant("zero", np.array([0], np.int32))
    s_out, c_out = b.tensor("s_out", [4], "BOOL"), b.tensor("count", [1], "INT32")
    cond = b.subgraph("cond")
    cs = cond.input("s", [4], "BOOL")
    cond.input("c", [1], "INT32")
    go = cond.tensor("go", [1], "BOOL")
    cond.op("STRIDED_SLICE", [cs, cond.constant("b", np.array([0], np.int32)),
                              cond.constant("e", np.array([1], np.int32)),
                              cond.constant("st", np.array([1], np.int32))], [go])
    cond.output(go)
    body = b.subgraph("body")
    bs, bc = body.input("s", [4], "BOOL"), body.input("c", [1], "INT32")
    bc2 = body.tensor("c2", [1], "INT32")
    body.op("ADD", [bc, body.constant("one", np.array([1], np.int32))], [bc2], fused_activation_function="NONE")
    if forever:
        body.output(bs, bc2)
    else:
        rest, shifted = body.tensor("rest", [3], "BOOL"), body.tensor("shifted", [4], "BOOL")
        body.op("STRIDED_SLICE", [bs, body.constant("b", np.array([1], np.int32)),
                                  body.constant("e", np.array([4], np.int32)),
                                  body.constant("st", np.array([1], np.int32))], [rest])
        body.op("CONCATENATION", [rest, body.constant("f", np.array([False]))], [shifted], axis=0,
                fused_activation_function="NONE")
        body.output(shifted, bc2)
    b.op("WHILE", [sched, count0], [s_out, c_out], cond_subgraph_index=cond.index, body_subgraph_index=body.index)
    b.output(c_out)
    kwargs = {} if max_iterations is None else {"max_while_iterations": max_iterations}
    return Interpreter.from_bytes(b.build(), **kwargs)


def test_while_trip_counts_differ_per_sample_in_a_batch():
    it = counting_loop()
    scheds = np.array([[1, 1, 1, 1], [0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 0]], bool)
    assert it.run_batch([scheds])[0].ravel().tolist() == [4, 0, 1, 3]
    assert [int(it.run([s])[0][0]) for s in scheds] == [4, 0, 1, 3]
    it.run([scheds[0]], keep=True)
    assert it.tensor("c2", subgraph=2).tolist() == [4]  # the body's last invocation


def test_while_that_never_ends_is_an_error_naming_the_operator():
    it = counting_loop(max_iterations=50, forever=True)
    with pytest.raises(ModelError, match=r"operator 0 \(WHILE\): still looping after 50 iterations.*max_while"):
        it.run([np.ones(4, bool)])
    assert int(it.run([np.zeros(4, bool)])[0][0]) == 0  # a loop that does not start is fine


def test_subgraph_index_out_of_range_and_recursion_are_refused_naming_the_operator():
    def model(index, inner_index=None):
        b = ModelBuilder()
        x = b.input("x", [1], "INT8", scale=1.0, zero_point=0)
        b.op("CALL_ONCE", [], [], init_subgraph_index=index)
        y = b.tensor("y", [1], "INT8", scale=1.0, zero_point=0)
        b.op("ADD", [x, x], [y], fused_activation_function="NONE")
        b.output(y)
        g = b.subgraph("init")
        if inner_index is not None:
            g.op("CALL_ONCE", [], [], init_subgraph_index=inner_index)
        return b.build()
    with pytest.raises(ModelError, match=r"operator 0 \(CALL_ONCE\): init_subgraph_index 5 is not a subgraph"):
        Interpreter.from_bytes(model(5))
    with pytest.raises(ModelError, match=r"init_subgraph_index -1 is not a subgraph"):
        Interpreter.from_bytes(model(-1))
    with pytest.raises(ModelError, match=r"operator 0 \(CALL_ONCE\): init_subgraph_index 0.*recursion 0 -> 0"):
        Interpreter.from_bytes(model(0))
    with pytest.raises(ModelError, match=r"subgraph 1, operator 0 \(CALL_ONCE\).*recursion 0 -> 1 -> 0"):
        Interpreter.from_bytes(model(1, inner_index=0))
    Interpreter.from_bytes(model(1))  # an empty init subgraph is fine


def test_resource_read_of_wrong_size_and_never_assigned_are_refused():
    def model(read_shape, assign=True):
        b = ModelBuilder()
        x = b.input("x", [4], "INT8", scale=1.0, zero_point=0)
        h, old = b.tensor("h", [], "RESOURCE"), b.tensor("old", read_shape, "INT8", scale=1.0, zero_point=0)
        b.op("VAR_HANDLE", [], [h], shared_name="state")
        b.op("READ_VARIABLE", [h], [old])
        if assign:
            b.op("ASSIGN_VARIABLE", [h, x], [])
        b.output(old)
        return b.build()
    Interpreter.from_bytes(model([2, 2]))  # the same bytes in another shape: a plain copy
    with pytest.raises(ModelError, match=r'operator 1 \(READ_VARIABLE\).*"state" holds 4 bytes.*has 3'):
        Interpreter.from_bytes(model([3]))
    with pytest.raises(ModelError, match=r'operator 1 \(READ_VARIABLE\).*"state" is never assigned'):
        Interpreter.from_bytes(model([4], assign=False))


def test_if_condition_must_be_one_bool():
    b = ModelBuilder()
    c = b.input("c", [2], "BOOL")
    x = b.input("x", [1], "INT32")
    y = b.tensor("y", [1], "INT32")
    g = b.subgraph("branch")
    g.output(g.input("x", [1], "INT32"))
    b.op("IF", [c, x], [y], then_subgraph_index=1, else_subgraph_index=1)
    b.output(y)
    with pytest.raises(ModelError, match=r"operator 0 \(IF\).*condition has 2 elements"):
        Interpreter.from_bytes(b.build())
