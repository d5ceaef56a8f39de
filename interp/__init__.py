"""microref: a readable, bit-exact reference interpreter for int8 TFLite models (TFLM arithmetic)."""
from .errors import InputError, MicrorefError, ModelError, UnsupportedOpError
from .executor import Interpreter
from .model import Model, Operator, Quantization, Subgraph, Tensor, load_model

__all__ = ["Interpreter", "MicrorefError", "ModelError", "UnsupportedOpError", "InputError",
           "Model", "Operator", "Quantization", "Subgraph", "Tensor", "load_model"]
__version__ = "0.1.0"
