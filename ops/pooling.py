"""AVERAGE_POOL_2D and MAX_POOL_2D: TFLM's pooling.cc, pooling_common.cc (PoolingPrepare),
reference/integer_ops/pooling.h (int8, int16) and reference/pooling.h (float32).

Quantized pooling never rescales: Prepare demands equal input/output scale (within 1e-6) and zero
point. The average sums the *raw* values of the window cells that lie inside the image, divides
by the number of those cells with C's truncating division after adding or subtracting half the
count (round half away from zero), then clamps to the fused activation range.
"""
from __future__ import annotations

import numpy as np

from . import compiled
from . import fixedpoint as fp
from .common import (
    activation_range_float,
    activation_range_quantized,
    clamp_float,
    compute_padding_height_width,
    sliding_windows,
)
from .compiled import pooling as compiled_pooling
from .params import PoolParams, params_as_dict
from .reference import average_pool, max_pool
from .registry import OpKernel, expect_types, register

POOL_TYPES = ("FLOAT32", "INT8", "INT16")
SCALE_TOLERANCE = 1.0e-6
TYPE_LOWEST = {"INT8": -128, "INT16": -32768}


def window_cells_inside(out_size: int, stride: int, pad_before: int, filter_size: int, in_size: int):
    """For each output position, which of the filter taps fall inside the input: (out, filter) bool."""
    origin = np.arange(out_size, dtype=np.int64)[:, None] * stride - pad_before
    pos = origin + np.arange(filter_size, dtype=np.int64)[None, :]
    return (pos >= 0) & (pos < in_size)


def origins_fit_int32(out_size: int, stride: int, pad_before: int, in_size: int) -> bool:
    """Whether the reference kernels' int arithmetic of every window origin stays in int32:
    ``in_x_origin = out_x * stride - pad``, ``-in_x_origin`` and ``input_width - in_x_origin``
    (reference_ops::AveragePool / MaxPool). o·stride is monotone in o: the extremes are at the ends."""
    lo, hi = -(2 ** 31), 2 ** 31 - 1
    for o in {0, max(out_size - 1, 0)}:
        product = o * stride
        origin = product - pad_before
        if not (lo <= product <= hi and lo < origin <= hi and lo <= in_size - origin <= hi):
            return False
    return True


def trim_window(out_size: int, stride: int, pad_before: int, filter_size: int, in_size: int) -> tuple[int, int]:
    """(filter, pad) without the leading and trailing taps that no output position has inside
    the image. TFLM's loops visit only in-image taps, so those taps never count; dropping them
    keeps a huge filter size (any int32 is a valid option) from costing huge masks and windows."""
    if out_size <= 0 or filter_size <= 0:
        return filter_size, pad_before
    furthest = (out_size - 1) * stride  # o·stride is monotone in o: its extremes are at the ends
    first = max(0, pad_before - max(0, furthest))
    stop = min(filter_size, in_size + pad_before - min(0, furthest))
    if stop <= first:
        return 0, pad_before
    return stop - first, pad_before - first


