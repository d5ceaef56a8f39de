"""The compiled elementwise kernels (ops/compiled/elementwise.py) equal the numpy paths of
ops/elementwise.py and the plain reference kernels (``kernels="reference"``) byte for byte.

Each model runs three ways on the same inputs: compiled forced (``compiled_elements`` and
``compiled_elements_int16`` -1, the int8 table built at once, so every call that ``layout`` can
express takes the compiled kernel; a spy checks that it did), compiled kernels off (numpy: the
table lookup for int8, the formula for int16), and the reference interpreter (ops.reference's AddFunc / SubElementwise /
MulElementwise, no table). Cases: int8 ADD/SUB/MUL/SQUARED_DIFFERENCE and int16 ADD/SUB/MUL,
scales from 1e-6 to 1e2 (extreme ratios between inputs and output), zero points at the type
edges, every fused activation, broadcast shapes (a constant operand broadcast along the sample
axis too; ranks up to 6, beyond what the 4-axis kernels express, which then fall back), and
empty tensors. Eval always returns a fresh array (the runtime never passes an output buffer),
so an output cannot alias an input; the tests check that the inputs are left untouched and that
one tensor used as both operands works.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from compiled_support import counting_calls
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from ops import compiled, elementwise
from ops import fixedpoint as fp
from ops.compiled import elementwise as compiled_elementwise
from ops.compiled import use_compiled

pytest.importorskip("numba")
if not compiled.available():
    pytest.skip("compiled kernels are turned off (MICROREF_COMPILED)", allow_module_level=True)

KERNELS = ("gather", "add_int16", "mul_int16", "add_int8", "add_int8_flat")
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
SAMPLES = 3
# (input1, input2, output) shapes: equal, per-channel and per-pixel broadcasts, broadcasts on both
# sides, scalars, rank 5 and 6 with alternating broadcast axes (more than 4 loop axes: numpy path).
SHAPES = [
    ([2, 5, 5, 8], [2, 5, 5, 8], [2, 5, 5, 8]),
    ([1, 6, 6, 16], [1, 1, 1, 16], [1, 6, 6, 16]),
    ([1, 1, 1, 16], [1, 6, 6, 16], [1, 6, 6, 16]),
    ([1, 6, 6, 16], [1, 6, 6, 1], [1, 6, 6, 16]),
    ([3, 1, 7], [1, 5, 1], [3, 5, 7]),
    ([40], [1], [40]),
    ([], [9, 4], [9, 4]),
    ([2, 1, 3, 1, 5], [1, 4, 1, 6, 1], [2, 4, 3, 6, 5]),
    ([2, 1, 2, 1, 2, 3], [1, 2, 1, 2, 1, 3], [2, 2, 2, 2, 2, 3]),
    ([4, 0, 3], [4, 1, 3], [4, 0, 3]),
]
TYPE_EDGES = {"INT8": (-128, 127), "INT16": (-32768, 32767)}


def spying():
    """Counts the calls of each compiled kernel (they still run)."""
    return counting_calls(compiled_elementwise, *KERNELS)


def build(op, kind, shapes, rng, scales, zero_points, activation, constant2):
    """A one-op model and SAMPLES random inputs (with the type's extremes), or None when prepare
    refuses the parameters (as TFLM's Prepare does)."""
    s1, s2, so = shapes
    lo, hi = TYPE_EDGES[kind]
    b = ModelBuilder()
    x1 = b.input("x1", s1, kind, scale=scales[0], zero_point=zero_points[0])

    def values(shape, n):
        v = rng.integers(lo, hi, (n, *shape), endpoint=True).astype(kind.lower())
        v.reshape(-1)[:4] = [lo, hi, lo + 1, 0][: v.size]
        return v

    inputs = [values(s1, SAMPLES)]
    if constant2:
        x2 = b.constant("x2", values(s2, 1)[0], kind, scale=scales[1], zero_point=zero_points[1])
    else:
        x2 = b.input("x2", s2, kind, scale=scales[1], zero_point=zero_points[1])
        inputs.append(values(s2, SAMPLES))
    y = b.tensor("y", so, kind, scale=scales[2], zero_point=zero_points[2])
    options = {} if op == "SQUARED_DIFFERENCE" else {"fused_activation_function": activation}
    b.op(op, [x1, x2], [y], **options)
    b.output(y)
    data = b.build()
    try:
        Interpreter.from_bytes(data)
    except ModelError:
        return None
    return data, inputs


def three_ways(data, inputs, formula=False):
    """run_batch with the compiled kernels forced, with them off, and through the reference
    kernels; plus the compiled kernels' call counts and one run() per sample (compiled). int8
    ADD / SUB / MUL take the table gather, or with ``formula`` their vector formula (``add_int8``)."""
    copies = [x.copy() for x in inputs]
    with pytest.MonkeyPatch.context() as mp, spying() as calls, use_compiled(True):
        mp.setattr(elementwise.BinaryKernel, "INT8_FORMULA", formula)
        mp.setattr(elementwise.BinaryKernel, "compiled_elements", -1)
        mp.setattr(elementwise.BinaryKernel, "compiled_elements_int16", -1)
        mp.setattr(elementwise, "TABLE_BUILD_COST", 0)
        it = Interpreter.from_bytes(data)
        got = it.run_batch(inputs)[0]
        single = [it.run([x[i] if x.shape[0] > 1 else x[0] for x in inputs])[0] for i in range(SAMPLES)]
    assert all(x.tobytes() == c.tobytes() for x, c in zip(inputs, copies)), "an input was written"
    with use_compiled(False):
        numpy_path = Interpreter.from_bytes(data).run_batch(inputs)[0]
    reference = Interpreter.from_bytes(data, kernels="reference").run_batch(inputs)[0]
    return got, numpy_path, reference, single, calls


def assert_same(got, want, what):
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert got.tobytes() == want.tobytes(), f"{what}: {np.count_nonzero(got != want)} values differ"


def expressible(data, inputs) -> bool:
    """Whether the compiled kernels' 4 loop axes can walk the kernel's eval operands (``layout``)."""
    kernel = Interpreter.from_bytes(data).kernels[0]
    x2 = inputs[1] if len(inputs) > 1 else np.zeros((1, *kernel.in2.shape), inputs[0].dtype)
    x1, x2 = kernel.shapes.operands(inputs[0], x2)
    return compiled_elementwise.layout(x1, x2) is not None


scale_values = st.one_of(st.floats(1e-6, 1e2), st.sampled_from([1e-6, 1.0, 100.0, 2.0 ** -20, 0.5]))
int8_zero_points = st.one_of(st.integers(-128, 127), st.sampled_from([-128, 127, 0]))


def check(op, kind, shapes, seed, scales, zero_points, activation, constant2):
    rng = np.random.default_rng(seed)
    built = build(op, kind, shapes, rng, scales, zero_points, activation, constant2)
    if built is None:
        return False
    data, inputs = built
    got, numpy_path, reference, single, calls = three_ways(data, inputs)
    what = f"{op} {kind} {shapes} scales {scales} zero points {zero_points} {activation}"
    assert_same(got, numpy_path, what + " (compiled vs numpy)")
    assert_same(got, reference, what + " (compiled vs reference)")
    for i, y in enumerate(single):
        assert_same(y, got[i], what + f" (run() of sample {i})")
    kernel = "gather" if kind == "INT8" else ("mul_int16" if op == "MUL" else "add_int16")
    if expressible(data, inputs):
        assert calls[kernel] > 0, "the compiled kernel did not run"
    else:
        assert sum(calls.values()) == 0
    return True


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE"]), shapes=st.sampled_from(SHAPES),
       seed=st.integers(0, 2 ** 32 - 1), scales=st.tuples(scale_values, scale_values, scale_values),
       zero_points=st.tuples(int8_zero_points, int8_zero_points, int8_zero_points),
       activation=st.sampled_from(ACTIVATIONS), constant2=st.booleans())
def test_int8_compiled_gather_equals_numpy_and_reference(op, shapes, seed, scales, zero_points, activation,
                                                         constant2):
    """int8: the compiled gather, the numpy table lookup and the reference formula agree."""
    assume(check(op, "INT8", shapes, seed, scales, zero_points, activation, constant2))


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["ADD", "SUB", "MUL"]), shapes=st.sampled_from(SHAPES),
       seed=st.integers(0, 2 ** 32 - 1), scales=st.tuples(scale_values, scale_values, scale_values),
       zero_points=st.sampled_from([(0, 0, 0)] * 6 + [(-32768, 32767, 0), (32767, -32768, -32768), (5, -7, 3)]),
       activation=st.sampled_from(ACTIVATIONS), constant2=st.booleans())
