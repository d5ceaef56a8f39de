"""Run what TFLM runs, the model layer (issue 15): the data-flow, zero-element and quantization
checks of interp/model (graph.py, verify.py, parse.py) against the pinned wheel.

TFLM checks nothing about a graph's data flow: it runs the operators in order on buffers its
planner keeps alive from a tensor's first write to its last use. microref refused, as
ModelErrors, graphs TFLM runs with a defined result. Audited case by case (the table in the
final report of the audit; each row is a test below):

* a tensor written twice, a graph input overwritten, a variable written by two operators, an
  elementwise operator in place (input and output one tensor): TFLM's result is the in-order
  one (the last write counts; an elementwise kernel reads each element before it overwrites it).
  microref now runs them, bit-exact (``run``, ``run_batch``, call after call, and inside TFLM's own
  arena plan). In place outside the elementwise operators, TFLM's kernels read values they have
  already overwritten (TRANSPOSE, CONV_2D, FULLY_CONNECTED give other numbers than with two
  tensors): UnsupportedOpError, with the reason.
* a tensor read before anything wrote it (a cycle, a later operator's output, nobody's output),
  a graph output nothing writes: TFLM reads arena memory nobody wrote — zeros on a fresh arena,
  the previous call's values after it (shown below): undefined, UnsupportedOpError (were
  ModelErrors). An operator writing a constant (TFLM writes into the model's bytes, and the next
  call reads them) and one writing a tensor through two outputs: undefined, UnsupportedOpError.
* constants with no elements have no buffer, and graph inputs may have a zero dimension: TFLM
  gives them no bytes. microref saw "a tensor nobody writes" / "operators would read outside it".
  Now such tensors hold the empty value; the operators checked against the wheel on them run
  (CONCATENATION, SHAPE, PAD, BATCH_MATMUL, int8/int16 UNIDIRECTIONAL_SEQUENCE_LSTM with input
  size 0), every other reader is refused with the reason (TFLM itself crashes on some: CONV_2D
  with no input channels, float MEAN over an empty axis). Where TFLM demands a constant
  (IsConstantTensor) such a tensor is none: ModelError quoting TFLM.
* quantization arrays TFLM never reads: a convolution's bias scale (0, negative, NaN, inf), a
  per-channel FULLY_CONNECTED's bias scale, zero-point counts unlike the scale count (TFLM takes
  zero_point[0] everywhere), several scales or an out-of-range quantized_dimension on a tensor
  read per tensor, the scales of data-movement operators: all run now. (A constant's buffer longer
  than its shape needs is still refused, a strict xfail below says why; a shorter one: TFLM would
  read past it.)
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from diff_support import NO_ORACLE, ORACLE_AVAILABLE, TflmCrashed, _assert_same, check_model, require_oracle, tflm_run

from interp import Interpreter, ModelError, UnsupportedOpError, load_model
from interp.builder import ModelBuilder
from interp.model import graph, verify
from interp.model.graph import analyse

needs_oracle = pytest.mark.skipif(not ORACLE_AVAILABLE, reason=NO_ORACLE)

Q8 = dict(scale=0.05, zero_point=-3)


def _values(rng, type_name: str, shape, positive: bool = False) -> np.ndarray:
    shape = tuple(shape)
    if type_name == "INT8":
        return rng.integers(-128, 128, size=shape).astype(np.int8)
    if type_name == "INT16":
        return rng.integers(-32768, 32768, size=shape).astype(np.int16)
    if type_name == "INT32":
        return rng.integers(-50, 50, size=shape).astype(np.int32)
    if type_name == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    v = rng.normal(0, 2, size=shape).astype(np.float32)
    return (np.abs(v) + np.float32(0.25)).astype(np.float32) if positive else v


def _tflm(data: bytes, samples):
    try:
        return tflm_run(data, samples)
    except TflmCrashed as e:
        return "crashed", str(e)


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(u, v, equal_nan=np.asarray(u).dtype.kind == "f") and u.dtype == v.dtype
                                 for u, v in zip(x, y)) for x, y in zip(a, b))


def _refused_as_undefined(data: bytes, *fragments: str) -> str:
    with pytest.raises(UnsupportedOpError) as info:
        Interpreter.from_bytes(data)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _call_after_call(data: bytes, samples: list[list[np.ndarray]]):
    """TFLM's consecutive invokes against microref's consecutive run() calls, then reset()."""
    verdict, want = tflm_run(data, samples)
    assert verdict == "ok", want
    it = Interpreter.from_bytes(data)
    for i, sample in enumerate(samples):
        for j, (got, expected) in enumerate(zip(it.run(sample), want[i])):
            _assert_same(got, expected, f"output {j}, call {i}", it)
    it.reset()
    for j, (got, expected) in enumerate(zip(it.run(samples[0]), want[0])):
        _assert_same(got, expected, f"output {j}, first call after reset()", it)
    return it, want


# ====================================================================== elementwise in place
# (op, type, number of inputs, options, quantization, inputs positive)
IN_PLACE_SPECS = [
    ("RELU", "INT8", 1, {}, Q8, False), ("RELU6", "INT8", 1, {}, Q8, False),
    ("LEAKY_RELU", "INT8", 1, {"alpha": 0.3}, Q8, False),
    ("LOGISTIC", "INT8", 1, {}, dict(scale=1 / 256, zero_point=-128), False),
    ("TANH", "INT8", 1, {}, dict(scale=1 / 128, zero_point=0), False),
    ("HARD_SWISH", "INT8", 1, {}, Q8, False), ("ELU", "INT8", 1, {}, Q8, False), ("ABS", "INT8", 1, {}, Q8, False),
    ("QUANTIZE", "INT8", 1, {}, Q8, False), ("ZEROS_LIKE", "INT8", 1, {}, Q8, False),
    ("NEG", "FLOAT32", 1, {}, {}, False), ("EXP", "FLOAT32", 1, {}, {}, False), ("LOG", "FLOAT32", 1, {}, {}, True),
    ("SIN", "FLOAT32", 1, {}, {}, False), ("COS", "FLOAT32", 1, {}, {}, False), ("SQRT", "FLOAT32", 1, {}, {}, True),
    ("RSQRT", "FLOAT32", 1, {}, {}, True), ("SQUARE", "FLOAT32", 1, {}, {}, False),
    ("ABS", "FLOAT32", 1, {}, {}, False), ("CEIL", "FLOAT32", 1, {}, {}, False), ("FLOOR", "FLOAT32", 1, {}, {}, False),
    ("ROUND", "FLOAT32", 1, {}, {}, False), ("LOGISTIC", "FLOAT32", 1, {}, {}, False),
    ("TANH", "FLOAT32", 1, {}, {}, False), ("RELU", "FLOAT32", 1, {}, {}, False),
    ("LOGICAL_NOT", "BOOL", 1, {}, {}, False),
    ("ADD", "INT8", 2, {}, Q8, False), ("ADD", "INT16", 2, {}, dict(scale=0.01, zero_point=0), False),
    ("ADD", "FLOAT32", 2, {}, {}, False), ("SUB", "INT8", 2, {}, Q8, False), ("MUL", "INT8", 2, {}, Q8, False),
    ("DIV", "FLOAT32", 2, {}, {}, True), ("MAXIMUM", "INT8", 2, {}, Q8, False), ("MINIMUM", "INT8", 2, {}, Q8, False),
    ("SQUARED_DIFFERENCE", "INT8", 2, {}, Q8, False), ("FLOOR_DIV", "FLOAT32", 2, {}, {}, True),
    ("FLOOR_MOD", "FLOAT32", 2, {}, {}, True), ("LOGICAL_AND", "BOOL", 2, {}, {}, False),
    ("LOGICAL_OR", "BOOL", 2, {}, {}, False), ("EQUAL", "BOOL", 2, {}, {}, False),
    ("NOT_EQUAL", "BOOL", 2, {}, {}, False), ("PRELU", "INT8", 2, {}, Q8, False),
    ("ADD_N", "INT8", 3, {}, Q8, False), ("ADD_N", "FLOAT32", 3, {}, {}, False),
    ("SELECT_V2", "INT8", 3, {}, Q8, False), ("RESHAPE", "INT8", 2, {}, Q8, False),
]
BROADCASTING = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD",
                "LOGICAL_AND", "LOGICAL_OR", "EQUAL", "NOT_EQUAL", "PRELU", "SELECT_V2"}
SHAPE = (2, 3)


def _in_place_cases():
    for spec in IN_PLACE_SPECS:
        op, type_name, n = spec[:3]
        data_positions = [1, 2] if op == "SELECT_V2" else [0] if op == "RESHAPE" else list(range(n))
        for alias in data_positions:
            yield pytest.param(spec, alias, False, id=f"{op}-{type_name}-input{alias}")
            if op in BROADCASTING:
                yield pytest.param(spec, alias, True, id=f"{op}-{type_name}-input{alias}-broadcast")


def _in_place_model(spec, alias: int, broadcast: bool, aliased: bool):
    """One operator on graph inputs; with ``aliased`` its output is input ``alias`` itself, else a
    tensor of its own (same type, shape and quantization). With ``broadcast`` the other data
    inputs have shape [3] (the aliased one keeps the output's shape)."""
    op, type_name, n, options, quant, positive = spec
    rng = np.random.default_rng(zlib.crc32(f"{op} {type_name} {alias} {broadcast}".encode()))
    b = ModelBuilder()
    inputs, values = [], []
    for position in range(n):
        if op == "SELECT_V2" and position == 0:
            shape, kind, q = SHAPE, "BOOL", {}
        elif op == "RESHAPE" and position == 1:
            inputs.append(b.constant("shape", np.array(SHAPE, np.int32)))
            continue
        else:
            shape = (3,) if broadcast and position != alias else SHAPE
            kind, q = type_name, quant
        inputs.append(b.input(f"x{position}", list(shape), kind, **q))
        # Positive where the function needs it: LOG, SQRT, RSQRT, and the divisors.
        values.append(_values(rng, kind, (2,) + tuple(shape), positive=positive and (n == 1 or position > 0)))
    out = inputs[alias] if aliased else b.tensor("y", list(SHAPE), type_name, **quant)
    b.op(op, inputs, [out], **options)
    b.output(out)
    return b.build(), values


def test_every_in_place_operator_is_checked_here():
    assert graph.IN_PLACE_OPERATORS == {spec[0] for spec in IN_PLACE_SPECS}


@needs_oracle
@pytest.mark.parametrize("spec, alias, broadcast", list(_in_place_cases()))
def test_an_elementwise_operator_in_place_gives_what_two_tensors_give(spec, alias, broadcast):
    aliased, inputs = _in_place_model(spec, alias, broadcast, aliased=True)
    separate, _ = _in_place_model(spec, alias, broadcast, aliased=False)
    samples = [[x[s] for x in inputs] for s in range(inputs[0].shape[0])]
    verdict, want = tflm_run(aliased, samples)
    assert verdict == "ok", want
    assert _same(tflm_run(separate, samples)[1], want), "TFLM's in-place result differs from two tensors'"
    check_model(aliased, inputs, label=f"{spec[0]} {spec[1]} in place")
    notes = analyse(load_model(aliased).main).notes
    assert any("in place" in note for note in notes), notes


def _conv(aliased: bool):
    rng = np.random.default_rng(11)
    b = ModelBuilder()
    x = b.input("x", [1, 2, 2, 4], "INT8", **Q8)
    w = b.constant("w", rng.integers(-127, 128, size=(4, 1, 1, 4)).astype(np.int8), scale=0.02, zero_point=0)
    bias = b.constant("bias", rng.integers(-300, 300, size=4).astype(np.int32), scale=0.001, zero_point=0)
    y = x if aliased else b.tensor("y", [1, 2, 2, 4], "INT8", **Q8)
    b.op("CONV_2D", [x, w, bias], [y], padding="SAME", stride_h=1, stride_w=1)
    b.output(y)
    return b.build(), [rng.integers(-128, 128, size=(1, 1, 2, 2, 4)).astype(np.int8)]


def _fully_connected(aliased: bool):
    rng = np.random.default_rng(12)
    b = ModelBuilder()
    x = b.input("x", [2, 5], "INT8", **Q8)
    w = b.constant("w", rng.integers(-127, 128, size=(5, 5)).astype(np.int8), scale=0.01, zero_point=0)
    y = x if aliased else b.tensor("y", [2, 5], "INT8", **Q8)
    b.op("FULLY_CONNECTED", [x, w, None], [y])
    b.output(y)
    return b.build(), [rng.integers(-128, 128, size=(1, 2, 5)).astype(np.int8)]


def _transpose(aliased: bool):
    rng = np.random.default_rng(13)
    b = ModelBuilder()
    x = b.input("x", [3, 3], "INT8", **Q8)
    y = x if aliased else b.tensor("y", [3, 3], "INT8", **Q8)
    b.op("TRANSPOSE", [x, b.constant("perm", np.array([1, 0], np.int32))], [y])
    b.output(y)
    return b.build(), [rng.integers(-128, 128, size=(1, 3, 3)).astype(np.int8)]


def _variable_fully_connected(aliased: bool):
    """A variable (the state of a recurrent cell) updated in place by FULLY_CONNECTED after an ADD."""
    rng = np.random.default_rng(14)
    b = ModelBuilder()
    x = b.input("x", [1, 5], "INT8", **Q8)
    v = b.tensor("v", [1, 5], "INT8", variable=True, **Q8)
    b.op("ADD", [x, v], [v])
    w = b.constant("w", rng.integers(-127, 128, size=(5, 5)).astype(np.int8), scale=0.01, zero_point=0)
    y = v if aliased else b.tensor("y", [1, 5], "INT8", **Q8)
    b.op("FULLY_CONNECTED", [v, w, None], [y])
    b.output(y)
    return b.build(), [rng.integers(-128, 128, size=(1, 1, 5)).astype(np.int8)]


NOT_IN_PLACE = {"CONV_2D": _conv, "FULLY_CONNECTED": _fully_connected, "TRANSPOSE": _transpose,
                "FULLY_CONNECTED on a variable": _variable_fully_connected}


@needs_oracle
@pytest.mark.parametrize("case", sorted(NOT_IN_PLACE))
def test_other_operators_in_place_read_what_they_overwrote_and_are_refused(case):
    aliased, inputs = NOT_IN_PLACE[case](aliased=True)
    separate, _ = NOT_IN_PLACE[case](aliased=False)
    samples = [[x[0] for x in inputs]]
    verdict, in_place = tflm_run(aliased, samples)
    assert verdict == "ok", in_place
    assert not _same(tflm_run(separate, samples)[1], in_place), "in place gives two tensors' result after all"
    _refused_as_undefined(aliased, "in place", "already overwritten")


# ====================================================================== written again
def _written_twice():
    b = ModelBuilder()
    x = b.input("x", [1, 6], "INT8", **Q8)
    t = b.tensor("t", [1, 6], "INT8", **Q8)
    y = b.tensor("y", [1, 6], "INT8", **Q8)
    z = b.tensor("z", [1, 6], "INT8", **Q8)
    b.op("LEAKY_RELU", [x], [t], alpha=0.5)
    b.op("RELU", [t], [y])
    b.op("ADD", [x, x], [t])  # t again
    b.op("TANH", [t], [z])
    b.output(y, z, t)
    return b.build()


def _graph_input_overwritten():
    b = ModelBuilder()
    x = b.input("x", [1, 6], "INT8", **Q8)
    y = b.tensor("y", [1, 6], "INT8", **Q8)
    z = b.tensor("z", [1, 6], "INT8", **Q8)
    b.op("LEAKY_RELU", [x], [y], alpha=0.5)
    b.op("RELU6", [y], [x])  # overwrites the graph input...
    b.op("ADD", [x, y], [z])  # ...which this reads
    b.output(x, z)
    return b.build()


def _in_place_chain():
    b = ModelBuilder()
    x = b.input("x", [2, 6], "INT8", **Q8)
    t = b.tensor("t", [2, 6], "INT8", **Q8)
    b.op("RELU", [x], [t])
    b.op("ADD", [t, b.constant("c", np.arange(6, dtype=np.int8), **Q8)], [t])
    b.op("MUL", [t, x], [t])
    b.op("MAXIMUM", [x, t], [x])
    y = b.tensor("y", [2, 6], "INT8", **Q8)
    b.op("SUB", [x, t], [y])
    b.output(y, t)
    return b.build()


DEFINED_GRAPHS = {"a tensor written twice": _written_twice, "a graph input overwritten": _graph_input_overwritten,
                  "elementwise operators in place, chained": _in_place_chain}


@needs_oracle
@pytest.mark.parametrize("case", sorted(DEFINED_GRAPHS))
def test_tensors_written_again_hold_the_last_write_as_in_tflm(case):
    data = DEFINED_GRAPHS[case]()
    it = Interpreter.from_bytes(data)
    shape = tuple(it.input_details[0]["shape"])
    x = np.random.default_rng(15).integers(-128, 128, size=(4,) + shape).astype(np.int8)
    check_model(data, [x], label=f"graph: {case}")
    # Inside TFLM's own arena plan too: its planner keeps a tensor's buffer from its first write
    # to its last use, so no other tensor overwrites it in between.
    from interp.planner.arena_exec import run_in_arena
    for s in range(x.shape[0]):
        arena_outputs, _ = run_in_arena(it, [x[s]])
        for got, want in zip(arena_outputs, it.run([x[s]])):
            assert np.array_equal(got, want)
    assert analyse(load_model(data).main).notes


def _variable_written_by_two():
    b = ModelBuilder()
    x = b.input("x", [1, 5], "INT8", **Q8)
    v = b.tensor("v", [1, 5], "INT8", variable=True, scale=0.05, zero_point=3)
    y = b.tensor("y", [1, 5], "INT8", **Q8)
    b.op("ADD", [x, v], [y])
    b.op("RELU", [y], [v])
    b.op("LEAKY_RELU", [x], [v], alpha=0.5)  # the value the next call starts from
    b.output(y, v)
    return b.build()


def _variable_accumulated_twice():
    b = ModelBuilder()
    x = b.input("x", [1, 5], "INT8", **Q8)
    v = b.tensor("v", [1, 5], "INT8", variable=True, scale=0.05, zero_point=3)
    b.op("ADD", [x, v], [v])
    b.op("ADD", [v, x], [v])
    b.output(v)
    return b.build()


@needs_oracle
@pytest.mark.parametrize("build", [_variable_written_by_two, _variable_accumulated_twice])
def test_a_variable_written_by_two_operators_carries_the_last_write_to_the_next_call(build):
    rng = np.random.default_rng(16)
    samples = [[rng.integers(-128, 128, size=(1, 5)).astype(np.int8)] for _ in range(4)]
    it, _ = _call_after_call(build(), samples)
    assert it.stateful


# ====================================================================== undefined data flow
def _read_before_write(how: str):
    b = ModelBuilder()
    x = b.input("x", [1, 6], "INT8", **Q8)
    t = b.tensor("t", [1, 6], "INT8", **Q8)
    y = b.tensor("y", [1, 6], "INT8", **Q8)
    b.op("ADD", [x, t], [y])
    if how == "written later":
        b.op("LEAKY_RELU", [x], [t], alpha=0.5)
    b.output(y)
    return b.build()


@needs_oracle
def test_a_tensor_read_before_its_writer_gets_the_previous_calls_value_in_tflm_and_is_refused():
    data = _read_before_write("written later")
    x = np.array([[-3, -1, 0, 2, 5, 100]], np.int8)
    verdict, outs = tflm_run(data, [[x], [x]])
    assert verdict == "ok", outs
    # The same input, two answers: the second call reads what the first one's LEAKY_RELU left.
    assert not np.array_equal(outs[0][0], outs[1][0])
    _refused_as_undefined(data, "before anything wrote it", "written later, by operator 1")


@needs_oracle
def test_a_tensor_nothing_writes_and_a_graph_output_nothing_writes_are_refused():
    data = _read_before_write("never")
    assert tflm_run(data, [[np.zeros((1, 6), np.int8)]])[0] == "ok"  # TFLM runs it on arena memory
    _refused_as_undefined(data, "no operator writes it")
    b = ModelBuilder()
    x = b.input("x", [1, 6], "INT8", **Q8)
    y = b.tensor("y", [1, 6], "INT8", **Q8)
    b.op("RELU", [x], [y])
    b.output(y, b.tensor("orphan", [1, 6], "INT8", **Q8))
    assert tflm_run(b.build(), [[np.zeros((1, 6), np.int8)]])[0] == "ok"
    _refused_as_undefined(b.build(), '"orphan"', "graph output nothing writes")


@needs_oracle
def test_an_operator_writing_a_constant_changes_the_model_for_the_next_call_in_tflm_and_is_refused():
    b = ModelBuilder()
    x = b.input("x", [1, 6], "INT8", **Q8)
    c = b.constant("c", np.arange(6, dtype=np.int8).reshape(1, 6), **Q8)
    y = b.tensor("y", [1, 6], "INT8", **Q8)
    b.op("ADD", [x, c], [c])
    b.op("ADD", [x, c], [y])
    b.output(y)
    data = b.build()
    x = np.array([[1, 2, 3, 4, 5, 6]], np.int8)
    verdict, outs = tflm_run(data, [[x], [x]])
    assert verdict == "ok", outs
    assert not np.array_equal(outs[0][0], outs[1][0])  # the constant grew between the calls
    _refused_as_undefined(data, '"c"', "writes a constant")


@needs_oracle
def test_one_tensor_as_two_outputs_of_an_operator_is_refused():
    b = ModelBuilder()
    x = b.input("x", [2, 3], "INT8", **Q8)
    h = b.tensor("h", [1, 3], "INT8", **Q8)
    b.op("SPLIT", [b.constant("axis", np.array(0, np.int32)), x], [h, h], num_splits=2)
    b.output(h)
    data = b.build()
    assert tflm_run(data, [[np.arange(6, dtype=np.int8).reshape(2, 3)]])[0] == "ok"
    _refused_as_undefined(data, '"h"', "two of its outputs")


def _unread_input(op: str):
    rng = np.random.default_rng(20)
    b = ModelBuilder()
    x = b.input("x", [1, 2, 2, 1], "INT8", **Q8)
    if op == "RESHAPE":
        y = b.tensor("y", [2, 2], "INT8", **Q8)
        b.op(op, [x, b.tensor("shape", [2], "INT32")], [y])
    else:
        w = b.constant("w", rng.integers(-127, 128, size=(1, 2, 2, 1)).astype(np.int8), scale=0.02, zero_point=0)
        y = b.tensor("y", [1, 4, 4, 1], "INT8", **Q8)
        b.op(op, [b.tensor("output_shape", [4], "INT32"), w, x], [y], padding="SAME", stride_h=2, stride_w=2)
    b.output(y)
    return b.build(), rng.integers(-128, 128, size=(1, 2, 2, 1)).astype(np.int8)


@needs_oracle
@pytest.mark.parametrize("op", sorted(graph.UNREAD_INPUTS))
def test_an_input_tflm_never_reads_may_be_unwritten_there_but_microref_needs_a_value(op):
    data, x = _unread_input(op)
    verdict, outs = tflm_run(data, [[x], [x]])
    assert verdict == "ok", outs
    assert _same([outs[0]], [outs[1]])  # defined: no call leaves anything behind for the next
    _refused_as_undefined(data, "never reads it", "has no value for this one")


@needs_oracle
def test_a_dynamic_tensor_in_a_subgraph_nothing_calls_is_refused_as_tflm_refuses_it():
    # TFLM's PrepareSubgraphs prepares (and checks for dynamic tensors) every subgraph.
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", **Q8)
    y = b.tensor("y", [1, 4], "INT8", **Q8)
    b.op("RELU", [x], [y])
    b.output(y)
    g = b.subgraph("never_called")
    a = g.input("a", [1, 4], "INT8", **Q8)
    z = g.tensor("z", [1, 0], "INT8", **Q8)
    g.op("SLICE", [a, g.constant("begin", np.array([0, 0], np.int32)), g.constant("size", np.array([1, 0], np.int32))],
         [z])
    g.output(z)
    data = b.build()
    verdict, message = tflm_run(data, [[np.zeros((1, 4), np.int8)]])
    assert verdict == "rejected" and "dynamic tensor" in message, message
    with pytest.raises(ModelError, match="subgraph 1, operator 0 .*dynamic tensor"):
        Interpreter.from_bytes(data)


# ====================================================================== no elements
def _lstm(kind: str):
    """A one-layer LSTM whose input has size 0: the four input weights are [2, 0] constants
    without a buffer; only the recurrent weights and biases shape the output."""
    rng = np.random.default_rng(17)
    weight_type = {"INT8": "INT8", "INT16": "INT8", "FLOAT32": "FLOAT32"}[kind]
    bias_type = {"INT8": "INT32", "INT16": "INT64", "FLOAT32": "FLOAT32"}[kind]
    quantized = kind != "FLOAT32"
    qi = {"INT8": dict(scale=0.05, zero_point=0), "INT16": dict(scale=2 ** -12, zero_point=0)}.get(kind, {})
    qh = {"INT8": dict(scale=1 / 128, zero_point=0), "INT16": dict(scale=2 ** -15, zero_point=0)}.get(kind, {})
    b = ModelBuilder()
    inputs = [None] * 24
    inputs[0] = b.input("x", [1, 3, 0], kind, **qi)
    qw = dict(scale=0.01, zero_point=0) if quantized else {}
    for g, (wpos, rpos, bpos) in {"i": (1, 5, 12), "f": (2, 6, 13), "c": (3, 7, 14), "o": (4, 8, 15)}.items():
        inputs[wpos] = b.constant(f"w_{g}", np.zeros((2, 0)), weight_type, **qw)
        recurrent = rng.integers(-127, 128, size=(2, 2)) if quantized else rng.normal(0, 1, (2, 2))
        inputs[rpos] = b.constant(f"r_{g}", recurrent, weight_type, **qw)
        bias = rng.integers(-3000, 3000, size=2) if quantized else rng.normal(0, 1, 2)
        inputs[bpos] = b.constant(f"b_{g}", bias, bias_type, **(dict(scale=qi["scale"] * 0.01) if quantized else {}))
    inputs[18] = b.tensor("hidden", [1, 2], kind, variable=True, **qh)
    inputs[19] = b.tensor("cell", [1, 2], "INT16" if quantized else "FLOAT32", variable=True,
                          **(dict(scale=2 ** -11, zero_point=0) if quantized else {}))
    y = b.tensor("y", [1, 3, 2], kind, **qh)
    b.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [y], fused_activation_function="TANH", time_major=False)
    b.output(y)
    dtype = {"INT8": np.int8, "INT16": np.int16, "FLOAT32": np.float32}[kind]
    return b.build(), [[np.zeros((1, 3, 0), dtype)] for _ in range(3)]


