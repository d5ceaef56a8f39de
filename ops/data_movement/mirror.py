"""MIRROR_PAD and REVERSE_V2 (TFLM's mirror_pad.cc and reverse.cc, with reference/reverse.h): indices
mirrored at a tensor's edges, and axes read backwards.
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
    at_run,
    check_int32,
    constant_sample,
    parameter_groups,
    wrap_int32,
)

MIRROR_PAD_TYPES = ("FLOAT32", "INT8")
REVERSE_TYPES = ("INT32", "FLOAT32", "UINT8", "INT8", "INT16", "INT64", "BOOL")


# ---------------------------------------------------------------------------- MIRROR_PAD

@dataclass(frozen=True)
class OpDataMirrorPad:
    input_dims: int
    output_size: int
    offset: int  # 1 for REFLECT, 0 for SYMMETRIC
    paddings: tuple | None  # ((left, right), ...) as read (None: computed per run)
    read_map: np.ndarray | None = field(default=None, repr=False)


def get_input_dimension(padded, left_pad: int, right_pad: int, input_dim_size: int, offset: int):
    """mirror_pad.cc GetInputDimension, on an int64 array of padded coordinates."""
    padded = np.asarray(padded, np.int64)
    original_left = left_pad + offset - 1
    from_left = original_left - np.minimum(padded, original_left - offset)
    p = padded - left_pad
    original_right = input_dim_size - (1 + offset)
    from_right = original_right - np.minimum(p - input_dim_size, original_right)
    return np.where(padded < left_pad, from_left, np.where(p >= input_dim_size, from_right, p))


def mirror_pad_map(in_shape, out_shape, offset: int, padding_sample: np.ndarray, padding_type: str):
    """MirrorPad's read map: per output element the flat index GetFlatIndex computes."""
    rank = len(in_shape)
    if padding_type in ("INT32", "INT64"):
        pads = wrap_int32(padding_sample.reshape(-1)[: 2 * rank]).reshape(rank, 2)
    else:
        # GetPadding is skipped for other types: left_pad / right_pad stay 0.
        pads = np.zeros((rank, 2), dtype=np.int64)
    in_strides = row_major_strides(in_shape)
    axis_offsets = []
    for i in range(rank):
        idx = get_input_dimension(np.arange(out_shape[i]), int(pads[i, 0]), int(pads[i, 1]), in_shape[i], offset)
        check_int32("the mirrored index", idx, idx * in_strides[i])
        axis_offsets.append(idx * in_strides[i])
    read_map = flat_offsets(axis_offsets)
    size = int(np.prod(in_shape, dtype=np.int64))
    if read_map.size and (read_map.min() < 0 or read_map.max() >= size):
        raise Refusal(f"paddings {pads.tolist()} make TFLM read outside the input {list(in_shape)} (a pad "
                      "wider than the input allows)", undefined=True)
    return tuple(map(tuple, pads.tolist())), read_map


@register("MIRROR_PAD")
class MirrorPad(MapKernel):
    """mirror_pad.cc MirrorPadPrepare / MirrorPadEval (GetFlatIndex / GetInputDimension)."""

    supported_types = "int8, float32 (int32/int64 paddings; other types read as 0)"
    notes = ("REFLECT, SYMMETRIC; paddings constant or computed; a right pad wider than the input clamps as TFLM's "
             "does; a left one that would read outside the input is refused")

    def prepare(self, ctx):
        x = ctx.require_input(0, "input")
        pad_t = ctx.require_input(1, "paddings")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(len(pad_t.shape) == 2, f"NumDimensions(padding_matrix) is {len(pad_t.shape)}, must be 2", pad_t)
        rank = len(x.shape)
        ctx.check(pad_t.shape[0] == rank, f"paddings has {pad_t.shape[0]} rows for a rank-{rank} input", pad_t)
        # offset = mode != kTfLiteMirrorPaddingReflect ? 0 : 1. MirrorPadMode REFLECT is 0; an unknown
        # mode, or no options table (params left zero: kTfLiteMirrorPaddingUnknown), pads symmetrically.
        has_options = ctx.op.options_type not in (None, "NONE")
        offset = 1 if has_options and ctx.options.get("mode", 0) == 0 else 0
        self.padding_type = pad_t.type_name
        # Two scratch buffers of input_dims ints: output then input dims_num_elements.
        self.scratch_bytes += [4 * rank, 4 * rank]
        expect_types(ctx, out, MIRROR_PAD_TYPES, "output")
        if x.type_name != out.type_name:
            ctx.unsupported(f"input type {x.type_name} differs from output type {out.type_name}", x)
        if len(out.shape) != rank:
            ctx.unsupported(f"output rank {len(out.shape)} differs from input rank {rank}", out)
        if self.padding_type in ("INT32", "INT64") and pad_t.shape[1] < 2:
            ctx.unsupported(f"paddings shape {list(pad_t.shape)}: TFLM reads two values per row", pad_t)
        self._in_shape = tuple(x.shape)
        self._offset = offset
        pads_c = constant_sample(pad_t)
        shown, read_map = None, None
        if pads_c is not None or self.padding_type not in ("INT32", "INT64"):
            shown, read_map = at_load(ctx, None, self.build, pads_c if pads_c is not None else np.zeros(0))
        self.params = OpDataMirrorPad(rank, out.size, offset, shown, read_map)

    def build(self, padding_sample):
        return mirror_pad_map(self._in_shape, tuple(self.out_tensor.shape), self._offset, padding_sample,
                              self.padding_type)

    def eval(self, inputs):
        x, pads = inputs
        return [apply_read_maps(self, x, [pads], lambda p: self.build(p)[1], self.out_tensor.shape)]