def test_int16_compiled_formula_equals_numpy_and_reference(op, shapes, seed, scales, zero_points, activation,
                                                           constant2):
    """int16: the compiled formula, the numpy formula and the reference agree (non-zero zero
    points where prepare accepts them: the offsets' int32 wrap)."""
    assume(check(op, "INT16", shapes, seed, scales, zero_points, activation, constant2))


@pytest.mark.parametrize("op, kind", [("ADD", "INT8"), ("SUB", "INT8"), ("MUL", "INT8"), ("ADD", "INT16"),
                                      ("SUB", "INT16"), ("MUL", "INT16")])
def test_every_input_pair_through_the_compiled_kernel(op, kind):
    """All 256x256 int8 pairs (and a 512x512 grid of int16 pairs with the extremes), as two
    broadcast operands (a column against a row): compiled = numpy = reference, and the compiled
    kernel ran."""
    rng = np.random.default_rng(zlib_seed(op + kind))
    lo, hi = TYPE_EDGES[kind]
    if kind == "INT8":
        column = np.arange(lo, hi + 1)
    else:
        column = np.unique(np.concatenate([rng.integers(lo, hi, 500, endpoint=True), [lo, lo + 1, -1, 0, 1, hi]]))
    n = column.size
    checked = 0
    for trial in range(8):
        scales = tuple(float(10 ** rng.uniform(-5, 1)) for _ in range(3))
        if kind == "INT8":  # the zero points at the int8 edges, both ways round
            zps = (lo, hi, int(rng.integers(lo, hi)))[::1 if trial % 2 else -1]
        else:  # int16 models have zero points 0; odd trials try others (prepare accepts them)
            zps = (0, 0, 0) if trial % 2 == 0 else tuple(int(z) for z in rng.integers(-300, 300, 3))
        b = ModelBuilder()
        x1 = b.input("x1", [n, 1], kind, scale=scales[0], zero_point=zps[0])
        x2 = b.input("x2", [1, n], kind, scale=scales[1], zero_point=zps[1])
        y = b.tensor("y", [n, n], kind, scale=scales[2], zero_point=zps[2])
        b.op(op, [x1, x2], [y], fused_activation_function=ACTIVATIONS[trial % 4])
        b.output(y)
        data = b.build()
        try:
            Interpreter.from_bytes(data)
        except ModelError:
            continue
        inputs = [column.astype(kind.lower()).reshape(1, n, 1), column.astype(kind.lower()).reshape(1, 1, n)]
        got, numpy_path, reference, _, calls = three_ways(data, inputs)
        assert_same(got, numpy_path, f"{op} {kind} trial {trial}")
        assert_same(got, reference, f"{op} {kind} trial {trial}")
        assert sum(calls.values()) > 0
        checked += 1
    assert checked >= 3


