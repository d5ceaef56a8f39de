"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR (ops/resize.py).

Pinned values are hand-derived from TFLM's index and weight formulas (and each is checked
against TFLM as well); the differential tests compare many sizes and flag combinations with TFLM.
"""
import numpy as np
import pytest
from diff_support import check_model, random_inputs
from diff_support import run_on_both as run

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from interp.errors import UnsupportedOpError
from ops.fixedpoint import tflite_round as roundf


def resize_model(op, in_shape, out_hw, dtype="INT8", align_corners=False, half_pixel_centers=False):
    b = ModelBuilder()
    q = {} if dtype == "FLOAT32" else dict(scale=0.05, zero_point=3)
    x = b.input("x", in_shape, dtype, **q)
    size = b.constant("size", np.array(out_hw, np.int32))
    y = b.tensor("y", [in_shape[0], out_hw[0], out_hw[1], in_shape[3]], dtype, **q)
    b.op(op, [x, size], [y], align_corners=align_corners, half_pixel_centers=half_pixel_centers)
    b.output(y)
    return b.build()


def row(values, dtype=np.int8):
    return np.array(values, dtype).reshape(1, 1, -1, 1)


# ---------------------------------------------------------------------------------- nearest

def test_nearest_align_corners_rounds_half_away_from_zero():
    # scale (3 - 1) / (5 - 1) = 0.5: source x = round(0, 0.5, 1, 1.5, 2) = 0, 1, 1, 2, 2.
    got = run(resize_model("RESIZE_NEAREST_NEIGHBOR", [1, 1, 3, 1], [1, 5], align_corners=True), row([10, 20, 30]))
    np.testing.assert_array_equal(got.ravel(), [10, 20, 20, 30, 30])


def test_nearest_half_pixel_centers_floor_the_shifted_coordinate():
    # scale 2 / 4: floor((x + 0.5) * 0.5) = 0, 0, 1, 1.
    got = run(resize_model("RESIZE_NEAREST_NEIGHBOR", [1, 1, 2, 1], [1, 4], half_pixel_centers=True), row([10, 20]))
    np.testing.assert_array_equal(got.ravel(), [10, 10, 20, 20])


def test_nearest_int16_and_float_are_byte_copies():
    for dtype in (np.int16, np.float32):
        x = row([-30000, 7, 12345], dtype)
        got = run(resize_model("RESIZE_NEAREST_NEIGHBOR", [1, 1, 3, 1], [1, 2],
                               "INT16" if dtype == np.int16 else "FLOAT32"), x)
        np.testing.assert_array_equal(got.ravel(), x.ravel()[[0, 1]])  # floor(x * 1.5) = 0, 1


def test_roundf_is_exact_where_adding_one_half_is_not():
    # 0.49999997f + 0.5f rounds to 1.0f in float32, so floor(x + 0.5) would give 1.
    values = np.array([0.49999997, 0.5, 1.5, 2.5, -0.5, -2.5, 8388609.0], np.float32)
    np.testing.assert_array_equal(roundf(values), np.array([0, 1, 2, 3, -1, -3, 8388609], np.float32))


# ---------------------------------------------------------------------------------- bilinear

def test_bilinear_int8_uses_10_bit_weights_and_rounds_away_from_zero():
    # 2 -> 3 wide: scale_10 = (2048 + 1) / 3 = 683. x = 1: weights 341 and 683 on [0, 100]
    # give 100 * 683 * 1024 / 2^20 = 66.7 -> 67; x = 2 reads pixel 1 twice (upper bound clamped).
    got = run(resize_model("RESIZE_BILINEAR", [1, 1, 2, 1], [1, 3]), row([0, 100]))
    np.testing.assert_array_equal(got.ravel(), [0, 67, 100])
    got = run(resize_model("RESIZE_BILINEAR", [1, 1, 2, 1], [1, 3]), row([-100, 0]))
    np.testing.assert_array_equal(got.ravel(), [-100, -33, 0])  # -33.3 -> -33


def test_bilinear_float_evaluates_the_c_expression_in_float32():
    x = row([0.0, 100.0], np.float32)
    got = run(resize_model("RESIZE_BILINEAR", [1, 1, 2, 1], [1, 3], "FLOAT32"), x)
    scale = np.float32(2) / np.float32(3)
    frac = np.float32(scale * np.float32(1))
    expected_mid = np.float32(np.float32(np.float32(0) * (np.float32(1) - frac)) + np.float32(100) * frac)
    assert got.ravel()[1] == expected_mid


def test_bilinear_reads_past_the_row_like_tflm():
    # 1 -> 70 wide: scale_10 = (1024 + 35) / 70 = 15, and 69 * 15 = 1035 gives a lower source
    # index of 1 in a 1-pixel row. TFLM does not clamp it and reads the next pixel in memory (the
    # next row's first pixel); microref reproduces that read.
    x = np.array([10, 90], np.int8).reshape(1, 2, 1, 1)
    got = run(resize_model("RESIZE_BILINEAR", [1, 2, 1, 1], [1, 70]), x)
    assert got[0, 0, 69, 0] == round((90 * 1013 + 10 * 11) / 1024)  # weight 1013 on the stray read
    assert got[0, 0, 68, 0] == 10


def test_bilinear_reading_past_the_tensor_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="past the end"):
        Interpreter.from_bytes(resize_model("RESIZE_BILINEAR", [1, 1, 1, 1], [1, 70]))


def test_bilinear_rejects_half_pixel_centers_with_align_corners():
    with pytest.raises(ModelError, match="align_corners must be False"):
        Interpreter.from_bytes(resize_model("RESIZE_BILINEAR", [1, 2, 2, 1], [4, 4], align_corners=True,
                                            half_pixel_centers=True))


def test_bilinear_int16_is_not_supported_by_tflm():
    with pytest.raises(UnsupportedOpError, match="INT16"):
        Interpreter.from_bytes(resize_model("RESIZE_BILINEAR", [1, 2, 2, 1], [4, 4], "INT16"))


# ---------------------------------------------------------------------------------- against TFLM

SIZES = [((4, 5), (8, 10)), ((5, 7), (13, 9)), ((8, 8), (3, 5)), ((1, 3), (4, 1)), ((3, 3), (64, 70)),
         ((6, 2), (6, 2)), ((2, 9), (17, 4))]
FLAGS = [(False, False), (True, False), (False, True)]


@pytest.mark.parametrize("op, dtype", [("RESIZE_BILINEAR", "INT8"), ("RESIZE_BILINEAR", "FLOAT32"),
                                       ("RESIZE_NEAREST_NEIGHBOR", "INT8"), ("RESIZE_NEAREST_NEIGHBOR", "INT16"),
                                       ("RESIZE_NEAREST_NEIGHBOR", "FLOAT32")])
@pytest.mark.parametrize("sizes", SIZES, ids=str)
@pytest.mark.parametrize("flags", FLAGS, ids=["plain", "align_corners", "half_pixel"])
def test_resize_matches_tflm(op, dtype, sizes, flags):
    (h, w), out_hw = sizes
    shape = [2, h, w, 3]
    data = resize_model(op, shape, out_hw, dtype, *flags)
    xs = random_inputs(np.random.default_rng(h * 10 + w), shape, dtype.lower(), 4, zero_point=3, scale=0.05)
    assert check_model(data, [xs], label=f"{op} {dtype}").compared