# ---------------------------------------------------------------------------- REVERSE_V2

def reverse_axes(axis_sample: np.ndarray, rank: int) -> tuple[int, ...]:
    """ReverseV2Eval: normalise, range-check, sort, require contiguous axes."""
    axes = [int(a) for a in np.asarray(axis_sample).reshape(-1)]
    for i, a in enumerate(axes):
        if a < 0:
            axes[i] = a + rank
        if not 0 <= axes[i] < rank:
            raise Refusal(f"axis {a} is out of range for a rank-{rank} input", undefined=False)
    axes.sort()
    if any(axes[i - 1] + 1 != axes[i] for i in range(1, len(axes))):
        raise Refusal(f"axes {sorted(axes)} are not contiguous (\"Non-contiguous `axes` not supported\")",
                      undefined=False)
    return tuple(axes)


@dataclass(frozen=True)
class ReverseParams:
    axes: tuple | None  # sorted, non-negative (None: computed per run)


@register("REVERSE_V2")
class ReverseV2(OpKernel):
    """reverse.cc ReverseV2Prepare / ReverseV2Eval; reference/reverse.h (reversing the contiguous
    block of axes min..max as one flattened dimension = reversing each of them)."""

    supported_types = "int8, uint8, int16, int32, int64, float32, bool"
    notes = ("contiguous axes, constant or computed (others: refused at load / `InvokeError` at run, as TFLM's "
             "Invoke fails)")

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        x = ctx.require_input(0, "input")
        axis_t = ctx.require_input(1, "axis")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(len(axis_t.shape) == 1, f"NumDimensions(axis) is {len(axis_t.shape)}, must be 1", axis_t)
        rank = len(x.shape)
        ctx.check(rank <= MAX_SMALL_RANK, f"input rank {rank} exceeds {MAX_SMALL_RANK}", x)
        ctx.check(rank >= axis_t.size, f"{axis_t.size} axes for a rank-{rank} input", axis_t)
        ctx.check(x.type_name in REVERSE_TYPES, f"Type '{x.type_name}' is not supported by reverse.", x)
        ctx.check(axis_t.type_name == "INT32", f"Axis Type '{axis_t.type_name}' is not supported by reverse.", axis_t)
        check_types_equal(ctx, x, out)
        ctx.check(axis_t.size > 0, "the axis tensor is empty: TFLM's Reverse then reads axes[-1] "
                  "(undefined behaviour; the wheel crashes)", axis_t)
        if out.size != x.size:
            ctx.unsupported(f"output holds {out.size} elements; TFLM writes the input's {x.size}", out)
        self.rank = rank
        axes = None
        c = constant_sample(axis_t)
        if c is not None:
            axes = at_load(ctx, axis_t, reverse_axes, c, rank)
        self.params = ReverseParams(axes)

    def eval(self, inputs):
        x, axis = inputs
        out_shape = tuple(self.out_tensor.shape)
        if self.params.axes is not None:
            y = np.flip(x, [a + 1 for a in self.params.axes])
            return [np.ascontiguousarray(y).reshape((x.shape[0],) + out_shape)]
        n = max(x.shape[0], axis.shape[0])
        x = np.broadcast_to(x, (n,) + x.shape[1:])
        y = np.empty((n,) + out_shape, dtype=x.dtype)
        for samples, (a,) in parameter_groups(n, [axis]):
            axes = at_run(self.location, reverse_axes, a, self.rank)
            y[samples] = np.flip(x[samples], [v + 1 for v in axes]).reshape((len(samples),) + out_shape)
        return [y]

    def describe(self):
        return asdict(self.params)
