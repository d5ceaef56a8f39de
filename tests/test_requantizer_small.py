"""Small-call paths: int8 DIV's formula before its table pays (BinaryKernel.int8_values' ski
rental), the Requantizer's Python-integer path for a few values, and its cheaper prepare.

Every path is checked byte for byte against the other one (forced through the class attributes
and module constants that choose them) and against the reference kernels, with extreme
multipliers, shifts, biases and zero points."""
from __future__ import annotations

import zlib

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


# ------------------------------------------------------------------------------ Requantizer prepare


def _uniform_before(values):
    """The constants' form as the requantizer built them before (broadcast, then a float64 scalar
    when uniform): the cheaper prepare must give the same objects' types, dtypes and bits."""
    flat = np.reshape(values, -1)
    return np.float64(flat[0]) if flat.size and np.all(flat == flat[0]) else np.asarray(values, np.float64)


def _single_constants_before(m, shift, zp, bias):
    m, right = np.asarray(m, np.int64), -np.asarray(shift, np.int64)
    total = -(31 + right)
    scale = np.ldexp(m.astype(np.float64), total)
    bias = np.asarray(bias, np.int64) if bias is not None else np.zeros(1, np.int64)
    half = np.where(right > 0, 0.5, 0.0)
    offset = np.ldexp(bias.astype(np.float64) * m + (1 << 30), total) + half + zp
    negative_step = np.where(right > 0, np.ldexp(1.0, -right), 0.0)
    shape = np.broadcast(scale, offset).shape
    return tuple(_uniform_before(np.broadcast_to(c, shape)) for c in (scale, offset, half + zp, negative_step))


def _same_constant(a, b) -> bool:
    if type(a) is not type(b) or np.asarray(a).dtype != np.float64 or np.shape(a) != np.shape(b):
        return False
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


def _random_parameters(rng, per_tensor: bool, bias_kind: str):
    c = int(rng.integers(1, 9))
    if per_tensor:
        m, shift = np.int64(rng.integers(1 << 30, 1 << 31)), np.int64(-rng.integers(0, 32))
    else:
        m, shift = rng.integers(1 << 30, 1 << 31, c), -rng.integers(0, 32, c)
        if rng.random() < 0.3:
            shift[:] = shift[0]  # every channel the same shift: uniform step constants
        if rng.random() < 0.2:
            m[:] = m[0]
    extremes = [np.int64((1 << 31) - 1), np.int64(1 << 30), np.int64(0)]
    if rng.random() < 0.2:
        m = extremes[int(rng.integers(0, 3))] if per_tensor else np.full(c, extremes[int(rng.integers(0, 3))])
    bias = {"none": None, "zeros": np.zeros(c, np.int64), "uniform": np.full(c, int(rng.integers(-1000, 1000))),
            "channels": rng.integers(-(1 << 20), 1 << 20, c), "scalar": np.int64(rng.integers(-5000, 5000)),
            "empty": np.zeros(0, np.int64)}[bias_kind]
    zp = int(rng.choice([0, -128, 127, -32768, 32767, int(rng.integers(-300, 300))]))
    return m, shift, zp, bias


@pytest.mark.parametrize("per_tensor", [True, False])
@pytest.mark.parametrize("bias_kind", ["none", "zeros", "uniform", "channels", "scalar", "empty"])
def test_single_mode_constants_are_the_same_objects_as_before(per_tensor, bias_kind):
    """The per-tensor Python-float prepare and the cheaper uniformity test give every constant
    the same type (np.float64 scalar or float64 array), shape and bits as the former broadcast
    prepare, over per-tensor and per-channel multipliers, every right shift, extreme multipliers
    and zero points, and biases absent, zero, uniform, per channel, scalar or empty."""
    from ops.common import Requantizer

    if bias_kind == "empty" and not per_tensor:
        pytest.skip("a bias of no values does not broadcast against per-channel multipliers")
    rng = np.random.default_rng(zlib.crc32(f"{per_tensor}{bias_kind}".encode()))
    checked = 0
    for _ in range(400):
        m, shift, zp, bias = _random_parameters(rng, per_tensor, bias_kind)
        lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
        r = Requantizer(m, shift, zp, lo, hi, np.int8, 1 << 12, bias=bias)
        if r.mode != "single":
            continue
        want = _single_constants_before(m, shift, zp, bias)
        assert all(_same_constant(a, b) for a, b in zip(r.constants, want)), (m, shift, zp, bias, r.constants, want)
        checked += 1
    assert checked >= 60


