"""The runtime layer: every operator prepared once (ops' kernels), then samples run through the
graph, with the state TFLM keeps across calls."""
from .blas import batch_tuning, limited_blas_threads, retained_heap
from .interpreter import Interpreter
from .values import dequantize_tensor, variable_reset_value

__all__ = ["Interpreter", "batch_tuning", "dequantize_tensor", "limited_blas_threads", "retained_heap",
           "variable_reset_value"]
