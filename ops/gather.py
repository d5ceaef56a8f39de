"""Index-driven data movement: TFLM's gather.cc, gather_nd.cc and embedding_lookup.cc.

The indices are usually computed by the model, so they are checked at every run, as TFLM's Eval
checks them: an index out of range makes TFLM's Invoke fail, and makes microref's ``run`` raise
:class:`interp.errors.InvokeError` naming the operator and the index — never an IndexError
and never a value read from outside the tensor. Constant indices are checked once, at load
(TFLM fails at its first Invoke; microref refuses the model).

Checks exactly as the pinned wheel makes them:
* GATHER: every coordinate must lie in [0, axis size) (the wheel returns an error; the newer
  source only DCHECKs).
* GATHER_ND: only the flat start of each slice is checked (0 <= from_pos and from_pos +
  slice_size <= params size), so an index past the end of one dimension is accepted when the
  flat offset stays inside the params, and reads the following row — as TFLM does.
* EMBEDDING_LOOKUP: every id must lie in [0, rows). With int8 weights and a float output it is
  the "hybrid" lookup: each int8 weight times the weights' (first) scale, in float32; the
  weights' (first) zero point must be 0.
Each of these kernels writes the output shape it computes over the model's; microref needs the
model to declare that shape.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .data_movement.common import Refusal, at_load, at_run, check_int32, constant_sample
from .registry import OpKernel, PrepareContext, register
from .shape import with_samples

GATHER_TYPES = ("FLOAT32", "INT8")
GATHER_ND_MAX_INDICES = 5  # MAX_INDICES_ND


def require_computed_shape(ctx: PrepareContext, out, expected):
    """TFLM writes the shape it computes over the output's (CreateWritableTensorDimsWithCopy);
    microref returns arrays of the declared shape, so it needs the two to agree."""
    if tuple(out.shape) != tuple(expected):
        ctx.unsupported(f"output declared {list(out.shape)}; TFLM computes {list(expected)} and overwrites "
                        "the declared shape", out)


def require_output_type(ctx: PrepareContext, out, type_name: str, role: str):
    if out.type_name != type_name:
        ctx.unsupported(f"output type {out.type_name} differs from the {role} type {type_name} (TFLM sets the "
                        "output's type from it)", out)


def _first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    where = np.argwhere(bad)[0]
    return f"{int(values[tuple(where)])} (sample {int(where[0])}, position {tuple(int(i) for i in where[1:])})"


# ---------------------------------------------------------------------------- GATHER

@dataclass(frozen=True)
class GatherParams:
    axis: int  # non-negative
    batch_dims: int  # non-negative
    batch_size: int  # product of input dims [0, batch_dims)
    outer_size: int  # product of input dims [batch_dims, axis)
    axis_size: int
    inner_size: int  # product of input dims after axis
    coord_size: int  # product of coords dims from batch_dims


def check_gather_coords(coords: np.ndarray, axis_size: int):
    bad = (coords < 0) | (coords >= axis_size)
    if bad.any():
        raise Refusal(f"GATHER index {_first_bad(coords, bad)} is outside [0, {axis_size})", undefined=False)


@register("GATHER")
class Gather(OpKernel):
    """gather.cc GatherPrepare / GatherEval / Gather<InputT, int32_t>."""

    supported_types = "int8, float32 (int32 positions)"
    notes = ("axis, batch_dims (negative too); a position out of range is an `InvokeError` (an `InputError`) "
             "naming the op and the index: TFLM's Invoke fails")

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        x = ctx.require_input(0, "input")
        coords = ctx.require_input(1, "positions")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(coords.type_name == "INT32",
                  f"Positions of type '{coords.type_name}' are not supported by gather.", coords)
        ctx.check(x.type_name in GATHER_TYPES, f"Type '{x.type_name}' is not supported by gather.", x)
        rank, coords_rank = len(x.shape), len(coords.shape)
        axis = int(ctx.options.get("axis", 0))
        if axis < 0:
            axis += rank
        ctx.check(0 <= axis < rank, f"axis {ctx.options.get('axis', 0)} is out of range for a rank-{rank} input")
        batch_dims = int(ctx.options.get("batch_dims", 0))
        if batch_dims < 0:
            batch_dims += coords_rank
        ctx.check(batch_dims <= axis, f"batch_dims {batch_dims} > axis {axis}")
        ctx.check(0 <= batch_dims < rank, f"batch_dims {batch_dims} is out of range for a rank-{rank} input")
        ctx.check(batch_dims <= coords_rank, f"batch_dims {batch_dims} exceeds the positions' rank {coords_rank}")
        for i in range(batch_dims):
            ctx.check(x.shape[i] == coords.shape[i],
                      f"input dim {i} ({x.shape[i]}) differs from positions dim {i} ({coords.shape[i]})")
        require_output_type(ctx, out, x.type_name, "input")
        require_computed_shape(ctx, out, tuple(x.shape[:axis]) + tuple(coords.shape[batch_dims:])
                               + tuple(x.shape[axis + 1:]))

        def prod(dims):
            return int(np.prod(dims, dtype=np.int64))
        self.params = GatherParams(axis, batch_dims, prod(x.shape[:batch_dims]), prod(x.shape[batch_dims:axis]),
                                   x.shape[axis], prod(x.shape[axis + 1:]), prod(coords.shape[batch_dims:]))
        c = constant_sample(coords)
        if c is not None and self.params.batch_size * self.params.outer_size:
            at_load(ctx, coords, check_gather_coords, c[None], self.params.axis_size)

    def eval(self, inputs):
        x, coords = inputs
        p = self.params
        n = max(x.shape[0], coords.shape[0])
        c = coords.reshape(coords.shape[0], p.batch_size, p.coord_size).astype(np.int64)
        if p.batch_size * p.outer_size:  # TFLM checks each coordinate as its loop reaches it
            at_run(self.location, check_gather_coords, c, p.axis_size)
        xr = with_samples(x, n).reshape(n, p.batch_size, p.outer_size, p.axis_size, p.inner_size)
        c = with_samples(c, n)
        # output[s, batch, outer, coord, :] = input[s, batch, outer, coords[s, batch, coord], :]
        y = xr[np.arange(n)[:, None, None, None], np.arange(p.batch_size)[None, :, None, None],
               np.arange(p.outer_size)[None, None, :, None], c[:, :, None, :]]
        return [y.reshape((n,) + tuple(self.out_tensor.shape))]

    def describe(self):
        return asdict(self.params)


# ---------------------------------------------------------------------------- GATHER_ND

@dataclass(frozen=True)
class GatherNdParams:
    indices_nd: int  # size of the indices' last dimension
    n_slices: int  # product of the other indices dims
    slice_size: int  # product of params dims from indices_nd
    params_flat_size: int
    dims_to_count: tuple  # flat stride of each indexed params dimension


def gather_nd_positions(indices: np.ndarray, p: GatherNdParams) -> np.ndarray:
    """from_pos of every slice (int64, shape (N, n_slices)), checked as GatherNd checks it."""
    idx = indices.reshape(indices.shape[0], p.n_slices, p.indices_nd).astype(np.int64)
    from_pos = np.zeros(idx.shape[:2], dtype=np.int64)
    for j, count in enumerate(p.dims_to_count):
        term = idx[:, :, j] * count
        from_pos = from_pos + term
        check_int32("index * dims_to_count", term, from_pos)
    bad = (from_pos < 0) | (from_pos + p.slice_size > p.params_flat_size)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise Refusal(f"GATHER_ND index {idx[where[0], where[1]].tolist()} (sample {int(where[0])}, slice "
                      f"{int(where[1])}) starts at flat offset {int(from_pos[tuple(where)])}, outside the "
                      f"{p.params_flat_size} params values (\"gather_nd index out of bounds\")", undefined=False)
    return from_pos


@register("GATHER_ND")
class GatherNd(OpKernel):
    """gather_nd.cc GatherNdPrepare / GatherNd<ParamsT, int32_t>."""

    supported_types = "int8, float32 (int32 indices)"
    notes = ("only the flat offset of each slice is checked, as in TFLM (an index past one dimension reads the "
             "next row); out of the params: `InvokeError`")

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        params = ctx.require_input(0, "params")
        indices = ctx.require_input(1, "indices")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(params.type_name in GATHER_TYPES,
                  f"Params of type '{params.type_name}' are not supported by gather_nd.", params)
        ctx.check(indices.type_name == "INT32",
                  f"Indices of type '{indices.type_name}' are not supported by gather_nd.", indices)
        params_rank, indices_rank = len(params.shape), len(indices.shape)
        ctx.check(params_rank >= 1, "Params must be at least a vector.", params)
        ctx.check(indices_rank >= 1, "Indices must be at least a vector.", indices)
        nd = indices.shape[-1]
        ctx.check(nd <= params_rank, "Index innermost dimension length must be <= params rank.", indices)
        ctx.check(nd <= GATHER_ND_MAX_INDICES,
                  f"Index innermost dimension length must not exceed {GATHER_ND_MAX_INDICES}.", indices)
        require_output_type(ctx, out, params.type_name, "params")
        require_computed_shape(ctx, out, tuple(indices.shape[:-1]) + tuple(params.shape[nd:]))
        flat = params.size
        ctx.check(all(d != 0 for d in params.shape[:nd]),
                  f"params shape {list(params.shape)} has a 0 among its first {nd} dims: TFLM divides by it")
        dims_to_count, remain = [], flat
        for d in params.shape[:nd]:
            remain //= d
            dims_to_count.append(remain)
        self.params = GatherNdParams(nd, int(np.prod(indices.shape[:-1], dtype=np.int64)),
                                     int(np.prod(params.shape[nd:], dtype=np.int64)), flat, tuple(dims_to_count))
        c = constant_sample(indices)
        if c is not None:
            at_load(ctx, indices, gather_nd_positions, c[None], self.params)

    def eval(self, inputs):
        params, indices = inputs
        p = self.params
        from_pos = at_run(self.location, gather_nd_positions, indices, p)
        n = max(params.shape[0], from_pos.shape[0])
        from_pos = with_samples(from_pos, n)
        flat = with_samples(params, n).reshape(n, -1)
        # memcpy(output + i * slice_size, params + from_pos[i], slice_size)
        offsets = from_pos[:, :, None] + np.arange(p.slice_size, dtype=np.int64)
        y = np.take_along_axis(flat, offsets.reshape(n, -1), axis=1)
        return [y.reshape((n,) + tuple(self.out_tensor.shape))]

    def describe(self):
        return asdict(self.params)


# ---------------------------------------------------------------------------- EMBEDDING_LOOKUP

@dataclass(frozen=True)
class EmbeddingLookupOpData:
    """embedding_lookup.cc OpData."""

    hybrid: bool  # int8 weights, float32 output: EvalHybrid dequantizes
    scale: np.float32  # the weights' (first) scale, used only when hybrid
    num_rows: int
    num_columns: int  # elements per row of the weights flattened to 2-D


def check_ids(ids: np.ndarray, num_rows: int):
    bad = (ids < 0) | (ids >= num_rows)
    if bad.any():
        raise Refusal(f"EMBEDDING_LOOKUP: index out of bounds. Got {_first_bad(ids, bad)}, and bounds are "
                      f"[0, {num_rows - 1}]", undefined=False)


@register("EMBEDDING_LOOKUP")
class EmbeddingLookup(OpKernel):
    """embedding_lookup.cc EmbeddingLookUpPrepare / CalculateOpData / EvalSimple / EvalHybrid."""

    supported_types = "float32, int8, int8 weights → float32 (hybrid)"
    notes = ("hybrid: weight × the weights' first scale in float32, zero point 0 required; ids out of range: "
             "`InvokeError`")

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        lookup = ctx.require_input(0, "lookup")
        ctx.check(len(lookup.shape) == 1, f"NumDimensions(lookup) is {len(lookup.shape)}, must be 1", lookup)
        ctx.check(lookup.type_name == "INT32", f"lookup type {lookup.type_name} is not INT32", lookup)
        value = ctx.require_input(1, "value")
        ctx.check(len(value.shape) >= 2, f"NumDimensions(value) is {len(value.shape)}, must be >= 2", value)
        ctx.check(value.type_name in ("FLOAT32", "INT8"), f"value type {value.type_name} is not FLOAT32 or INT8",
                  value)
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        allowed = ("FLOAT32",) if value.type_name == "FLOAT32" else ("FLOAT32", "INT8")
        ctx.check(out.type_name in allowed, f"output type {out.type_name} is not {' or '.join(allowed)} for "
                  f"{value.type_name} values", out)
        ctx.check(len(out.shape) >= len(value.shape),
                  f"output rank {len(out.shape)} < value rank {len(value.shape)}", out)
        # The output's dims become [lookup count, value dims 1..], its extra dims kept.
        computed = (lookup.shape[0],) + tuple(value.shape[1:]) + tuple(out.shape[len(value.shape):])
        new_bytes = int(np.prod(computed, dtype=np.int64)) * out.element_bytes
        ctx.check(new_bytes <= out.nbytes, f"the computed output {list(computed)} needs {new_bytes} bytes, the "
                  f"output tensor has {out.nbytes} (new_dims_size <= output->bytes)", out)
        hybrid = value.type_name == "INT8" and out.type_name == "FLOAT32"
        q = value.quantization
        scale = np.float32(q.scale if q is not None else 0.0)
        if hybrid:
            zp = int(q.zero_points[0]) if q is not None else 0
            ctx.check(zp == 0, f"int8 weights with a float output need zero point 0, have {zp}", value)
        ctx.check(value.shape[0] != 0, "value has 0 rows: TFLM divides NumElements(value) by it", value)
        require_computed_shape(ctx, out, computed)
        extra = int(np.prod(out.shape[len(value.shape):], dtype=np.int64))
        if extra != 1:
            ctx.unsupported(f"output dims past the value's rank {list(out.shape[len(value.shape):])}: TFLM keeps "
                            f"them but writes one row per id, leaving {extra - 1} of every {extra} elements "
                            "unwritten", out)
        self.params = EmbeddingLookupOpData(hybrid, scale, value.shape[0], value.size // value.shape[0])
        c = constant_sample(lookup)
        if c is not None:
            at_load(ctx, lookup, check_ids, c[None], self.params.num_rows)

    def eval(self, inputs):
        lookup, value = inputs
        p = self.params
        at_run(self.location, check_ids, lookup, p.num_rows)
        n = max(lookup.shape[0], value.shape[0])
        rows = with_samples(value, n).reshape(n, p.num_rows, p.num_columns)
        ids = with_samples(lookup, n).astype(np.int64)
        y = rows[np.arange(n)[:, None], ids]  # (n, lookups, num_columns)
        if p.hybrid:
            # Dequantize: (values[i] - 0) * scale, an int converted to float times a float.
            y = y.astype(np.float32) * p.scale
        return [y.reshape((n,) + tuple(self.out_tensor.shape))]

    def describe(self):
        d = asdict(self.params)
        d["scale"] = float(d["scale"])
        return d
