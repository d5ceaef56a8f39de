"""Example conformance suite: a hand-written numpy int8 conv (numpy_conv.py) checked against
microref with the microref pytest plugin (fixtures microref_model, assert_bit_exact, tflm_oracle;
parametrize_models; --microref-numerics). See "Testing your own kernels" in the README.

MICROREF_EXAMPLE_ROUNDING=single runs the deliberately broken kernel (single rounding): the suite
then fails with the plugin's report, unless run with --microref-numerics rounding=single.
"""
import os
from pathlib import Path

import numpy as np
from conv_models import SHAPES, conv_model
from numpy_conv import conv2d_int8

from interp.tools.pytest_plugin import parametrize_models

ROUNDING = os.environ.get("MICROREF_EXAMPLE_ROUNDING", "double")
MODELS = Path(__file__).resolve().parent / "models"


def run_my_kernel(it, x):
    """Call the kernel under test with the CONV_2D operator's parameters read from the model."""
    op = it.subgraph.operators[0]
    xt, wt, bt = (it.tensors[i] for i in op.inputs)
    yt = it.tensors[op.outputs[0]]
    return conv2d_int8(
        x, wt.data, bt.data,
        input_scale=xt.quantization.scale, input_zero_point=xt.quantization.zero_point,
        filter_scales=wt.quantization.scales, output_scale=yt.quantization.scale,
        output_zero_point=yt.quantization.zero_point, stride=op.options["stride_h"],
        padding=str(op.options["padding"]), relu=str(op.options["fused_activation_function"]) == "RELU",
        rounding=ROUNDING)


@parametrize_models(MODELS, seeds=3)
def test_my_conv_matches_microref(model_case, microref_model, assert_bit_exact):
    it = microref_model(model_case.path)
    x, = model_case.inputs(it)
    assert_bit_exact(run_my_kernel(it, x), it, inputs=[x])


def test_my_conv_on_a_larger_random_model(microref_model, assert_bit_exact):
    data = conv_model((1, 16, 16, 8), 12, 3, 1, "SAME", False, seed=42)
    it = microref_model(data)
    x = np.random.default_rng(7).integers(-128, 128, (1, 16, 16, 8)).astype(np.int8)
    assert_bit_exact(run_my_kernel(it, x), data, inputs=[x])


def test_microref_is_tflm_on_these_models(tflm_oracle, microref_model, assert_bit_exact):
    """The oracle behind the oracle: microref's outputs equal TFLM's (skips without the wheel)."""
    for name in SHAPES:
        path = MODELS / f"{name}.tflite"
        it = microref_model(path, numerics=None)  # the wheel's arithmetic, whatever --microref-numerics says
        x = np.random.default_rng(1).integers(-128, 128, tuple(it.input_details[0]["shape"])).astype(np.int8)
        assert_bit_exact(tflm_oracle.run(path, [x])[0], it, inputs=[x])
