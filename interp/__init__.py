"""microref: a readable, bit-exact reference interpreter for int8 TFLite models (TFLM arithmetic).

The package is layered; imports only point down (declared as an import-linter contract in
pyproject.toml):

    interp.tools    the command line, compare, explain, vectors
    interp.compat   tf.lite- and TFLM-shaped interpreters over the public one
    interp.api      the public Interpreter (runtime + arena plan)
    interp.planner  TFLM's arena plan, better plans, execution inside the arena
    interp.runtime  prepare every operator once, run samples, keep state across calls
                    (interp.quantization beside it: TFLM's QUANTIZE/DEQUANTIZE for users)
    ops             kernels: prepared parameters, the reference arithmetic, fast paths
    interp.model    parse, verify, graph checks, the model builder
    interp.errors   the typed errors

This module is the façade over them. The errors and the model classes load with it; the
Interpreter is loaded on first use (PEP 562), so that ``ops``, which sits below the runtime and
imports ``interp.model``, never pulls the runtime in while it is itself being imported.
"""
from .errors import InputError, InvokeError, MicrorefError, ModelError, TensorLookupError, UnsupportedOpError
from .model import Model, Operator, Quantization, Subgraph, Tensor, load_model, verify

__all__ = ["InputError", "Interpreter", "InvokeError", "MicrorefError", "Model", "ModelError", "Operator",
           "Quantization", "Subgraph", "Tensor", "TensorLookupError", "UnsupportedOpError", "batch_tuning",
           "dequantize", "limited_blas_threads", "load_model", "quantize", "retained_heap", "verify"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Interpreter":
        from .api import Interpreter
        return Interpreter
    if name in ("quantize", "dequantize"):
        from . import quantization
        return getattr(quantization, name)
    if name in ("limited_blas_threads", "retained_heap", "batch_tuning"):
        from .runtime import blas
        return getattr(blas, name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