def test_split_mode_constants_keep_their_forms():
    """Split mode (huge biases, right shifts near 31) through the same uniformity helper: the
    former broadcast-then-collapse forms."""
    from ops.common import Requantizer

    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(200):
        c = int(rng.integers(1, 6))
        m = rng.integers(1 << 30, 1 << 31, c) if trial % 2 else np.int64(rng.integers(1 << 30, 1 << 31))
        shift = -rng.integers(20, 32, c) if trial % 3 else np.int64(-rng.integers(20, 32))
        bias = rng.integers(-(1 << 30), 1 << 30, c) if trial % 5 else np.full(c, 1 << 29)
        r = Requantizer(m, shift, int(rng.integers(-128, 128)), -128, 127, np.int8, 1 << 21, bias=bias)
        if r.mode != "split":
            continue
        shape = np.broadcast(np.asarray(m), np.asarray(shift), bias).shape
        for got in r.constants:
            assert np.asarray(got).dtype == np.float64 and type(got) is not float
            assert isinstance(got, np.float64) or got.shape == shape
        checked += 1
    assert checked >= 50


def _activation_range_before(activation, scale, zp, qmin, qmax):
    from ops import fixedpoint as fp
    from ops.c_semantics import float_to_int32_x86_scalar

    def quantize(f):
        with np.errstate(all="ignore"):
            rounded = fp.tflite_round(np.float32(np.float32(f) / np.float32(scale)))
        return int(fp.wrap_int32(zp + float_to_int32_x86_scalar(rounded)))

    bounds = {1: (0.0,), 3: (0.0, 6.0), 2: (-1.0, 1.0)}.get(activation, ())
    for f in bounds:
        with np.errstate(all="ignore"):
            r = fp.tflite_round(np.float32(np.float32(f) / np.float32(scale)))
        if not -(2.0 ** 31) <= float(r) <= 2.0 ** 31:
            return "fails"
    if activation == 1:
        return max(qmin, quantize(0.0)), qmax
    if activation == 3:
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == 2:
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    return qmin, qmax


def test_activation_ranges_match_the_errstate_computation():
    """The Python-float activation range equals the numpy float32 computation for ordinary, tiny,
    huge, zero, negative, subnormal and non-finite scales, zero points at and beyond the type ends,
    and ties of roundf (bounds that are exact half-multiples of the scale); the same scales fail."""
    from types import SimpleNamespace

    from ops.common import activation_range_quantized

    rng = np.random.default_rng(5)
    scales = [0.1, 0.05, 1 / 12, 0.5, 0.4, 2.0, 4.0, 12.0, 1e-30, 1.0000001e-30, 9.9e29, 1e30, 1e-10, 2.9e-10,
              1e-45, 1e-39, 0.0, -0.0, -0.1, -3.0, float("inf"), float("-inf"), float("nan"), 3e-9, 2.8e-9, 1e38]
    scales += [float(s) for s in rng.uniform(1e-4, 1, 40)] + [float(2.0 ** -k) for k in range(0, 40, 3)]
    scales += [float(np.float32(6.0) / np.float32(k + 0.5)) for k in range(0, 300, 7)]  # roundf ties
    for type_name, (qmin, qmax) in (("INT8", (-128, 127)), ("INT16", (-32768, 32767)), ("UINT8", (0, 255)),
                                    ("INT32", (-(1 << 31), (1 << 31) - 1))):
        for scale in scales:
            for zp in (0, qmin, qmax, -5, 3, (1 << 31) - 1, -(1 << 31)):
                tensor = SimpleNamespace(type_name=type_name, quantization=SimpleNamespace(scale=scale, zero_point=zp))
                for activation in range(7):
                    want = _activation_range_before(activation, scale, zp, qmin, qmax)
                    try:
                        got = activation_range_quantized(activation, tensor)
                    except ValueError:
                        got = "fails"
                    assert got == want, (type_name, scale, zp, activation)