@needs_oracle
@pytest.mark.parametrize("kind", ["INT8", "INT16"])
def test_an_lstm_whose_input_has_size_zero_runs_as_tflm(kind):
    data, samples = _lstm(kind)
    model = load_model(data)
    assert model.main.tensors[1].empty_without_buffer and model.main.tensors[1].shape == (2, 0)
    it, want = _call_after_call(data, samples)
    assert not np.array_equal(want[0][0], want[1][0])  # the state moves the output on


@needs_oracle
def test_a_float_lstm_whose_input_has_size_zero_is_not_run():
    # TFLM runs it; microref's float LSTM kernel has not been brought to it (it is not among the
    # operators checked on inputs of no elements).
    data, samples = _lstm("FLOAT32")
    assert tflm_run(data, samples)[0] == "ok"
    _refused_as_undefined(data, "no elements", "UNIDIRECTIONAL_SEQUENCE_LSTM")


def _empty_reader(op: str, kind: str, empty: str):
    """``op`` reading a tensor of no elements: a graph input with a zero dimension or a constant
    without a buffer (``empty``)."""
    q = {"INT8": Q8, "INT16": dict(scale=0.01, zero_point=0)}.get(kind, {})
    dtype = {"INT8": np.int8, "INT16": np.int16, "FLOAT32": np.float32}[kind]
    rng = np.random.default_rng(18)
    b = ModelBuilder()
    values = []

    def empty_tensor(name, shape):
        if empty == "input":
            values.append(np.zeros((2,) + tuple(shape), dtype))
            return b.input(name, list(shape), kind, **q)
        return b.constant(name, np.zeros(shape), kind, **q)

    if op == "CONCATENATION":
        x = b.input("x", [2, 3], kind, **q)
        values.append(_values(rng, kind, (2, 2, 3)))
        z = empty_tensor("z", [2, 0])
        y = b.tensor("y", [2, 3], kind, **q)
        b.op(op, [z, x, z], [y], axis=1)
    elif op == "SHAPE":
        y = b.tensor("y", [3], "INT32")
        b.op(op, [empty_tensor("z", [2, 0, 3])], [y], out_type="INT32")
    elif op == "PAD":
        y = b.tensor("y", [2, 2], kind, **q)
        b.op(op, [empty_tensor("z", [2, 0]), b.constant("pads", np.array([[0, 0], [1, 1]], np.int32))], [y])
    elif op == "BATCH_MATMUL":
        y = b.tensor("y", [1, 2, 3], kind, **q)
        b.op(op, [empty_tensor("a", [1, 2, 0]), empty_tensor("c", [1, 0, 3])], [y])
    else:
        raise ValueError(op)
    b.output(y)
    if not values:
        values.append(np.zeros((2, 1), np.int8))  # no input at all: TFLM and microref run it once
    return b.build(), values


