"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR: TFLM's resize_nearest_neighbor.cc,
resize_bilinear.cc, reference/resize_nearest_neighbor.h and reference/resize_bilinear.h.

The source coordinates depend only on the output position, so Prepare computes them once (with
TFLM's float32 or 10-bit fixed-point arithmetic) and Eval gathers. Int8 bilinear is TFLM's
ResizeBilinearInteger: 10-bit fractional weights, a 20-bit product rounded half away from zero
by C's truncating division. Float bilinear evaluates TFLM's expression term by term in float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fp
from .c_semantics import float_to_int32_x86
from .params import params_as_dict
from .registry import OpKernel, expect_types, register

NEAREST_TYPES = ("FLOAT32", "INT8", "INT16")
BILINEAR_TYPES = ("FLOAT32", "INT8")


def nearest_source_index(output_size: int, input_size: int, align_corners: bool, half_pixel: bool):
    """reference_ops::GetNearestNeighbor for every output coordinate, in float32."""
    if align_corners and output_size > 1:
        scale = np.float32(input_size - 1) / np.float32(output_size - 1)
    else:
        scale = np.float32(input_size) / np.float32(output_size)
    offset = np.float32(0.5) if half_pixel else np.float32(0.0)
    pos = (np.arange(output_size, dtype=np.float32) + offset) * scale
    idx = float_to_int32_x86(fp.tflite_round(pos) if align_corners else np.floor(pos))
    idx = np.minimum(idx, input_size - 1)
    if half_pixel:
        idx = np.maximum(idx, 0)
    return idx


def read_only(a: np.ndarray) -> np.ndarray:
    """The array itself (dtype kept), made read-only: a shared kernel's parameters cannot change."""
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class ResizeNearestNeighborParams:
    """types.h ResizeNearestNeighborParams plus the source index GetNearestNeighbor gives every
    output row and column (TFLM computes them per element at Eval; they depend on nothing else)."""
    kind: str                      # FLOAT32, INT8 or INT16: input and output type
    align_corners: bool
    half_pixel_centers: bool
    output_height: int             # the constant size tensor
    output_width: int
    rows: np.ndarray               # input row read by each output row (float32 scale, round/floor, clamped)
    cols: np.ndarray               # input column read by each output column


@dataclass(frozen=True)
class ResizeBilinearParams:
    """types.h ResizeBilinearParams plus ComputeInterpolationValues(Integer) for every output row
    and column (TFLM computes them per element at Eval; they depend on nothing else)."""
    kind: str                      # FLOAT32 or INT8: input and output type
    align_corners: bool
    half_pixel_centers: bool
    output_height: int             # the constant size tensor
    output_width: int
    input_y: np.ndarray            # per output row: the source y (float32; int8: times 2^10, int64)
    y0: np.ndarray                 # the lower source row, clamped at 0 only (may pass the last row)
    y1: np.ndarray                 # the upper source row, clamped to the last row
    input_x: np.ndarray            # per output column: the source x, as input_y
    x0: np.ndarray
    x1: np.ndarray


class _Resize(OpKernel):
    def prepare_common(self, ctx, allowed_types):
        ctx.check_io_counts(2)
        x = ctx.require_input(0, "input")
        size = ctx.require_input(1, "size")
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(len(x.shape) == 4, f"input must be 4-D, has shape {list(x.shape)}", x)
        ctx.check(len(size.shape) == 1, f"size must be 1-D, has shape {list(size.shape)}", size)
        ctx.check(size.type_name == "INT32", f"size type {size.type_name} is not INT32", size)
        if size.data is None:
            ctx.fail("Non-constant >size< tensor is not supported", size)
        self.align_corners = bool(ctx.options.get("align_corners", False))  # read by prepare only
        self.half_pixel = bool(ctx.options.get("half_pixel_centers", False))
        return x, size, out

    def check_output(self, ctx, x, size, out, allowed_types):
        values = np.asarray(size.data).reshape(-1)
        ctx.check(values.size == 2, f"size has {values.size} values, needs 2 (height, width)", size)
        out_h, out_w = int(values[0]), int(values[1])
        ctx.check(out_h > 0 and out_w > 0, f"size ({out_h}, {out_w}) must be positive", size)
        ctx.check(tuple(out.shape) == (x.shape[0], out_h, out_w, x.shape[3]),
                  f"output shape {list(out.shape)} is not [batch, {out_h}, {out_w}, channels] of input "
                  f"{list(x.shape)}", out)
        expect_types(ctx, out, allowed_types, "output")
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        self.kind = out.type_name
        self.in_hw = (x.shape[1], x.shape[2])
        self.out_hw = (out_h, out_w)

    def describe(self):
        return params_as_dict(self.params)


@register("RESIZE_NEAREST_NEIGHBOR")
class ResizeNearestNeighbor(_Resize):
    supported_types = "int8, int16, float32"
    notes = "align_corners, half_pixel_centers"

    def prepare(self, ctx):
        x, size, out = self.prepare_common(ctx, NEAREST_TYPES)
        ctx.check(size.shape[0] == 2, f"size has {size.shape[0]} values, needs 2", size)
        self.check_output(ctx, x, size, out, NEAREST_TYPES)
        rows = nearest_source_index(self.out_hw[0], self.in_hw[0], self.align_corners, self.half_pixel)
        cols = nearest_source_index(self.out_hw[1], self.in_hw[1], self.align_corners, self.half_pixel)
        if rows.min() < 0 or cols.min() < 0:
            ctx.unsupported("a source index is negative (TFLM reads before the input)")
        self.params = ResizeNearestNeighborParams(
            kind=self.kind, align_corners=self.align_corners, half_pixel_centers=self.half_pixel,
            output_height=self.out_hw[0], output_width=self.out_hw[1], rows=read_only(rows), cols=read_only(cols))

    def eval(self, inputs):
        x = inputs[0]
        return [np.ascontiguousarray(x[:, :, self.params.rows][:, :, :, self.params.cols])]


def bilinear_integer_axis(out_size: int, in_size: int, align_corners: bool, half_pixel: bool):
    """ComputeInterpolationValuesInteger for every output coordinate: (scaled_10, lower, upper)."""
    if align_corners and out_size > 1:
        scale_10 = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale_10 = ((1 << 10) * in_size + out_size // 2) // out_size
    v = np.arange(out_size, dtype=np.int64)
    if half_pixel:
        scaled = v * scale_10 + scale_10 // 2 - (1 << 9)
    else:
        scaled = v * scale_10
    lower = np.maximum(fp.truncating_divide(scaled, 1 << 10), 0)
    upper = np.minimum(fp.truncating_divide(scaled + (1 << 10) - 1, 1 << 10), in_size - 1)
    return scaled, lower, upper


def bilinear_float_axis(out_size: int, in_size: int, align_corners: bool, half_pixel: bool):
    """ComputeInterpolationValues (float32) for every output coordinate: (scaled, lower, upper)."""
    scale = np.float32(in_size) / np.float32(out_size)
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    v = np.arange(out_size, dtype=np.float32)
    if half_pixel:
        scaled = (v + np.float32(0.5)) * scale - np.float32(0.5)
    else:
        scaled = v * scale
    lower = np.maximum(float_to_int32_x86(np.floor(scaled)), 0)
    upper = np.minimum(float_to_int32_x86(np.ceil(scaled)), in_size - 1)
    return scaled.astype(np.float32), lower, upper


@register("RESIZE_BILINEAR")
class ResizeBilinear(_Resize):
    supported_types = "int8, float32"
    notes = "align_corners, half_pixel_centers"

    def prepare(self, ctx):
        x, size, out = self.prepare_common(ctx, BILINEAR_TYPES)
        ctx.check(not (self.half_pixel and self.align_corners),
                  "If half_pixel_centers is True, align_corners must be False.")
        self.check_output(ctx, x, size, out, BILINEAR_TYPES)
        axis = bilinear_float_axis if self.kind == "FLOAT32" else bilinear_integer_axis
        y_scaled, y0, y1 = (read_only(a) for a in axis(self.out_hw[0], self.in_hw[0], self.align_corners,
                                                        self.half_pixel))
        x_scaled, x0, x1 = (read_only(a) for a in axis(self.out_hw[1], self.in_hw[1], self.align_corners,
                                                        self.half_pixel))
        self.params = p = ResizeBilinearParams(
            kind=self.kind, align_corners=self.align_corners, half_pixel_centers=self.half_pixel,
            output_height=self.out_hw[0], output_width=self.out_hw[1],
            input_y=y_scaled, y0=y0, y1=y1, input_x=x_scaled, x0=x0, x1=x1)
        # The fast path's plan (from the params): reads past a row as flat offsets, and the weights.
        self.flat_reads = None
        if p.y0.max() >= self.in_hw[0] or p.x0.max() >= self.in_hw[1]:
            # The lower source index is not clamped to the input: upsampling a tiny input by a large
            # factor makes TFLM read past the row, i.e. the next pixels in memory. Reproduce that by
            # gathering from the flat tensor, as long as every read stays inside it.
            self.flat_reads = self.flat_read_offsets(x)
            if max(int(f.max()) for f in self.flat_reads.values()) >= x.size:
                ctx.unsupported("the interpolation reads past the end of the input tensor (TFLM reads "
                                "whatever follows it in the arena)")
        if self.kind == "FLOAT32":
            # (input_y - y0) and (1 - (input_y - y0)) as float32, exactly as the C expression.
            self.dy = (p.input_y - p.y0.astype(np.float32)).astype(np.float32)
            self.dx = (p.input_x - p.x0.astype(np.float32)).astype(np.float32)
            self.one_minus_dy = (np.float32(1) - self.dy).astype(np.float32)
            self.one_minus_dx = (np.float32(1) - self.dx).astype(np.float32)
        else:
            self.wy1 = p.input_y - (1 << 10) * p.y0
            self.wx1 = p.input_x - (1 << 10) * p.x0
            self.wy0 = (1 << 10) - self.wy1
            self.wx0 = (1 << 10) - self.wx1

    def flat_read_offsets(self, x):
        """Flat element offsets Offset(shape, b, y, x, c) of the four reads, (B, OH, OW, C) each."""
        batches, height, width, channels = x.shape
        b = np.arange(batches, dtype=np.int64)[:, None, None, None]
        c = np.arange(channels, dtype=np.int64)[None, None, None, :]
        def offsets(rows, cols):
            return ((b * height + rows[None, :, None, None]) * width + cols[None, None, :, None]) * channels + c
        p = self.params
        return {(0, 0): offsets(p.y0, p.x0), (1, 0): offsets(p.y1, p.x0),
                (0, 1): offsets(p.y0, p.x1), (1, 1): offsets(p.y1, p.x1)}

    def gather(self, x, rows, cols):
        if self.flat_reads is not None:
            which = (0 if rows is self.params.y0 else 1, 0 if cols is self.params.x0 else 1)
            return x.reshape(x.shape[0], -1)[:, self.flat_reads[which]]
        return x[:, :, rows][:, :, :, cols]

    def eval(self, inputs):
        p = self.params
        x = inputs[0]
        if p.kind == "FLOAT32":
            with np.errstate(all="ignore"):  # inf/NaN arithmetic is C's, not an error
                return [self.eval_float(x.astype(np.float32, copy=False))]
        xi = x.astype(np.int64)
        wy0, wy1 = self.wy0[:, None, None], self.wy1[:, None, None]
        wx0, wx1 = self.wx0[None, :, None], self.wx1[None, :, None]
        # Each product in the C order: value * y weight * x weight, all int64.
        total = (self.gather(xi, p.y0, p.x0) * wy0 * wx0
                 + self.gather(xi, p.y1, p.x0) * wy1 * wx0
                 + self.gather(xi, p.y0, p.x1) * wy0 * wx1
                 + self.gather(xi, p.y1, p.x1) * wy1 * wx1)
        rounded = fp.truncating_divide(total + np.where(total > 0, 1 << 19, -(1 << 19)), 1 << 20)
        return [rounded.astype(self.out_tensor.dtype)]

    def eval_float(self, x):
        """The float expression of reference_ops::ResizeBilinear, left to right in float32."""
        p = self.params
        a, b = self.one_minus_dy[:, None, None], self.dy[:, None, None]
        c, d = self.one_minus_dx[None, :, None], self.dx[None, :, None]
        t00 = self.gather(x, p.y0, p.x0) * a * c
        t10 = self.gather(x, p.y1, p.x0) * b * c
        t01 = self.gather(x, p.y0, p.x1) * a * d
        t11 = self.gather(x, p.y1, p.x1) * b * d
        return (((t00 + t10) + t01) + t11 + np.float32(0)).astype(np.float32)
