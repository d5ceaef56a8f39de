"""``MicroInterpreter``: the ``tflite_micro`` Python ``runtime.Interpreter`` surface over microref,
with the arena size TFLM needs (``arena_bytes_needed``) and its ``print_allocations`` report.
"""
from __future__ import annotations

import enum
import os
import sys
from typing import Any

import numpy as np

from ..api import Interpreter as _Interpreter
from ..errors import InputError, MicrorefError
from ..model import Tensor
from .common import _as, _interpreter_options, _load, _prepare, _quantization_parameters, _type_name


class InterpreterConfig(enum.Enum):
    """tflite_micro's ``runtime.InterpreterConfig`` (its own enum is accepted too, by name)."""

    kAllocationRecording = 0
    kPreserveAllTensors = 1


_ALIGN = 16  # MicroArenaBufferAlignment()


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def arena_bytes_needed(it: _Interpreter) -> dict[str, int]:
    """The arena TFLM (the x86-64 tflite-micro wheel) needs for ``it``'s model, in bytes:

    * ``needed``: the smallest ``arena_size`` with which TFLM's ``AllocateTensors`` succeeds,
      found by replaying every allocation TFLM makes (``interp.planner.tail``): exact when
      ``exact`` is 1 (every operator's allocations are known), else a lower bound;
    * ``final``: head + tail after ``AllocateTensors`` (what ``print_allocations`` calls the total);
    * ``head`` and ``tail``: the planned head and the persistent tail.
    """
    req = it.plan.tail
    return {"needed": req.minimum_arena, "final": req.total_bytes, "head": req.head_bytes,
            "tail": req.tail_bytes, "exact": int(req.exact and it.plan.exact)}


