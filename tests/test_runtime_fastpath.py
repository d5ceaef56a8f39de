"""run()'s lean path (issue 20): the precomputed input check and the plain loop over subgraph 0
give what the general path gives — the same InputError messages, the same bytes, the same values
for tensor() afterwards, the same copies — and stateful or control-flow models keep the general
loop."""
import numpy as np
import pytest

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import InputError, ModelError
from interp.runtime.inputs import SampleInputs, gather_inputs, random_inputs

Q = dict(scale=0.05, zero_point=3)


def _two_input_model(float_input: bool = False) -> bytes:
    """ADD of an int8 [1, 3, 4] input and a second input, then FULLY_CONNECTED and a RESHAPE; the
    second input is int8 [4] or, with ``float_input``, a float32 [4] that QUANTIZE turns into int8."""
    b = ModelBuilder()
    a = b.input("a", [1, 3, 4], "INT8", **Q)
    if float_input:
        f = b.input("f", [4], "FLOAT32")
        c = b.tensor("c", [4], "INT8", **Q)
        b.op("QUANTIZE", [f], [c])
    else:
        c = b.input("c", [4], "INT8", **Q)
    s = b.tensor("s", [1, 3, 4], "INT8", scale=0.1, zero_point=-2)
    b.op("ADD", [a, c], [s])
    rng = np.random.default_rng(20)
    w = b.constant("w", rng.integers(-127, 128, (5, 4)).astype(np.int8), scale=0.02, zero_point=0)
    bias = b.constant("bias", rng.integers(-500, 500, 5).astype(np.int32), scale=0.1 * 0.02, zero_point=0)
    y = b.tensor("y", [3, 5], "INT8", scale=0.3, zero_point=1)
    b.op("FULLY_CONNECTED", [s, w, bias], [y])
    r = b.tensor("r", [15], "INT8", scale=0.3, zero_point=1)
    b.op("RESHAPE", [y, b.constant("shape", np.array([15], np.int32))], [r], new_shape=[15])
    b.output(r, y)
    return b.build()


@pytest.fixture(scope="module")
def it():
    return Interpreter.from_bytes(_two_input_model())


def _inputs(it):
    return [it.tensors[i] for i in it.subgraph.inputs]


A = np.arange(12, dtype=np.int8).reshape(1, 3, 4)


class _Sub(np.ndarray):
    """An ndarray subclass: not the precomputed check's plain ndarray, so gather_inputs decides."""

C = np.array([1, -2, 3, -4], np.int8)


def _outcome(call):
    try:
        return "ok", [a.tobytes() + str((a.shape, a.dtype)).encode() for a in call()]
    except InputError as e:
        return "InputError", str(e)


@pytest.mark.parametrize("inputs", [
    [A, C], (A, C), {"a": A, "c": C}, {"c": C, "a": A},
    [A], [A, C, C], [], A, None, 42, "ac", {"a": A}, {"a": A, "c": C, "d": C}, {"a": A, "x": C},
    [A.astype(np.int16), C], [A, C.astype(np.uint8)], [A, C.astype(np.float32)], [A.astype(object), C],
    [A[0], C], [A, C[None]], [A[..., :2], C], [A.reshape(3, 4), C],
    [A.tolist(), C.tolist()], [A, [1, 2, 3, 4]], [np.asarray(A, ">i1"), C],
    [np.ma.masked_array(A, mask=A > 5), C], [np.ma.masked_array(A, mask=False), C],
    [A.view(_Sub), C], [None, C], [A, None], [[[1, 2], [3]], C],
    [np.zeros((1, 3, 8), np.int8)[..., ::2], C],  # a non-contiguous view of the right shape
], ids=lambda v: type(v).__name__)
def test_the_precomputed_input_check_accepts_and_refuses_what_gather_inputs_does(it, inputs):
    """Same arrays for good inputs, the same InputError message for every bad one: count, names,
    dtype, shape, masked values, lists, None."""
    fast = _outcome(lambda: SampleInputs(_inputs(it))(inputs))
    general = _outcome(lambda: gather_inputs(_inputs(it), inputs, False)[0])
    assert fast == general