def test_prepared_levels_are_shared_read_only_and_equal_fresh_ones():
    """_prepare_levels' tables come from a cache: read-only, and equal to the tables built afresh."""
    from ops import common

    saved = dict(common._LEVELS_CACHE)
    try:
        common._LEVELS_CACHE.clear()  # (earlier tests may have filled it)
        r1 = common.Requantizer(np.int64(1 << 30), np.int64(-3), 4, -100, 100, np.int8, 1 << 10)
        r2 = common.Requantizer(np.int64((1 << 30) + 12345), np.int64(-3), 4, -100, 100, np.int8, 1 << 10)
        assert r1.thresholds is r2.thresholds and r1.levels is r2.levels
        assert not r1.thresholds.flags.writeable and not r1.levels.flags.writeable
        common._LEVELS_CACHE.clear()
        r3 = common.Requantizer(np.int64(1 << 30), np.int64(-3), 4, -100, 100, np.int8, 1 << 10)
    finally:
        common._LEVELS_CACHE.clear()
        common._LEVELS_CACHE.update(saved)
    assert r3.thresholds is not r1.thresholds
    assert r3.thresholds.tobytes() == r1.thresholds.tobytes() and r3.levels.tobytes() == r1.levels.tobytes()
    assert r3.levels.dtype == np.int8


# ------------------------------------------------------------------------------ Python-integer path

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _reference_requantize(acc, bias, m, shift, zp, lo, hi, out_dtype):
    """ops/reference/requantize.py on the C int32 sum acc + bias (what the reference kernels do)."""
    from ops import fixedpoint as fp
    from ops.params import QuantizedOutput
    from ops.reference.requantize import requantize

    total = np.asarray(acc, np.int64) + (np.asarray(bias, np.int64) if bias is not None else 0)
    q = QuantizedOutput(np.asarray(m, np.int64), np.asarray(shift, np.int64), zp, lo, hi)
    return requantize(fp.wrap_int32(total), q).astype(out_dtype)


def _draw(rng, c, per_channel, special, low, high):
    """c values (or one scalar), each a special value 40% of the time, else uniform in [low, high)."""
    values = [int(rng.choice(special)) if rng.random() < 0.4 else int(rng.integers(low, high)) for _ in range(c)]
    return np.array(values, np.int64) if per_channel else np.int64(values[0])


def _int64_path_cases(rng, count):
    """Requantizers on the int64 path (mode None: accumulators that may wrap, left shifts, huge
    biases) with extreme multipliers, shifts, biases, zero points and clamps, and accumulators."""
    special_m = [INT32_MIN, INT32_MAX, 0, 1, -1, 1 << 30, (1 << 30) + 1, -(1 << 30)]
    for trial in range(count):
        c = int(rng.choice([1, 1, 3, 4, 16]))
        per_channel = c > 1 and rng.random() < 0.7

        m = _draw(rng, c, per_channel, special_m, 1 << 30, 1 << 31)
        shift = _draw(rng, c, per_channel, [-31, -30, -1, 0, 1, 7, 30, 31, 32, 40], -31, 32)
        bias_kind = trial % 4
        bias = None if bias_kind == 0 else _draw(rng, c, True, [INT32_MIN, INT32_MAX, 0, -1, 1 << 40, -(1 << 40)],
                                                 INT32_MIN, INT32_MAX + 1)
        zp = int(rng.choice([0, -128, 127, 32767, -32768, INT32_MIN, INT32_MAX, int(rng.integers(-1000, 1000))]))
        out_dtype = np.int8 if rng.random() < 0.6 else np.int16 if rng.random() < 0.5 else np.int32
        info = np.iinfo(out_dtype)
        lo, hi = int(info.min), int(info.max)
        if rng.random() < 0.5:
            lo, hi = sorted(int(v) for v in rng.integers(-300, 300, 2))
        if rng.random() < 0.05:
            lo, hi = hi, lo  # a clamp whose bounds cross: np.minimum(np.maximum(.)) order
        acc_bound = None if trial % 3 == 0 else int(rng.choice([1 << 20, 1 << 31, 1 << 40]))
        shape = (int(rng.integers(1, 5)), c) if rng.random() < 0.7 else (c,)
        acc = rng.integers(-(acc_bound or 1 << 33), (acc_bound or 1 << 33) + 1, shape, dtype=np.int64)
        flat = acc.reshape(-1)
        flat[: min(4, flat.size)] = [INT32_MIN, INT32_MAX, 0, -1][: min(4, flat.size)]
        if acc_bound is not None:
            acc = np.clip(acc, -acc_bound, acc_bound)
        yield m, shift, zp, lo, hi, out_dtype, acc_bound, bias, acc