EMPTY_READERS = [(op, kind, empty) for op, kinds in (("CONCATENATION", ("INT8", "INT16", "FLOAT32")),
                                                     ("SHAPE", ("INT8",)), ("PAD", ("INT8", "INT16", "FLOAT32")),
                                                     ("BATCH_MATMUL", ("INT8", "INT16", "FLOAT32")))
                 for kind in kinds for empty in ("input", "constant")]


def test_every_operator_run_on_empty_inputs_is_checked_here():
    checked = {op for op, _, _ in EMPTY_READERS} | {"UNIDIRECTIONAL_SEQUENCE_LSTM"}
    assert set(graph.EMPTY_INPUT_OPERATORS) == checked


@needs_oracle
@pytest.mark.parametrize("op, kind, empty", EMPTY_READERS)
def test_operators_checked_on_tensors_of_no_elements_run_them_as_tflm(op, kind, empty):
    data, values = _empty_reader(op, kind, empty)
    if op in ("SHAPE", "PAD", "BATCH_MATMUL") and empty == "constant":
        # No input: one call on each side.
        verdict, want = tflm_run(data, [[]])
        assert verdict == "ok", want
        got = Interpreter.from_bytes(data).run([])
        for g, w in zip(got, want[0]):
            _assert_same(g, w, op, None)
        return
    check_model(data, values, label=f"{op} {kind} reading no elements")