class _Pool2D(OpKernel):
    """PoolingPrepare (pooling_common.cc): geometry, the same-quantization check, clamps."""

    def prepare(self, ctx):
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        self.out_tensor = out
        opts = ctx.options
        ctx.check(len(x.shape) == 4, f"input must be 4-D (NHWC), has shape {list(x.shape)}", x)
        ctx.check(len(out.shape) == 4, f"output must be 4-D (NHWC), has shape {list(out.shape)}", out)
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        self.stride = (opts.get("stride_h", 0), opts.get("stride_w", 0))
        self.filter = (opts.get("filter_height", 0), opts.get("filter_width", 0))
        self.padding = opts.get("padding", 0)
        self.activation = opts.get("fused_activation_function", 0)
        # Any other value is ConvertPadding's kTfLitePaddingUnknown, which TFLM's Prepare accepts: its
        # padding helper computes no output size for it and the padding stays 0 (as for a bad stride).
        _, in_h, in_w, channels = x.shape
        ctx.check(out.shape[0] == x.shape[0] and out.shape[3] == channels,
                  f"output shape {list(out.shape)} does not keep the batch and channels of input {list(x.shape)}")
        # TFLM accepts any stride here: with a stride <= 0 its padding helper fails silently (padding 0)
        # and the kernel loops with that stride.
        pad_top, pad_left = compute_padding_height_width(self.padding, (in_h, in_w), self.filter, self.stride)
        # The kernel reads the padding from PoolParams' int16_t PaddingValues: a padding beyond
        # 32767 (a filter of tens of thousands of taps) wraps there.
        self.pad = (int(fp.wrap_int16(pad_top)), int(fp.wrap_int16(pad_left)))
        # A filter size <= 0 (TFLM accepts it) is a window with no taps: the kernel's loops do nothing.
        self.filter = tuple(max(f, 0) for f in self.filter)
        self.declared_filter, self.declared_pad = self.filter, self.pad
        # TFLM loops over the output tensor's own dims, not the ones it recomputes.
        self.out_hw = (out.shape[1], out.shape[2])
        for axis, o, s, p, n in zip(("height", "width"), self.out_hw, self.stride, self.pad, (in_h, in_w)):
            if not origins_fit_int32(o, s, p, n):
                ctx.unsupported(f"stride {s} over {o} output {axis} positions overflows TFLM's int window "
                                "arithmetic (out * stride - pad, input size - origin): undefined behaviour", x)
        (fh, pad_top), (fw, pad_left) = (trim_window(o, s, p, f, n) for o, s, p, f, n in
                                         zip(self.out_hw, self.stride, self.pad, self.filter, (in_h, in_w)))
        self.filter, self.pad = (fh, fw), (pad_top, pad_left)
        self.inside_y = window_cells_inside(self.out_hw[0], self.stride[0], pad_top, self.filter[0], in_h)
        self.inside_x = window_cells_inside(self.out_hw[1], self.stride[1], pad_left, self.filter[1], in_w)

        expect_types(ctx, x, POOL_TYPES, "input")
        self.kind = x.type_name
        if self.kind == "FLOAT32":
            self.act_min, self.act_max = activation_range_float(self.activation)
            return
        xq, oq = x.quantization, out.quantization
        in_scale, in_zp = (xq.scale, xq.zero_point) if xq is not None else (0.0, 0)
        out_scale, out_zp = (oq.scale, oq.zero_point) if oq is not None else (0.0, 0)
        # std::abs of a float32 difference, then widened to double.
        scale_diff = float(abs(np.float32(in_scale) - np.float32(out_scale)))
        ctx.check(scale_diff <= SCALE_TOLERANCE,
                  f"input scale {in_scale!r} and output scale {out_scale!r} differ by {scale_diff:.3g} "
                  f"(TFLM pooling does not rescale: scale_diff <= 1.0e-6)")
        ctx.check(in_zp == out_zp,
                  f"input zero point {in_zp} differs from output zero point {out_zp} "
                  "(input->params.zero_point == output->params.zero_point)")
        ctx.check(oq is not None, "quantized pooling needs quantization on its output", out)
        self.act_min, self.act_max = activation_range_quantized(self.activation, out)

    def pool_params(self) -> PoolParams:
        """The declared parameters the reference kernel reads (TFLM's PoolParams, trimmed window)."""
        return PoolParams(kind=self.kind, stride_height=self.stride[0], stride_width=self.stride[1],
                          filter_height=self.filter[0], filter_width=self.filter[1], padding_top=self.pad[0],
                          padding_left=self.pad[1], output_height=self.out_hw[0], output_width=self.out_hw[1],
                          activation_min=self.act_min, activation_max=self.act_max)

    def eval_reference(self, inputs):
        x = inputs[0]
        return self.finish(self.reference(self.params, x), x.shape[0])

    def windows(self, x: np.ndarray, fill) -> np.ndarray:
        """(N*B, OH, OW, KH, KW, C) strided view; taps outside the image read ``fill``."""
        images = x.reshape((-1,) + x.shape[-3:])
        return sliding_windows(images, self.out_hw, self.filter, self.stride, (1, 1), self.pad, fill=fill)

    def inside_mask(self) -> np.ndarray:
        """(OH, OW, KH, KW) taps inside the image."""
        return self.inside_y[:, None, :, None] & self.inside_x[None, :, None, :]

    def finish(self, y: np.ndarray, n: int) -> list[np.ndarray]:
        return [y.astype(self.out_tensor.dtype, copy=False).reshape((n,) + tuple(self.out_tensor.shape))]

    def describe(self):
        # The window as the model declares it, then the one TFLM's loops visit (params).
        return {"declared_filter": self.declared_filter, "declared_padding": self.declared_pad,
                "padding": {0: "SAME", 1: "VALID"}.get(self.padding, f"unknown ({self.padding})"),
                **params_as_dict(self.params)}


# Outputs (values per tap) from which the taps are combined one slice at a time rather than by one
# numpy reduction; a module attribute read at call time, so that tests can force either path.
PER_TAP_MIN_ELEMENTS = 1024


def _combine_taps(ufunc, win: np.ndarray, dtype, initial) -> np.ndarray:
    """``ufunc`` (add or maximum) over the (KH, KW) window axes of win, starting from ``initial``.

    On large outputs the taps are combined one whole (NB, OH, OW, C) slice at a time: numpy's
    reduction runs its inner loop over a handful of taps at a time there, several times slower.
    On tiny ones the per-tap calls cost more, and the reduction is used.
    """
    taps = win.shape[3] * win.shape[4]
    if taps == 0 or win.shape[0] * win.shape[1] * win.shape[2] * win.shape[5] < PER_TAP_MIN_ELEMENTS:
        return ufunc.reduce(win, axis=(3, 4), dtype=dtype, initial=initial)
    acc = win[:, :, :, 0, 0, :].astype(dtype)
    for fy in range(win.shape[3]):
        for fx in range(win.shape[4]):
            if fy or fx:
                ufunc(acc, win[:, :, :, fy, fx, :], out=acc)
    return acc