def zlib_seed(text: str) -> int:
    import zlib
    return zlib.crc32(text.encode())


def test_one_tensor_as_both_operands():
    """x + x, x·x (one tensor feeding both inputs) take the compiled kernel and agree."""
    for kind in ("INT8", "INT16"):
        for op in ("ADD", "MUL", "SUB"):
            b = ModelBuilder()
            x = b.input("x", [4, 64], kind, scale=0.05, zero_point=0)
            y = b.tensor("y", [4, 64], kind, scale=0.1, zero_point=0)
            b.op(op, [x, x], [y], fused_activation_function="NONE")
            b.output(y)
            inputs = [np.random.default_rng(7).integers(-100, 100, (5, 4, 64)).astype(kind.lower())]
            got, numpy_path, reference, _, calls = three_ways(b.build(), inputs)
            assert_same(got, numpy_path, f"{op} {kind}")
            assert_same(got, reference, f"{op} {kind}")
            assert sum(calls.values()) > 0


def test_small_calls_and_variants_keep_the_numpy_paths(monkeypatch):
    """Below ``compiled_elements_int16``, with compiled kernels off, or for int16 under the single
    rounding variant, no compiled kernel runs (and the results still agree)."""
    from ops.registry import Numerics

    b = ModelBuilder()
    x1 = b.input("x1", [8, 8], "INT16", scale=0.01, zero_point=0)
    x2 = b.input("x2", [8, 8], "INT16", scale=0.02, zero_point=0)
    y = b.tensor("y", [8, 8], "INT16", scale=0.03, zero_point=0)
    b.op("ADD", [x1, x2], [y], fused_activation_function="NONE")
    b.output(y)
    data = b.build()
    xs = [np.random.default_rng(1).integers(-30000, 30000, (2, 8, 8)).astype(np.int16) for _ in range(2)]
    with spying() as calls, use_compiled(True):
        want = Interpreter.from_bytes(data).run_batch(xs)[0]  # 128 values: below the threshold
        assert sum(calls.values()) == 0
        monkeypatch.setattr(elementwise.BinaryKernel, "compiled_elements_int16", -1)
        single = Interpreter.from_bytes(data, numerics=Numerics(rounding="single"))
        assert single.kernels[0]._int16_plan is None
        single.run_batch(xs)
        assert sum(calls.values()) == 0
        assert_same(Interpreter.from_bytes(data).run_batch(xs)[0], want, "forced")
        assert calls["add_int16"] == 1
    with spying() as calls, use_compiled(False):
        assert_same(Interpreter.from_bytes(data).run_batch(xs)[0], want, "off")
        assert sum(calls.values()) == 0