def test_python_integer_path_equals_numpy_and_reference_on_extreme_parameters(monkeypatch):
    """The int64 path on a few values computed in Python integers (python_elements forced high)
    and by numpy (forced to -1): the same bytes, and the reference kernels' requantization, over
    INT32_MIN/INT32_MAX multipliers, left shifts (masked beyond 31) and right shifts to 31, biases
    beyond int32, zero points at the int32 ends, every output type, crossed clamps and
    accumulators that wrap; and each forced path is the one that ran."""
    from ops.common import Requantizer

    rng = np.random.default_rng(20)
    python_runs = 0
    for m, shift, zp, lo, hi, out_dtype, acc_bound, bias, acc in _int64_path_cases(rng, 600):
        r = Requantizer(m, shift, zp, lo, hi, out_dtype, acc_bound, bias=bias)
        if r.mode is not None:
            continue
        want = _reference_requantize(acc, bias, m, shift, zp, lo, hi, out_dtype)
        for dtype in (np.int64, np.float64) if acc_bound is not None and acc_bound < (1 << 53) else (np.int64,):
            a = acc.astype(dtype)
            monkeypatch.setattr(Requantizer, "python_elements", -1)
            r._python_args = False
            numpy_out = r(a)
            assert r._python_args is False  # the numpy path never prepares the Python one
            monkeypatch.setattr(Requantizer, "python_elements", 1 << 30)
            python_out = r(a)
            took_python = r._python_args is not None
            python_runs += took_python
            assert numpy_out.dtype == python_out.dtype == np.dtype(out_dtype)
            assert numpy_out.shape == python_out.shape == acc.shape
            assert python_out.tobytes() == numpy_out.tobytes() == want.tobytes(), (m, shift, zp, lo, hi, bias, acc)
    assert python_runs >= 300


def test_python_integer_path_is_refused_where_its_arithmetic_would_differ(monkeypatch):
    """Multipliers beyond int32, right shifts beyond 31, zero points beyond int32, the single
    rounding numerics and a layout whose last axis is not the channels take the numpy path."""
    from types import SimpleNamespace

    from ops.common import Requantizer

    monkeypatch.setattr(Requantizer, "python_elements", 1 << 30)
    acc = np.array([[5, -7, 123456]], np.int64)
    for args, kwargs in (((np.int64(1 << 31), np.int64(-3), 0), {}), ((np.int64(1 << 30), np.int64(-32), 0), {}),
                         ((np.int64(1 << 30), np.int64(2), 1 << 31), {}),
                         ((np.int64(1 << 30), np.int64(2), 0), {"numerics": SimpleNamespace(rounding="single")})):
        r = Requantizer(*args, -128, 127, np.int8, None, **kwargs)
        assert r.mode is None
        r(acc)
        assert r._python_args is None, args
    r = Requantizer(np.array([1 << 30, 1 << 30, 1 << 30]), np.array([2, 2, 2]), 0, -128, 127, np.int8, None)
    assert r._python_call(np.zeros((3, 1), np.int64)) is None  # channels on the wrong axis
    assert r._python_call(np.zeros((1, 3), np.int64)) is not None


