"""Small int8 CONV_2D models for the example suite, written with microref's ModelBuilder.

``python tests/plugin_example/conv_models.py`` (re)writes ``models/``: the folder the suite
parametrizes over (stand-ins for the models of your own product)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from interp.builder import ModelBuilder

MODELS = Path(__file__).resolve().parent / "models"

# name: (input shape, output channels, kernel, stride, padding, relu)
SHAPES = {
    "conv_3x3_same_relu": ((1, 8, 8, 3), 4, 3, 1, "SAME", True),
    "conv_5x5_valid_stride2": ((1, 11, 9, 2), 5, 5, 2, "VALID", False),
    "conv_1x1_wide": ((1, 4, 4, 16), 8, 1, 1, "VALID", False),
}


def conv_model(input_shape, out_channels, kernel, stride, padding, relu, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    cin = input_shape[-1]
    b = ModelBuilder()
    x = b.input("x", list(input_shape), "INT8", scale=0.04, zero_point=-7)
    scales = (0.005 + 0.02 * rng.random(out_channels)).astype(np.float32)
    w = b.constant("w", rng.integers(-127, 128, (out_channels, kernel, kernel, cin)).astype(np.int8),
                   scale=scales.tolist(), zero_point=0, quantized_dimension=0)
    bias = b.constant("b", rng.integers(-3000, 3000, out_channels).astype(np.int32),
                      scale=(0.04 * scales).tolist(), zero_point=0)
    if padding == "SAME":
        oh, ow = -(-input_shape[1] // stride), -(-input_shape[2] // stride)
    else:
        oh, ow = (input_shape[1] - kernel) // stride + 1, (input_shape[2] - kernel) // stride + 1
    y = b.tensor("y", [input_shape[0], oh, ow, out_channels], "INT8", scale=0.09, zero_point=3)
    b.op("CONV_2D", [x, w, bias], [y], padding=padding, stride_w=stride, stride_h=stride,
         fused_activation_function="RELU" if relu else "NONE")
    b.output(y)
    return b.build()


def write_models() -> None:
    MODELS.mkdir(exist_ok=True)
    for name, shape in SHAPES.items():
        (MODELS / f"{name}.tflite").write_bytes(conv_model(*shape))


if __name__ == "__main__":
    write_models()
