"""CONV_2D and DEPTHWISE_CONV_2D: TFLM's reference kernels (conv.cc, depthwise_conv.cc,
integer_ops/conv.h, integer_ops/depthwise_conv.h, reference/conv.h)."""
from __future__ import annotations

import numpy as np

from . import fixedpoint as fp
from .common import (activation_range_float, activation_range_quantized, padding_and_output_size,
                     quantize_channel_multipliers, real_multiplier, requantize, sliding_windows)
from .registry import OpKernel, PrepareContext, register


class _ConvBase(OpKernel):
    """Prepare work common to both convolutions: geometry, padding, per-channel requantization."""

    def prepare_common(self, ctx: PrepareContext, quantized_dim: int):
        x = ctx.require_input(0, "input")
        w = ctx.require_input(1, "filter")
        bias = ctx.input(2)
        out = ctx.output(0)
        opts = ctx.options
        ctx.check(len(ctx.op.inputs) in (2, 3), f"takes 2 or 3 inputs, has {len(ctx.op.inputs)}")
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        ok = {("FLOAT32", "FLOAT32"), ("INT16", "INT8"), ("INT8", "INT8"), ("INT8", "INT4")}
        if (x.type_name, w.type_name) not in ok:
            ctx.unsupported(f"input {x.type_name} with filter {w.type_name} (hybrid models are not supported "
                            "on TFLite Micro)")
        if w.data is None:
            ctx.unsupported("non-constant filters are not supported", w)
        if bias is not None and bias.data is None:
            ctx.unsupported("non-constant bias is not supported", bias)
        for t, role in ((x, "input"), (w, "filter"), (out, "output")):
            ctx.check(len(t.shape) == 4, f"{role} must be 4-D, has shape {list(t.shape)}", t)
        self.kind = x.type_name
        self.out_tensor = out
        self.activation = opts.get("fused_activation_function", 0)
        self.stride = (opts.get("stride_h", 1), opts.get("stride_w", 1))
        self.dilation = (opts.get("dilation_hfactor", 1), opts.get("dilation_wfactor", 1))
        ctx.check(min(self.stride) >= 1 and min(self.dilation) >= 1,
                  f"strides {self.stride} and dilations {self.dilation} must be positive")
        self.kernel_hw = (w.shape[1], w.shape[2])
        padding = opts.get("padding", 0)
        (_, self.pad_top) = padding_and_output_size(padding, x.shape[1], w.shape[1], self.stride[0], self.dilation[0])
        (_, self.pad_left) = padding_and_output_size(padding, x.shape[2], w.shape[2], self.stride[1], self.dilation[1])
        # TFLM loops over the output tensor's own dims, not the ones it recomputes.
        self.out_hw = (out.shape[1], out.shape[2])
        if w.type_name == "INT4":
            self.scratch_bytes.append(w.size)
        channels = w.shape[quantized_dim]
        ctx.check(channels == out.shape[3], f"filter has {channels} output channels, output has {out.shape[3]}", w)
        self.bias = None if bias is None else np.asarray(bias.data).reshape(-1).astype(
            np.float64 if self.kind == "FLOAT32" else np.int64)
        if self.bias is not None:
            ctx.check(self.bias.size == channels, f"bias has {self.bias.size} values for {channels} channels", bias)
        if self.kind == "FLOAT32":
            self.act_min, self.act_max = activation_range_float(self.activation)
            return
        wq, xq, oq = w.quantization, x.quantization, out.quantization
        ctx.check(wq is not None and xq is not None and oq is not None,
                  "quantized convolution needs quantization on input, filter and output")
        ctx.check(wq.scales.size in (1, channels),
                  f"filter has {wq.scales.size} scales; TFLM needs 1 or one per output channel ({channels})", w)
        if wq.per_channel:
            ctx.check(wq.quantized_dimension == quantized_dim,
                      f"per-channel filter quantized on dim {wq.quantized_dimension}, expected {quantized_dim}", w)
        scales = wq.scales if wq.per_channel else np.repeat(wq.scales[:1], channels)
        real = [real_multiplier(None, xq.scale, s, divisor=oq.scale) for s in scales]
        self.multiplier, self.shift = quantize_channel_multipliers(np.array(real))
        self.act_min, self.act_max = activation_range_quantized(self.activation, out)
        if self.kind == "INT16":
            # 16x8 kernels apply no zero points.
            self.input_offset, self.output_offset = 0, 0
        else:
            self.input_offset, self.output_offset = -xq.zero_point, oq.zero_point

    def windows(self, x: np.ndarray) -> np.ndarray:
        # Samples and the model's own batch dim are both batches to the kernel.
        x = x.reshape((-1,) + x.shape[-3:])
        if self.kind == "FLOAT32":
            xs = x.astype(np.float32)
        else:
            xs = x.astype(np.int64) + self.input_offset
        return sliding_windows(xs, self.out_hw, self.kernel_hw, self.stride, self.dilation,
                               (self.pad_top, self.pad_left))

    def finish(self, acc: np.ndarray) -> np.ndarray:
        """Bias, requantization, zero point and clamp on an (N, OH, OW, OC) accumulator."""
        if self.kind == "FLOAT32":
            if self.bias is not None:
                acc = acc + self.bias.astype(np.float32)
            return np.clip(acc, np.float32(self.act_min), np.float32(self.act_max)).astype(np.float32)
        if self.bias is not None:
            acc = acc + self.bias
        if self.int64_accumulator:
            scaled = fp.multiply_by_quantized_multiplier_int64(acc, self.multiplier, self.shift)
            return np.clip(scaled + self.output_offset, self.act_min, self.act_max).astype(self.out_tensor.dtype)
        return requantize(fp.wrap_int32(acc), self.multiplier, self.shift, self.output_offset,
                          self.act_min, self.act_max, self.numerics).astype(self.out_tensor.dtype)

    def describe(self):
        d = {"stride": self.stride, "dilation": self.dilation, "padding_top_left": (self.pad_top, self.pad_left),
             "activation": self.activation}
        if self.kind != "FLOAT32":
            d.update(input_offset=self.input_offset, output_offset=self.output_offset,
                     multiplier=self.multiplier.tolist(), shift=self.shift.tolist(),
                     act_min=self.act_min, act_max=self.act_max)
        return d