@needs_oracle
def test_other_operators_on_tensors_of_no_elements_are_refused_tflm_crashes_on_some():
    # CONV_2D with no input channels: TFLM divides by the filter's input depth (SIGFPE).
    b = ModelBuilder()
    a = b.input("a", [1, 2, 2, 0], "INT8", **Q8)
    w = b.constant("w", np.zeros((3, 1, 1, 0)), "INT8", scale=0.02, zero_point=0)
    bias = b.constant("bias", np.array([1, 2, 3]), "INT32", scale=0.001, zero_point=0)
    y = b.tensor("y", [1, 2, 2, 3], "INT8", **Q8)
    b.op("CONV_2D", [a, w, bias], [y], padding="VALID", stride_h=1, stride_w=1)
    b.output(y)
    assert _tflm(b.build(), [[np.zeros((1, 2, 2, 0), np.int8)]])[0] == "crashed"
    _refused_as_undefined(b.build(), "no elements")
    # float MEAN over an empty axis: TFLM reads outside the input (SIGSEGV); microref's kernel
    # would have answered 0.0.
    b = ModelBuilder()
    a = b.input("a", [2, 0], "FLOAT32")
    y = b.tensor("y", [2], "FLOAT32")
    b.op("MEAN", [a, b.constant("axis", np.array([1], np.int32))], [y], keep_dims=False)
    b.output(y)
    assert _tflm(b.build(), [[np.zeros((2, 0), np.float32)]])[0] == "crashed"
    _refused_as_undefined(b.build(), "no elements", "MEAN")