def test_good_inputs_are_views_of_the_callers_arrays_with_a_sample_axis(it):
    arrays = SampleInputs(_inputs(it))([A, C])
    assert [a.shape for a in arrays] == [(1, 1, 3, 4), (1, 4)]
    assert np.shares_memory(arrays[0], A) and np.shares_memory(arrays[1], C)


def test_a_float_input_model_checks_every_call_for_nan_and_infinity():
    it = Interpreter.from_bytes(_two_input_model(float_input=True))
    assert SampleInputs(_inputs(it)).specs is None  # such a model always takes gather_inputs
    f = np.array([0.1, -0.2, 0.3, 1.5], np.float32)
    assert it.run([A, f])[0].shape == (15,)
    for bad in (np.nan, np.inf):
        with pytest.raises(InputError, match="NaN or infinity"):
            it.run([A, np.array([0, bad, 0, 0], np.float32)])


def _general(it, inputs):
    """The general path's outputs: run(keep=True) takes it."""
    return it.run(inputs, keep=True)


def test_the_plain_loop_gives_the_general_loops_bytes_and_tensors(it):
    rng = np.random.default_rng(1)
    assert isinstance(it._plain_plan, list) or it._plain_plan is None
    for _ in range(50):
        xs = random_inputs(it, rng)
        want = _general(it, xs)
        want_io = {ti: it.tensor(ti).copy() for ti in it.subgraph.inputs + it.subgraph.outputs}
        got = it.run(xs)
        assert isinstance(it._plain_plan, list)  # the plain loop ran
        for g, w in zip(got, want):
            assert g.tobytes() == w.tobytes() and g.shape == w.shape and g.dtype == w.dtype
        for ti, w in want_io.items():
            assert it.tensor(ti).tobytes() == w.tobytes() and it.tensor(ti).shape == w.shape
        with pytest.raises(InputError, match="was not kept"):
            it.tensor("s")  # an intermediate: the plain run kept the inputs and outputs only
        with pytest.raises(KeyError, match="keep=True"):
            it.state(before=True)


def test_tensor_values_after_a_plain_run_are_copies_no_later_call_or_caller_changes(it):
    a, c = A.copy(), C.copy()
    outs = it.run([a, c])
    r, y = it.subgraph.outputs
    kept = {ti: it.tensor(ti).copy() for ti in it.subgraph.inputs + it.subgraph.outputs}
    held = {ti: it.tensor(ti) for ti in kept}
    # The caller changes its inputs and the outputs it got back; another call runs other inputs.
    a[...] = 100
    c[...] = -100
    for o in outs:
        o[...] = 0
    assert not np.shares_memory(outs[0], outs[1])
    assert it.run([np.zeros_like(A), np.zeros_like(C)])[0].tobytes() != kept[r].tobytes()
    for ti, value in kept.items():
        assert held[ti].tobytes() == value.tobytes()  # what tensor() gave is not mutated later
    it.run([A, C])
    assert it.tensor(r).tobytes() == kept[r].tobytes() and it.tensor(y).tobytes() == kept[y].tobytes()


def test_a_passed_through_input_and_a_constant_output_are_copies():
    b = ModelBuilder()
    x = b.input("x", [2, 2], "INT8", **Q)
    r = b.tensor("r", [4], "INT8", **Q)
    b.op("RESHAPE", [x, b.constant("shape", np.array([4], np.int32))], [r], new_shape=[4])
    k = b.constant("k", np.array([7, 8], np.int8), **Q)
    b.output(r, x, k)
    it = Interpreter.from_bytes(b.build())
    xs = np.array([[1, 2], [3, 4]], np.int8)
    outs = it.run([xs])
    assert isinstance(it._plain_plan, list)
    assert [o.tolist() for o in outs] == [[1, 2, 3, 4], [[1, 2], [3, 4]], [7, 8]]
    assert not any(np.shares_memory(p, q) for i, p in enumerate(outs) for q in outs[i + 1:] + [xs])
    for o in outs:
        o[...] = 0
    assert it.tensor(r).tolist() == [1, 2, 3, 4] and it.tensor(x).tolist() == [[1, 2], [3, 4]]
    assert it.tensor(k).tolist() == [7, 8]


