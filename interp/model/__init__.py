"""The model layer: a .tflite file read into plain dataclasses, verified before anything trusts
it, and its data flow checked. Nothing here knows about kernels or running.

* ``parse`` — the flatbuffer parser (``load_model``) and the ``Model`` / ``Subgraph`` /
  ``Operator`` / ``Tensor`` / ``Quantization`` dataclasses;
* ``verify`` — structural limits applied before parsing (hostile files);
* ``graph`` — TFLM's in-order execution checked, producers, consumers and last uses;
* ``builder`` — writes small .tflite models from Python (tests, fuzzers, users' oracles).
"""
from . import verify
from .graph import GraphInfo, analyse
from .parse import (
    BUILTIN_OPERATOR_NAMES,
    BUILTIN_OPTIONS2_NAMES,
    BUILTIN_OPTIONS_NAMES,
    TENSOR_TYPES,
    Model,
    Operator,
    Quantization,
    Subgraph,
    Tensor,
    load_model,
)

__all__ = ["BUILTIN_OPERATOR_NAMES", "BUILTIN_OPTIONS2_NAMES", "BUILTIN_OPTIONS_NAMES", "TENSOR_TYPES",
           "GraphInfo", "Model", "Operator", "Quantization", "Subgraph", "Tensor", "analyse", "load_model",
           "verify"]