def test_int16_plan_refuses_what_the_kernels_do_not_bound():
    """Multipliers outside [0, 2^31) and right shifts beyond 31 keep the numpy path."""
    assert compiled_elementwise.int16_plan(15, ((1 << 30, -3),), 0, 0) == (1 << 30, 0, 3)
    assert compiled_elementwise.int16_plan(0, ((1 << 30, 33),), 0) == (1 << 30, 1, 0)  # left count masked
    assert compiled_elementwise.int16_plan(15, ((1 << 31, -3),), 0) is None
    assert compiled_elementwise.int16_plan(15, ((-1, -3),), 0) is None
    assert compiled_elementwise.int16_plan(15, ((1 << 30, -32),), 0) is None
    assert compiled_elementwise.int16_plan(15, ((1 << 30, -31),), 1 << 63) is None


def test_int16_kernel_wraps_like_numpy_at_the_int32_edges():
    """The compiled int16 ADD and MUL on parameters that drive every intermediate to its int32
    wrap (offsets near ±2^31, left shifts up to 31, right shift 31, multipliers 0 and 2^31 - 1)
    equal ops.fixedpoint's numpy formula."""
    rng = np.random.default_rng(5)
    x1 = np.concatenate([np.array([-32768, 32767, 0, -1, 1], np.int16),
                         rng.integers(-32768, 32768, 3000).astype(np.int16)])
    x2 = x1[::-1].copy()
    ones = np.array([0, 0, 0, 1], np.int64)
    dims = np.array([1, 1, 1, x1.size], np.int64)

    def mbqm(v, m, shift):
        return fp.multiply_by_quantized_multiplier(fp.wrap_int32(v), m, shift)

    for trial in range(200):
        o1, o2, oo = (int(v) for v in rng.choice([0, 1, -1, 32768, -32768, (1 << 31) - 1, -(1 << 31), 1 << 40], 3))
        m1, m2, mo = (int(v) for v in rng.choice([0, 1, (1 << 31) - 1, 1 << 30, 1518500250], 3))
        sh = [int(v) for v in rng.integers(-31, 0, 2, endpoint=True)]
        sho = int(rng.integers(-31, 40))
        lo, hi = sorted(int(v) for v in rng.integers(-40000, 40000, 2))
        left = int(rng.choice([0, 15, 20, 31]))
        sign = int(rng.choice([1, -1]))
        a = fp.wrap_int32((x1.astype(np.int64) + o1) << left)
        b = fp.wrap_int32((x2.astype(np.int64) + o2) << left)
        raw = fp.wrap_int32(mbqm(a, m1, sh[0]) + sign * mbqm(b, m2, sh[1]))
        want = np.clip(fp.wrap_int32(mbqm(raw, mo, sho) + oo), lo, hi).astype(np.int16)
        plan = compiled_elementwise.int16_plan(left, ((m1, sh[0]), (m2, sh[1]), (mo, sho)), o1, o2, oo, lo, hi)
        assert plan is not None
        got = np.empty_like(x1)
        compiled_elementwise.add_int16(x1, ones, x2, ones, dims, sign, left, o1, *plan[:3], o2, *plan[3:6], oo,
                                       *plan[6:], lo, hi, got)
        assert got.tobytes() == want.tobytes(), trial
        product = fp.wrap_int32((x1.astype(np.int64) + o1) * (x2.astype(np.int64) + o2))
        want = np.clip(fp.wrap_int32(mbqm(product, mo, sho) + oo), lo, hi).astype(np.int16)
        compiled_elementwise.mul_int16(x1, ones, x2, ones, dims, o1, o2, oo, *plan[6:], lo, hi, got)
        assert got.tobytes() == want.tobytes(), trial


