"""``Interpreter`` and ``SignatureRunner``: the ``tf.lite.Interpreter`` /
``ai_edge_litert.interpreter.Interpreter`` surface over microref (see the package docstring,
interp/compat/__init__.py, for where it differs from LiteRT on purpose).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ..api import Interpreter as _Interpreter
from ..errors import InputError, MicrorefError
from ..model import Tensor
from ..model.parse import SignatureDef
from .common import _as, _interpreter_options, _load, _prepare, _quantization_parameters, _type_name

# LiteRT's message when numpy views returned by tensor() are still alive (the C++ buffers they
# point into may move); microref's buffers do not move, but the rule is kept so that code tested
# here does not fail on LiteRT.
_VIEWS_ALIVE = """There is at least 1 reference to internal data
      in the interpreter in the form of a numpy array or slice. Be sure to
      only hold the function returned from tensor() if you are using raw
      data access."""


class Interpreter:
    """microref behind the ``tf.lite.Interpreter`` / ``ai_edge_litert`` Interpreter surface.

    ``model_path`` or ``model_content`` (exactly one) gives the model. ``experimental_delegates``,
    ``num_threads``, ``experimental_op_resolver_type`` and the other ``experimental_*`` options
    LiteRT takes are accepted and have no effect (``num_threads`` is checked as LiteRT checks it).
    ``experimental_preserve_all_tensors=True`` keeps every intermediate tensor for
    ``get_tensor``/``tensor()``. microref's own options: ``numerics``, ``kernels`` and
    ``max_while_iterations``, as ``interp.Interpreter`` takes them.

    After ``allocate_tensors()``, ``microref`` is the underlying ``interp.Interpreter`` (its
    ``tensor()``, ``dequantized()``, ``plan``, and ``interp.tools.explain`` work on it).
    """

    def __init__(self, model_path=None, model_content=None, experimental_delegates=None, num_threads=None,
                 experimental_op_resolver_type=None, experimental_preserve_all_tensors: bool = False, *,
                 numerics=None, kernels: str = "fast", max_while_iterations: int | None = None,
                 **experimental_options):
        unknown = [k for k in experimental_options if not k.startswith("experimental_")]
        if unknown:
            raise TypeError(f"Interpreter() got an unexpected keyword argument {unknown[0]!r}")
        if num_threads is not None:
            if not isinstance(num_threads, int):
                raise ValueError("type of num_threads should be int")
            if num_threads < 1:
                raise ValueError("num_threads should >= 1")
        if model_path and not model_content:
            self._model = _load(os.fspath(model_path))
        elif model_content and not model_path:
            self._model = _load(bytes(model_content))
        elif not model_content and not model_path:
            raise ValueError("`model_path` or `model_content` must be specified.")
        else:
            raise ValueError("Can't both provide `model_path` and `model_content`")
        self._options = _interpreter_options(numerics, kernels, max_while_iterations)
        self._preserve = bool(experimental_preserve_all_tensors)
        self._it: _Interpreter | None = None
        sg = self._model.main
        self._tensors = sg.tensors
        self._inputs = list(sg.inputs)
        self._outputs = list(sg.outputs)
        # The shape each input is to have at the next allocate_tensors (resize_tensor_input).
        self._requested = {ti: tuple(self._tensors[ti].shape) for ti in self._inputs}
        self._allocated: dict[int, tuple[int, ...]] | None = None  # input shapes of the allocation
        self._batch = 1
        self._buffers: dict[int, np.ndarray] = {}  # inputs' and outputs' values (tensor() views)
        self._kept: dict[int, np.ndarray] = {}  # intermediates of the last invoke (preserve all)
        self._kept_subgraphs: dict[int, dict[int, np.ndarray]] = {}
        self._signature_defs = self.get_signature_list()

    # ------------------------------------------------------------------ helpers
    @property
    def microref(self) -> _Interpreter:
        """The underlying ``interp.Interpreter`` (prepared at the first ``allocate_tensors()``)."""
        if self._it is None:
            raise RuntimeError("the model is prepared by allocate_tensors(); call it first")
        return self._it

    def _check_index(self, tensor_index, subgraph_index: int = 0) -> tuple[int, Tensor]:
        n_sub = len(self._model.subgraphs)
        s = int(subgraph_index)
        if not 0 <= s < n_sub:
            raise ValueError(f"Invalid subgraph index {s} exceeds max subgraph index {n_sub}")
        tensors = self._model.subgraphs[s].tensors
        i = int(tensor_index)
        if not 0 <= i < len(tensors):
            raise ValueError(f"Invalid tensor index {i} exceeds max tensor index {len(tensors)}")
        return i, tensors[i]

    def _ready(self) -> bool:
        return self._allocated is not None and self._allocated == self._requested

    def _ensure_safe(self) -> None:
        # A buffer is referenced by the dict, the loop variable and getrefcount's argument; any
        # more references are numpy views handed out by tensor(). (No frame that raises holds a
        # buffer: a kept traceback would otherwise keep it "in use".)
        if any(sys.getrefcount(buf) > 3 for buf in self._buffers.values()):
            raise RuntimeError(_VIEWS_ALIVE)

    def _shape(self, ti: int) -> tuple[int, ...]:
        if ti in self._requested:
            return self._requested[ti]
        shape = tuple(self._tensors[ti].shape)
        if ti in self._outputs and self._batch != 1:
            return (self._batch * shape[0],) + shape[1:]
        return shape

    def _get_tensor_details(self, tensor_index, subgraph_index) -> dict[str, Any]:
        i, t = self._check_index(tensor_index, subgraph_index)
        if t.dtype is None or t.type_name == "INT4":
            raise ValueError("Could not get tensor details")
        legacy, params = _quantization_parameters(t)
        params["block_size"] = 0
        shape = self._shape(i) if int(subgraph_index) == 0 else tuple(t.shape)
        signature = t.shape_signature if t.shape_signature is not None else t.shape
        return {
            "name": t.name,
            "index": i,
            "shape": np.array(shape, dtype=np.int32),
            "shape_signature": np.array(signature, dtype=np.int32),
            "dtype": t.dtype.type,
            "quantization": legacy,
            "quantization_parameters": params,
            "sparsity_parameters": {},
        }

    # ------------------------------------------------------------------ LiteRT's methods
    def allocate_tensors(self) -> None:
        """Prepare the model (first call) and give every input and output its buffer, with the
        shapes ``resize_tensor_input`` asked for. Raises RuntimeError for a model TFLM rejects or
        that uses operators microref does not implement, and for a resize microref cannot run."""
        self._ensure_safe()
        if self._it is None:
            self._it = _prepare(self._model, self._options, "allocate_tensors failed")
        batches = set()
        for k, ti in enumerate(self._inputs):
            t = self._tensors[ti]
            want, have = self._requested[ti], tuple(t.shape)
            if want == have:
                batches.add(1)
                continue
            if len(want) != len(have) or not have or have[0] != 1 or want[1:] != have[1:] or want[0] < 1:
                raise RuntimeError(
                    f'allocate_tensors failed: input {k} "{t.name}" has shape {list(have)}, resized to '
                    f"{list(want)}; microref runs the model's own shapes and can only set the batch "
                    f"(first) dimension, to 1 or more, of inputs whose batch is 1")
            batches.add(want[0])
        batch = max(batches) if batches else 1
        if batch != 1:
            if len(batches) > 1:
                raise RuntimeError(f"allocate_tensors failed: the inputs are resized to different batches "
                                   f"{sorted(batches)}; resize every input to the same batch")
            if self._it.stateful:
                raise RuntimeError("allocate_tensors failed: microref runs a stateful model (its outputs depend "
                                   "on earlier invokes) one sample at a time; it cannot resize its batch")
            for ti in self._outputs:
                shape = tuple(self._tensors[ti].shape)
                if not shape or shape[0] != 1:
                    raise RuntimeError(f'allocate_tensors failed: output "{self._tensors[ti].name}" has shape '
                                       f"{list(shape)}, with no batch dimension of 1; microref cannot resize "
                                       f"this model's batch")
        self._batch = batch
        self._allocated = dict(self._requested)
        buffers = {}
        for ti in self._inputs + self._outputs:
            t = self._tensors[ti]
            if t.dtype is None:
                continue
            shape = self._shape(ti)
            old = self._buffers.get(ti)
            buffers[ti] = old if old is not None and old.shape == shape else np.zeros(shape, t.dtype)
        self._buffers = buffers
        self._kept, self._kept_subgraphs = {}, {}

    def get_input_details(self) -> list[dict[str, Any]]:
        """One dict per model input: ``name``, ``index``, ``shape``, ``shape_signature``,
        ``dtype``, ``quantization``, ``quantization_parameters`` (``scales``, ``zero_points``,
        ``quantized_dimension``, ``block_size``) and ``sparsity_parameters``, as LiteRT gives them."""
        return [self._get_tensor_details(i, 0) for i in self._inputs]

    def get_output_details(self) -> list[dict[str, Any]]:
        """One dict per model output, with the keys of ``get_input_details``."""
        return [self._get_tensor_details(i, 0) for i in self._outputs]

    def get_tensor_details(self, subgraph_index: int = 0) -> list[dict[str, Any]]:
        """The details of every tensor of a subgraph that has a numpy type."""
        n_sub = len(self._model.subgraphs)
        if subgraph_index < 0 or subgraph_index >= n_sub:
            raise ValueError(f"subgraph_index is out of range: {subgraph_index} for the model, which has "
                             f"{n_sub} subgraphs.")
        details = []
        for t in self._model.subgraphs[subgraph_index].tensors:
            try:
                details.append(self._get_tensor_details(t.index, subgraph_index))
            except ValueError:
                pass
        return details

    def num_subgraphs(self) -> int:
        return len(self._model.subgraphs)

    def set_tensor(self, tensor_index, value) -> None:
        """Copy ``value`` into an input tensor (its exact dtype and shape, else ValueError)."""
        i, t = self._check_index(tensor_index)
        if i not in self._requested:
            raise ValueError(f'Cannot set tensor: tensor {i} "{t.name}" is not an input of the model; microref '
                             f"feeds only its inputs (tensors {self._inputs})")
        if not self._ready() or i not in self._buffers:
            raise ValueError("Cannot set tensor: Tensor is unallocated. Try calling allocate_tensors() first")
        value = np.asarray(value)
        if value.dtype != t.dtype:
            raise ValueError(f"Cannot set tensor: Got value of type {_type_name(value.dtype)} but expected type "
                             f"{t.type_name} for input {i}, name: {t.name} ")
        buf = self._buffers[i]
        if value.ndim != buf.ndim:
            raise ValueError(f"Cannot set tensor: Dimension mismatch. Got {value.ndim} but expected {buf.ndim} "
                             f"for input {i}.")
        for d, (got, want) in enumerate(zip(value.shape, buf.shape)):
            if got != want:
                raise ValueError(f"Cannot set tensor: Dimension mismatch. Got {got} but expected {want} for "
                                 f"dimension {d} of input {i}.")
        np.copyto(buf, value)

    def resize_tensor_input(self, input_index, tensor_size, strict: bool = False) -> None:
        """Ask for a new input shape, applied by the next ``allocate_tensors()``. microref can
        change the batch (first) dimension of inputs whose batch is 1 (see the module notes).
        ``strict=True`` allows changing only dimensions that are -1 in ``shape_signature``."""
        self._ensure_safe()
        size = tuple(int(d) for d in np.array(tensor_size, dtype=np.int32).reshape(-1))
        i, t = self._check_index(input_index)
        if i not in self._requested:
            raise ValueError(f'tensor {i} "{t.name}" is not an input of the model; only inputs can be resized '
                             f"(tensors {self._inputs})")
        if strict:
            signature = t.shape_signature if t.shape_signature is not None else t.shape
            if len(size) != len(signature):
                raise RuntimeError(f"ResizeInputTensorStrict: tensor {i} has {len(signature)} dimensions, "
                                   f"{len(size)} given.")
            for d, (new, old, sig) in enumerate(zip(size, t.shape, signature)):
                if sig != -1 and new != old:
                    raise RuntimeError(f"Attempting to resize dimension {d} of tensor {i} with value {old} to "
                                       f"{new}. ResizeInputTensorStrict only allows mutating unknown dimensions "
                                       f"identified by -1.")
        self._requested[i] = size

    def invoke(self) -> None:
        """Run the model on the inputs' buffers; the outputs' buffers then hold TFLM's results."""
        if not self._ready():
            raise RuntimeError("Invoke called on model that is not ready.")
        self._ensure_safe()
        it = self.microref
        arrays = [self._buffers[ti] for ti in self._inputs]
        try:
            if self._batch == 1:
                outs = it.run(arrays, keep=self._preserve)
            else:
                n = self._batch
                outs = it.run_batch([a.reshape((n,) + tuple(self._tensors[ti].shape)) for a, ti
                                     in zip(arrays, self._inputs)], keep=self._preserve)
                outs = [o.reshape(self._shape(ti)) for o, ti in zip(outs, self._outputs)]
        except InputError as e:
            raise _as(e, ValueError) from None
        except MicrorefError as e:
            raise _as(e, RuntimeError) from None
        for ti, value in zip(self._outputs, outs):
            if ti in self._buffers:
                np.copyto(self._buffers[ti], value)
        if self._preserve:
            self._kept = dict(it._kept or {})
            self._kept_subgraphs = dict(it._kept_subgraphs)

    def _value(self, i: int, t: Tensor, subgraph: int) -> np.ndarray:
        """The array behind tensor ``i`` (not a copy)."""
        if t.data is not None:
            return t.data
        if subgraph == 0 and (i in self._requested or i in self._outputs) and t.dtype is not None:
            if not self._ready() or i not in self._buffers:
                raise ValueError("Tensor data is null. Run allocate_tensors() first")
            return self._buffers[i]
        if t.dtype is None:
            raise ValueError(f'tensor {i} "{t.name}" is a {t.type_name} tensor, which has no numpy value')
        if not self._preserve:
            raise ValueError(f'tensor {i} "{t.name}" is an intermediate tensor: microref keeps intermediate values '
                             f"only with Interpreter(..., experimental_preserve_all_tensors=True)")
        kept = self._kept if subgraph == 0 else self._kept_subgraphs.get(subgraph, {})
        if i not in kept:
            raise ValueError(f'tensor {i} "{t.name}" has no value: it was not computed by the last invoke()')
        value = kept[i]
        if subgraph == 0 and self._batch != 1:
            value = value.reshape((self._batch * value.shape[1],) + value.shape[2:]) if value.ndim > 1 else value
        return value

    def get_tensor(self, tensor_index, subgraph_index: int = 0) -> np.ndarray:
        """A copy of a tensor's value: inputs, outputs and constants always; intermediates with
        ``experimental_preserve_all_tensors=True``."""
        i, t = self._check_index(tensor_index, subgraph_index)
        return np.array(self._value(i, t, int(subgraph_index)))

    def tensor(self, tensor_index) -> Callable[[], np.ndarray]:
        """A function returning a numpy view of the tensor's current buffer (writable for the
        inputs and outputs, read-only for constants and kept intermediates). As with LiteRT, hold
        the function, not the array: invoke() and allocate_tensors() refuse to run while such a
        view is alive."""
        def view() -> np.ndarray:
            i, t = self._check_index(tensor_index)
            value = self._value(i, t, 0)
            if i in self._buffers:
                return value[...]
            out = value.view()
            out.flags.writeable = False
            return out
        return view

    def reset_all_variables(self) -> None:
        """Reset the model's state (variable tensors, stateful kernels' buffers, resource
        variables) as TFLM's reset does."""
        if self._it is not None:
            self._it.reset()

    def get_signature_list(self) -> dict[str, dict[str, list[str]]]:
        """``{signature key: {"inputs": [names], "outputs": [names]}}``, names sorted as LiteRT
        lists them."""
        return {sd.key: {"inputs": sorted(sd.inputs), "outputs": sorted(sd.outputs)}
                for sd in self._model.signatures}

    def _get_full_signature_list(self) -> dict[str, dict[str, dict[str, int]]]:
        return {sd.key: {"inputs": dict(sorted(sd.inputs.items())), "outputs": dict(sorted(sd.outputs.items()))}
                for sd in self._model.signatures}

    def get_signature_runner(self, signature_key: str | None = None) -> SignatureRunner:
        """A callable running the signature ``signature_key`` (None: the model's only one) with
        keyword inputs by signature name, returning ``{output name: array}``."""
        if signature_key is None:
            if len(self._signature_defs) != 1:
                raise ValueError(f"SignatureDef signature_key is None and model has {len(self._signature_defs)} "
                                 f"Signatures. None is only allowed when the model has 1 SignatureDef")
            signature_key = next(iter(self._signature_defs))
        return SignatureRunner(interpreter=self, signature_key=signature_key)


