"""AVERAGE_POOL_2D and MAX_POOL_2D (ops/pooling.py).

The first tests pin, with hand-computed values, the details of TFLM's reference pooling that a
straightforward implementation gets wrong (each also checks that TFLM produces the same bytes);
the differential tests at the end compare awkward geometries with TFLM (int8, int16, float32).
"""
import numpy as np
import pytest
from diff_support import check_model, random_inputs
from diff_support import run_on_both as run

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder


def pool_model(op, in_shape, out_shape, dtype="INT8", qi=(0.1, 0), qo=None, **options):
    b = ModelBuilder()
    quant_in = {} if dtype == "FLOAT32" else dict(scale=qi[0], zero_point=qi[1])
    qo = qo or qi
    quant_out = {} if dtype == "FLOAT32" else dict(scale=qo[0], zero_point=qo[1])
    x = b.input("x", in_shape, dtype, **quant_in)
    y = b.tensor("y", out_shape, dtype, **quant_out)
    b.op(op, [x], [y], **options)
    b.output(y)
    return b.build()


def window(fh, fw, sh, sw, padding="VALID", act="NONE"):
    return dict(filter_height=fh, filter_width=fw, stride_h=sh, stride_w=sw, padding=padding,
                fused_activation_function=act)


# ---------------------------------------------------------------------------------- AVERAGE_POOL

def test_average_rounds_half_away_from_zero_with_truncating_division():
    # Windows of 3: sums -3 (-1 exactly), -4 (-1.33 -> -1), -5 (-1.67 -> -2), 4 (1.33 -> 1), 5 (2).
    # A floor-based division would give -2 for the -3 and -4 windows.
    x = np.array([-2, -1, 0, -2, -1, -1, -3, -1, -1, 1, 2, 1, 2, 2, 1], np.int8).reshape(1, 1, 15, 1)
    data = pool_model("AVERAGE_POOL_2D", [1, 1, 15, 1], [1, 1, 5, 1], **window(1, 3, 1, 3))
    np.testing.assert_array_equal(run(data, x).ravel(), [-1, -1, -2, 1, 2])


def test_average_ties_go_away_from_zero():
    x = np.array([-1, -2, 1, 2, -127, -128, 127, 126], np.int8).reshape(1, 1, 8, 1)
    data = pool_model("AVERAGE_POOL_2D", [1, 1, 8, 1], [1, 1, 4, 1], **window(1, 2, 1, 2))
    np.testing.assert_array_equal(run(data, x).ravel(), [-2, 2, -128, 127])


@pytest.mark.parametrize("zero_point", [0, 50, -128])
def test_average_counts_only_cells_inside_the_image_and_sums_raw_values(zero_point):
    # SAME 3x3 on a 2x2 image: every window is clipped. Counting padded cells would shrink the
    # corner averages (100 * 4 / 9 = 44); subtracting the zero point would change nothing here
    # either, because the padding is skipped rather than filled.
    x = np.full((1, 2, 2, 1), 100, np.int8)
    data = pool_model("AVERAGE_POOL_2D", [1, 2, 2, 1], [1, 2, 2, 1], qi=(0.1, zero_point),
                      **window(3, 3, 1, 1, "SAME"))
    np.testing.assert_array_equal(run(data, x), x)


def test_average_same_padding_puts_the_odd_pixel_at_the_end():
    # 4 wide, filter 2, stride 2, SAME: no padding at all; filter 3 stride 2 -> total 1, after.
    x = np.array([10, 20, 30, 40], np.int8).reshape(1, 1, 4, 1)
    data = pool_model("AVERAGE_POOL_2D", [1, 1, 4, 1], [1, 1, 2, 1], **window(1, 3, 1, 2, "SAME"))
    np.testing.assert_array_equal(run(data, x).ravel(), [20, 35])  # (10+20+30)/3, (30+40)/2


def test_average_fused_relu_clamps_at_the_output_zero_point():
    x = np.array([-50, -40, 30, 10], np.int8).reshape(1, 1, 4, 1)
    data = pool_model("AVERAGE_POOL_2D", [1, 1, 4, 1], [1, 1, 2, 1], qi=(0.5, -20), **window(1, 2, 1, 2, act="RELU"))
    np.testing.assert_array_equal(run(data, x).ravel(), [-20, 20])


def test_average_int16_uses_the_same_rounding():
    x = np.array([-32768, -32767, 32767, 32766], np.int16).reshape(1, 1, 4, 1)
    data = pool_model("AVERAGE_POOL_2D", [1, 1, 4, 1], [1, 1, 2, 1], "INT16", qi=(1e-3, 0), **window(1, 2, 1, 2))
    np.testing.assert_array_equal(run(data, x).ravel(), [-32768, 32767])