@register("AVERAGE_POOL_2D")
class AveragePool2D(_Pool2D):
    supported_types = "int8, int16, float32"
    notes = "SAME/VALID, stride, fused activations"

    reference = staticmethod(average_pool)
    # Sums below this bound never wrap in int32 (tests lower it to force the wrapping path).
    WRAP_FREE_BOUND = 1 << 31
    # int8/int16 calls reading at least this many input values (all samples) run TFLM's loop
    # compiled (ops/compiled/pooling.py) when compiled kernels are enabled: smaller ones would pay
    # numba's first import (~0.4 s) for microseconds. Tests set it to 0 or beyond any input.
    COMPILED_MIN_ELEMENTS = 1 << 15

    def prepare(self, ctx):
        super().prepare(ctx)
        counts = self.inside_y.sum(axis=1)[:, None] * self.inside_x.sum(axis=1)[None, :]
        if (counts == 0).any():
            ctx.unsupported("a pooling window lies entirely outside the input; TFLM's kernel then returns "
                            "early and leaves the remaining outputs unwritten")
        self.counts = counts.astype(np.int64)  # (OH, OW)
        # TFLM sums in int32 and adds ±count/2, wrapping on overflow; |sum| <= 32768·taps, so only a
        # window of tens of thousands of taps can wrap, and eval skips the wraps below that bound.
        taps = self.filter[0] * self.filter[1]
        self.may_wrap = 32768 * taps + int(self.counts.max(initial=0)) // 2 >= self.WRAP_FREE_BOUND
        self.params = self.pool_params()

    def eval(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        if self.kind == "FLOAT32":
            with np.errstate(all="ignore"):  # inf/NaN arithmetic is C's, not an error
                return self.finish(self.eval_float(x), n)
        if x.size >= self.COMPILED_MIN_ELEMENTS and compiled.enabled():
            images = np.ascontiguousarray(x.reshape((-1,) + x.shape[-3:]))
            y = np.empty((images.shape[0],) + self.out_hw + (images.shape[3],), self.out_tensor.dtype)
            compiled_pooling.average_pool_int(images, self.stride[0], self.stride[1], self.pad[0], self.pad[1],
                                              self.filter[0], self.filter[1], self.act_min, self.act_max, y)
            return self.finish(y, n)
        # (NB, OH, OW, C): TFLM's int32 accumulator
        acc = _combine_taps(np.add, self.windows(x, fill=0), np.int64, 0)
        count = self.counts[None, :, :, None]
        half = count // 2
        if self.may_wrap:
            acc = fp.wrap_int32(acc)
            acc = fp.wrap_int32(np.where(acc > 0, acc + half, acc - half))
        else:
            acc = np.where(acc > 0, acc + half, acc - half)
        avg = fp.truncating_divide(acc, count)
        # np.minimum/np.maximum: np.clip's per-call overhead is most of a tiny pool's time.
        return self.finish(np.minimum(np.maximum(avg, self.act_min), self.act_max), n)

    def eval_float(self, x):
        """reference_ops::AveragePool (float): a float32 running sum over the in-image taps, row by row."""
        win = self.windows(x.astype(np.float32, copy=False), fill=np.float32(0))
        inside = self.inside_mask()
        total = np.zeros(win.shape[:3] + win.shape[5:], dtype=np.float32)
        for fy in range(self.filter[0]):
            for fx in range(self.filter[1]):
                tap_inside = inside[:, :, fy, fx][None, :, :, None]
                total = np.where(tap_inside, total + win[:, :, :, fy, fx, :], total)
        average = total / self.counts.astype(np.float32)[None, :, :, None]
        return clamp_float(average, self.act_min, self.act_max)


@register("MAX_POOL_2D")
class MaxPool2D(_Pool2D):
    supported_types = "int8, int16, float32"
    notes = "SAME/VALID, stride, fused activations"

    reference = staticmethod(max_pool)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.params = self.pool_params()

    def eval(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        if self.kind == "FLOAT32":
            with np.errstate(all="ignore"):  # inf/NaN arithmetic is C's, not an error
                return self.finish(self.eval_float(x), n)
        # The running max starts at the type's lowest value, so filling outside taps with it is exact
        # (and a window with no in-image cell yields that lowest value, clamped, as in TFLM).
        lowest = TYPE_LOWEST[self.kind]
        y = _combine_taps(np.maximum, self.windows(x, fill=lowest), x.dtype, lowest)
        return self.finish(np.clip(y.astype(np.int64), self.act_min, self.act_max), n)

    def eval_float(self, x):
        """reference_ops::MaxPool (float): running std::max from the lowest float, in tap order."""
        win = self.windows(x.astype(np.float32, copy=False), fill=np.float32(0))
        inside = self.inside_mask()
        best = np.full(win.shape[:3] + win.shape[5:], np.finfo(np.float32).min, dtype=np.float32)
        for fy in range(self.filter[0]):
            for fx in range(self.filter[1]):
                tap = win[:, :, :, fy, fx, :]
                tap_inside = inside[:, :, fy, fx][None, :, :, None]
                best = np.where(tap_inside & (best < tap), tap, best)
        return clamp_float(best, self.act_min, self.act_max)