def test_layout_lines_operands_up_as_numpy_broadcasting():
    """``layout``'s loops visit the pairs numpy broadcasting makes, in C order, for random
    broadcast shapes up to rank 6 (None only beyond 4 loop axes)."""
    rng = np.random.default_rng(11)
    expressed = 0
    for _ in range(400):
        rank = int(rng.integers(0, 7))
        full = [int(d) for d in rng.integers(1, 5, rank)]
        s1 = [d if rng.random() < 0.6 else 1 for d in full][int(rng.integers(0, rank + 1)):]
        s2 = [d if rng.random() < 0.6 else 1 for d in full][int(rng.integers(0, rank + 1)):]
        a = rng.integers(0, 1000, s1)
        b = rng.integers(0, 1000, s2)
        lay = compiled_elementwise.layout(a, b)
        if lay is None:
            continue
        shape, dims, t1, t2 = lay
        assert shape == np.broadcast_shapes(a.shape, b.shape)
        index = np.indices(dims).reshape(len(dims), -1)
        i1 = (np.array(t1)[:, None] * index).sum(0)
        i2 = (np.array(t2)[:, None] * index).sum(0)
        wa, wb = np.broadcast_arrays(a, b)
        assert np.array_equal(a.reshape(-1)[i1] if a.size else i1, wa.reshape(-1))
        assert np.array_equal(b.reshape(-1)[i2] if b.size else i2, wb.reshape(-1))
        expressed += 1
    assert expressed > 300


def test_numba_is_not_imported_by_loading_or_small_runs():
    """from_bytes, prepare and a small int8/int16 ADD never import numba."""
    code = (
        "import sys, numpy as np\n"
        "from interp import Interpreter\n"
        "from interp.builder import ModelBuilder\n"
        "for kind in ('INT8', 'INT16'):\n"
        "    b = ModelBuilder()\n"
        "    x1 = b.input('x1', [4, 4, 8], kind, scale=0.1, zero_point=0)\n"
        "    x2 = b.input('x2', [4, 4, 8], kind, scale=0.1, zero_point=0)\n"
        "    y = b.tensor('y', [4, 4, 8], kind, scale=0.2, zero_point=0)\n"
        "    b.op('ADD', [x1, x2], [y])\n"
        "    b.output(y)\n"
        "    it = Interpreter.from_bytes(b.build())\n"
        "    it.run([np.ones((4, 4, 8), kind.lower())] * 2)\n"
        "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


# --- int8 ADD / SUB by the vector formula (add_int8) ----------------------------------------------

# (input1, input2, output): equal shapes with rows of 16..70 values (tails that are not a multiple of
# 16), broadcasts that keep both innermost rows contiguous (the formula), and ones that do not (a
# broadcast innermost axis or rows shorter than 16: the gather).
FORMULA_SHAPES = [
    ([2, 5, 5, 16], [2, 5, 5, 16], [2, 5, 5, 16]),
    ([3, 7, 24], [3, 7, 24], [3, 7, 24]),
    ([1, 37], [1, 37], [1, 37]),
    ([4, 3, 70], [4, 1, 70], [4, 3, 70]),
    ([1, 1, 33], [5, 2, 33], [5, 2, 33]),
    ([1, 6, 6, 16], [1, 1, 1, 16], [1, 6, 6, 16]),
    ([6, 6, 16], [6, 6, 1], [6, 6, 16]),
    ([3, 5], [3, 5], [3, 5]),
]


def formula_applies(data, inputs) -> bool:
    kernel = Interpreter.from_bytes(data).kernels[0]
    x2 = inputs[1] if len(inputs) > 1 else np.zeros((1, *kernel.in2.shape), inputs[0].dtype)
    x1, x2 = kernel.shapes.operands(inputs[0], x2)
    lay = compiled_elementwise.layout(x1, x2)
    if lay is None or lay[2][3] != 1 or lay[3][3] != 1 or lay[1][3] < compiled_elementwise.ADD_INT8_LANES:
        return False
    return kernel.int8_formula_plan() is not None


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["ADD", "SUB", "MUL"]), shapes=st.sampled_from(FORMULA_SHAPES),
       seed=st.integers(0, 2 ** 32 - 1), scales=st.tuples(scale_values, scale_values, scale_values),
       zero_points=st.tuples(int8_zero_points, int8_zero_points, int8_zero_points),
       activation=st.sampled_from(ACTIVATIONS), constant2=st.booleans())