def test_average_float_accumulates_in_float32_in_tap_order():
    # ((0 + 1e8) + 1) + (-1e8) is 0 in float32; an exact or double sum would give 1/3.
    x = np.array([1e8, 1, -1e8], np.float32).reshape(1, 1, 3, 1)
    data = pool_model("AVERAGE_POOL_2D", [1, 1, 3, 1], [1, 1, 1, 1], "FLOAT32", **window(1, 3, 1, 1))
    assert run(data, x).ravel()[0] == np.float32(0.0)


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("qo, accepted", [
    ((0.1 + 5e-7, 0), True),   # |scale difference| <= 1e-6 passes TFLM's check
    ((0.1 + 2e-6, 0), False),  # TFLM: scale_diff <= 1.0e-6 was not true
    ((0.1, 1), False),         # TFLM: input zero point == output zero point was not true
])
def test_prepare_requires_equal_input_and_output_quantization(op, qo, accepted):
    data = pool_model(op, [1, 4, 4, 1], [1, 2, 2, 1], qi=(0.1, 0), qo=qo, **window(2, 2, 2, 2))
    if accepted:
        Interpreter.from_bytes(data)
    else:
        with pytest.raises(ModelError, match="does not rescale|zero point"):
            Interpreter.from_bytes(data)


# ---------------------------------------------------------------------------------- MAX_POOL

def test_max_padding_cells_never_win():
    # All values far below the zero point: a padded cell read as 0 or as the zero point would win.
    x = np.full((1, 3, 3, 2), -100, np.int8)
    data = pool_model("MAX_POOL_2D", [1, 3, 3, 2], [1, 2, 2, 2], qi=(0.1, 20), **window(3, 3, 2, 2, "SAME"))
    np.testing.assert_array_equal(run(data, x), np.full((1, 2, 2, 2), -100, np.int8))


def test_max_fused_relu6_clamps_in_the_output_domain():
    # scale 0.1, zero point 0: RELU6 clamps to [0, 60].
    x = np.array([-5, -7, 100, 3], np.int8).reshape(1, 1, 4, 1)
    data = pool_model("MAX_POOL_2D", [1, 1, 4, 1], [1, 1, 2, 1], **window(1, 2, 1, 2, act="RELU6"))
    np.testing.assert_array_equal(run(data, x).ravel(), [0, 60])


def test_max_float_keeps_the_first_of_equal_zeros():
    # std::max(-0.0, +0.0) keeps -0.0: the running max only changes on a strictly greater value.
    x = np.array([-0.0, 0.0], np.float32).reshape(1, 1, 2, 1)
    data = pool_model("MAX_POOL_2D", [1, 1, 2, 1], [1, 1, 1, 1], "FLOAT32", **window(1, 2, 1, 1))
    assert np.signbit(run(data, x).ravel()[0])


def test_unsupported_input_type_is_reported():
    from interp.errors import UnsupportedOpError
    data = pool_model("MAX_POOL_2D", [1, 2, 2, 1], [1, 1, 1, 1], "UINT8", qi=(0.1, 128), **window(2, 2, 2, 2))
    with pytest.raises(UnsupportedOpError, match="UINT8"):
        Interpreter.from_bytes(data)


# ---------------------------------------------------------------------------------- against TFLM

GEOMETRIES = [
    # (H, W, C), (filter h, w), (stride h, w), padding
    ((7, 9, 3), (3, 3), (2, 2), "SAME"),
    ((7, 9, 3), (3, 3), (2, 2), "VALID"),
    ((5, 5, 1), (5, 4), (2, 3), "SAME"),   # window larger than the stride, clipped on every side
    ((13, 4, 5), (4, 4), (3, 3), "SAME"),
    ((8, 6, 4), (3, 2), (1, 2), "VALID"),
    ((1, 1, 2), (7, 7), (1, 2), "SAME"),   # a window bigger than the image
    ((6, 11, 2), (2, 2), (2, 2), "VALID"),
]


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("dtype", ["INT8", "INT16", "FLOAT32"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[0]}-f{g[1]}-s{g[2]}-{g[3]}")
def test_pooling_matches_tflm(op, dtype, geometry):
    from ops.common import padding_and_output_size
    (h, w, c), (fh, fw), (sh, sw), padding = geometry
    pad_code = 0 if padding == "SAME" else 1
    oh, _ = padding_and_output_size(pad_code, h, fh, sh, 1)
    ow, _ = padding_and_output_size(pad_code, w, fw, sw, 1)
    rng = np.random.default_rng(hash((op, dtype, geometry)) & 0xFFFF)
    zp = 7 if dtype == "INT8" else 0
    for act in ("NONE", "RELU", "RELU6"):
        data = pool_model(op, [2, h, w, c], [2, oh, ow, c], dtype, qi=(0.05, zp),
                          **window(fh, fw, sh, sw, padding, act))
        inputs = [random_inputs(rng, [2, h, w, c], dtype.lower(), 8, zero_point=zp, scale=0.05)]
        assert check_model(data, inputs, label=f"{op} {dtype}").compared
