"""SLICE and DYNAMIC_UPDATE_SLICE (TFLM's slice.cc, dynamic_update_slice.cc, with their reference_ops
headers): a block read out of a tensor, and a block written into one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..registry import OpKernel, expect_types, register
from ..shape import check_types_equal, flat_offsets, row_major_strides
from .common import (
    MAX_SMALL_RANK,
    MapKernel,
    Refusal,
    apply_read_maps,
    at_load,
    check_int32,
    constant_sample,
    parameter_groups,
    wrap_int32,
)

SLICE_TYPES = ("FLOAT32", "INT32", "INT8", "INT16", "BOOL")
SLICE_MAX_RANK = 5  # kMaxDim
DYNAMIC_UPDATE_SLICE_TYPES = ("FLOAT32", "INT8", "INT16", "INT32")


# ---------------------------------------------------------------------------- SLICE

@dataclass(frozen=True)
class SliceParams:
    """tflite::SliceParams as SliceEval fills it (5 entries, leading dims begin 0 size 1)."""

    begin: tuple | None  # None: computed per run
    size: tuple | None
    read_map: np.ndarray | None = field(default=None, repr=False)


def slice_map(in_shape, out_size: int, begin_sample: np.ndarray, size_sample: np.ndarray):
    """SliceEval + reference_ops::Slice: (begin, size, read map)."""
    rank = len(in_shape)
    ext = (1,) * (SLICE_MAX_RANK - rank) + tuple(in_shape)
    begin = [0] * SLICE_MAX_RANK
    size = [1] * SLICE_MAX_RANK
    offset = SLICE_MAX_RANK - rank
    b_vals = wrap_int32(begin_sample.reshape(-1)[:rank])  # int32_t begins[] / sizes[]
    s_vals = wrap_int32(size_sample.reshape(-1)[:rank])
    for i in range(rank):
        begin[offset + i], size[offset + i] = int(b_vals[i]), int(s_vals[i])
    start = begin
    stop = [ext[i] if size[i] == -1 else begin[i] + size[i] for i in range(SLICE_MAX_RANK)]
    check_int32("begin + size", stop)
    counts = [max(0, e - s) for s, e in zip(start, stop)]
    writes = int(np.prod(counts, dtype=np.int64))
    if writes != out_size:
        raise Refusal(f"begin {b_vals.tolist()} and size {s_vals.tolist()} write {writes} elements into an output "
                      f"of {out_size} ({'past its end' if writes > out_size else 'leaving the rest unwritten'})",
                      undefined=True)
    # Offset(ext_shape, i0..i4): flat addressing, each index walked from start to stop.
    strides = row_major_strides(ext)
    read_map = flat_offsets([np.arange(start[i], stop[i], dtype=np.int64) * strides[i] for i in range(SLICE_MAX_RANK)])
    if read_map.size and (read_map.min() < 0 or read_map.max() >= int(np.prod(ext, dtype=np.int64))):
        raise Refusal(f"begin {b_vals.tolist()} and size {s_vals.tolist()} read outside the input "
                      f"{list(in_shape)}", undefined=True)
    return tuple(begin), tuple(size), read_map


@register("SLICE")
class Slice(MapKernel):
    """slice.cc SlicePrepare / SliceEval; reference/slice.h (the SliceParams overload).

    TFLM validates nothing here (its Prepare only DCHECKs); what it leaves undefined — begin/size
    of other types than each other, too few of them, reads outside the input, a write count
    that differs from the output's — is refused.
    """

    supported_types = "int8, int16, int32, float32, bool (int32/int64 begin and size)"
    notes = ("begin/size constant or computed; size -1; TFLM addresses the input flat, so a begin past the end of "
             "a row reads the next row (mirrored) — a read outside the tensor is refused")

    def prepare(self, ctx):
        ctx.check_io_counts(3)
        x = ctx.require_input(0, "input")
        begin_t, size_t = ctx.require_input(1, "begin"), ctx.require_input(2, "size")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        self.in_shape = tuple(x.shape)
        rank = len(x.shape)
        if rank > SLICE_MAX_RANK:
            ctx.unsupported(f"input rank {rank} exceeds {SLICE_MAX_RANK} (kMaxDim)", x)
        expect_types(ctx, begin_t, ("INT32", "INT64"), "begin")
        if size_t.type_name != begin_t.type_name:
            ctx.unsupported(f"size type {size_t.type_name} differs from begin type {begin_t.type_name} "
                            "(TFLM reads both as begin's type)", size_t)
        for t, role in ((begin_t, "begin"), (size_t, "size")):
            if t.size < rank:
                ctx.unsupported(f"{role} has {t.size} values; TFLM reads {rank} (the input rank)", t)
        expect_types(ctx, x, SLICE_TYPES, "input")
        if out.type_name != x.type_name:
            ctx.unsupported(f"output type {out.type_name} differs from input type {x.type_name}", out)
        b, s = constant_sample(begin_t), constant_sample(size_t)
        params = SliceParams(None, None)
        if b is not None and s is not None:
            params = SliceParams(*at_load(ctx, None, self.build, b, s))
        self.params = params

    def build(self, begin_sample, size_sample):
        return slice_map(self.in_shape, self.out_tensor.size, begin_sample, size_sample)

    def eval(self, inputs):
        x, begin, size = inputs
        return [apply_read_maps(self, x, [begin, size], lambda b, s: self.build(b, s)[2], self.out_tensor.shape)]


# ---------------------------------------------------------------------------- DYNAMIC_UPDATE_SLICE

def clamped_start_indices(indices_sample: np.ndarray, operand_shape, update_shape) -> tuple[int, ...]:
    """CalculateClampedStartIndices: min(max(0, index), operand_dim - update_dim), in int64."""
    raw = np.asarray(indices_sample).astype(np.int64).reshape(-1)
    return tuple(int(min(max(0, int(raw[i])), operand_shape[i] - update_shape[i]))
                 for i in range(len(operand_shape)))


@dataclass(frozen=True)
class DynamicUpdateSliceParams:
    start: tuple | None  # clamped start indices (None: computed per run)
    whole: bool  # update has the operand's element count: the output is the update's bytes


@register("DYNAMIC_UPDATE_SLICE")
class DynamicUpdateSlice(OpKernel):
    """dynamic_update_slice.cc Prepare / Eval (EvalImpl, UpdateSliceRecursive)."""

    supported_types = "int8, int16, int32, float32 (int32/int64 start indices)"
    notes = "start indices clamped as TFLM clamps them, constant or computed"

    def prepare(self, ctx):
        ctx.check_io_counts(3)
        operand = ctx.require_input(0, "operand")
        update = ctx.require_input(1, "update")
        idx_t = ctx.require_input(2, "start_indices")
        out = ctx.output(0)
        self.out_tensor = out
        check_types_equal(ctx, operand, update, "operand", "update")
        ctx.check(idx_t.type_name in ("INT32", "INT64"),
                  "start_indices->type == kTfLiteInt32 || start_indices->type == kTfLiteInt64 was not true", idx_t)
        ctx.check(len(idx_t.shape) == 1, f"NumDimensions(start_indices) is {len(idx_t.shape)}, must be 1", idx_t)
        rank = len(operand.shape)
        ctx.check(idx_t.shape[0] == rank, f"start_indices has {idx_t.shape[0]} values for a rank-{rank} operand",
                  idx_t)
        ctx.check(len(update.shape) == rank, f"update rank {len(update.shape)} differs from operand rank {rank}",
                  update)
        for i in range(rank):
            ctx.check(update.shape[i] <= operand.shape[i],
                      f"SizeOfDimension(update, {i}) = {update.shape[i]} > operand's {operand.shape[i]}", update)
        expect_types(ctx, operand, DYNAMIC_UPDATE_SLICE_TYPES, "operand")
        if rank > MAX_SMALL_RANK:
            ctx.unsupported(f"rank {rank} exceeds the {MAX_SMALL_RANK} entries of TFLM's index arrays", operand)
        if out.type_name != operand.type_name or out.size != operand.size:
            ctx.unsupported(f"output {out.type_name}{list(out.shape)} is not the operand's type and size "
                            f"({operand.type_name}, {operand.size} elements): TFLM copies the operand's bytes", out)
        self.operand_shape, self.update_shape = tuple(operand.shape), tuple(update.shape)
        whole = operand.size == update.size
        c = constant_sample(idx_t)
        start = clamped_start_indices(c, self.operand_shape, self.update_shape) if c is not None else None
        self.params = DynamicUpdateSliceParams(start, whole)

    def eval(self, inputs):
        operand, update, indices = inputs
        n = max(operand.shape[0], update.shape[0], indices.shape[0])
        out_shape = (n,) + tuple(self.out_tensor.shape)
        if self.params.whole:
            return [np.ascontiguousarray(np.broadcast_to(update, (n,) + update.shape[1:])).reshape(out_shape)]
        y = np.array(np.broadcast_to(operand, (n,) + operand.shape[1:]))
        if update.size == 0:
            return [y.reshape(out_shape)]
        update = np.broadcast_to(update, (n,) + update.shape[1:])
        if self.params.start is not None:
            groups = [(np.arange(n), self.params.start)]
        else:
            groups = [(samples, clamped_start_indices(v, self.operand_shape, self.update_shape))
                      for samples, (v,) in parameter_groups(n, [indices])]
        for samples, start in groups:
            block = tuple(slice(s, s + u) for s, u in zip(start, self.update_shape))
            y[(samples,) + block] = update[samples]
        return [y.reshape(out_shape)]

    def describe(self):
        return asdict(self.params)