class MicroInterpreter:
    """microref behind the ``tflite_micro`` Python ``runtime.Interpreter`` surface.

    ``arena_size`` (default: 10 times the model's size, as TFLM's) is checked against what TFLM
    needs (``arena_bytes_needed``): too small an arena raises RuntimeError("TFLM failed to
    allocate tensors: ...") from the constructor, where TFLM fails. microref's own options:
    ``numerics``, ``kernels``, ``max_while_iterations``.
    """

    def __init__(self, model_data, custom_op_registerers, arena_size,
                 intrepreter_config=InterpreterConfig.kAllocationRecording, alt_decompression_memory_size: int = 0,
                 *, numerics=None, kernels: str = "fast", max_while_iterations: int | None = None):
        if model_data is None:
            raise ValueError("Model must not be None")
        if not isinstance(custom_op_registerers, list) or not all(isinstance(s, str) for s in custom_op_registerers):
            raise ValueError("Custom ops registerers must be a list of strings")
        data = bytes(model_data)
        if arena_size is None:
            arena_size = len(data) * 10
        self.arena_size = int(arena_size)
        config = getattr(intrepreter_config, "name", intrepreter_config)
        if config not in InterpreterConfig.__members__:
            raise ValueError(f"intrepreter_config must be one of {list(InterpreterConfig.__members__)}")
        self._preserve = config == "kPreserveAllTensors"
        model = _load(data)
        self._it = _prepare(model, _interpreter_options(numerics, kernels, max_while_iterations),
                            "TFLM failed to allocate tensors")
        self.arena = arena_bytes_needed(self._it)
        if self.arena_size < self.arena["needed"]:
            bound = "" if self.arena["exact"] else "at least "
            raise RuntimeError(f"TFLM failed to allocate tensors: the arena of {self.arena_size:,} bytes is too small; "
                               f"the model needs {bound}{self.arena['needed']:,} (planned head {self.arena['head']:,} "
                               f"bytes, persistent tail {self.arena['tail']:,}; the smallest arena is set by "
                               f"{self._it.plan.tail.binding})")
        sg = self._it.subgraph
        self._inputs_values = [np.zeros(t.shape, t.dtype) for t in (sg.tensors[i] for i in sg.inputs)]
        self._outputs_values = [np.zeros(t.shape, t.dtype) for t in (sg.tensors[i] for i in sg.outputs)]
        self._invoked = False

    @classmethod
    def from_file(cls, model_path, custom_op_registerers=None, arena_size=None,
                  intrepreter_config=InterpreterConfig.kAllocationRecording, alt_decompression_memory_size: int = 0,
                  **microref_options) -> MicroInterpreter:
        """Load a .tflite file (``ValueError("Invalid model file path")`` if it is not one)."""
        if model_path is None or not os.path.isfile(model_path):
            raise ValueError("Invalid model file path")
        with open(model_path, "rb") as f:
            data = f.read()
        return cls(data, custom_op_registerers or [], arena_size, intrepreter_config,
                   alt_decompression_memory_size, **microref_options)

    @classmethod
    def from_bytes(cls, model_data, custom_op_registerers=None, arena_size=None,
                   intrepreter_config=InterpreterConfig.kAllocationRecording, alt_decompression_memory_size: int = 0,
                   **microref_options) -> MicroInterpreter:
        """Load a model from the bytes of a .tflite file."""
        return cls(model_data, custom_op_registerers if custom_op_registerers is not None else [], arena_size,
                   intrepreter_config, alt_decompression_memory_size, **microref_options)

    @property
    def microref(self) -> _Interpreter:
        """The underlying ``interp.Interpreter``."""
        return self._it

    @staticmethod
    def _check(index, count: int, what: str) -> int:
        if index is None or index < 0:
            raise ValueError("Index must be a non-negative integer")
        if index >= count:
            raise IndexError(f"Tensor is out of bound, please check tensor index. ({what} index {index} out of "
                             f"range (length is {count}))")
        return int(index)

    def set_input(self, input_data, index) -> None:
        """Copy ``input_data`` into input ``index`` (its exact dtype and shape, else ValueError)."""
        if input_data is None:
            raise ValueError("Input data must not be None")
        sg = self._it.subgraph
        k = self._check(index, len(sg.inputs), "Input")
        t = sg.tensors[sg.inputs[k]]
        value = np.asarray(input_data)
        if value.dtype != t.dtype:
            raise ValueError(f"Cannot set tensor: Got value of type {_type_name(value.dtype)} but expected type "
                             f"{t.type_name} for input {k}")
        if value.ndim != len(t.shape):
            raise ValueError(f"Cannot set tensor: Dimension mismatch. Got {value.ndim} but expected {len(t.shape)} "
                             f"for input {k}")
        for d, (got, want) in enumerate(zip(value.shape, t.shape)):
            if got != want:
                raise ValueError(f"Cannot set tensor: Dimension mismatch. Got {got} but expected {want} for "
                                 f"dimension {d} of input {k}")
        self._inputs_values[k] = value.copy()

    def invoke(self) -> int:
        """Run the model on the inputs set; returns 0 (kTfLiteOk), raises RuntimeError on failure."""
        try:
            outs = self._it.run(self._inputs_values, keep=self._preserve)
        except MicrorefError as e:
            raise _as(e, RuntimeError) from None
        self._outputs_values = outs
        self._invoked = True
        return 0

    def reset(self) -> int:
        """Forget earlier invokes (TFLM's MicroInterpreter::Reset); returns 0."""
        self._it.reset()
        return 0

    def get_output(self, index) -> np.ndarray:
        """A copy of output ``index`` after the last invoke (zeros before the first)."""
        sg = self._it.subgraph
        k = self._check(index, len(sg.outputs), "Output")
        return np.array(self._outputs_values[k])

    def _details(self, t: Tensor) -> dict[str, Any]:
        _, params = _quantization_parameters(t)
        return {"dtype": t.dtype.type if t.dtype is not None else None,
                "shape": np.array(t.shape, dtype=np.int32), "quantization_parameters": params}

    def get_input_details(self, index) -> dict[str, Any]:
        """``dtype``, ``shape`` and ``quantization_parameters`` of input ``index``, as TFLM gives them."""
        sg = self._it.subgraph
        return self._details(sg.tensors[sg.inputs[self._check(index, len(sg.inputs), "Input")]])

    def get_output_details(self, index) -> dict[str, Any]:
        """``dtype``, ``shape`` and ``quantization_parameters`` of output ``index``."""
        sg = self._it.subgraph
        return self._details(sg.tensors[sg.outputs[self._check(index, len(sg.outputs), "Output")]])

    def GetTensor(self, tensor_index, subgraph_index) -> dict[str, Any]:  # noqa: N802 (TFLM's name)
        """``{"dtype", "shape", "tensor_data"}`` of any tensor after an invoke, with
        ``intrepreter_config=InterpreterConfig.kPreserveAllTensors`` as TFLM requires."""
        if not self._preserve:
            raise RuntimeError("TFLM only supports GetTensor() when using a python interpreter with the "
                               "InterpreterConfig.kPeserverAllTensors interpreter_config")
        subgraphs = self._it.model.subgraphs
        if not 0 <= int(subgraph_index) < len(subgraphs):
            raise IndexError(f"subgraph {subgraph_index} is out of range: the model has {len(subgraphs)}")
        tensors = subgraphs[int(subgraph_index)].tensors
        if not 0 <= int(tensor_index) < len(tensors):
            raise IndexError(f"Tensor is out of bound, please check tensor index. (tensor {tensor_index}; "
                             f"subgraph {subgraph_index} has {len(tensors)})")
        t = tensors[int(tensor_index)]
        if t.data is not None:
            data = np.array(t.data)
        elif not self._invoked:
            data = np.zeros(t.shape, t.dtype)
        else:
            try:
                data = np.array(self._it.tensor(int(tensor_index), int(subgraph_index)))
            except InputError as e:
                raise _as(e, RuntimeError) from None
        return {"dtype": t.dtype.type if t.dtype is not None else None,
                "shape": np.array(t.shape, dtype=np.int32), "tensor_data": data}

    def allocation_lines(self) -> list[str]:
        """What ``print_allocations`` prints: TFLM's RecordingMicroAllocator report, with
        microref's numbers (replayed for the x86-64 wheel; see ``interp.planner.tail``)."""
        req = self._it.plan.tail
        prefix = "[RecordingMicroAllocator]"
        lines = [f"{prefix} Arena allocation total {req.total_bytes} bytes",
                 f"{prefix} Arena allocation head {req.head_bytes} bytes",
                 f"{prefix} Arena allocation tail {req.tail_bytes} bytes"]
        what = {"TfLiteEvalTensor data": "allocations", "Persistent TfLiteTensor data": "tensors",
                "NodeAndRegistration struct": "NodeAndRegistration structs"}
        for name, (requested, used, count) in req.records.items():
            if used > 0 or requested > 0:
                lines.append(f"{prefix} '{name}' used {used} bytes with alignment overhead (requested {requested} "
                             f"bytes for {count} {what.get(name, 'allocations')})")
        return lines

    def print_allocations(self) -> None:
        """Print the arena usage to stderr as TFLM's print_allocations does (microref's numbers)."""
        print("\n".join(self.allocation_lines()), file=sys.stderr)