@needs_oracle
def test_an_empty_tensor_without_buffer_is_no_constant_where_tflm_demands_one():
    b = ModelBuilder()
    x = b.input("x", [], "INT8", **Q8)
    y = b.tensor("y", [], "INT8", **Q8)
    b.op("TRANSPOSE", [x, b.constant("perm", np.zeros(0, np.int32))], [y])
    b.output(y)
    data = b.build()
    verdict, message = tflm_run(data, [[np.array(5, np.int8)]])
    assert verdict == "rejected" and "Non-constant >perm< tensor is not supported" in message, message
    with pytest.raises(ModelError, match="Non-constant >perm< tensor is not supported"):
        Interpreter.from_bytes(data)


# ====================================================================== quantization TFLM never reads
def with_quantization(data: bytes, tensor: int, **fields) -> bytes:
    """``data`` with tensor ``tensor`` of subgraph 0 given quantization fields (the wheel's schema
    names: scale, zeroPoint, quantizedDimension), written with the wheel's own schema."""
    import flatbuffers
    require_oracle()  # the wheel's own schema writes the field
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(data, 0)
    q = model.subgraphs[0].tensors[tensor].quantization
    for name, value in fields.items():
        setattr(q, name, value)
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _convolution(op: str, kind: str, per_channel: bool = True):
    """``op`` (int8 or 16x8) with a bias; returns (model, inputs, bias tensor index)."""
    rng = np.random.default_rng(19)
    q_in = Q8 if kind == "INT8" else dict(scale=0.01, zero_point=0)
    q_out = dict(scale=0.1, zero_point=-2) if kind == "INT8" else dict(scale=0.05, zero_point=0)
    bias_type = "INT32" if kind == "INT8" else "INT64"
    scales = [0.02, 0.03] if per_channel else 0.02
    b = ModelBuilder()
    if op == "FULLY_CONNECTED":
        x = b.input("x", [1, 4], kind, **q_in)
        w = b.constant("w", rng.integers(-127, 128, size=(2, 4)).astype(np.int8), "INT8", scale=scales,
                       zero_point=0, quantized_dimension=0)
        bias = b.constant("bias", rng.integers(-500, 500, size=2), bias_type, scale=0.001, zero_point=0)
        y = b.tensor("y", [1, 2], kind, **q_out)
        b.op(op, [x, w, bias], [y])
        shape = [1, 4]
    elif op == "TRANSPOSE_CONV":
        x = b.input("x", [1, 2, 2, 2], kind, **q_in)
        w = b.constant("w", rng.integers(-127, 128, size=(2, 2, 2, 2)).astype(np.int8), "INT8", scale=scales,
                       zero_point=0, quantized_dimension=0)
        bias = b.constant("bias", rng.integers(-500, 500, size=2), bias_type, scale=0.001, zero_point=0)
        y = b.tensor("y", [1, 4, 4, 2], kind, **q_out)
        b.op(op, [b.constant("shape", np.array([1, 4, 4, 2], np.int32)), w, x, bias], [y], padding="SAME",
             stride_h=2, stride_w=2)
        shape = [1, 2, 2, 2]
    else:
        depthwise = op == "DEPTHWISE_CONV_2D"
        x = b.input("x", [1, 3, 3, 2], kind, **q_in)
        filter_shape = (1, 2, 2, 2) if depthwise else (2, 2, 2, 2)
        w = b.constant("w", rng.integers(-127, 128, size=filter_shape).astype(np.int8), "INT8", scale=scales,
                       zero_point=0, quantized_dimension=3 if depthwise else 0)
        bias = b.constant("bias", rng.integers(-500, 500, size=2), bias_type, scale=0.001, zero_point=0)
        y = b.tensor("y", [1, 3, 3, 2], kind, **q_out)
        options = dict(padding="SAME", stride_h=1, stride_w=1, **({"depth_multiplier": 1} if depthwise else {}))
        b.op(op, [x, w, bias], [y], **options)
        shape = [1, 3, 3, 2]
    b.output(y)
    lo, hi = (-128, 127) if kind == "INT8" else (-3000, 3000)
    return b.build(), [rng.integers(lo, hi, size=[3] + shape, endpoint=True).astype(kind.lower())], bias