class SignatureRunner:
    """Runs one SignatureDef with keyword inputs by signature name (LiteRT's SignatureRunner)."""

    def __init__(self, interpreter: Interpreter | None = None, signature_key: str | None = None):
        if not interpreter:
            raise ValueError("None interpreter provided.")
        if not signature_key:
            raise ValueError("None signature_key provided.")
        defs: dict[str, SignatureDef] = {sd.key: sd for sd in interpreter._model.signatures}
        if signature_key not in defs:
            raise ValueError(f'Invalid signature_key provided: "{signature_key}".')
        sd = defs[signature_key]
        if sd.subgraph_index != 0:
            raise ValueError(f'signature "{signature_key}" runs subgraph {sd.subgraph_index}; microref invokes '
                             f"subgraph 0, as TFLM does")
        self._interpreter = interpreter
        self._signature_key = signature_key
        self._inputs = dict(sorted(sd.inputs.items()))
        self._outputs = dict(sorted(sd.outputs.items()))

    def __call__(self, **kwargs) -> dict[str, np.ndarray]:
        if len(kwargs) != len(self._inputs):
            raise ValueError(f"Invalid number of inputs provided for running a SignatureDef, expected "
                             f"{len(self._inputs)} vs provided {len(kwargs)}")
        it = self._interpreter
        for name, value in kwargs.items():
            if name not in self._inputs:
                raise ValueError(f"Invalid Input name ({name}) for SignatureDef")
            it.resize_tensor_input(self._inputs[name], np.array(value.shape, dtype=np.int32))
        it.allocate_tensors()
        for name, value in kwargs.items():
            it.set_tensor(self._inputs[name], value)
        it.invoke()
        return {name: it.get_tensor(ti) for name, ti in self._outputs.items()}

    def get_input_details(self) -> dict[str, dict[str, Any]]:
        return {name: self._interpreter._get_tensor_details(ti, 0) for name, ti in self._inputs.items()}

    def get_output_details(self) -> dict[str, dict[str, Any]]:
        return {name: self._interpreter._get_tensor_details(ti, 0) for name, ti in self._outputs.items()}