def test_int8_add_formula_equals_numpy_and_reference(op, shapes, seed, scales, zero_points, activation, constant2):
    """int8 ADD / SUB / MUL with the vector formula forced: equal to the table lookup and the reference
    formula; it ran wherever its plan applies, and its check on all 65,536 pairs never refused a
    plan (so the kernel equals the table for every drawn layer)."""
    rng = np.random.default_rng(seed)
    built = build(op, "INT8", shapes, rng, scales, zero_points, activation, constant2)
    assume(built is not None)
    data, inputs = built
    got, numpy_path, reference, single, calls = three_ways(data, inputs, formula=True)
    what = f"{op} {shapes} scales {scales} zero points {zero_points} {activation}"
    assert_same(got, numpy_path, what + " (formula vs numpy)")
    assert_same(got, reference, what + " (formula vs reference)")
    for i, y in enumerate(single):
        assert_same(y, got[i], what + f" (run() of sample {i})")
    if formula_applies(data, inputs):
        assert calls["add_int8"] + calls["add_int8_flat"] > 1, "the formula did not run"  # (one: the plan's check)
    else:
        assert calls["add_int8"] == 0 and calls["add_int8_flat"] <= 1 and calls["gather"] > 0


def all_pairs():
    pairs = np.arange(1 << 16)
    return (pairs >> 8).astype(np.uint8).view(np.int8), (pairs & 0xFF).astype(np.uint8).view(np.int8)


def formula_reference(sign, i1, i2, output_offset, output_multiplier, output_shift, lo, hi, x1, x2):
    def scaled(x, i):
        return fp.multiply_by_quantized_multiplier(fp.wrap_int32((x.astype(np.int64) + i[0]) << 20), i[1], i[2])

    raw = fp.wrap_int32(scaled(x1, i1) + sign * scaled(x2, i2))
    out = fp.wrap_int32(fp.multiply_by_quantized_multiplier(raw, output_multiplier, output_shift) + output_offset)
    return np.clip(out, lo, hi).astype(np.int8)


def test_add_int8_kernel_on_every_pair_and_row_length():
    """The kernel itself on all 65,536 pairs for random layers (both signs, the linear input on
    either side, zero points at the int8 edges, output shifts 0..31, activation bounds below and
    above the output offset, and the int8 range: every one of the twelve loop variants), in rows of
    16..47 values (a last step that overlaps the one before it) at odd starting offsets."""
    rng = np.random.default_rng(2024)
    x1, x2 = all_pairs()
    variants, trials = set(), 0
    while trials < 120:
        s = [float(10 ** rng.uniform(-4, 1)) for _ in range(3)]
        if rng.random() < 0.3:
            s[1] = s[0]
        z = [int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))])) for _ in range(3)]
        twice = 2 * max(s[0], s[1])
        m1, sh1 = fp.quantize_multiplier(s[0] / twice)
        m2, sh2 = fp.quantize_multiplier(s[1] / twice)
        mo, sho = fp.quantize_multiplier(twice / ((1 << 20) * s[2]))
        if sho > 0 or sh1 > 0 or sh2 > 0:
            continue
        lo, hi = sorted(int(v) for v in rng.choice([-128, 127, z[2], int(rng.integers(-128, 128))], 2))
        if rng.random() < 0.4:
            lo, hi = -128, 127  # the constant clamp (a saturating narrowing)
        sign = int(rng.choice([1, -1]))
        plan = compiled_elementwise.add_int8_plan(sign, 20, (-z[0], m1, sh1), (-z[1], m2, sh2), z[2], mo, sho, lo, hi)
        if plan is None:
            continue
        trials += 1
        variants.add((plan.mode, plan.negative, (lo, hi) == (-128, 127)))
        want = formula_reference(sign, (-z[0], m1, sh1), (-z[1], m2, sh2), z[2], mo, sho, lo, hi, x1, x2)
        row = int(rng.integers(16, 48))
        start = int(rng.integers(0, 5))
        rows = (x1.size - start) // row
        n = rows * row
        got = np.empty(n, np.int8)
        compiled_elementwise.add_int8(plan, x1[start:start + n].copy(), np.array([0, 0, row, 1], np.int64),
                                      x2[start:start + n].copy(), np.array([0, 0, row, 1], np.int64),
                                      np.array([1, 1, rows, row], np.int64), got)
        assert got.tobytes() == want[start:start + n].tobytes(), (sign, z, s, lo, hi)
    assert variants == {(m, neg, sat) for m in range(3) for neg in (False, True) for sat in (False, True)}