BIAS_CASES = [(op, kind) for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")
              for kind in ("INT8", "INT16")]


@needs_oracle
@pytest.mark.parametrize("op, kind", BIAS_CASES)
@pytest.mark.parametrize("scale", [0.0, -0.001, float("nan"), float("inf")])
def test_a_bias_scale_tflm_never_reads_does_not_stop_the_model(op, kind, scale):
    data, inputs, bias = _convolution(op, kind)
    mutant = with_quantization(data, bias, scale=[scale])
    samples = [[x[s] for x in inputs] for s in range(inputs[0].shape[0])]
    verdict, want = tflm_run(mutant, samples)
    assert verdict == "ok", want
    assert _same(tflm_run(data, samples)[1], want)  # TFLM does not read it
    check_model(mutant, inputs, label=f"{op} {kind} unread bias scale")


@needs_oracle
def test_a_per_tensor_fully_connected_reads_its_bias_scale_and_both_refuse_nan():
    data, inputs, bias = _convolution("FULLY_CONNECTED", "INT8", per_channel=False)
    mutant = with_quantization(data, bias, scale=[float("nan")])
    assert tflm_run(mutant, [[inputs[0][0]]])[0] != "ok"
    with pytest.raises((ModelError, UnsupportedOpError)):
        Interpreter.from_bytes(mutant)


