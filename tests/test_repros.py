"""The defects of issue 12 that are not about float precision, each pinned against TFLM: zero
points near ±2^31 wrap in TFLM's int32 arithmetic, an input scale near FLT_MAX masks C's shift
count, and what TFLM leaves undefined (a 0-d FULLY_CONNECTED output, a SOFTMAX whose input and
output hold different numbers of values, constants stored outside the flatbuffer) is refused with
the reason instead of being given a value TFLM does not define."""
from pathlib import Path

import numpy as np
import pytest
from diff_support import check_model

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder

REPRO = Path(__file__).resolve().parents[1].parent / "shared" / "repro"
EXTREME_ZERO_POINTS = [-(1 << 31), (1 << 31) - 1, 1 << 31, (1 << 32) + 5, -(1 << 31) - 7]


def _tflm():
    return pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                               reason="tflite-micro (the oracle) is not installed")


def _repro(name: str) -> Path:
    path = REPRO / name
    if not path.exists():
        pytest.skip("../shared/repro is absent")
    return path


def _model_with_output_zero_point(op: str, zp: int, rng) -> bytes:
    b = ModelBuilder()
    if op == "FULLY_CONNECTED":
        x = b.input("x", [1, 16], "INT8", scale=0.05, zero_point=-3)
        w = b.constant("w", rng.integers(-127, 128, (6, 16)).astype(np.int8), scale=0.02, zero_point=0)
        y = b.tensor("y", [1, 6], "INT8", scale=0.01, zero_point=zp)
        b.op(op, [x, w, None], [y])
    elif op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x = b.input("x", [1, 6, 6, 3], "INT8", scale=0.05, zero_point=-3)
        shape = (4, 3, 3, 3) if op == "CONV_2D" else (1, 3, 3, 3)
        channels = shape[0] if op == "CONV_2D" else 3
        w = b.constant("w", rng.integers(-127, 128, shape).astype(np.int8), scale=[0.02] * channels,
                       zero_point=0, quantized_dimension=0 if op == "CONV_2D" else 3)
        y = b.tensor("y", [1, 6, 6, channels], "INT8", scale=0.01, zero_point=zp)
        options = dict(padding="SAME", stride_w=1, stride_h=1)
        if op == "DEPTHWISE_CONV_2D":
            options["depth_multiplier"] = 1
        bias = b.constant("b", np.zeros(channels, np.int32), scale=[0.001] * channels)
        b.op(op, [x, w, bias], [y], **options)
    else:  # ADD
        x = b.input("x", [1, 8], "INT8", scale=0.05, zero_point=-3)
        x2 = b.input("x2", [1, 8], "INT8", scale=0.05, zero_point=zp)
        y = b.tensor("y", [1, 8], "INT8", scale=0.01, zero_point=zp)
        b.op(op, [x, x2], [y])
    b.output(y)
    return b.build()


@pytest.mark.parametrize("op", ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD"])
@pytest.mark.parametrize("zp", EXTREME_ZERO_POINTS)
def test_zero_points_near_int32_limits_wrap_as_tflm_does(op, zp):
    _tflm()
    rng = np.random.default_rng(abs(zp) % 1000)
    data = _model_with_output_zero_point(op, zp, rng)
    it = Interpreter.from_bytes(data)
    inputs = [rng.integers(-128, 128, (16,) + tuple(d["shape"])).astype(np.int8) for d in it.input_details]
    assert check_model(data, inputs, label=f"{op} extreme zero point").compared


def test_logistic_with_input_scale_near_flt_max_matches_tflm():
    path = _repro("logistic_in_huge_3e38.tflite")
    ref = _tflm().Interpreter.from_file(str(path), arena_size=1 << 20)
    it = Interpreter.from_file(path)
    shape = tuple(it.input_details[0]["shape"])
    every_value = np.resize(np.arange(-128, 128, dtype=np.int8), (-(-256 // int(np.prod(shape))),) + shape)
    for sample in every_value:
        ref.set_input(sample, 0)
        ref.invoke()
        assert np.array_equal(it.run([sample])[0], ref.get_output(0))


def test_a_zero_d_fully_connected_output_is_refused_as_undefined():
    with pytest.raises(UnsupportedOpError, match="0-d output is undefined"):
        Interpreter.from_file(_repro("fc_scalar_output.tflite"))


def test_softmax_whose_input_holds_fewer_values_than_its_output_is_refused_as_undefined():
    with pytest.raises(UnsupportedOpError, match="different numbers of values"):
        Interpreter.from_file(_repro("softmax_legacy0_input.tflite"))


def test_constants_stored_outside_the_flatbuffer_are_not_read_as_tflm_does_not():
    with pytest.raises(ModelError, match="outside the flatbuffer"):
        Interpreter.from_file(_repro("weights_offset_in_file_ok.tflite"))
