"""Small-call paths: int8 DIV's formula before its table pays (BinaryKernel.int8_values' ski
rental), the Requantizer's Python-integer path for a few values, and its cheaper prepare.

Every path is checked byte for byte against the other one (forced through the class attributes
and module constants that choose them) and against the reference kernels, with extreme
multipliers, shifts, biases and zero points."""
from __future__ import annotations

import numpy as np
import pytest

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import ModelError

# ------------------------------------------------------------------------------ DIV


def _div_model(shape1, shape2, out_shape, scales, zero_points, activation="NONE"):
    b = ModelBuilder()
    x1 = b.input("a", shape1, "INT8", scale=scales[0], zero_point=zero_points[0])
    x2 = b.input("b", shape2, "INT8", scale=scales[1], zero_point=zero_points[1])
    y = b.tensor("y", out_shape, "INT8", scale=scales[2], zero_point=zero_points[2])
    b.op("DIV", [x1, x2], [y], fused_activation_function=activation)
    b.output(y)
    return b.build()


def _interpreter(data, **kwargs):
    try:
        return Interpreter.from_bytes(data, **kwargs)
    except ModelError:  # scales whose multiplier TFLM's Prepare refuses
        return None


def _all_pairs():
    """Every (x1, x2) int8 pair once, as two (1, 65536) arrays."""
    v = np.arange(-128, 128, dtype=np.int8)
    return np.repeat(v, 256)[None], np.tile(v, 256)[None]


@pytest.mark.parametrize("case", range(10))
def test_int8_div_formula_and_table_agree_on_every_pair(case, monkeypatch):
    """The direct formula (the table never pays) and the table (it always pays) give the same
    bytes on all 65536 input pairs — zero divisors included — for ordinary and extreme scales
    (multipliers whose shift is far left or far right), zero points at the int8 ends and beyond,
    and each fused activation; and the path forced is the one that ran."""
    from ops import elementwise

    rng = np.random.default_rng(case)
    scales = [[0.05, 0.04, 0.1], [1e-3, 3.0, 1e-6], [2.0, 1e-4, 50.0], [1.0, 1.0, 1.0]][case % 4]
    scales = [s * float(rng.uniform(0.5, 2.0)) for s in scales]
    zero_points = [[-3, 1, 2], [-128, 127, -128], [127, -128, 127], [0, 0, 0], [300, -1000, 5]][case % 5]
    activation = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"][case % 4]
    data = _div_model([1, 65536], [1, 65536], [1, 65536], scales, zero_points, activation)
    direct, tabled = _interpreter(data), _interpreter(data)
    if direct is None:
        pytest.skip("TFLM's Prepare refuses these scales")
    x1, x2 = _all_pairs()
    assert direct.kernels[0]._table is None and tabled.kernels[0]._table is None  # prepare builds nothing
    monkeypatch.setattr(elementwise, "TABLE_BUILD_COST", 1 << 62)
    want = direct.run([x1, x2])[0]
    assert direct.kernels[0]._table is None
    monkeypatch.setattr(elementwise, "TABLE_BUILD_COST", 0)
    got = tabled.run([x1, x2])[0]
    assert tabled.kernels[0]._table is not None
    assert got.dtype == want.dtype == np.int8 and got.tobytes() == want.tobytes()
    # The table holds the formula's values for every pair, in byte order.
    index = (x1.view(np.uint8).astype(np.int64) << 8) | x2.view(np.uint8)
    assert tabled.kernels[0]._table[index].tobytes() == want.tobytes()


def test_int8_div_broadcast_small_calls_take_the_formula(monkeypatch):
    """Broadcast DIV (BroadcastDivSlow's shapes) through the formula and the table: the same bytes."""
    from ops import elementwise

    rng = np.random.default_rng(7)
    for shapes in (([2, 3, 1], [1, 5], [2, 3, 5]), ([7], [1], [7]), ([1, 1, 30], [1, 4, 1], [1, 4, 30])):
        data = _div_model(*shapes, [0.07, 0.03, 0.11], [-5, 3, 0], "RELU")
        direct, tabled = _interpreter(data), _interpreter(data)
        xs = [rng.integers(-128, 128, (3, *s)).astype(np.int8) for s in shapes[:2]]
        xs[0].reshape(3, -1)[:, :2] = [-128, 127]
        xs[1].reshape(3, -1)[:, 0] = 3  # x2 - z2 = 0: GetReciprocal(0)
        monkeypatch.setattr(elementwise, "TABLE_BUILD_COST", 1 << 62)
        want = direct.run_batch(xs)[0]
        assert direct.kernels[0]._table is None
        monkeypatch.setattr(elementwise, "TABLE_BUILD_COST", 0)
        got = tabled.run_batch(xs)[0]
        assert tabled.kernels[0]._table is not None
        assert got.tobytes() == want.tobytes(), shapes
        assert tabled.run([x[0] for x in xs])[0].tobytes() == want[0].tobytes()


def test_a_one_op_int8_div_model_run_a_few_times_builds_no_table():
    """What a fuzzing example does (load, a few small runs) no longer pays the 65536-pair table
    (~5 ms for DIV's formula); a kernel called often still builds it (the ski rental)."""
    from ops import elementwise

    data = _div_model([1, 4, 4, 8], [1, 4, 4, 8], [1, 4, 4, 8], [0.05, 0.04, 0.1], [-3, 1, 2])
    it = Interpreter.from_bytes(data)
    kernel = it.kernels[0]
    x = [np.full((1, 4, 4, 8), 5, np.int8), np.full((1, 4, 4, 8), -7, np.int8)]
    for _ in range(3):
        it.run(x)
    assert kernel._table is None
    calls = elementwise.TABLE_BUILD_COST // (elementwise.DIRECT_CALL_COST + 128) + 1
    for _ in range(calls):
        it.run(x)
    assert kernel._table is not None
