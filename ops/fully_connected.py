"""FULLY_CONNECTED: TFLM's reference kernel (fully_connected.cc, integer_ops/fully_connected.h)."""
from __future__ import annotations

import numpy as np

from . import common, compiled
from . import fixedpoint as fp
from .c_semantics import float_sequential_sum_of_products
from .common import (
    ExactIntegerMatmul,
    Requantizer,
    activation_range_float,
    activation_range_quantized,
    apply_float_activation,
    blocks,
    quantize_channel_multipliers,
    real_multiplier,
)
from .compiled import pointwise_small as compiled_pointwise
from .params import FullyConnectedParams, QuantizedOutput, frozen_array, params_as_dict
from .parse_checks import check_parsed_options
from .reference import fully_connected
from .registry import DEFAULT_NUMERICS, OpKernel, PrepareContext, register


@register("FULLY_CONNECTED")
class FullyConnected(OpKernel):
    # Outputs per call from which the compiled int8 path runs (compiled_pointwise, VNNI hosts).
    COMPILED_MIN_ELEMENTS = 1024
    compiled_pointwise = None  # its plan (prepare_fast), for int8 layers it applies to
    PLAN_MIN_WEIGHTS = 4096
    # (K+1, C) float64 weights with the requantization folded in, the offset as a last row, for
    # small products (see prepare_fast); ``one_row`` is [0..0, 1], the product's left operand
    # for one row, copied per call.
    scaled = None
    one_row = None

    supported_types = "int8 (int8 or int4 weights), int16x8 (int32 or int64 bias), float32"
    notes = "per-tensor and per-channel, optional bias, any input rank (`keep_num_dims` is ignored, as in TFLM)"

    def prepare(self, ctx: PrepareContext):
        check_parsed_options(ctx)
        self.prepare_fast(ctx)
        quantized = None
        if self.kind != "FLOAT32":
            depth = self.output_depth
            quantized = QuantizedOutput(
                output_multiplier=frozen_array(np.broadcast_to(self.multiplier, (depth,))),
                output_shift=frozen_array(np.broadcast_to(self.shift, (depth,))),
                output_offset=int(self.output_offset), activation_min=int(self.act_min),
                activation_max=int(self.act_max), rounding=self.numerics.rounding,
                int64_accumulator=bool(self.int64_accumulator))
        lo, hi = activation_range_float(self.activation)
        self.params = FullyConnectedParams(
            kind=self.kind, accum_depth=self.accum_depth, output_depth=self.output_depth,
            input_offset=int(getattr(self, "input_offset", 0)), weights_offset=int(getattr(self, "weights_offset", 0)),
            requantize=quantized, float_activation_min=lo, float_activation_max=hi)

    def eval_reference(self, inputs):
        x, w = inputs[0], inputs[1][0]
        bias = inputs[2][0] if len(inputs) > 2 and inputs[2] is not None else None
        y = fully_connected(self.params, x, w, bias)
        return [y.astype(self.out_tensor.dtype).reshape((x.shape[0],) + self.out_tensor.shape)]

    def prepare_fast(self, ctx: PrepareContext):
        x = ctx.require_input(0, "input")
        w = ctx.require_input(1, "weights")
        bias = ctx.input(2)
        out = ctx.output(0)
        self.activation = ctx.options.get("fused_activation_function", 0)
        ctx.check(x.type_name == out.type_name,
                  f"input type {x.type_name} differs from output type {out.type_name}")
        ok = {("FLOAT32", "FLOAT32"), ("INT8", "INT8"), ("INT8", "INT4"), ("INT16", "INT8")}
        if (x.type_name, w.type_name) not in ok:
            ctx.unsupported(f"input {x.type_name} with weights {w.type_name} is not supported by TFLM")
        if w.data is None:
            ctx.unsupported("non-constant weights are not supported", w)
        ctx.check(len(w.shape) >= 2, f"weights must have rank >= 2, have shape {list(w.shape)}", w)
        self.accum_depth = w.shape[-1]
        if not out.shape:
            # RuntimeShape::Dims(-1) on a 0-d shape reads before the dims array (the wheel finds 0
            # there): TFLM computes nothing and the output keeps whatever the arena held.
            ctx.unsupported("a 0-d output is undefined behaviour in TFLM's kernel (it reads the output "
                            "depth as Dims(-1), outside the shape, and writes nothing)", out)
        self.output_depth = out.shape[-1]
        ctx.check(self.output_depth <= w.shape[-2],
                  f"output depth {self.output_depth} exceeds the {w.shape[-2]} weight rows", w)
        ctx.check(self.accum_depth > 0 and x.size % self.accum_depth == 0,
                  f"input of {x.size} elements is not a whole number of rows of {self.accum_depth}", x)
        ctx.check(out.size * self.accum_depth == x.size * self.output_depth,
                  f"output shape {list(out.shape)} does not match input {list(x.shape)} and "
                  f"weights {list(w.shape)}", out)
        self.out_tensor = out
        self.kind = x.type_name
        if bias is not None:
            allowed_bias = {"FLOAT32": ("FLOAT32",), "INT8": ("INT32",), "INT16": ("INT32", "INT64")}[x.type_name]
            if bias.type_name not in allowed_bias:
                ctx.unsupported(f"a {bias.type_name} bias with {x.type_name} input (TFLM reads it as "
                                f"{' or '.join(allowed_bias)})", bias)
            # The kernel reads bias[out_c] for every output channel.
            ctx.check(bias.size >= self.output_depth,
                      f"bias has {bias.size} values for {self.output_depth} output channels", bias)
        weights = np.asarray(w.data).reshape(-1, self.accum_depth)[: self.output_depth]
        if w.type_name == "INT4":
            # TFLM unpacks the int4 weights into an arena scratch buffer at every Eval.
            self.scratch_bytes.append(w.size)

        if self.kind == "FLOAT32":
            self.weights_f32 = weights.astype(np.float32)
            self.bias_f32 = None if bias is None else np.asarray(bias.data, np.float32)
            return

        if bias is not None and bias.data is None:
            ctx.unsupported("non-constant bias is not supported", bias)
        wq, xq, oq = w.quantization, x.quantization, out.quantization
        ctx.check(wq is not None and xq is not None and oq is not None,
                  "quantized FULLY_CONNECTED needs quantization on input, weights and output")
        self.per_channel = wq.per_channel
        if self.per_channel:
            ctx.check(w.type_name != "INT4", "per-channel quantization is not supported with int4 weights", w)
            ctx.check(wq.scales.size == w.shape[wq.quantized_dimension],
                      f"{wq.scales.size} weight scales for {w.shape[wq.quantized_dimension]} channels", w)
            real = [real_multiplier(None, xq.scale, s, divisor=oq.scale) for s in wq.scales]
            self.multiplier, self.shift = quantize_channel_multipliers(np.array(real)[: self.output_depth])
            weight_offset = 0  # TFLM ignores the filter zero point on the per-channel path
        else:
            if bias is not None:
                bq = bias.quantization
                bias_scale = bq.scale if bq is not None else 0.0
                product = float(xq.scale) * float(wq.scale)
                ctx.check(abs(product - bias_scale) / float(oq.scale) <= 0.02,
                          f"bias scale {bias_scale:.6g} is inconsistent with input*weight scale "
                          f"{product:.6g} (TFLM requires |difference|/output_scale <= 0.02)", bias)
            m = real_multiplier(self.numerics, xq.scale, wq.scale, divisor=oq.scale)
            ctx.check(m >= 0, "input*weight scale is negative", w)
            mult, shift = fp.quantize_multiplier(m)
            self.multiplier, self.shift = np.int64(mult), np.int64(shift)
            weight_offset = -wq.zero_point
        self.weights_offset = weight_offset
        self.input_offset = -xq.zero_point
        self.output_offset = oq.zero_point
        self.act_min, self.act_max = activation_range_quantized(self.activation, out)
        w_eff = weights.astype(np.int64) + weight_offset
        self.weights_t = w_eff.T.copy()  # (D, O) for x @ W
        self.bias = None if bias is None else np.asarray(bias.data, np.int64)[: self.output_depth]
        # Σ w·(x - zp) = Σ w·x - zp·Σw: the zero-point term joins the bias, once.
        bias0 = self.bias if self.bias is not None else np.zeros(self.output_depth, np.int64)
        self.bias_folded = bias0 + self.input_offset * w_eff.sum(axis=1)
        # int16 activations with an int64 (or absent, non-int32-typed) bias use TFLM's int64 path.
        self.int64_accumulator = self.kind == "INT16" and not (
            (bias is not None and bias.type_name == "INT32")
            or (bias is None and ctx.options.get("quantized_bias_type", 0) == 2))
        self.matmul = ExactIntegerMatmul(self.weights_t, 32768 if self.kind == "INT16" else 128)
        self.requantizer = Requantizer(self.multiplier, self.shift, self.output_offset, self.act_min, self.act_max,
                                       out.dtype, self.matmul.bound, self.numerics, bias=self.bias_folded)
        # Small products (a few rows, as in batch-1 runs of small models) go through float64 weights
        # with the requantization's scale folded in and its offset as a last row: the product of
        # [rows, 1] with them is the scaled accumulator itself (Requantizer.scaled_weights proves
        # it exact in any summation order), so one product replaces the conversion, the product,
        # the scaling and the offset. (The ones column costs less than adding the offset row after
        # the product: a ufunc call on a few values costs more than the product itself.)
        # int8 products of many rows (a batched classifier head) as a 1x1 convolution over one-pixel
        # images: ops/compiled/pointwise_small.py, exact for every accumulator (TFLM's int32 sums
        # modulo 2^32, then its requantization; the module's proof). Its weights are int8, so not
        # with a filter zero point (per-tensor weight_offset != 0: w + offset may leave int8).
        self.compiled_pointwise = None
        # (Only for weights of at least PLAN_MIN_WEIGHTS values: the plan costs ~0.2 ms of prepare,
        # which a fuzzing example's small layer would pay for nothing.)
        if (self.kind == "INT8" and weight_offset == 0 and self.numerics == DEFAULT_NUMERICS
                and self.accum_depth * self.output_depth >= self.PLAN_MIN_WEIGHTS):
            self.compiled_pointwise = compiled_pointwise.plan(
                (1, 1, self.accum_depth), (1, 1), (1, 1), (1, 1), (0, 0), self.input_offset, self.output_offset,
                self.act_min, self.act_max, w_eff.T, self.bias, np.broadcast_to(self.multiplier, self.output_depth),
                np.broadcast_to(self.shift, self.output_depth))
        self.scaled = self.one_row = None
        if self.requantizer.use_float and not self.int64_accumulator:
            self.scaled = self.requantizer.scaled_weights(self.weights_t)
            self.one_row = np.zeros((1, self.accum_depth + 1), np.float64)
            self.one_row[0, -1] = 1.0

    def eval(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        rows = x.reshape(-1, self.accum_depth)
        m = rows.shape[0]
        if (self.compiled_pointwise is not None and m * self.output_depth >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled() and compiled_pointwise.available()):
            y = compiled_pointwise.conv(self.compiled_pointwise, rows.reshape(m, 1, 1, self.accum_depth),
                                        self.out_tensor.dtype)
            return [y.reshape((n,) + self.out_tensor.shape)]
        if self.scaled is not None and m * self.output_depth <= Requantizer.small_elements:
            # [rows, 1] in float64 (exact: the rows are int8 or int16), a fresh array per call.
            if m == 1:
                a = self.one_row.copy()
            else:
                a = np.empty((m, self.accum_depth + 1), np.float64)
                a[:, -1] = 1.0
            a[:, :-1] = rows
            t = a.dot(self.scaled)
            rq = self.requantizer
            # from_scaled's test, made here: t has at most small_elements values.
            y = rq.from_levels(t) if rq.thresholds is not None else rq.from_scaled(t)
            return [y.reshape((n,) + self.out_tensor.shape)]
        if self.kind == "FLOAT32":
            acc = float_sequential_sum_of_products(rows.astype(np.float32), self.weights_f32)
            # C adds bias_value, 0.0f without a bias: that also turns a -0.0 sum into +0.0.
            acc = acc + (self.bias_f32[None, : self.output_depth] if self.bias_f32 is not None else np.float32(0))
            y = apply_float_activation(acc, self.activation)
            return [y.reshape((n,) + self.out_tensor.shape)]
        if self.int64_accumulator:
            acc = self.matmul(rows) + self.bias_folded
            scaled = fp.multiply_by_quantized_multiplier_int64(acc, self.multiplier, self.shift)
            y = np.minimum(np.maximum(fp.wrap_int32(scaled + self.output_offset), self.act_min), self.act_max)
            return [y.astype(self.out_tensor.dtype).reshape((n,) + self.out_tensor.shape)]
        if rows.shape[0] * (self.accum_depth + self.output_depth) <= common.BLOCK_ELEMENTS:
            y = self.requantizer(self.matmul.raw(rows))
        else:
            y = np.empty((rows.shape[0], self.output_depth), self.out_tensor.dtype)
            for part in blocks(rows.shape[0], self.accum_depth + self.output_depth):
                y[part] = self.requantizer(self.matmul.raw(rows[part]))
        return [y.reshape((n,) + self.out_tensor.shape)]

    def describe(self):
        return params_as_dict(self.params)
