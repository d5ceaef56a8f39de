"""The runtime layer: every operator prepared once (ops' kernels), then samples run through the
graph, with the state TFLM keeps across calls."""
from .blas import limited_blas_threads
from .interpreter import Interpreter
from .values import dequantize_tensor, variable_reset_value

__all__ = ["Interpreter", "dequantize_tensor", "limited_blas_threads", "variable_reset_value"]