def _add():
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", **Q8)
    c = b.constant("c", np.array([[1, 2, 3, 4]], np.int8), **Q8)
    y = b.tensor("y", [1, 4], "INT8", **Q8)
    b.op("ADD", [x, c], [y])
    b.output(y)
    return b.build(), [np.array([[[10, 20, 30, -40]], [[-128, 0, 127, 5]]], np.int8)]


PER_TENSOR_READS = {
    "3 scales, 2 zero points": dict(scale=[0.05, 0.5, 5.0], zeroPoint=[-3, 100]),
    "3 scales, 5 zero points": dict(scale=[0.05, 0.5, 5.0], zeroPoint=[7, 1, 2, 3, 4]),
    "1 scale, 3 zero points": dict(scale=[0.05], zeroPoint=[7, 1, 2]),
    "2 scales on dimension 5 of a 2-D tensor": dict(scale=[0.05, 0.07], zeroPoint=[0, 0], quantizedDimension=5),
    "2 scales on dimension -1": dict(scale=[0.05, 0.07], zeroPoint=[0, 0], quantizedDimension=-1),
    "2 scales for 4 channels of dimension 1": dict(scale=[0.05, float("nan")], zeroPoint=[0, 0], quantizedDimension=1),
}


@needs_oracle
@pytest.mark.parametrize("case", sorted(PER_TENSOR_READS))
def test_quantization_arrays_of_a_tensor_read_per_tensor_are_read_as_tflm_reads_them(case):
    data, inputs = _add()
    mutant = with_quantization(data, 0, **PER_TENSOR_READS[case])
    check_model(mutant, inputs, label="ADD quantization read per tensor")


@needs_oracle
def test_a_zero_point_count_unlike_a_per_channel_filters_scales_reads_zero_point_0():
    data, inputs, _ = _convolution("DEPTHWISE_CONV_2D", "INT8")
    mutant = with_quantization(data, 1, zeroPoint=[0, 5, 9])  # 2 scales
    assert load_model(mutant).main.tensors[1].quantization.zero_points.tolist() == [0, 0]
    check_model(mutant, inputs, label="DEPTHWISE_CONV_2D zero-point count")


def test_a_filter_read_per_channel_keeps_its_dimension_checks():
    # TFLM compares the scale count with filter->dims->data[quantized_dimension]: outside the shape
    # it reads past the dims (undefined), so the per-channel checks stay on filters.
    for op in ("CONV_2D", "FULLY_CONNECTED"):
        data, _, _ = _convolution(op, "INT8")
        for qd, fragment in [(-1, "is negative"), (7, "not a dimension")]:
            with pytest.raises(ModelError, match=fragment):
                load_model(with_quantization(data, 1, quantizedDimension=qd))


@needs_oracle
@pytest.mark.parametrize("scale", [0.0, -128.0, float("nan")])
def test_scales_of_data_movement_operators_do_not_stop_the_model(scale):
    # TFLM's own RESIZE_BILINEAR int8 tests use scale -128, its SPLIT int8 test scale 0.
    b = ModelBuilder()
    x = b.input("x", [1, 2, 2, 1], "INT8", scale=1.0, zero_point=0)
    r = b.tensor("r", [1, 3, 3, 1], "INT8", scale=1.0, zero_point=0)
    b.op("RESIZE_BILINEAR", [x, b.constant("size", np.array([3, 3], np.int32))], [r])
    halves = [b.tensor(f"h{i}", [1, 3, 3, 1], "INT8", scale=1.0, zero_point=0) for i in range(1)]
    b.op("SPLIT", [b.constant("axis", np.array(0, np.int32)), r], halves, num_splits=1)
    b.output(*halves)
    data = b.build()
    for t in range(len(load_model(data).main.tensors)):
        if load_model(data).main.tensors[t].quantization is not None:
            data = with_quantization(data, t, scale=[scale])
    check_model(data, [np.arange(8, dtype=np.int8).reshape(2, 1, 2, 2, 1)], label="RESIZE_BILINEAR+SPLIT scales")


