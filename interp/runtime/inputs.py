"""A model's inputs: what run() accepts (checked, with a leading sample axis), their tf.lite-style
details, and seeded values over each input's whole range when the user gives none."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError


def random_inputs(it, rng) -> list[np.ndarray]:
    """Seeded inputs over each input's whole range (float inputs: standard normal)."""
    xs = []
    for d in it.input_details:
        dt = np.dtype(d["dtype"])
        shape = tuple(int(s) for s in d["shape"])
        if dt.kind == "f":
            xs.append(rng.standard_normal(shape).astype(dt))
        elif dt.kind == "b":
            xs.append(rng.integers(0, 2, shape).astype(dt))
        else:
            info = np.iinfo(dt)
            xs.append(rng.integers(info.min, info.max, shape, endpoint=True, dtype=np.int64).astype(dt))
    return xs


def tensor_details(t) -> dict[str, Any]:
    """tf.lite's details of one tensor: name, index, shape, dtype, quantization, quantization_parameters."""
    q = t.quantization
    return {
        "name": t.name,
        "index": t.index,
        "shape": np.array(t.shape, dtype=np.int32),
        "dtype": t.dtype.type if t.dtype is not None else None,
        "quantization": (q.scale, q.zero_point) if q is not None else (0.0, 0),
        "quantization_parameters": {
            "scales": q.scales.copy() if q is not None else np.zeros(0, np.float32),
            "zero_points": q.zero_points.astype(np.int32) if q is not None else np.zeros(0, np.int32),
            "quantized_dimension": q.quantized_dimension if q is not None else 0,
        },
    }


def gather_inputs(tensors, inputs, batched: bool) -> tuple[list[np.ndarray], int]:
    """Check the caller's inputs against the model's input ``tensors`` and return them as arrays
    with a leading sample axis (run: one sample) and the sample count. Every mistake is an
    InputError."""
    names = [t.name for t in tensors]
    if type(inputs) in (list, tuple):
        values = list(inputs)  # the common case; skips the slower ABC checks below
    elif isinstance(inputs, Mapping):
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise InputError(f"the model has several inputs named {dupes}; pass the inputs as a list")
        unknown = [k for k in inputs if k not in names]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {names}")
        missing = [n for n in names if n not in inputs]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {names}")
        values = [inputs[n] for n in names]
    elif isinstance(inputs, np.ndarray) and len(tensors) == 1:
        values = [inputs]
    else:
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise InputError(f"inputs must be a list of arrays or a dict by input name, "
                             f"not {type(inputs).__name__}")
        values = list(inputs)
    if len(values) != len(tensors):
        raise InputError(f"the model takes {len(tensors)} input(s) {names}, {len(values)} given")
    arrays, n = [], None
    for k, (t, v) in enumerate(zip(tensors, values)):
        want = tuple(t.shape)
        label = f'input {k} "{t.name}"'
        if t.dtype is None:
            raise InputError(f"{label} is a {t.type_name} tensor, which microref cannot feed")
        if isinstance(v, np.ma.MaskedArray) and np.ma.is_masked(v):
            # A mask has no meaning in TFLM's arithmetic; using the values under it would
            # silently compute on data the caller marked invalid.
            raise InputError(f"{label} is a masked array with masked values, which microref cannot "
                             f"honour: pass np.ma.filled(x, fill_value) to say what they stand for")
        try:
            a = np.asarray(v)
        except (ValueError, TypeError) as e:
            raise InputError(f"{label} is not an array ({e})") from None
        if a.dtype != t.dtype:
            raise InputError(f"{label} must be {t.dtype} ({t.type_name}), got {a.dtype}")
        if batched:
            if a.ndim != len(want) + 1 or tuple(a.shape[1:]) != want:
                raise InputError(f"{label} must have shape (N, {', '.join(map(str, want))}) for "
                                 f"run_batch, got {tuple(a.shape)}")
            if a.shape[0] == 0:
                raise InputError(f"{label} has no samples (run_batch needs N >= 1)")
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise InputError(f"{label} has {a.shape[0]} samples, input 0 has {n}")
        else:
            if tuple(a.shape) != want:
                raise InputError(f"{label} must have shape {want}, got {tuple(a.shape)}")
            a = a[None]
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise InputError(f"{label} contains NaN or infinity")
        arrays.append(a)
    # A model without inputs runs once per call, batched or not.
    return arrays, (n if batched and n is not None else 1)


class SampleInputs:
    """``gather_inputs(tensors, inputs, batched=False)`` with its common case precomputed: a list
    or tuple (or, for one input, an array) of plain ``np.ndarray`` values, each of its input's
    exact dtype and shape, is accepted after one comparison each; anything else — another
    sequence, a dict, an ndarray subclass (masked, matrix, memmap), a wrong dtype, shape or count
    — goes through ``gather_inputs`` itself, which accepts or refuses it with its own messages.
    Models with a float (or complex) input, whose values are also checked for NaN and infinity,
    or with an input microref cannot feed, always take that path."""

    def __init__(self, tensors):
        self.tensors = list(tensors)
        plain = all(t.dtype is not None and t.dtype.kind not in "fc" for t in self.tensors)
        # (dtype, shape) per input; None when every call takes gather_inputs.
        self.specs = tuple((t.dtype, tuple(t.shape)) for t in self.tensors) if plain else None

    def __call__(self, inputs) -> list[np.ndarray]:
        """The inputs as arrays with a leading sample axis of 1 (views of the caller's arrays)."""
        specs = self.specs
        if specs is not None:
            kind = type(inputs)
            values = inputs if kind is list or kind is tuple else (inputs,) if kind is np.ndarray else None
            if values is not None and len(values) == len(specs):
                arrays = []
                for (dtype, shape), v in zip(specs, values):
                    if type(v) is not np.ndarray or v.dtype != dtype or v.shape != shape:
                        break
                    arrays.append(v[None])
                else:
                    return arrays
        return gather_inputs(self.tensors, inputs, False)[0]
