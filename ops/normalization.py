"""L2_NORMALIZATION, LOG_SOFTMAX and L2_POOL_2D: TFLM's l2norm.cc, log_softmax.cc and l2_pool_2d.cc,
with the math of reference/l2normalization.h, integer_ops/l2normalization.h, log_softmax.h and
pooling.h (L2Pool), and the fixed-point helpers of kernels/internal/common.h
(GetInvSqrtQuantizedMultiplierExp, fp.log_x_for_x_greater_than_or_equal_to_1).

Float32 paths reproduce the C loops' float32 operations in their order; sqrt is correctly
rounded in C and numpy alike, expf and logf come from the C library (ops/libm.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import fixedpoint as fp
from .c_semantics import expf, logf
from .common import _out_size_checked, activation_range_float, clamp_float, compute_padding_height_width
from .parse_checks import converted_activation
from .pooling import trim_window, window_cells_inside
from .registry import OpKernel, PrepareContext, register

F32 = np.float32








# ------------------------------------------------------------------------------ L2_NORMALIZATION

@dataclass(frozen=True)
class L2NormalizationParams:
    kind: str  # FLOAT32 or INT8
    input_zero_point: int  # int8: the input's; float32: 0
    depth: int  # the trailing dimension, normalised over
    epsilon: float  # float32 1e-6: the smallest norm divided by (float path)


OUTPUT_SCALE_BITS = 7  # int8 output in 1/128 units, zero point 0, whatever the output tensor says


@register("L2_NORMALIZATION")
class L2Normalization(OpKernel):
    """L2_NORMALIZATION (l2norm.cc).

    float32: ``squared_l2_norm += val * val`` in float32, ``l2_norm = max(sqrtf(sum), 1e-6f)``,
    each value divided by it. int8: the int32 sum of squared (x - zp), its inverse square root
    as a quantized multiplier, each (x - zp) multiplied by it with 7 more bits of left shift and
    clamped to int8 -- the output quantization is ignored (the result is in 1/128 units).
    """

    supported_types = "int8, float32"
    notes = "int8 output in 1/128 units whatever its quantization says (as TFLM); float epsilon 1e-6"

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(1, 1)
        x, out = ctx.require_input(0, "input"), ctx.output(0)
        ctx.check(len(x.shape) <= 4, f"input rank {len(x.shape)} exceeds 4 (NumDimensions(input) <= 4)", x)
        ctx.check(out.type_name in ("FLOAT32", "INT8"), f"output type {out.type_name} is not FLOAT32 or INT8", out)
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        # ConvertActivation turns codes past SIGN_BIT into NONE before this check sees them.
        activation = converted_activation(ctx.options.get("fused_activation_function", 0))
        ctx.check(activation == 0, f"fused activation {activation} is not NONE (TF_LITE_ENSURE_EQ activation)")
        # The kernel normalises rows of depth = MatchingDim(input, t, output, t) = min(input.Dims(t),
        # output.Dims(t)) values (t the input's trailing axis), outer = the input's other dims many,
        # and writes them to the output's first elements.
        if len(x.shape) == 0:
            ctx.unsupported("a scalar input: TFLM's kernel reads dims[-1] (0) as its depth and leaves the "
                            "output unwritten", x)
        t = len(x.shape) - 1
        if len(out.shape) <= t or out.shape[t] < x.shape[t]:
            ctx.unsupported(f"output shape {list(out.shape)} against input {list(x.shape)}: TFLM's kernel takes "
                            "rows of min(input, output) dimension t and leaves output values unwritten", out)
        ctx.check(out.size == x.size, f"output has {out.size} elements, input {x.size}", out)
        zp = int(x.quantization.zero_point) if (x.type_name == "INT8" and x.quantization is not None) else 0
        self.params = L2NormalizationParams(x.type_name, zp, int(x.shape[-1]), float(F32(1e-6)))
        self.out = out

    def eval(self, inputs):
        p = self.params
        x = inputs[0]
        n = x.shape[0]
        rows = x.reshape(n, -1, p.depth) if p.depth else x.reshape(n, 0, 0)
        if p.kind == "FLOAT32":
            with np.errstate(all="ignore"):
                y = self._eval_float(rows.astype(np.float32, copy=False))
        else:
            y = self._eval_int8(rows)
        return [y.astype(self.out.dtype).reshape((n,) + tuple(self.out.shape))]

    def _eval_float(self, rows):
        squared = np.zeros(rows.shape[:-1] + (1,), np.float32)
        for c in range(rows.shape[-1]):
            v = rows[..., c:c + 1]
            squared = squared + v * v
        l2_norm = np.sqrt(squared)
        eps = F32(self.params.epsilon)
        l2_norm = np.where(l2_norm < eps, eps, l2_norm)  # std::max(l2_norm, epsilon)
        return rows / l2_norm

    def _eval_int8(self, rows):
        diff = fp.wrap_int32(rows.astype(np.int64) - self.params.input_zero_point)  # int32, wrapping
        acc = fp.wrap_int32((diff * diff).sum(axis=-1, keepdims=True))
        multiplier, shift = fp.get_inv_sqrt_quantized_multiplier_exp(acc)
        y = fp.multiply_by_quantized_multiplier(diff, multiplier, shift + OUTPUT_SCALE_BITS)
        return np.clip(y, -128, 127)

    def describe(self):
        return asdict(self.params)


# ------------------------------------------------------------------------------ LOG_SOFTMAX

@dataclass(frozen=True)
class LogSoftmaxOpData:
    """log_softmax.cc LogSoftmaxOpData (int8); None fields on the float path."""

    input_multiplier: int  # PreprocessSoftmaxScaling: min(s_in * 2^26, 2^31 - 1) quantized, > 1
    input_left_shift: int
    reverse_scaling_divisor: int  # QuantizeMultiplierSmallerThanOneExp(2^(31 - left_shift) / multiplier)
    reverse_scaling_right_shift: int  # minus that shift (>= 0)
    diff_min: int  # -CalculateInputRadius(5, input_left_shift)
    depth: int  # the trailing dimension


SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12
OUTPUT_INTEGER_BITS = 4
LOG_SOFTMAX_OUTPUT_SCALE = F32(16.0 / 256)
LOG_SOFTMAX_OUTPUT_ZERO_POINT = 127


@register("LOG_SOFTMAX")
class LogSoftmax(OpKernel):
    """LOG_SOFTMAX (log_softmax.cc, reference/log_softmax.h).

    float32: the row max (std::max from the lowest float), ``sum += expf(x - max)`` in float32,
    ``x - max - logf(sum)``. int8 (LogSoftmaxQuantized): differences to the row max rescaled to
    Q5.26, gemmlowp exp summed in Q12.19, the fixed-point log of the sum subtracted, the result in
    Q4.27 rounded to the output's fixed scale 16/256 and zero point 127.
    """

    supported_types = "int8 (output scale 16/256, zero point 127), float32"
    notes = "gemmlowp fixed-point exp and log"

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(1, 1)
        x, out = ctx.require_input(0, "input"), ctx.output(0)
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        ctx.check(tuple(x.shape) == tuple(out.shape),
                  f"output shape {list(out.shape)} differs from input shape {list(x.shape)} (HaveSameShapes)", out)
        if x.type_name not in ("FLOAT32", "INT8"):
            ctx.unsupported(f"TFLM's LOG_SOFTMAX supports FLOAT32 and INT8, not {x.type_name} (its Eval fails)")
        if len(x.shape) == 0:
            ctx.unsupported("a scalar input: TFLM's kernel reads dims[-1] (0) as its depth and leaves the "
                            "output unwritten", x)
        self.out = out
        depth = int(x.shape[-1])
        if x.type_name == "FLOAT32":
            self.params = LogSoftmaxOpData(0, 0, 0, 0, 0, depth)
            return
        oq = out.quantization
        o_scale, o_zp = (F32(oq.scale), int(oq.zero_point)) if oq is not None else (F32(0), 0)
        ctx.check(o_scale == LOG_SOFTMAX_OUTPUT_SCALE,
                  f"int8 output scale must be exactly 16/256, is {float(o_scale)!r}", out)
        ctx.check(o_zp == LOG_SOFTMAX_OUTPUT_ZERO_POINT, f"int8 output zero point must be 127, is {o_zp}", out)
        in_scale = float(x.quantization.scale) if x.quantization is not None else 0.0
        real = min(1.0 * in_scale * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)), float((1 << 31) - 1))
        ctx.check(real > 1.0, f"input_scale * 2^26 = {real!r} must exceed 1 (TFLITE_CHECK in "
                              "QuantizeMultiplierGreaterThanOne aborts TFLM)", x)
        multiplier, left_shift = fp.quantize_multiplier(real)
        reverse_real = float(1 << (31 - left_shift)) / float(multiplier)
        ctx.check(0.0 < reverse_real < 1.0, f"reverse scaling divisor {reverse_real!r} must be below 1 "
                                            "(TFLITE_CHECK in QuantizeMultiplierSmallerThanOneExp aborts TFLM)", x)
        reverse_divisor, reverse_shift = fp.quantize_multiplier(reverse_real)
        ctx.check(reverse_shift <= 0, f"reverse scaling divisor {reverse_real!r} rounds up to 1 "
                                      "(TFLITE_CHECK_LE(shift, 0) aborts TFLM)", x)
        diff_min = -fp.calculate_input_radius(SCALED_DIFF_INTEGER_BITS, left_shift)
        self.params = LogSoftmaxOpData(multiplier, left_shift, reverse_divisor, -reverse_shift, diff_min, depth)
        # x - max(row) of int8 values is one of 256 differences, -255..0: their Q5.26 rescaling
        # and the Q12 exp terms are tabulated once.
        diff = np.arange(-255, 1, dtype=np.int64)
        self.diff_q5 = fp.multiply_by_quantized_multiplier(diff, multiplier, left_shift)
        exps = fp.rescale(fp.exp_on_negative_values(self.diff_q5, SCALED_DIFF_INTEGER_BITS), 0,
                          ACCUMULATION_INTEGER_BITS)
        self.exp_terms = np.where(diff >= diff_min, exps, 0)

    def eval(self, inputs):
        x = inputs[0]
        if self.out.type_name == "FLOAT32":
            with np.errstate(all="ignore"):
                return [self._eval_float(x.astype(np.float32, copy=False))]
        return [self._eval_int8(x)]

    def _eval_float(self, x):
        depth = x.shape[-1]
        row_max = np.full(x.shape[:-1] + (1,), np.finfo(np.float32).min, np.float32)
        for c in range(depth):
            v = x[..., c:c + 1]
            row_max = np.where(row_max < v, v, row_max)  # std::max(max, v)
        shifted = (x - row_max).astype(np.float32)
        exps = expf(shifted)
        total = np.zeros(x.shape[:-1] + (1,), np.float32)
        for c in range(depth):
            total = total + exps[..., c:c + 1]
        log_sum = logf(total)
        return (shifted - log_sum).astype(np.float32)

    def _eval_int8(self, x):
        p = self.params
        wide = x.astype(np.int64)
        index = wide - wide.max(axis=-1, keepdims=True) + 255
        sum_of_exps = fp.wrap_int32(self.exp_terms[index].sum(axis=-1, keepdims=True))
        log_sum = fp.log_x_for_x_greater_than_or_equal_to_1(sum_of_exps, SCALED_DIFF_INTEGER_BITS,
                                                         ACCUMULATION_INTEGER_BITS)
        shifted_log_sum = fp.wrap_int32(log_sum + fp.INT32_MIN)
        adjusted_diff_min = np.maximum(p.diff_min - 1, fp.multiply_by_quantized_multiplier(
            shifted_log_sum, p.reverse_scaling_divisor, -p.reverse_scaling_right_shift))
        diff_q5 = self.diff_q5[index]
        y = fp.rounding_divide_by_pot(fp.wrap_int32(diff_q5 - log_sum),
                                      31 - SCALED_DIFF_INTEGER_BITS - OUTPUT_INTEGER_BITS) + 127
        y = np.where(index - 255 > adjusted_diff_min, np.clip(y, -128, 127), -128)
        return y.astype(np.int8)

    def describe(self):
        return asdict(self.params)


# ------------------------------------------------------------------------------ L2_POOL_2D

@dataclass(frozen=True)
class L2PoolParams:
    """PoolParams as L2Eval fills them, and the clamp of the fused activation."""

    stride: tuple[int, int]  # (height, width)
    filter: tuple[int, int]  # (height, width) as declared
    padding: tuple[int, int]  # PaddingValues (top, left), int16 fields
    out_hw: tuple[int, int]  # the output size Prepare computes (and writes into the output dims)
    float_activation_min: float
    float_activation_max: float


@register("L2_POOL_2D")
class L2Pool2D(OpKernel):
    """L2_POOL_2D (l2_pool_2d.cc, reference_ops::L2Pool), float32 only.

    Per output: ``sum_squares += val * val`` over the window's in-image taps, row by row, in
    float32, then ``sqrtf(sum_squares / filter_count)`` (0/0 = NaN for a window with no tap) and the
    activation clamp.
    """

    supported_types = "float32"
    notes = "SAME/VALID, stride, fused activations"

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(1, 1)
        x, out = ctx.require_input(0, "input"), ctx.output(0)
        ctx.check(len(x.shape) == 4, f"input must be 4-D, has shape {list(x.shape)}", x)
        ctx.check(len(out.shape) == 4, f"output must be 4-D, has shape {list(out.shape)}", out)
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        opts = ctx.options
        stride = (int(opts.get("stride_h", 0)), int(opts.get("stride_w", 0)))
        filt = (int(opts.get("filter_height", 0)), int(opts.get("filter_width", 0)))
        padding = int(opts.get("padding", 0))
        batches, height, width, channels = (int(d) for d in x.shape)
        # ComputePaddingHeightWidth: the output sizes (0 where a checked helper fails) and the
        # padding, which the kernel reads from int16 PaddingValues.
        out_w = _out_size_checked(padding, width, filt[1], stride[1], 1)
        out_h = _out_size_checked(padding, height, filt[0], stride[0], 1) if out_w is not None else None
        out_hw = (out_h or 0, out_w or 0)
        pad = tuple(int(fp.wrap_int16(v)) for v in compute_padding_height_width(
            padding, (height, width), filt, stride))
        ctx.check(x.type_name == "FLOAT32", f"input type {x.type_name} is not FLOAT32 (TFLM has no quantized "
                                            "L2Pool: TF_LITE_ENSURE_TYPES_EQ)", x)
        computed = (batches, out_hw[0], out_hw[1], channels)
        if tuple(out.shape) != computed:
            ctx.unsupported(f"output shape {list(out.shape)} differs from the {list(computed)} TFLM's Prepare "
                            "computes and writes into the output tensor", out)
        lo, hi = activation_range_float(opts.get("fused_activation_function", 0))
        self.params = L2PoolParams(stride, filt, pad, out_hw, lo, hi)
        # The in-image taps of each output row and column; taps no output position reaches
        # inside the image are dropped (a huge filter costs nothing).
        (fh, pad_top), (fw, pad_left) = (trim_window(o, s, q, max(f, 0), n) for o, s, q, f, n in
                                         zip(out_hw, stride, pad, filt, (height, width)))
        self.inside_y = window_cells_inside(out_hw[0], stride[0], pad_top, fh, height)  # (OH, FH)
        self.rows = np.arange(out_hw[0], dtype=np.int64)[:, None] * stride[0] - pad_top + np.arange(fh)[None, :]
        self.inside_x = window_cells_inside(out_hw[1], stride[1], pad_left, fw, width)  # (OW, FW)
        self.cols = np.arange(out_hw[1], dtype=np.int64)[:, None] * stride[1] - pad_left + np.arange(fw)[None, :]
        counts = self.inside_y.sum(axis=1)[:, None] * self.inside_x.sum(axis=1)[None, :]
        self.counts = counts.astype(np.float32)[:, :, None]  # int filter_count converted to float
        self.out = out

    def eval(self, inputs):
        p = self.params
        x = inputs[0].astype(np.float32, copy=False)
        n = x.shape[0]
        images = x.reshape((-1,) + x.shape[-3:])
        height, width = images.shape[1], images.shape[2]
        rows = np.clip(self.rows, 0, max(height - 1, 0))
        cols = np.clip(self.cols, 0, max(width - 1, 0))
        total = np.zeros((images.shape[0], p.out_hw[0], p.out_hw[1], images.shape[3]), np.float32)
        with np.errstate(all="ignore"):
            for fy in range(self.rows.shape[1]):
                for fx in range(self.cols.shape[1]):
                    inside = (self.inside_y[:, fy][:, None] & self.inside_x[:, fx][None, :])[None, :, :, None]
                    if not inside.any():
                        continue
                    val = images[:, rows[:, fy][:, None], cols[:, fx][None, :], :]
                    total = np.where(inside, total + val * val, total)
            y = np.sqrt(total / self.counts)
        y = clamp_float(y, p.float_activation_min, p.float_activation_max)
        return [y.reshape((n,) + tuple(self.out.shape))]

    def describe(self):
        return asdict(self.params)
