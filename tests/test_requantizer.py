"""The prepared Requantizer must equal TFLM's MultiplyByQuantizedMultiplier pipeline exactly,
on the float64 fast path as on the int64 path, including exact ties and negative values."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ops import fixedpoint as fp
from ops.common import Requantizer


def reference(acc, bias, m, shift, zp, lo, hi):
    total = fp.wrap_int32(np.asarray(acc, np.int64) + bias)
    return np.clip(fp.multiply_by_quantized_multiplier(total, m, shift) + zp, lo, hi)


def channel_parameters(rng, channels: int, huge_bias: bool, min_right_shift: int = 0, max_right_shift: int = 12,
                       bias_limit: int = 5000):
    """Per-channel (multiplier, shift, bias): ordinary ones, or those of nearly dead channels
    (right shifts up to 30, biases up to 2^30), which need the split mode."""
    m = rng.integers(1 << 30, 1 << 31, channels)
    shift = -rng.integers(min_right_shift, 31 if huge_bias else max_right_shift, channels)
    limit = (1 << 30) if huge_bias else bias_limit
    return m, shift, rng.integers(-limit, limit, channels)


@settings(max_examples=300, deadline=None)
@given(st.integers(1 << 30, (1 << 31) - 1), st.integers(-31, 0), st.integers(-128, 127),
       st.integers(-(1 << 20), 1 << 20), st.integers(0, 2 ** 32 - 1), st.integers(1, 1 << 22))
def test_float_path_equals_integer_reference(m, shift, zp, bias, seed, bound):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-bound, bound + 1, 400)
    # Exact ties of both roundings: accumulators whose products land on .5 boundaries.
    e = -shift
    acc[:8] = [0, -1, 1, bound, -bound, (1 << 30) // max(m >> 20, 1), -(1 << e), (1 << e) - 1][:8]
    acc = np.clip(acc, -bound, bound)
    r = Requantizer(m, shift, zp, -128, 127, np.int8, bound, bias=np.array([bias]))
    got = r(acc.astype(np.float32 if bound < (1 << 24) else np.float64))
    want = reference(acc, bias, m, shift, zp, -128, 127)
    assert r.use_float or bound * m + (1 << 30) + (1 << (31 + e)) >= (1 << 53)
    assert np.array_equal(got, want.astype(np.int8))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2 ** 32 - 1))
def test_per_channel_with_ties_and_zero_shift_channels(seed):
    rng = np.random.default_rng(seed)
    channels = 7
    m = rng.integers(1 << 30, 1 << 31, channels)
    shift = rng.integers(-12, 1, channels)
    shift[0] = 0
    bias = rng.integers(-5000, 5000, channels)
    acc = rng.integers(-(1 << 18), 1 << 18, (50, channels))
    # Values that make q = acc*M + 2^30 an exact multiple of 2^31 (SRDHM ties) for channel 1.
    r = Requantizer(m, shift, -3, -100, 90, np.int8, 1 << 18, bias=bias)
    assert r.use_float
    assert np.array_equal(r(acc.astype(np.float32)), reference(acc, bias, m, shift, -3, -100, 90).astype(np.int8))


def test_exact_double_rounding_ties():
    # M = 2^30 (0.5): acc = 3 -> SRDHM gives 2 (1.5 rounds up), RDBPOT(2, 2) = 1 (0.5 away from 0).
    r = Requantizer(1 << 30, -2, 0, -128, 127, np.int8, 1000)
    acc = np.array([3, -3, 5, -5, 1, -1, 0, 2, -2, 6, -6])
    assert r.use_float
    assert r(acc.astype(np.float32)).tolist() == reference(acc, 0, 1 << 30, -2, 0, -128, 127).tolist()


def test_large_accumulators_fall_back_to_int64_and_wrap():
    r = Requantizer(1 << 30, -1, 0, -(1 << 31), (1 << 31) - 1, np.int64, 1 << 40)
    assert not r.use_float and r.may_wrap
    acc = np.array([(1 << 31) + 5, -(1 << 33) - 7])
    assert np.array_equal(r(acc), reference(acc, 0, 1 << 30, -1, 0, -(1 << 31), (1 << 31) - 1))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 40), st.integers(0, 31), st.booleans())
def test_split_mode_for_huge_biases_and_shifts(seed, channels, max_e, nearly_dead):
    """Channels whose scale is nearly zero carry biases near 2^30 and shifts near -31; the
    single-rounding float formula is not exact for them, the split one must be."""
    rng = np.random.default_rng(seed)
    m = rng.integers(1 << 30, 1 << 31, channels)
    shift = -rng.integers(0, max_e + 1, channels)
    limit = (1 << 30) if nearly_dead else (1 << 24)
    bias = rng.integers(-limit, limit, channels)
    bound = 1 << 20
    acc = rng.integers(-bound, bound + 1, (300, channels))
    acc[0] = 0
    acc[1] = -bias.clip(-bound, bound)  # q = 2^30 exactly: h = 0
    r = Requantizer(m, shift, 5, -128, 127, np.int8, bound, bias=bias)
    assert r.mode in ("single", "split")
    want = reference(acc, bias, m, shift, 5, -128, 127).astype(np.int8)
    assert np.array_equal(r(acc.astype(np.float32)), want)
    # The same through the large-array (workspace, tiled) path.
    big = np.tile(acc, (8, 1))
    assert np.array_equal(r(big.astype(np.float32)), np.tile(want, (8, 1)))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([1, 3, 8, 24, 130]), st.integers(1, 16), st.booleans())
def test_scale_folded_gemm_equals_requantized_product(seed, channels, depth, huge_bias):
    """[x, 1] @ scaled_weights, then from_scaled, is the requantized exact integer product."""
    rng = np.random.default_rng(seed)
    weights = rng.integers(-127, 128, (depth, channels))
    x = rng.integers(-128, 128, (700, depth))
    x[:3] = [[-128] * depth, [127] * depth, [0] * depth]
    m, shift, bias = channel_parameters(rng, channels, huge_bias)
    bound = int(np.abs(weights).sum(axis=0).max()) * 128
    r = Requantizer(m, shift, -3, -120, 110, np.int8, bound, bias=bias)
    sw = r.scaled_weights(weights)
    assert sw is not None and sw.shape == (depth + 1, channels)
    t = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64) @ sw
    want = reference(x @ weights, bias, m, shift, -3, -120, 110).astype(np.int8)
    assert np.array_equal(r.from_scaled(t), want)


def test_per_tensor_and_int64_paths_have_no_scaled_weights_when_inexact():
    r = Requantizer(1 << 30, 2, 0, -128, 127, np.int8, 1000)  # a left shift: int64 path
    assert r.mode is None and r.scaled_weights(np.ones((2, 1))) is None


def test_per_tensor_multiplier_with_per_channel_bias():
    """A per-tensor scale with a bias per channel still makes per-channel constants."""
    rng = np.random.default_rng(3)
    bias = rng.integers(-3000, 3000, 6)
    r = Requantizer(1 << 30, -7, 2, -128, 127, np.int8, 1 << 16, bias=bias)
    for rows in (30, 3000):  # the small path and the large, tiled one
        acc = rng.integers(-(1 << 16), 1 << 16, (rows, 6))
        want = reference(acc, bias, 1 << 30, -7, 2, -128, 127).astype(np.int8)
        assert np.array_equal(r(acc.astype(np.float32)), want)
    weights = rng.integers(-127, 128, (4, 6))
    x = rng.integers(-128, 128, (50, 4))
    t = np.hstack([x, np.ones((50, 1))]) @ r.scaled_weights(weights)
    assert np.array_equal(r.from_scaled(t), reference(x @ weights, bias, 1 << 30, -7, 2, -128, 127).astype(np.int8))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([1, 2, 8, 16]), st.booleans(), st.booleans())
def test_channel_major_layout_equals_channel_last(seed, channels, huge_bias, large):
    """Requantizing (…, C, L) directly gives the channel-last result, transposed."""
    rng = np.random.default_rng(seed)
    m, shift, bias = channel_parameters(rng, channels, huge_bias)
    acc = rng.integers(-(1 << 18), 1 << 18, (3, channels, 900 if large else 20))
    r = Requantizer(m, shift, 4, -128, 127, np.int8, 1 << 18, bias=bias)
    want = reference(np.swapaxes(acc, 1, 2), bias, m, shift, 4, -128, 127).astype(np.int8)
    assert np.array_equal(r.channel_major(acc.astype(np.float32)), np.swapaxes(want, 1, 2))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(-128, 127), st.booleans(), st.booleans())
def test_relu_clamp_makes_the_negative_rounding_step_irrelevant(seed, zp, huge_bias, large):
    """With act_min >= zero point the q < 0 step is skipped; results must not change, including
    the exact negative ties that step exists for."""
    rng = np.random.default_rng(seed)
    channels = 5
    m, shift, bias = channel_parameters(rng, channels, huge_bias, min_right_shift=1, max_right_shift=8,
                                        bias_limit=3000)
    acc = rng.integers(-(1 << 16), 1 << 16, (800 if large else 30, channels))
    # Channel 0 (M = 2^30, e = 3: h = floor((acc + 1) / 2)) gets accumulators whose h is an
    # exact negative RoundingDivideByPOT tie: h = -4, -12, -20 (-0.5, -1.5, -2.5 times 2^3).
    m[0], shift[0], bias[0] = 1 << 30, -3, 0
    acc[:4, 0] = [-8, -9, -24, -40]
    r = Requantizer(m, shift, zp, zp, 127, np.int8, 1 << 16, bias=bias)
    assert not r.negative_step_matters
    want = reference(acc, bias, m, shift, zp, zp, 127).astype(np.int8)
    assert np.array_equal(r(acc.astype(np.float32)), want)
    assert np.array_equal(r.channel_major(np.ascontiguousarray(acc.T).astype(np.float32)), want.T)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([128, 200, 32767, -129, -40000]), st.booleans())
def test_zero_points_outside_the_output_type(seed, zp, huge_bias):
    """Found by the mutation fuzzer: a zero point that int8 cannot hold (TFLM adds it in int32,
    then clamps) made the narrow zero-point addition overflow."""
    rng = np.random.default_rng(seed)
    channels = 6
    m, shift, bias = channel_parameters(rng, channels, huge_bias, max_right_shift=10, bias_limit=3000)
    acc = rng.integers(-(1 << 16), 1 << 16, (700, channels))
    for act_min, act_max in ((-128, 127), (max(-128, min(zp, 127)), 127)):
        r = Requantizer(m, shift, zp, act_min, act_max, np.int8, 1 << 16, bias=bias)
        want = reference(acc, bias, m, shift, zp, act_min, act_max).astype(np.int8)
        assert np.array_equal(r(acc.astype(np.float32)), want)
        assert np.array_equal(r(acc[:5].astype(np.float32)), want[:5])