@register("CONV_2D")
class Conv2D(_ConvBase):
    def prepare(self, ctx: PrepareContext):
        self.prepare_common(ctx, quantized_dim=0)
        x, w = ctx.input(0), ctx.input(1)
        in_depth, filter_depth = x.shape[3], w.shape[3]
        ctx.check(filter_depth > 0 and in_depth % filter_depth == 0,
                  f"input depth {in_depth} is not a multiple of the filter depth {filter_depth}", w)
        self.groups = in_depth // filter_depth
        oc = w.shape[0]
        ctx.check(oc % self.groups == 0, f"{oc} filters do not divide into {self.groups} groups", w)
        self.filter_depth = filter_depth
        self.filters_per_group = oc // self.groups
        kh, kw = self.kernel_hw
        if self.kind == "FLOAT32":
            # (KH*KW*Cg, OC) in TFLM's accumulation order: filter_y, filter_x, in_channel.
            self.weights = np.asarray(w.data, np.float32).reshape(oc, -1).T.copy()
            return
        bias_type = ctx.input(2).type_name if ctx.input(2) is not None else None
        self.int64_accumulator = self.kind == "INT16" and not (
            bias_type == "INT32" or (bias_type is None and ctx.options.get("quantized_bias_type", 0) == 2))
        self.weights = np.asarray(w.data, np.int64).reshape(oc, -1).T.copy()
        x_max = 32768 if self.kind == "INT16" else 255
        self.exact_in_float64 = int(np.abs(self.weights).sum(axis=0).max(initial=0)) * x_max < (1 << 53)
        self.weights_f64 = self.weights.astype(np.float64)

    def eval(self, inputs):
        x = inputs[0]
        oh, ow = self.out_hw
        win = self.windows(x)  # (N*B, OH, OW, KH, KW, C)
        n = win.shape[0]
        outs = []
        for g in range(self.groups):
            c0 = g * self.filter_depth
            patches = win[..., c0:c0 + self.filter_depth].reshape(n * oh * ow, -1)
            f0 = g * self.filters_per_group
            cols = slice(f0, f0 + self.filters_per_group)
            if self.kind == "FLOAT32":
                outs.append(_float_dot_in_order(patches, self.weights[:, cols]))
            elif self.exact_in_float64:
                outs.append((patches.astype(np.float64) @ self.weights_f64[:, cols]).astype(np.int64))
            else:
                outs.append(patches @ self.weights[:, cols])
        acc = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)
        return [self.finish(acc).reshape((x.shape[0],) + self.out_tensor.shape)]


def _float_dot_in_order(patches: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """patches @ weights summed in float32 in index order, as the C reference loop does."""
    acc = np.zeros((patches.shape[0], weights.shape[1]), np.float32)
    for k in range(patches.shape[1]):
        acc += patches[:, k:k + 1] * weights[k][None, :]
    return acc


@register("DEPTHWISE_CONV_2D")
class DepthwiseConv2D(_ConvBase):
    def prepare(self, ctx: PrepareContext):
        self.prepare_common(ctx, quantized_dim=3)
        x, w, out = ctx.input(0), ctx.input(1), ctx.output(0)
        # TFLM uses the stored depth_multiplier as is; output channel oc reads input channel oc // dm.
        self.depth_multiplier = ctx.options.get("depth_multiplier", 1) or 1
        ctx.check(w.shape[0] == 1, f"depthwise filter must have shape [1, KH, KW, C], has {list(w.shape)}", w)
        ctx.check(out.shape[3] == x.shape[3] * self.depth_multiplier,
                  f"output depth {out.shape[3]} != input depth {x.shape[3]} x depth_multiplier "
                  f"{self.depth_multiplier}", out)
        kh, kw = self.kernel_hw
        if self.kind == "FLOAT32":
            self.weights = np.asarray(w.data, np.float32).reshape(kh, kw, -1)
        else:
            self.weights = np.asarray(w.data, np.int64).reshape(kh, kw, -1)
            # 16x8 depthwise always reads an int64 bias and uses the int64 requantization.
            self.int64_accumulator = self.kind == "INT16"
        self.in_channel_of_output = np.arange(out.shape[3]) // self.depth_multiplier

    def eval(self, inputs):
        x = inputs[0]
        win = self.windows(x)  # (N, OH, OW, KH, KW, C)
        if self.depth_multiplier != 1:
            win = win[..., self.in_channel_of_output]
        kh, kw = self.kernel_hw
        acc = None
        for ky in range(kh):
            for kx in range(kw):
                term = win[:, :, :, ky, kx, :] * self.weights[ky, kx]
                acc = term if acc is None else acc + term
        return [self.finish(acc).reshape((x.shape[0],) + self.out_tensor.shape)]