def test_a_kernel_output_of_the_wrong_shape_or_dtype_is_the_same_model_error(it):
    """The plain loop checks every kernel output as the general loop does, with its message."""
    kernel = it.kernels[1]
    for wrong in (np.zeros((1, 3, 4), np.int8), np.zeros((1, 3, 5), np.int16)):
        kernel.eval = lambda ins, wrong=wrong: [wrong]
        try:
            messages = []
            for keep in (False, True):
                with pytest.raises(ModelError) as info:
                    it.run([A, C], keep=keep)
                messages.append(str(info.value))
        finally:
            del kernel.eval
        assert messages[0] == messages[1] and "kernel produced" in messages[0]
    assert it.run([A, C])[0].shape == (15,)


def test_the_plain_loop_looks_up_each_kernels_eval_at_every_call(it):
    """A wrapper set on a kernel after the first run (what ``microref run --profile`` does) is
    called."""
    it.run([A, C])
    kernel, calls = it.kernels[0], []
    inner = kernel.eval
    kernel.eval = lambda ins: calls.append(1) or inner(ins)
    try:
        it.run([A, C])
    finally:
        del kernel.eval
    assert calls == [1]


def _variable_model() -> bytes:
    """out = x + v with v a variable tensor that ASSIGN-like SVDF would update: here a plain ADD
    reading a variable tensor, whose value TFLM keeps across invokes."""
    b = ModelBuilder()
    x = b.input("x", [4], "INT8", **Q)
    v = b.tensor("v", [4], "INT8", variable=True, **Q)
    y = b.tensor("y", [4], "INT8", **Q)
    b.op("ADD", [x, v], [y])
    b.output(y)
    return b.build()


def test_models_with_state_or_subgraph_calls_keep_the_general_loop():
    it = Interpreter.from_bytes(_variable_model())
    x = np.array([1, 2, 3, 4], np.int8)
    assert it.run([x])[0].tolist() == it.run([x], keep=True)[0].tolist()
    assert it._plain_plan is False
    # IF calls a subgraph: the general loop.
    b = ModelBuilder()
    cond = b.input("cond", [1], "BOOL")
    x = b.input("x", [2], "FLOAT32")
    y = b.tensor("y", [2], "FLOAT32")
    branches = []
    for name, op in (("then", "ABS"), ("else", "NEG")):
        g = b.subgraph(name)
        gx = g.input("x", [2], "FLOAT32")
        gy = g.tensor("y", [2], "FLOAT32")
        g.op(op, [gx], [gy])
        g.output(gy)
        branches.append(g.index)
    b.op("IF", [cond, x], [y], then_subgraph_index=branches[0], else_subgraph_index=branches[1])
    b.output(y)
    it = Interpreter.from_bytes(b.build())
    v = np.array([-3, 4], np.float32)
    assert it.run([np.array([True]), v])[0].tolist() == [3, 4]
    assert it.run([np.array([False]), v])[0].tolist() == [3, -4]
    assert it._plain_plan is False


def test_zero_dimensional_inputs_and_outputs_are_arrays_as_in_the_general_path():
    b = ModelBuilder()
    x = b.input("x", [], "INT8", **Q)
    y = b.tensor("y", [], "INT8", **Q)
    b.op("ABS", [x], [y])
    b.output(y, x)
    it = Interpreter.from_bytes(b.build())
    x0 = np.array(-5, np.int8)
    plain = it.run([x0])
    assert isinstance(it._plain_plan, list)
    general = it.run([x0], keep=True)
    for p, g in zip(plain, general):
        assert type(p) is type(g) is np.ndarray and p.shape == g.shape == () and p.tobytes() == g.tobytes()
    it.run([x0])
    assert type(it.tensor(y)) is np.ndarray and it.tensor(y).shape == () and it.tensor(y) == general[0]
    assert type(it.tensor(x)) is np.ndarray and it.tensor(x).shape == () and it.tensor(x) == -5
