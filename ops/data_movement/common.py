"""What every data-movement kernel shares (see the package docstring, ops/data_movement/__init__.py):
the Refusal raised where TFLM fails or leaves its result undefined, and how it becomes a load-time
refusal or a run-time InvokeError; C's integer division and int32 conversions; and the *read maps*
(for each output element the flat input index it copies) with the Eval that applies them, once for
constant parameters or per distinct parameter sample for computed ones.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from interp.errors import InvokeError

from ..registry import OpKernel, PrepareContext
from ..shape import INT32_MAX, INT32_MIN

MAX_SMALL_RANK = 6  # RuntimeShape::kMaxSmallSize (REVERSE_V2, DYNAMIC_UPDATE_SLICE)


class Refusal(Exception):
    """Raised by the map builders: ``undefined`` is True where TFLM's result is undefined (read
    outside a tensor, unwritten output), False where TFLM fails or aborts."""

    def __init__(self, message: str, undefined: bool):
        super().__init__(message)
        self.undefined = undefined


def refuse_at_load(ctx: PrepareContext, refusal: Refusal, tensor=None):
    """A Refusal met with constant parameters: the model is refused when loaded."""
    if refusal.undefined:
        ctx.unsupported(f"{refusal} (TFLM's result is undefined)", tensor)
    ctx.fail(f"{refusal} (TFLM fails at Invoke)", tensor)


def raise_at_run(location: str, refusal: Refusal):
    what = "TFLM's result is undefined" if refusal.undefined else "TFLM's Invoke fails"
    raise InvokeError(f"{location}: {refusal} ({what})") from None


def at_load(ctx: PrepareContext, tensor, build, *args):
    """``build(*args)`` on constant parameters at prepare; a Refusal refuses the model (naming
    ``tensor``, if any)."""
    try:
        return build(*args)
    except Refusal as r:
        refuse_at_load(ctx, r, tensor)


def at_run(location: str, build, *args):
    """``build(*args)`` on parameters computed at run; a Refusal becomes an InvokeError."""
    try:
        return build(*args)
    except Refusal as r:
        raise_at_run(location, r)


# ---------------------------------------------------------------------------- shared helpers

def c_div(a, b):
    """C++ integer division (truncates toward zero), elementwise on int64 arrays or ints."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def c_mod(a, b):
    """C++ ``%``: the remainder takes the sign of the dividend."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return a - c_div(a, b) * b


def wrap_int32(values) -> np.ndarray:
    """C's int64 -> int32 conversion (keeps the low 32 bits)."""
    return np.asarray(values, np.int64).astype(np.int32).astype(np.int64)


def check_int32(what: str, *arrays):
    """Refuse arithmetic TFLM does in int whose results leave the int32 range (signed overflow
    is undefined behaviour in C++)."""
    for a in arrays:
        a = np.asarray(a)
        if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
            raise Refusal(f"{what} overflows int32", undefined=True)


def constant_sample(tensor) -> np.ndarray | None:
    """A constant tensor's values (no sample axis), or None for an activation."""
    return None if tensor is None or tensor.data is None else np.asarray(tensor.data).reshape(tensor.shape)


def parameter_groups(n: int, params: list[np.ndarray]):
    """Samples grouped by equal parameter values: [(sample indices, [one sample of each param])].

    Parameter inputs carry a sample axis of 1 (constant or computed once) or n.
    """
    if all(p.shape[0] == 1 for p in params):
        return [(np.arange(n), [p[0] for p in params])]
    groups: dict[tuple, tuple[list, list]] = {}
    for s in range(n):
        values = [p[s if p.shape[0] > 1 else 0] for p in params]
        key = tuple(v.tobytes() for v in values)
        groups.setdefault(key, (values, []))[1].append(s)
    return [(np.asarray(samples), values) for values, samples in groups.values()]


def gather_flat(x: np.ndarray, read_map: np.ndarray, out_shape, fill=None) -> np.ndarray:
    """out[s].flat[i] = x[s].flat[read_map[i]]; where read_map is -1, ``fill``."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if fill is None:
        y = flat[:, read_map]
    else:
        fill = np.asarray(fill, dtype=x.dtype)
        y = np.where(read_map < 0, fill, flat[:, np.maximum(read_map, 0)]) if flat.shape[1] else \
            np.full((n, read_map.size), fill, dtype=x.dtype)
    return y.reshape((n,) + tuple(out_shape))


def apply_read_maps(kernel, x: np.ndarray, params: list[np.ndarray], build, out_shape, fill=None):
    """Eval of a map-driven kernel: the prepared map if its parameters are constant, otherwise
    one map per distinct parameter sample (a Refusal becomes an InvokeError)."""
    if kernel.params.read_map is not None:
        return gather_flat(x, kernel.params.read_map, out_shape, fill)
    n = max([x.shape[0]] + [p.shape[0] for p in params])
    x = np.broadcast_to(x, (n,) + x.shape[1:])
    y = np.empty((n,) + tuple(out_shape), dtype=x.dtype)
    for samples, values in parameter_groups(n, params):
        y[samples] = gather_flat(x[samples], at_run(kernel.location, build, *values), out_shape, fill)
    return y


def last_writes(out_positions: np.ndarray, in_positions: np.ndarray, out_size: int) -> np.ndarray:
    """The read map of a loop that writes out[out_positions[k]] = in[in_positions[k]] in order k:
    the last write to a position wins; -1 where nothing is written."""
    read_map = np.full(out_size, -1, dtype=np.int64)
    if out_positions.size:
        rev_out, rev_in = out_positions[::-1], in_positions[::-1]
        unique, first = np.unique(rev_out, return_index=True)
        read_map[unique] = rev_in[first]
    return read_map


def expand_depth(pixel_map: np.ndarray, depth: int) -> np.ndarray:
    """A map over pixels (-1 = fill) widened to the ``depth`` elements each pixel holds."""
    d = np.arange(depth, dtype=np.int64)
    return np.where(pixel_map[:, None] < 0, -1, pixel_map[:, None] * depth + d).reshape(-1)


def describe_params(params) -> dict:
    out = {}
    for k, v in asdict(params).items():
        if isinstance(v, np.ndarray):
            v = v.tolist() if v.size <= 64 else f"array of {v.size} (shape {list(v.shape)})"
        out[k] = v
    return out


class MapKernel(OpKernel):
    """A kernel whose params hold a read map: describe() lists a large map by its size."""

    def describe(self):
        return describe_params(self.params)