# ====================================================================== buffers
def _with_buffer_of(data: bytes, tensor: int, size: int) -> bytes:
    import flatbuffers
    require_oracle()  # the wheel's own schema writes the field
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(data, 0)
    buffer = model.buffers[model.subgraphs[0].tensors[tensor].buffer]
    raw = list(buffer.data)
    buffer.data = (raw + [50, 60, 70, 80] * size)[:size]
    fb = flatbuffers.Builder(len(data) + 1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


@needs_oracle
def test_a_buffer_shorter_than_its_shape_needs_is_refused():
    data, inputs = _add()
    with pytest.raises(ModelError, match="buffer holds 2 bytes"):
        Interpreter.from_bytes(_with_buffer_of(data, 1, 2))  # TFLM would read past it


@needs_oracle
@pytest.mark.xfail(strict=True, raises=ModelError, reason=(
    "TFLM runs a constant whose buffer is longer than its shape needs (it reads from the start), "
    "but kernels that read a constant as another type (TRANSPOSE's perm as int32 words whatever "
    "its type) read further into the buffer in TFLM than the shape says, and microref's constant "
    "holds only the shape's bytes (the mutation fuzzer crashed ops/shape.py's TRANSPOSE on a "
    "float16 perm): parse.py still refuses it"))
def test_a_buffer_longer_than_its_shape_needs_is_read_from_the_start():
    data, inputs = _add()
    longer = _with_buffer_of(data, 1, 8)
    verdict, want = tflm_run(longer, [[inputs[0][0]]])
    assert verdict == "ok" and _same(want, tflm_run(data, [[inputs[0][0]]])[1])
    got = Interpreter.from_bytes(longer).run([inputs[0][0]])
    assert _same([got], want)


# ====================================================================== TFLM-free
def test_analyse_records_every_writer_and_notes_what_a_reader_may_not_expect():
    info = analyse(load_model(_graph_input_overwritten()).main)
    assert info.writers == {1: [0], 0: [1], 2: [2]} and info.producer == {1: 0, 0: 1, 2: 2}
    assert len(info.notes) == 1 and "overwrites a graph input" in info.notes[0]
    info = analyse(load_model(_written_twice()).main)
    assert info.writers[1] == [0, 2] and info.last_use[1] == 3
    assert any("written again (first by operator 0)" in note for note in info.notes)


def test_written_twice_and_in_place_values_without_tflm():
    # float32, so that every value is exact: the last write counts, in place reads the old value.
    b = ModelBuilder()
    x = b.input("x", [2, 3], "FLOAT32")
    t = b.tensor("t", [2, 3], "FLOAT32")
    c = b.constant("c", np.array([0.5, -1.0, 2.0], np.float32))
    b.op("RELU", [x], [t])
    b.op("ADD", [t, c], [t])  # in place
    b.op("MUL", [t, x], [t])  # in place again
    b.op("MAXIMUM", [x, t], [x])  # overwrites the graph input
    y = b.tensor("y", [2, 3], "FLOAT32")
    b.op("SUB", [x, t], [y])
    b.op("NEG", [x], [t])  # t written once more: the graph output's value
    b.output(y, t, x)
    it = Interpreter.from_bytes(b.build())
    x0 = np.array([[-2.0, 0.5, 3.0], [1.0, -4.0, 0.25]], np.float32)
    t1 = (np.maximum(x0, 0) + np.array([0.5, -1.0, 2.0], np.float32)) * x0
    x1 = np.maximum(x0, t1)
    want = [x1 - t1, -x1, x1]
    for got, expected in zip(it.run([x0]), want):
        assert np.array_equal(got, expected.astype(np.float32))
    for got, expected in zip(it.run_batch([np.stack([x0, x0 * 2])]), want):
        assert np.array_equal(got[0], expected.astype(np.float32))


def test_an_empty_constant_without_buffer_holds_the_empty_value():
    b = ModelBuilder()
    x = b.input("x", [1, 3], "INT8", **Q8)
    z = b.constant("z", np.zeros((1, 0)), "INT8", **Q8)
    y = b.tensor("y", [1, 3], "INT8", **Q8)
    b.op("CONCATENATION", [x, z], [y], axis=1)
    b.output(y)
    model = load_model(b.build())
    t = model.main.tensors[z]
    assert t.empty_without_buffer and t.is_constant and t.data.shape == (1, 0) and t.data_bytes == 0
    assert not model.main.tensors[x].empty_without_buffer
    x_value = np.array([[1, -2, 3]], np.int8)
    assert np.array_equal(Interpreter(model).run([x_value])[0], x_value)


def test_quantization_readers_skip_what_tflms_kernels_never_read():
    data, _, bias = _convolution("CONV_2D", "INT8")
    readers = verify.quantization_readers(load_model(data).main)
    assert bias not in readers.scales and 1 in readers.per_channel and 0 in readers.scales
    data, _, bias = _convolution("FULLY_CONNECTED", "INT8", per_channel=False)
    assert bias in verify.quantization_readers(load_model(data).main).scales
    data, _, bias = _convolution("FULLY_CONNECTED", "INT8", per_channel=True)
    assert bias not in verify.quantization_readers(load_model(data).main).scales


def test_every_scale_free_operator_is_audited_against_the_wheel():
    # tests/test_run_what_tflm_runs.py mutates every scale of each of them (0, -128, -s, NaN, inf).
    from test_run_what_tflm_runs import SCALE_FREE
    assert verify.SCALE_FREE_OPERATORS == set(SCALE_FREE)


def test_a_nan_scale_on_a_tensor_no_operator_uses_is_left_alone():
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", **Q8)
    y = b.tensor("y", [1, 4], "INT8", **Q8)
    b.op("RELU", [x], [y])
    b.tensor("unused", [4], "INT8", scale=1.0, zero_point=0)
    b.output(y)
    data = b.build()
    nan = np.float32("nan").tobytes()
    one = np.float32(1.0).tobytes()
    assert data.count(one) == 1
    Interpreter.from_bytes(data.replace(one, nan))


def test_quantization_notes_name_arrays_no_kernel_reads():
    data, _, bias = _convolution("CONV_2D", "INT8")
    model = load_model(data)
    assert verify.quantization_notes(model) == []
    nan = np.float32(0.001).tobytes()
    assert data.count(nan) == 1  # the bias scale
    notes = verify.quantization_notes(load_model(data.replace(nan, np.float32("nan").tobytes())))
    assert len(notes) == 1 and '"bias"' in notes[0] and "never read" in notes[0]
