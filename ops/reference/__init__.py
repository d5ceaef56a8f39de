"""The arithmetic: plain kernels shaped like TFLM's reference functions.

Each function takes an op family's prepared parameters (``ops.params``) and the raw input arrays
(with the leading sample axis of the eval convention) and returns the output, with TFLM's loop
structure: accumulate ``filter·(input + input_offset)`` over the taps TFLM visits, add the bias,
MultiplyByQuantizedMultiplier, add the output offset, clamp. They are vectorised only over the
axes TFLM's loops treat independently (samples, output positions, channels), never with size
thresholds, float shortcuts or workspaces. ``Interpreter.from_file(path, kernels="reference")``
runs a whole model with them; the fast kernels are pinned to them by property tests.

Ops whose kernel has no fast path (elementwise, activations, shape ops, ...) are their own
reference: their ``eval`` is the plain formula.
"""
from .conv import conv_2d, depthwise_conv_2d
from .elementwise import add, mul, requantize_elementwise, sub
from .fully_connected import fully_connected
from .pooling import average_pool, max_pool
from .requantize import requantize
from .softmax import softmax_int8

__all__ = ["add", "average_pool", "conv_2d", "depthwise_conv_2d", "fully_connected", "max_pool", "mul", "requantize",
           "requantize_elementwise", "softmax_int8", "sub"]