def _fully_connected_model(out_scale, bias_values, depth=4, accum=40, zp=3, activation="NONE"):
    rng = np.random.default_rng(abs(hash((out_scale, depth, accum))) % (1 << 32))
    b = ModelBuilder()
    x = b.input("x", [1, accum], "INT8", scale=0.5, zero_point=-2)
    w = b.constant("w", rng.integers(-127, 128, (depth, accum)).astype(np.int8), scale=0.25, zero_point=0)
    bias = b.constant("bias", np.asarray(bias_values, np.int32)[:depth], scale=0.125)
    y = b.tensor("y", [1, depth], "INT8", scale=out_scale, zero_point=zp)
    b.op("FULLY_CONNECTED", [x, w, bias], [y], fused_activation_function=activation)
    b.output(y)
    return b.build()


@pytest.mark.parametrize("out_scale", [0.01, 1e-4, 3e-7, 0.9])
@pytest.mark.parametrize("bias_values", [[0, 0, 0, 0], [INT32_MAX, INT32_MIN, -1, 7], [1 << 30, -(1 << 30), 99, -99]])
def test_fully_connected_on_the_int64_path_matches_the_reference_kernels(out_scale, bias_values, monkeypatch):
    """One-op FULLY_CONNECTED models whose requantization takes the int64 path (left shifts from
    output scales below the input·weight scale, biases at the int32 ends that make the sum wrap):
    batch-1 and batched runs through the Python-integer path, through numpy, and the reference
    kernels, byte for byte."""
    from ops.common import Requantizer

    data = _fully_connected_model(out_scale, bias_values, activation="RELU" if out_scale == 0.9 else "NONE")
    try:
        ref = Interpreter.from_bytes(data, kernels="reference")
    except ModelError as e:
        pytest.skip(f"refused: {e}")
    rng = np.random.default_rng(3)
    xs = rng.integers(-128, 128, (6, 1, 40)).astype(np.int8)
    xs[0], xs[1] = 127, -128
    want = ref.run_batch([xs])[0]
    for elements in (-1, 1 << 30):
        monkeypatch.setattr(Requantizer, "python_elements", elements)
        fast = Interpreter.from_bytes(data)
        rq = fast.kernels[0].requantizer
        got = np.stack([fast.run(x)[0] for x in xs])
        assert got.tobytes() == want.tobytes(), elements
        assert fast.run_batch([xs])[0].tobytes() == want.tobytes()
        if rq.mode is None:
            assert (rq._python_args is not False) == (elements > 0)


MICRO_SPEECH = "/work/shared/models/micro_speech_quantized.tflite"


def test_micro_speech_batch1_through_the_python_path_matches_the_reference_kernels(monkeypatch):
    """micro_speech_quantized's last FULLY_CONNECTED (4000 -> 4, the int64 path) through Python
    integers and through numpy: the reference kernels' bytes on random and extreme inputs."""
    import os

    from ops.common import Requantizer

    if not os.path.exists(MICRO_SPEECH):
        pytest.skip(f"{MICRO_SPEECH} is absent")
    data = open(MICRO_SPEECH, "rb").read()
    ref = Interpreter.from_bytes(data, kernels="reference")
    d = ref.input_details[0]
    rng = np.random.default_rng(9)
    xs = [rng.integers(-128, 128, d["shape"]).astype(d["dtype"]) for _ in range(4)]
    xs += [np.full(d["shape"], 127, d["dtype"]), np.full(d["shape"], -128, d["dtype"])]
    want = [ref.run(x)[0].tobytes() for x in xs]
    paths = set()
    for elements in (-1, 1 << 30):
        monkeypatch.setattr(Requantizer, "python_elements", elements)
        fast = Interpreter.from_bytes(data)
        assert [fast.run(x)[0].tobytes() for x in xs] == want
        int64_path = [k.requantizer for k in fast.kernels if getattr(k, "requantizer", None) is not None
                      and k.requantizer.mode is None]
        paths.add(tuple(rq._python_args is not False for rq in int64_path))
    assert paths == {(False,), (True,)}  # the one int64-path requantizer, forced each way
