"""MEAN, SUM, REDUCE_MAX and REDUCE_MIN: TFLM's reduce.cc, reduce_common.cc and reference/reduce.h.

Quantized MEAN/SUM (QuantizedMeanOrSum): an int32 sum of the raw values with wrapping adds, the
input zero point times the element count subtracted, then one MultiplyByQuantizedMultiplier with
the input/output scale ratio. MEAN folds 1/count into that multiplier with integer arithmetic
(shift up by floor(log2 count), truncating division by count). TFLM has no special 4-D path for
the quantized mean, so this formula is used for every axis set.

Float sums run in the input's row-major order in float32, as the reference loops do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fp
from .c_semantics import float_sequential_sum
from .common import type_range
from .params import params_as_dict
from .registry import OpKernel, expect_types, register

MEAN_SUM_TYPES = ("FLOAT32", "INT8", "INT16")
MIN_MAX_TYPES = ("FLOAT32", "INT8")
FLOAT32_LOWEST = np.finfo(np.float32).min
FLOAT32_MAX = np.finfo(np.float32).max


def floor_log2(n: int) -> int:
    """63 - CountLeadingZeros(uint64 n), for n >= 1."""
    return int(n).bit_length() - 1


@dataclass(frozen=True)
class OpDataReduce:
    """reduce.h OpDataReduce (the scratch buffer indices aside) plus the resolved axes that
    ResolveAxis computes at Eval. Quantized fields are 0 for float32."""
    kind: str                      # FLOAT32, INT8 or INT16: input and output type
    axes: tuple[int, ...]          # resolved, de-duplicated axes in the order given (empty: none valid)
    keep_dims: bool                # the option; the output tensor's shape already reflects it
    count: int                     # elements reduced into each output (product of the axes' dims)
    empty_input: bool              # the input has no elements: every output is the initial value
    invalid_axis: int | None = None  # the first out-of-range axis value (quantized MEAN/SUM: outputs 0)
    compute_sum: bool = False      # MEAN/SUM: SUM (no division by count)
    is_max: bool = False           # REDUCE_MAX/MIN: REDUCE_MAX
    input_zp: int = 0              # the input zero point, subtracted count times from the int32 sum
    output_zp: int = 0             # the output zero point, added after the rescale
    base_multiplier: int = 0       # QuantizeMultiplier(s_in / s_out), before MEAN folds in 1/count
    base_shift: int = 0
    multiplier: int = 0            # MEAN: (base_multiplier << extra) // count; SUM: base_multiplier
    shift: int = 0                 # MEAN: base_shift - extra, extra = min(floor(log2 count), 32, 31 + base_shift)
    quantized_activation_min: int = 0  # the output type's range
    quantized_activation_max: int = 0


class _Reduce(OpKernel):
    """PrepareSimple + the axis handling of reference_ops::ResolveAxis, shared by every reducer."""

    def prepare_axes(self, ctx):
        ctx.check_io_counts(2)
        x = ctx.require_input(0, "input")
        axis_t = ctx.require_input(1, "axis")
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(axis_t.type_name == "INT32", f"axis type {axis_t.type_name} is not INT32", axis_t)
        if axis_t.data is None:
            ctx.unsupported("a non-constant axis tensor is not supported", axis_t)
        rank = len(x.shape)
        resolved = []
        self.invalid_axis = None
        for a in np.asarray(axis_t.data).reshape(-1).tolist():
            if rank == 0:
                break  # ResolveAxis short-circuits scalars: the axis goes unused
            current = a + rank if a < 0 else a
            if not 0 <= current < rank:
                self.invalid_axis = a
                break
            if current not in resolved:
                resolved.append(current)
        self.axes = resolved
        if self.invalid_axis is not None:
            self.count, self.keep_dims, self.input_rank = 0, bool(ctx.options.get("keep_dims", False)), rank
            self.axis_count, self.empty_input = axis_t.size, x.size == 0
            return x, axis_t, out
        self.keep_dims = bool(ctx.options.get("keep_dims", False))
        self.count = int(np.prod([x.shape[a] for a in resolved], dtype=np.int64)) if resolved else 1
        kept = [d for i, d in enumerate(x.shape) if i not in resolved]
        kept_size = int(np.prod(kept, dtype=np.int64)) if kept else 1
        ctx.check(out.size == kept_size,
                  f"output shape {list(out.shape)} has {out.size} elements; reducing axes {resolved} of "
                  f"input {list(x.shape)} leaves {kept_size}", out)
        self.input_rank = rank
        self.axis_count = axis_t.size
        self.empty_input = x.size == 0
        return x, axis_t, out

    def reduced_last(self, x: np.ndarray) -> np.ndarray:
        """(N, outputs, count): the reduced axes moved last in input order, row-major within."""
        n = x.shape[0]
        kept = [i + 1 for i in range(self.input_rank) if i not in self.axes]
        moved = np.transpose(x, [0] + kept + [a + 1 for a in sorted(self.axes)])
        return moved.reshape(n, -1, self.count)

    def finish(self, y: np.ndarray, n: int) -> list[np.ndarray]:
        return [y.astype(self.out_tensor.dtype, copy=False).reshape((n,) + tuple(self.out_tensor.shape))]


@register("MEAN", "SUM")
class MeanOrSum(_Reduce):
    """PrepareMeanOrSumHelper / EvalMeanHelper / EvalSumHelper (reduce_common.cc)."""

    supported_types = "int8, int16, float32"
    notes = "any axes, keep_dims"

    def prepare(self, ctx):
        x, axis_t, out = self.prepare_axes(ctx)
        compute_sum = ctx.op.op_name == "SUM"
        expect_types(ctx, x, MEAN_SUM_TYPES, "input")
        self.kind = x.type_name
        if self.invalid_axis is not None:
            # ResolveAxis fails after the output was zeroed. The float path reports the failure;
            # the quantized path ignores QuantizedMeanOrSum's result, so TFLM outputs raw zeros.
            ctx.check(self.kind != "FLOAT32",
                      f"axis {self.invalid_axis} is out of range for input rank {len(x.shape)}", axis_t)
        common = dict(kind=self.kind, axes=tuple(self.axes), keep_dims=self.keep_dims, count=self.count,
                      empty_input=self.empty_input, invalid_axis=self.invalid_axis, compute_sum=compute_sum)
        if self.kind == "FLOAT32":
            self.params = OpDataReduce(**common)
            self.scratch_bytes += [4 * len(x.shape), 4 * axis_t.size]
            return
        ctx.check(out.type_name == x.type_name, f"output type {out.type_name} differs from input type {x.type_name}")
        xq, oq = x.quantization, out.quantization
        ctx.check(xq is not None and oq is not None, "quantized MEAN/SUM needs input and output quantization")
        multiplier, shift = fp.quantize_multiplier(float(xq.scale) / float(oq.scale))
        base_multiplier, base_shift = multiplier, shift
        if not compute_sum and self.count > 0:
            # QuantizedMeanOrSum folds 1/count into the multiplier, clamping the extra shift so
            # that it stays <= 32 and the final shift stays >= -31.
            extra = min(floor_log2(self.count), 32, 31 + shift)
            multiplier = int((multiplier << extra) // self.count)
            shift -= extra
        qmin, qmax = type_range(out)
        self.params = OpDataReduce(**common, input_zp=xq.zero_point, output_zp=oq.zero_point,
                                   base_multiplier=base_multiplier, base_shift=base_shift,
                                   multiplier=multiplier, shift=shift,
                                   quantized_activation_min=qmin, quantized_activation_max=qmax)
        # RequestScratchBufferInArena calls, in Prepare's order: int32 sums, input iterator, axes.
        self.scratch_bytes += [4 * out.size, 4 * len(x.shape), 4 * axis_t.size]

    def eval(self, inputs):
        p = self.params
        x = inputs[0]
        n = x.shape[0]
        if p.empty_input or p.invalid_axis is not None:
            return self.finish(np.zeros((n, self.out_tensor.size)), n)
        grouped = self.reduced_last(x)
        if p.kind == "FLOAT32":
            with np.errstate(all="ignore"):  # inf/NaN arithmetic is C's, not an error
                total = float_sequential_sum(grouped.astype(np.float32, copy=False))
                if not p.compute_sum and p.count > 0:
                    total = total / np.float32(p.count)
            return self.finish(total, n)
        total = fp.wrap_int32(grouped.sum(axis=-1, dtype=np.int64))
        shifted = fp.wrap_int32(total - p.input_zp * p.count)
        y = fp.multiply_by_quantized_multiplier(shifted, p.multiplier, p.shift) + p.output_zp
        return self.finish(np.clip(y, p.quantized_activation_min, p.quantized_activation_max), n)

    def describe(self):
        return params_as_dict(self.params)


@register("REDUCE_MAX", "REDUCE_MIN")
class ReduceMinMax(_Reduce):
    """PrepareMinMaxHelper / EvalMinMaxHelper (reduce_common.cc): reference_ops::ReduceGeneric with
    an initial value of the type's lowest (max) or largest (min) value."""

    supported_types = "int8, float32"
    notes = "any axes, keep_dims"

    def prepare(self, ctx):
        x, axis_t, out = self.prepare_axes(ctx)
        is_max = ctx.op.op_name == "REDUCE_MAX"
        expect_types(ctx, x, MIN_MAX_TYPES, "input")
        ctx.check(self.invalid_axis is None,
                  f"axis {self.invalid_axis} is out of range for input rank {len(x.shape)}", axis_t)
        ctx.check(out.type_name == x.type_name, f"output type {out.type_name} differs from input type {x.type_name}")
        self.kind = x.type_name
        if self.kind == "INT8":
            xq, oq = x.quantization, out.quantization
            in_scale, in_zp = (xq.scale, xq.zero_point) if xq is not None else (0.0, 0)
            out_scale, out_zp = (oq.scale, oq.zero_point) if oq is not None else (0.0, 0)
            # Checked at Eval in TFLM (the kernel does not rescale); the model can never run.
            ctx.check(in_scale == out_scale,
                      f"input scale {in_scale!r} differs from output scale {out_scale!r} "
                      "(op_data->input_scale == op_data->output_scale)")
            ctx.check(in_zp == out_zp,
                      f"input zero point {in_zp} differs from output zero point {out_zp} "
                      "(op_data->input_zp == op_data->output_zp)")
            # Min/max pick stored values: the equal scales and zero points need no parameters.
        self.params = OpDataReduce(kind=self.kind, axes=tuple(self.axes), keep_dims=self.keep_dims,
                                   count=self.count, empty_input=self.empty_input, is_max=is_max)
        self.scratch_bytes += [4 * len(x.shape), 4 * axis_t.size]

    def eval(self, inputs):
        p = self.params
        x = inputs[0]
        n = x.shape[0]
        if p.kind == "INT8":
            init = -128 if p.is_max else 127
            if p.empty_input:
                return self.finish(np.full((n, self.out_tensor.size), init), n)
            grouped = self.reduced_last(x)
            y = grouped.max(axis=-1) if p.is_max else grouped.min(axis=-1)
            return self.finish(y, n)
        init = FLOAT32_LOWEST if p.is_max else FLOAT32_MAX
        if p.empty_input:
            return self.finish(np.full((n, self.out_tensor.size), init, dtype=np.float32), n)
        grouped = self.reduced_last(x).astype(np.float32, copy=False)
        # `(in > current) ? in : current` from init: NaNs never win, values beyond init never
        # pass it, and among equal values (+0.0 / -0.0) the first one stays.
        cleaned = np.where(np.isnan(grouped), init, grouped)
        if p.is_max:
            best = np.maximum(cleaned.max(axis=-1), init)
        else:
            best = np.minimum(cleaned.min(axis=-1), init)
        first_equal = np.argmax(cleaned == best[..., None], axis=-1)
        chosen = np.take_along_axis(cleaned, first_equal[..., None], axis=-1)[..., 0]
        y = np.where((cleaned == best[..., None]).any(axis=-1), chosen, best).astype(np.float32)
        return self.finish(y, n)

    def describe(self):
        return params_as_dict(self.params)