def test_mul_int8_kernel_on_every_pair():
    """int8 MUL through the same kernel (mode 3) on all 65,536 pairs: random scales whose output
    multipliers shift right (0..31) or left (up to 2^20 x), zero points at the int8 edges, bounds
    above and below the output offset and the int8 range: equal to MulElementwise's formula."""
    rng = np.random.default_rng(77)
    x1, x2 = all_pairs()
    variants, trials = set(), 0
    while trials < 80:
        real = float(10 ** rng.uniform(-9, 6))
        m, shift = fp.quantize_multiplier(real)
        z = [int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))])) for _ in range(3)]
        lo, hi = sorted(int(v) for v in rng.choice([-128, 127, z[2], int(rng.integers(-128, 128))], 2))
        if rng.random() < 0.4:
            lo, hi = -128, 127
        plan = compiled_elementwise.mul_int8_plan(-z[0], -z[1], z[2], m, shift, lo, hi)
        if plan is None:
            continue
        trials += 1
        variants.add((plan.negative, (lo, hi) == (-128, 127), shift > 0))
        product = fp.wrap_int32((x1.astype(np.int64) - z[0]) * (x2.astype(np.int64) - z[1]))
        want = np.clip(fp.wrap_int32(fp.multiply_by_quantized_multiplier(product, m, shift) + z[2]), lo, hi)
        got = np.empty(x1.size, np.int8)
        compiled_elementwise.add_int8_flat(plan, x1, x2, got)
        assert got.tobytes() == want.astype(np.int8).tobytes(), (real, z, lo, hi)
    assert {(neg, sat) for neg, sat, _ in variants} == {(n, t) for n in (False, True) for t in (False, True)}
    assert any(left for _, _, left in variants)


def test_add_int8_plan_refuses_what_it_cannot_compute():
    """The plan applies to TFLM's ADD parameters and refuses the others: no linear input, a left
    shift other than 20, output multipliers or shifts outside their ranges, bounds outside int8."""
    linear, general = (0, 1 << 30, 0), (5, 1518500250, -1)
    assert compiled_elementwise.add_int8_plan(1, 20, linear, general, 0, 1 << 30, -18, -128, 127) is not None
    assert compiled_elementwise.add_int8_plan(1, 20, general, general, 0, 1 << 30, -18, -128, 127) is None
    assert compiled_elementwise.add_int8_plan(1, 15, linear, general, 0, 1 << 30, -18, -128, 127) is None
    assert compiled_elementwise.add_int8_plan(1, 20, linear, general, 0, 1 << 31, -18, -128, 127) is None
    assert compiled_elementwise.add_int8_plan(1, 20, linear, general, 0, 1 << 30, 1, -128, 127) is None
    assert compiled_elementwise.add_int8_plan(1, 20, linear, general, 0, 1 << 30, -18, -129, 127) is None
    plan = compiled_elementwise.add_int8_plan(1, 20, linear, general, -128, 1 << 30, -18, -128, 127)
    assert not plan.negative  # the clamp absorbs the negative rounding (activation min >= offset)
    assert compiled_elementwise.add_int8_plan(1, 20, linear, general, 0, 1 << 30, -18, -128, 127).negative


def test_real_add_layers_take_the_formula():
    """pretrainedResnet's and MobileNetV2's residual ADDs: the plan applies and passes its check
    on all pairs (skipped without the models)."""
    import os

    models = "/work/shared/models"
    names = [("pretrainedResnet_quant.tflite", 3), ("mobilenet_v2_quantized_1x3x224x224.tflite", 10)]
    if not all(os.path.exists(os.path.join(models, n)) for n, _ in names):
        pytest.skip("the benchmark models are not here")
    for name, count in names:
        it = Interpreter.from_file(os.path.join(models, name))
        adds = [k for k in it.kernels if k.op_name == "ADD"]
        assert len(adds) == count
        for k in adds:
            assert k._plan_int8() is not False, name
