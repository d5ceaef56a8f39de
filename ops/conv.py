"""CONV_2D and DEPTHWISE_CONV_2D: TFLM's reference kernels (conv.cc, depthwise_conv.cc,
integer_ops/conv.h, integer_ops/depthwise_conv.h, reference/conv.h).

TFLM skips filter taps that fall outside the image. Padding the *raw* input with the input zero
point is the same thing, because every tap contributes w·(x - zp) and a padded tap then adds 0;
that lets the patches stay int8 until the matrix product, and lets the zero-point term
-zp·Σw fold into the bias at prepare time.
"""
from __future__ import annotations

import math

import numpy as np

from . import common, compiled
from . import fixedpoint as fp
from .common import (
    ExactIntegerMatmul,
    Requantizer,
    activation_range_float,
    activation_range_quantized,
    blocks,
    clamp_float,
    compute_padding_height_width,
    quantize_channel_multipliers,
    real_multiplier,
    sliding_windows,
    workspace,
)
from .compiled import conv_u8_fused as compiled_rows
from .compiled import depthwise as compiled_depthwise
from .compiled import depthwise_narrow as compiled_depthwise_narrow
from .compiled import depthwise_vnni as compiled_depthwise_vnni
from .compiled import first_conv as compiled_first_conv
from .compiled import gemm as compiled_gemm
from .compiled import gemm_u8 as compiled_gemm_u8
from .compiled import pointwise_small as compiled_pointwise
from .compiled import small_conv as compiled_small_conv
from .params import ConvParams, QuantizedOutput, frozen_array, params_as_dict
from .parse_checks import check_parsed_options
from .reference import conv_2d, depthwise_conv_2d
from .registry import DEFAULT_NUMERICS, OpKernel, PrepareContext, register


class _ConvBase(OpKernel):
    """Prepare work common to both convolutions: geometry, padding, per-channel requantization."""

    def prepare_common(self, ctx: PrepareContext, quantized_dim: int):
        x = ctx.require_input(0, "input")
        w = ctx.require_input(1, "filter")
        bias = ctx.input(2)
        out = ctx.output(0)
        opts = ctx.options
        ctx.check_io_counts((2, 3))
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
        # TFLM's kernels take the batch from MatchingDim(input, 0, output, 0); a mismatch would
        # read or write past a tensor.
        ctx.check(x.shape[0] == out.shape[0], f"input batch {x.shape[0]} differs from output batch {out.shape[0]}",
                  out)
        self.kind = x.type_name
        self.out_tensor = out
        self.in_hwc = tuple(x.shape[1:])
        self.activation = opts.get("fused_activation_function", 0)
        self.stride = (opts.get("stride_h", 1), opts.get("stride_w", 1))
        self.dilation = (opts.get("dilation_hfactor", 1), opts.get("dilation_wfactor", 1))
        self.kernel_hw = (w.shape[1], w.shape[2])
        padding = opts.get("padding", 0)
        pad_top, pad_left = compute_padding_height_width(padding, x.shape[1:3], w.shape[1:3], self.stride,
                                                         self.dilation)
        # TFLM computes the padding with int arithmetic, then hands the kernel ConvParams /
        # DepthwiseParams whose strides, dilations and paddings are int16_t: a value beyond
        # 32767 wraps there, and the kernel loops with the wrapped value.
        self.pad_top, self.pad_left = int(fp.wrap_int16(pad_top)), int(fp.wrap_int16(pad_left))
        self.stride = tuple(int(fp.wrap_int16(v)) for v in self.stride)
        self.dilation = tuple(int(fp.wrap_int16(v)) for v in self.dilation)
        # TFLM loops over the output tensor's own dims, not the ones it recomputes.
        self.out_hw = (out.shape[1], out.shape[2])
        for axis, name in ((0, "height"), (1, "width")):
            reach = (abs(self.out_hw[axis] - 1) * abs(self.stride[axis])
                     + (self.kernel_hw[axis] - 1) * abs(self.dilation[axis]) + abs((self.pad_top, self.pad_left)[axis]))
            if reach + x.shape[1 + axis] >= (1 << 31):
                ctx.unsupported(f"the {name} stride/dilation overflow TFLM's int32 index arithmetic "
                                "(its result is then undefined behaviour)")
        if w.type_name == "INT4":
            self.scratch_bytes.append(w.size)
        channels = w.shape[quantized_dim]
        ctx.check(channels == out.shape[3], f"filter has {channels} output channels, output has {out.shape[3]}", w)
        self.bias = None if bias is None else np.asarray(bias.data).reshape(-1).astype(
            np.float32 if self.kind == "FLOAT32" else np.int64)
        if self.bias is not None:
            ctx.check(self.bias.size == channels, f"bias has {self.bias.size} values for {channels} channels", bias)
        if self.kind == "FLOAT32":
            self.act_min, self.act_max = activation_range_float(self.activation)
            self.pad_value = 0.0
            self.compute_dtype = np.float32
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
        self.pad_value = -self.input_offset
        # Padded taps hold the zero point, which a (malformed but TFLM-accepted) model may put
        # outside the input type: the exactness bounds must cover it too.
        self.max_abs_input = max(32768 if self.kind == "INT16" else 128, abs(self.pad_value))

    # The type the padded input is held in before the patches are read: the arithmetic type
    # (converted once, before the KH·KW-fold expansion), or None to keep the input's own type
    # when the patches are copied into a buffer anyway and convert as they are copied.
    window_dtype = "compute"
    # (K+1, OC) float64 weights with the requantization folded in (Requantizer.scaled_weights),
    # for the kernels whose dot products are short enough to run through them.
    scaled_weights = None

    def input_type_holds_pad(self, dtype) -> bool:
        """Whether the input's own type can hold the padding value (the input zero point, which a
        model may set outside the type's range; TFLM's int32 offset arithmetic does not mind)."""
        dtype = np.dtype(dtype)
        return dtype.kind == "f" or np.iinfo(dtype).min <= self.pad_value <= np.iinfo(dtype).max

    def windows(self, x: np.ndarray) -> np.ndarray:
        """(N·B, OH, OW, KH, KW, C) view of raw input patches, padded with the input zero point."""
        # Samples and the model's own batch dim are both batches to the kernel.
        x = x.reshape((-1,) + self.in_hwc)
        if self.window_dtype == "compute" or not self.input_type_holds_pad(x.dtype):
            x = x.astype(self.compute_dtype, copy=False)
        return sliding_windows(x, self.out_hw, self.kernel_hw, self.stride, self.dilation,
                               (self.pad_top, self.pad_left), fill=self.pad_value)

    def folded_bias(self, weight_sums: np.ndarray) -> np.ndarray:
        """bias + input_offset·Σw per output channel: the zero-point term of Σ w·(x - zp)."""
        b = self.bias if self.bias is not None else np.zeros(weight_sums.shape, np.int64)
        return b + self.input_offset * weight_sums

    def finish(self, acc: np.ndarray) -> np.ndarray:
        """Bias, requantization, zero point and clamp of a (…, OC) raw accumulator."""
        if self.kind == "FLOAT32":
            # C adds bias_value, 0.0f without a bias: that also turns a -0.0 sum into +0.0.
            acc = acc + (self.bias if self.bias is not None else np.float32(0))
            return clamp_float(acc, self.act_min, self.act_max)
        if self.int64_accumulator:
            scaled = fp.multiply_by_quantized_multiplier_int64(acc.astype(np.int64) + self.bias_folded,
                                                               self.multiplier, self.shift)
            y = np.minimum(np.maximum(fp.wrap_int32(scaled + self.output_offset), self.act_min), self.act_max)
            return y.astype(self.out_tensor.dtype)
        return self.requantizer(acc)

    def _scaled_product(self, part: np.ndarray) -> np.ndarray:
        """Requantized output of the patches ``part`` through the scale-folded float64 GEMM."""
        depth = self.scaled_weights.shape[0] - 1
        rows = part.size // depth
        patches = workspace("conv-patches-scaled", (rows, depth + 1), np.float64)
        patches[:, depth] = 1.0  # the row of the weights that holds the bias and rounding offset
        body = patches[:, :depth].reshape(part.shape)
        if not np.may_share_memory(body, patches):
            raise AssertionError("patch buffer reshaped into a copy")
        np.copyto(body, part)
        acc = workspace("conv-acc-scaled", (rows, self.scaled_weights.shape[1]), np.float64)
        t = np.matmul(patches, self.scaled_weights, out=acc)
        return self.requantizer.from_scaled(t)

    def conv_params(self, depth_multiplier: int = 0) -> ConvParams:
        """The declared parameters the reference kernel reads (TFLM's OpDataConv / ConvParams)."""
        quantized = None
        if self.kind != "FLOAT32":
            channels = self.out_tensor.shape[3]
            quantized = QuantizedOutput(
                output_multiplier=frozen_array(np.broadcast_to(self.multiplier, (channels,))),
                output_shift=frozen_array(np.broadcast_to(self.shift, (channels,))),
                output_offset=int(self.output_offset), activation_min=int(self.act_min),
                activation_max=int(self.act_max), rounding=self.numerics.rounding,
                int64_accumulator=bool(self.int64_accumulator))
        float_range = (float(self.act_min), float(self.act_max)) if self.kind == "FLOAT32" else (0.0, 0.0)
        return ConvParams(kind=self.kind, stride_height=self.stride[0], stride_width=self.stride[1],
                          dilation_height_factor=self.dilation[0], dilation_width_factor=self.dilation[1],
                          padding_top=self.pad_top, padding_left=self.pad_left, output_height=self.out_hw[0],
                          output_width=self.out_hw[1], input_offset=int(getattr(self, "input_offset", 0)),
                          requantize=quantized, depth_multiplier=depth_multiplier,
                          float_activation_min=float_range[0], float_activation_max=float_range[1])

    def reference_eval_with(self, function, inputs):
        x, w, bias = inputs[0], inputs[1][0], (inputs[2][0] if len(inputs) > 2 and inputs[2] is not None else None)
        y = function(self.params, x, w, bias)
        return [y.astype(self.out_tensor.dtype).reshape((x.shape[0],) + self.out_tensor.shape)]

    def make_requantizer(self, acc_bound: int):
        self.requantizer = Requantizer(self.multiplier, self.shift, self.output_offset, self.act_min, self.act_max,
                                       self.out_tensor.dtype, acc_bound, self.numerics, bias=self.bias_folded)

    def output_blocks(self, samples: int, row_elements: int):
        """(sample slice, output-row slice) pairs covering the output in cache-sized pieces."""
        oh = self.out_hw[0]
        if oh * row_elements >= common.BLOCK_ELEMENTS:
            for b in range(samples):
                for rows in blocks(oh, row_elements):
                    yield slice(b, b + 1), rows
        else:
            for bs in blocks(samples, oh * row_elements):
                yield bs, slice(0, oh)

    def describe(self):
        return params_as_dict(self.params)


@register("CONV_2D")
class Conv2D(_ConvBase):
    # Dot products up to this long run through the scale-folded float64 GEMM (see prepare);
    # tests set it to 0 or to a large value to force either path.
    supported_types = "int8 (int8/int4 filters), int16x8, float32"
    notes = "SAME/VALID, stride, dilation, per-channel, grouped"

    SCALED_GEMM_MAX_DEPTH = 16
    # The compiled integer direct convolution (ops/compiled/gemm.py) runs calls with at least
    # COMPILED_MIN_ELEMENTS output values (all samples) when compiled kernels are on, for filters
    # of at least COMPILED_MIN_DEPTH taps·channels whose output channels, padded to sixteens, grow
    # by at most COMPILED_MAX_PADDING. Measured against the float32 GEMM path (benchmarks/
    # gemm_probe.py, one thread, batch 32): K >= 24 1.1-3.1x (ResNet's 3x3 2.2-2.9x, MobileNetV2's
    # and vww's pointwise 1.3-2.3x), K = 16 1.0-1.2x, K = 8 0.56x; 8 channels (padded to 16) 0.93x.
    # Tests set them to force either path.
    COMPILED_MIN_ELEMENTS = 1 << 15
    COMPILED_MIN_DEPTH = 16
    COMPILED_MAX_PADDING = 1.5
    # (weights, geometry) of the compiled kernel (int8 / 16x8, groups 1, default numerics), else None.
    compiled_gemm = None
    # Images per compiled call: about this many int32 accumulators (L2-sized), at least one image.
    COMPILED_CHUNK_VALUES = 1 << 16
    # The compiled small-layer convolution (ops/compiled/small_conv.py: filter rows as runs, 2 or 4
    # pixels per vector for <= 8 output channels) replaces both paths above (same
    # COMPILED_MIN_ELEMENTS gate) for K >= SMALL_CONV_MIN_DEPTH and filters of at most
    # SMALL_CONV_MAX_IN_DEPTH input channels or at most SMALL_CONV_MAX_CHANNELS output channels.
    # Measured (one thread, CPU time, batch 64, ns per output float32 GEMM path / gemm.py / this):
    # vww 3x3/2 3->8 4.1 / 5.5 / 1.7, ResNet 3x3 3->16 3.6 / 2.3 / 1.5, 3x3 16->16 7.4 / 2.8 / 2.2,
    # kws 10x4/2 1->64 2.4 / 1.7 / 1.25, MobileNetV2 3x3/2 3->32 2.0 / 1.7 / 1.0, pointwise K=16..32
    # with <= 32 channels 1.2-1.9 / 1.2-1.7 / 1.0-1.2; K = 8 (1x1 8->16) 0.98 / 1.7 / 1.09, hence
    # the minimum depth; wider layers tie with gemm.py. SMALL_CONV_FORCE: None chooses by these
    # thresholds, True / False forces it on every eligible layer / off (tests).
    SMALL_CONV_MIN_DEPTH = 12
    SMALL_CONV_MAX_IN_DEPTH = 16
    SMALL_CONV_MAX_CHANNELS = 32
    SMALL_CONV_FORCE: bool | None = None
    # The small convolution's plan (int8 / 16x8, groups 1, default numerics), else None.
    compiled_small = None
    # The compiled int8 x int8 convolution (ops/compiled/gemm_u8.py: u = x + 128 bytes times int8
    # weights, four products per int32 lane with vpdpbusd, -128·Σw as the accumulators' start;
    # AVX512-VNNI hosts only) replaces the two compiled paths above for int8 layers (same
    # COMPILED_MIN_ELEMENTS gate) with K >= U8_MIN_DEPTH and at least U8_MIN_CHANNELS output
    # channels. Measured (each layer alone, alternating with the path it replaces, one thread, CPU
    # time, batch 64, 4 for MobileNetV2's 112x112 and 56x56 layers; G MAC/s of the path it
    # replaces -> this): ResNet 3x3
    # K=144..576 67-98 -> 90-169 (1.32-1.73x), 3x3 3->16 1.02x, 1x1/2 1.14-1.27x; vww 1x1 K=32..256
    # 1.07-1.53x, K=16 1.06x; MobileNetV2 1x1 1.03-1.80x (K >= 144: 1.40-1.80x, 155-185 G MAC/s),
    # 3x3/2 3->32 1.14x; kws 1.17-1.27x. Not taken: vww's 3x3/2 3->8 0.57x (8 channels padded to 16
    # against small_conv's shared vectors), 1x1 8->16 (K=8) 0.77x. U8_FORCE: None chooses by these
    # thresholds, True / False forces it on every eligible layer / off (tests).
    U8_MIN_DEPTH = 16
    U8_MIN_CHANNELS = 9
    U8_FORCE: bool | None = None
    # Its plan (int8 input and filter, groups 1, default numerics), else None.
    compiled_u8 = None
    # The compiled int8 1x1 convolution with the requantization fused (ops/compiled/pointwise_small.py:
    # gemm_u8's byte dot products per chunk of pixels, then depthwise.py's requantization in the same
    # call; AVX512-VNNI hosts only) replaces every path above (same COMPILED_MIN_ELEMENTS gate) for
    # 1x1 layers without padding with at most POINTWISE_MAX_DEPTH input channels. Measured (each layer
    # alone, alternating with the path it replaces, one thread, CPU time, batch 64, ns per output):
    # vww_96 / person_detect 48x48 8->16 0.92-0.95 -> 0.58-0.66 (1.44-1.59x), 24x24 16->32
    # 0.93-1.14 -> 0.50-0.54 (1.82-2.12x). Wider inputs win too (K=32..128: 1.4-1.9x), and so do
    # whole models with every 1x1 layer on it (run_batch, 2 threads, CPU per sample, K <= 16 -> every
    # K, same bytes): vww_96 1.32x, person_detect 1.22x, kws_ref_model 1.25x, MobileNetV2-224 1.17x,
    # pretrainedResnet 1.00x (no unpadded 1x1 layers). POINTWISE_FORCE: None chooses by the
    # threshold, True / False forces it on every eligible layer / off (tests).
    POINTWISE_MAX_DEPTH = 1 << 30
    POINTWISE_FORCE: bool | None = None
    # Its plan (int8 input and filter, 1x1, padding 0, groups 1, default numerics), else None.
    compiled_pointwise = None
    # The compiled convolution with the requantization fused (ops/compiled/first_conv.py: u = x + 128
    # per image into a small padded buffer, byte dot products over whole filter rows, 16 pixels of a
    # row (or 4 / 2 pixels' channels) per 16-lane vector, requantized in registers, int8 stored;
    # AVX512-VNNI + VBMI hosts) replaces the paths below (same COMPILED_MIN_ELEMENTS gate) for int8
    # layers of at most FIRST_CONV_MAX_IN_DEPTH input channels that the pointwise kernel does not
    # take. Measured (each layer alone, one thread, CPU time, ns per output, path replaced -> this):
    # first layers: vww_96 3x3/2 3->8 1.73 -> 0.56 (3.1x), kws 10x4/2 1->64 1.24 -> 0.54 (2.3x),
    # pretrainedResnet 3x3 3->16 1.22 -> 0.46 (2.7x), MobileNetV2 3x3/2 3->32 0.95 -> 0.51 (1.85x);
    # pretrainedResnet's other 3x3 layers (gemm_u8 + the Requantizer before), 16->16 1.75 -> 1.06,
    # /2 16->32 1.85 -> 0.89, 32->32 2.40 -> 1.73, /2 32->64 2.57 -> 1.57, 64->64 4.30 -> 3.12
    # (1.38-2.07x; the whole model 1.6-1.8x per sample). FIRST_CONV_FORCE: None chooses by the
    # threshold, True / False forces it on every eligible layer / off (tests).
    FIRST_CONV_MAX_IN_DEPTH = 64
    # By default the register-block plans (pointwise_small, first_conv, conv_u8_fused) are made in
    # prepare only for layers of at least this many outputs per sample: each plan costs ~0.2 ms,
    # which every fuzzing example of a one-op model paid (CONV_2D 8x8x3->4: 0.40 -> 0.60 ms), and a
    # smaller layer reaches COMPILED_MIN_ELEMENTS only at batches of dozens of samples.
    PLAN_MIN_OUTPUTS = 1024
    FIRST_CONV_FORCE: bool | None = None
    # Its plan (int8 input and filter, groups 1, default numerics), else None.
    compiled_first = None
    # The compiled row convolution with the requantization fused (ops/compiled/conv_u8_fused.py: 16
    # pixels of an output row in the lanes, one byte dot product per 16 pixels x 1 channel x 4 input
    # channels with the weights broadcast from memory, requantized in registers; AVX512-VNNI hosts)
    # replaces first_conv and the paths below (same COMPILED_MIN_ELEMENTS gate) for the int8 layers
    # its plan takes (input depth a multiple of 4 and >= ROWS_MIN_IN_DEPTH, output channels a
    # multiple of 16, stride_w 1, output rows of >= 16 or 8 pixels). Measured (each layer alone, one
    # thread, CPU time, batch 128, ns per output, first_conv -> this): pretrainedResnet 3x3 16->16
    # 0.90-1.01 -> 0.80-0.92, 32->32 1.53-1.60 -> 1.47-1.59, 64->64 3.06-3.14 -> 2.75-2.94; the
    # whole model 1.03-1.09x per sample (run_batch(128), one thread). Input depths of 3-4 stay
    # with first_conv's row blocks. ROWS_FORCE: None chooses by the threshold, True / False forces
    # it on every eligible layer / off (tests).
    ROWS_MIN_IN_DEPTH = 8
    ROWS_FORCE: bool | None = None
    # Its plan, else None.
    compiled_rows = None

    def prepare(self, ctx: PrepareContext):
        check_parsed_options(ctx)
        self.prepare_fast(ctx)
        self.params = self.conv_params()

    def eval_reference(self, inputs):
        return self.reference_eval_with(conv_2d, inputs)

    def prepare_fast(self, ctx: PrepareContext):
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
        if self.kind == "FLOAT32":
            # (KH*KW*Cg, OC) in TFLM's accumulation order: filter_y, filter_x, in_channel.
            self.weights = np.asarray(w.data, np.float32).reshape(oc, -1).T.copy()
            return
        bias_type = ctx.input(2).type_name if ctx.input(2) is not None else None
        self.int64_accumulator = self.kind == "INT16" and not (
            bias_type == "INT32" or (bias_type is None and ctx.options.get("quantized_bias_type", 0) == 2))
        weights = np.asarray(w.data, np.int64).reshape(oc, -1).T  # (KH*KW*Cg, OC)
        self.weights = weights
        self.matmuls = [ExactIntegerMatmul(weights[:, g * self.filters_per_group:(g + 1) * self.filters_per_group],
                                           self.max_abs_input) for g in range(self.groups)]
        self.bias_folded = self.folded_bias(weights.sum(axis=0))
        self.make_requantizer(max(m.bound for m in self.matmuls))
        # All groups share one arithmetic type: the widest any of them needs.
        widening = [np.float32, np.float64, np.int64]
        self.compute_dtype = max((m.dtype for m in self.matmuls), key=widening.index)
        for m in self.matmuls:
            m.use_dtype(self.compute_dtype)
        # With the requantization's scale folded into float64 weights the GEMM returns the
        # scaled accumulator itself (Requantizer.scaled_weights says why that is exact). That
        # saves two passes over the output but makes the GEMM float64, about three times the
        # cost of float32 per multiply-accumulate here: it pays off for short dot products only.
        # (16x8 convolutions without an int32 bias requantize in int64, TFLM's other rounding.)
        self.scaled_weights = (self.requantizer.scaled_weights(weights)
                               if self.groups == 1 and weights.shape[0] <= self.SCALED_GEMM_MAX_DEPTH
                               and not self.int64_accumulator else None)
        # int8 patches are copied into the GEMM's buffer, converting on the way: padding a
        # float copy of the input first would convert (and pad) sh·sw times more values.
        self.window_dtype = None if self.kind == "INT8" else "compute"
        # A 1x1 stride-1 convolution over the same-sized output is a plain product over pixels.
        self.pointwise = (self.kernel_hw == (1, 1) and self.stride == (1, 1) and self.groups == 1
                          and self.out_hw == self.in_hwc[:2] and (self.pad_top, self.pad_left) == (0, 0))
        self.compiled_gemm = None
        oc = self.out_tensor.shape[3]
        if (self.groups == 1 and self.numerics == DEFAULT_NUMERICS and weights.shape[0] >= self.COMPILED_MIN_DEPTH
                and -(-oc // 16) * 16 <= self.COMPILED_MAX_PADDING * oc):
            # Exact: weights_plan proves every partial sum below 2^31 (its int32 accumulators are
            # then the integers the GEMM above computes) or returns None; the same requantizer follows.
            planned = compiled_gemm.weights_plan(weights, filter_depth, self.max_abs_input)
            geometry = compiled_gemm.conv_plan(self.in_hwc, self.out_hw, self.kernel_hw, self.stride, self.dilation,
                                               (self.pad_top, self.pad_left), self.pad_value)
            if planned is not None and geometry is not None:
                assert planned.bound < (1 << 31)
                self.compiled_gemm = (planned, geometry)
        self.compiled_small = None
        force = self.SMALL_CONV_FORCE
        wanted = (weights.shape[0] >= self.SMALL_CONV_MIN_DEPTH
                  and (filter_depth <= self.SMALL_CONV_MAX_IN_DEPTH or oc <= self.SMALL_CONV_MAX_CHANNELS)) \
            if force is None else force
        if self.groups == 1 and self.numerics == DEFAULT_NUMERICS and wanted:
            # Exact as the compiled_gemm above: its weights_plan proves the int32 bound or refuses.
            self.compiled_small = compiled_small_conv.plan(
                self.in_hwc, self.out_hw, self.kernel_hw, self.stride, self.dilation, (self.pad_top, self.pad_left),
                self.pad_value, weights, self.max_abs_input)
            if self.compiled_small is not None:
                assert self.compiled_small.weights.bound < (1 << 31)
        self.compiled_u8 = None
        force = self.U8_FORCE
        wanted = (weights.shape[0] >= self.U8_MIN_DEPTH and oc >= self.U8_MIN_CHANNELS) if force is None else force
        if self.kind == "INT8" and self.groups == 1 and self.numerics == DEFAULT_NUMERICS and wanted:
            # Exact: gemm_u8.plan proves |Σ w·x| <= max_o Σ|w|·max|x| < 2^31 or refuses, and its
            # accumulators are Σ w·x modulo 2^32 (its docstring), the integers the GEMM computes.
            self.compiled_u8 = compiled_gemm_u8.plan(
                self.in_hwc, self.out_hw, self.kernel_hw, self.stride, self.dilation, (self.pad_top, self.pad_left),
                self.pad_value, weights, self.max_abs_input)
            if self.compiled_u8 is not None:
                assert self.compiled_u8.bound < (1 << 31)
        self.compiled_pointwise = None
        force = self.POINTWISE_FORCE
        wanted = (filter_depth <= self.POINTWISE_MAX_DEPTH
                  and self.out_tensor.size >= self.PLAN_MIN_OUTPUTS) if force is None else force
        if (self.kind == "INT8" and self.groups == 1 and self.numerics == DEFAULT_NUMERICS and wanted
                and self.kernel_hw == (1, 1)):
            # Exact for every accumulator: int32 sums modulo 2^32, then TFLM's requantization in
            # depthwise.py's proven form (the module's docstring).
            self.compiled_pointwise = compiled_pointwise.plan(
                self.in_hwc, self.out_hw, self.kernel_hw, self.stride, (self.pad_top, self.pad_left),
                self.input_offset, self.output_offset, self.act_min, self.act_max, weights, self.bias,
                self.multiplier, self.shift)
        self.compiled_first = None
        force = self.FIRST_CONV_FORCE
        # (By default not while a test forces another compiled conv path: those tests keep their kernels.)
        others_forced = (self.SMALL_CONV_FORCE, self.U8_FORCE, self.POINTWISE_FORCE) != (None, None, None)
        wanted = (filter_depth <= self.FIRST_CONV_MAX_IN_DEPTH and not others_forced
                  and self.out_tensor.size >= self.PLAN_MIN_OUTPUTS) if force is None else force
        if (self.kind == "INT8" and self.groups == 1 and self.numerics == DEFAULT_NUMERICS and wanted
                and self.compiled_pointwise is None):
            # Exact for every accumulator: int32 sums modulo 2^32, then TFLM's requantization in
            # depthwise.py's proven form (the module's docstring).
            self.compiled_first = compiled_first_conv.plan(
                self.in_hwc, self.out_hw, self.kernel_hw, self.stride, self.dilation, (self.pad_top, self.pad_left),
                self.input_offset, self.output_offset, self.act_min, self.act_max, weights, self.bias,
                self.multiplier, self.shift)
        self.compiled_rows = None
        force = self.ROWS_FORCE
        others_forced = others_forced or self.FIRST_CONV_FORCE is not None
        wanted = (filter_depth >= self.ROWS_MIN_IN_DEPTH and not others_forced
                  and self.out_tensor.size >= self.PLAN_MIN_OUTPUTS) if force is None else force
        if (self.kind == "INT8" and self.groups == 1 and self.numerics == DEFAULT_NUMERICS and wanted
                and self.compiled_pointwise is None):
            # Exact for every accumulator: int32 sums modulo 2^32, then TFLM's requantization in
            # depthwise.py's proven form (the module's docstring).
            self.compiled_rows = compiled_rows.plan(
                self.in_hwc, self.out_hw, self.kernel_hw, self.stride, self.dilation, (self.pad_top, self.pad_left),
                self.input_offset, self.output_offset, self.act_min, self.act_max, weights, self.bias,
                self.multiplier, self.shift)

    def eval(self, inputs):
        x = inputs[0]
        if self.kind == "FLOAT32":
            return [self._eval_float(x)]
        oh, ow = self.out_hw
        oc = self.out_tensor.shape[3]
        if (self.compiled_pointwise is not None and x.shape[0] * self.out_tensor.size >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled() and compiled_pointwise.available()):
            return [compiled_pointwise.conv(self.compiled_pointwise, x, self.out_tensor.dtype).reshape(
                (x.shape[0],) + self.out_tensor.shape)]
        if (self.compiled_rows is not None and x.shape[0] * self.out_tensor.size >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled() and compiled_rows.available()):
            return [compiled_rows.conv(self.compiled_rows, x, self.out_tensor.dtype).reshape(
                (x.shape[0],) + self.out_tensor.shape)]
        if (self.compiled_first is not None and x.shape[0] * self.out_tensor.size >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled() and compiled_first_conv.available()):
            return [compiled_first_conv.conv(self.compiled_first, x, self.out_tensor.dtype).reshape(
                (x.shape[0],) + self.out_tensor.shape)]
        if (self.compiled_u8 is not None and x.shape[0] * self.out_tensor.size >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled() and compiled_gemm_u8.available()):
            return [self._eval_compiled_u8(x)]
        if (self.compiled_small is not None and x.shape[0] * self.out_tensor.size >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled()):
            return [self._eval_compiled_small(x)]
        if (self.compiled_gemm is not None and x.shape[0] * self.out_tensor.size >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled()):
            return [self._eval_compiled(x)]
        out = np.empty((x.size // math.prod(self.in_hwc), oh, ow, oc), self.out_tensor.dtype)
        if self.pointwise:
            # A 1x1 stride-1 convolution is a plain matrix product over pixels.
            flat = x.reshape(-1, self.in_hwc[2])
            flat_out = out.reshape(-1, oc)
            for rows in blocks(flat.shape[0], self.in_hwc[2] + oc):
                part = flat[rows]
                if self._wants_scaled_product(part.shape[0] * oc):
                    flat_out[rows] = self._scaled_product(part)
                    continue
                pixels = workspace("conv-patches", part.shape, self.compute_dtype)
                np.copyto(pixels, part)
                acc = self.matmuls[0].into(pixels, workspace("conv-acc", (part.shape[0], oc), self.compute_dtype))
                flat_out[rows] = self.finish(acc)
            return [out.reshape((x.shape[0],) + self.out_tensor.shape)]
        win = self.windows(x)  # (N·B, OH, OW, KH, KW, C)
        depth = self.filter_depth
        for bs, rs in self.output_blocks(win.shape[0], ow * math.prod(win.shape[3:])):
            part = win[bs, rs]
            rows = part.shape[0] * part.shape[1] * ow
            if self._wants_scaled_product(rows * oc):
                out[bs, rs] = self._scaled_product(part).reshape(part.shape[:3] + (oc,))
                continue
            if self.groups == 1:
                # im2col into a reused buffer, then the product into another (no fresh pages per block).
                patches = workspace("conv-patches", part.shape, self.compute_dtype)
                np.copyto(patches, part)
                acc = self.matmuls[0].into(patches.reshape(rows, -1), workspace("conv-acc", (rows, oc),
                                                                                self.compute_dtype))
            else:
                acc = np.concatenate([m.raw(part[..., g * depth:(g + 1) * depth].reshape(rows, -1))
                                      for g, m in enumerate(self.matmuls)], axis=1)
            out[bs, rs] = self.finish(acc).reshape(part.shape[:3] + (oc,))
        return [out.reshape((x.shape[0],) + self.out_tensor.shape)]

    def _eval_compiled(self, x: np.ndarray) -> np.ndarray:
        """The compiled direct convolution's exact int32 accumulators, a chunk of images at a time,
        through the op's requantizer."""
        w, g = self.compiled_gemm
        (oh, ow), oc = self.out_hw, self.out_tensor.shape[3]
        images = x.reshape((-1,) + self.in_hwc)
        out = np.empty((images.shape[0] * oh * ow, oc), self.out_tensor.dtype)
        step = max(1, self.COMPILED_CHUNK_VALUES // (oh * ow * w.padded_channels))
        for start in range(0, images.shape[0], step):
            part = images[start:start + step]
            padded = workspace("conv-compiled-padded", (part.shape[0],) + g.padded_hwc, np.int16)
            acc = workspace("conv-compiled-acc", (part.shape[0] * oh * ow, w.padded_channels), np.int32)
            out[start * oh * ow:(start + part.shape[0]) * oh * ow] = self.finish(
                compiled_gemm.conv(w, g, np.ascontiguousarray(part), padded, acc))
        return out.reshape((x.shape[0],) + self.out_tensor.shape)

    def _eval_compiled_small(self, x: np.ndarray) -> np.ndarray:
        """The compiled small-layer convolution's exact int32 accumulators, a chunk of images at a
        time, through the op's requantizer."""
        p = self.compiled_small
        (oh, ow), oc, padded = self.out_hw, self.out_tensor.shape[3], p.weights.padded_channels
        images = x.reshape((-1,) + self.in_hwc)
        out = np.empty((images.shape[0] * oh * ow, oc), self.out_tensor.dtype)
        step = max(1, self.COMPILED_CHUNK_VALUES // (oh * ow * padded))
        for start in range(0, images.shape[0], step):
            part = images[start:start + step]
            flat = workspace("conv-small-padded", compiled_small_conv.buffer_shape(p, part.shape[0]), np.int16)
            acc = workspace("conv-small-acc", (part.shape[0] * oh * ow, padded), np.int32)
            out[start * oh * ow:(start + part.shape[0]) * oh * ow] = self.finish(
                compiled_small_conv.conv(p, np.ascontiguousarray(part), flat, acc))
        return out.reshape((x.shape[0],) + self.out_tensor.shape)

    def _eval_compiled_u8(self, x: np.ndarray) -> np.ndarray:
        """The compiled int8 x int8 convolution's exact int32 accumulators, a chunk of images at a
        time, through the op's requantizer."""
        p = self.compiled_u8
        (oh, ow), oc = self.out_hw, self.out_tensor.shape[3]
        images = x.reshape((-1,) + self.in_hwc)
        out = np.empty((images.shape[0] * oh * ow, oc), self.out_tensor.dtype)
        step = max(1, self.COMPILED_CHUNK_VALUES // (oh * ow * p.padded_channels))
        for start in range(0, images.shape[0], step):
            part = images[start:start + step]
            flat = workspace("conv-u8-padded", compiled_gemm_u8.buffer_shape(p, part.shape[0]), np.uint8)
            acc = workspace("conv-u8-acc", (part.shape[0] * oh * ow, p.padded_channels), np.int32)
            out[start * oh * ow:(start + part.shape[0]) * oh * ow] = self.finish(
                compiled_gemm_u8.conv(p, np.ascontiguousarray(part), flat, acc))
        return out.reshape((x.shape[0],) + self.out_tensor.shape)

    def _wants_scaled_product(self, size: int) -> bool:
        """Whether a block of ``size`` outputs runs the scale-folded float64 GEMM. Not when the
        requantization of the float32 GEMM's accumulator is compiled (ops/compiled/requantize.py):
        then the float32 GEMM and the compiled pass were measured 13-30% faster (batch-32 calls,
        one thread: vww_96's 48x48x8->16 1.40 -> 1.04 ms, 24x24x16->32 0.89 -> 0.68 ms,
        pretrainedResnet's 1x1 stride-2 0.48 -> 0.34 ms, MobileNetV2's 112x112x16->96 at batch 8
        12.9 -> 11.1 ms)."""
        return self.scaled_weights is not None and not self.requantizer.compiled_for(size)

    def _eval_float(self, x):
        oh, ow = self.out_hw
        win = self.windows(x)
        rows = win.shape[0] * oh * ow
        outs = [_float_dot_in_order(win[..., g * self.filter_depth:(g + 1) * self.filter_depth].reshape(rows, -1),
                                    self.weights[:, g * self.filters_per_group:(g + 1) * self.filters_per_group])
                for g in range(self.groups)]
        acc = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)
        return self.finish(acc).reshape((x.shape[0],) + self.out_tensor.shape)


def _float_dot_in_order(patches: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """patches @ weights summed in float32 in index order, as the C reference loop does."""
    acc = np.zeros((patches.shape[0], weights.shape[1]), np.float32)
    for k in range(patches.shape[1]):
        acc += patches[:, k:k + 1] * weights[k][None, :]
    return acc


@register("DEPTHWISE_CONV_2D")
class DepthwiseConv2D(_ConvBase):
    # The fast kernel's tap layout: None lets prepare choose by shape (the default); tests force
    # each one ("matmul", "gemm", "channel_major", "nhwc_phases", "windows") to pin it to the
    # reference. A layout whose preconditions the op does not meet falls back to "windows".
    supported_types = "int8, int16x8 (int64 bias), float32"
    notes = "depth multiplier, stride, dilation"

    force_layout: str | None = None
    # Taps from which the per-channel batched matrix product pays off over a loop over taps.
    MATMUL_MIN_TAPS = 17
    # Calls with at most this many output values (all samples) take the per-channel matrix product
    # whatever the prepared layout: its few numpy calls beat the layouts' per-tap passes on tiny
    # tensors (a 7x7x4 3x3 depthwise: 37 -> 25 us; even at ~3,000 values). Tests force it.
    SMALL_MATMUL_ELEMENTS = 1024
    # (C_in, K, dm) float32 weights of the per-channel product, when the sums are exact in float32.
    weights_by_channel = None
    # Calls with at least this many output values (all samples) run the compiled integer kernel
    # (ops/compiled/depthwise.py) when compiled kernels are enabled: below it, numba's one-time
    # import and load (~0.3 s) would cost more than tiny models ever save. Tests set it to 0.
    COMPILED_MIN_ELEMENTS = 1 << 15
    # The compiled kernel's parameters (int8 and 16x8 with the default numerics), else None.
    compiled_params = None
    # The int8 kernel on VNNI byte dot products (ops/compiled/depthwise_vnni.py: four taps x 16
    # channels per vpdpbusd from a quad image built once per image, accumulators requantized in
    # registers; AVX512-VNNI hosts only, else compiled_params' kernel). Per layer, one thread, CPU
    # time, batch 64 (kws / person_detect 128), ns per output, compiled_params' kernel -> vnni:
    # vww_96 / person_detect 16..256 channels 0.94-1.68 -> 0.26-0.42, kws 1.30 -> 0.28. Taken for
    # channels a multiple of 16 (8 channels and 1 channel x dm 8: depthwise_narrow below).
    # VNNI_FORCE: None chooses so, True / False force it on (wherever plan applies) / off (tests).
    VNNI_FORCE: bool | None = None
    compiled_vnni = None
    # int8 layers of C·dm = 1, 2, 4, 8 or 16 output channels (ops/compiled/depthwise_narrow.py:
    # P = 16 / OC pixels per 16-lane vpdpbusd, the requantization in registers; VNNI + VBMI hosts).
    # Per layer, 1 thread, CPU, batch 64, ns per output depthwise.py -> narrow: vww / person_detect
    # 48x48x8 3x3/1 1.35-1.38 -> 0.41-0.47 (2.9-3.3x), 96x96x1 dm 8 3x3/2 2.19 -> 0.42 (5.2x);
    # 1..4 channels, dm 4 or 16: 3-6.5x; 16 channels x dm 1 ties depthwise_vnni, which keeps them.
    # NARROW_FORCE: None chooses so unless VNNI_FORCE is set (the other kernels' tests keep their
    # paths), True / False force it on (wherever plan applies) / off.
    NARROW_FORCE: bool | None = None
    compiled_narrow = None
    def prepare(self, ctx: PrepareContext):
        self.prepare_fast(ctx)
        self.params = self.conv_params(self.depth_multiplier)

    def eval_reference(self, inputs):
        return self.reference_eval_with(depthwise_conv_2d, inputs)

    def prepare_fast(self, ctx: PrepareContext):
        if len(ctx.op.inputs) == 3 and ctx.op.inputs[2] < 0:
            # CalculateOpDataDepthwiseConv takes has_bias from the input count and then releases the
            # missing bias tensor: TFLM crashes on such a model, so it cannot be a valid one.
            ctx.fail("three inputs with the bias omitted (-1): TFLM's depthwise Prepare assumes a bias "
                     "whenever there are three inputs and crashes")
        self.prepare_common(ctx, quantized_dim=3)
        x, w, out = ctx.input(0), ctx.input(1), ctx.output(0)
        # TFLM uses the stored depth_multiplier as is; output channel oc reads input channel oc // dm.
        # Absent options are zero-initialised params (dm 0). With dm <= 0 its loop over m < dm never
        # runs: the output keeps whatever the arena held.
        self.depth_multiplier = int(ctx.options.get("depth_multiplier", 0))
        if self.depth_multiplier <= 0:
            ctx.unsupported(f"depth_multiplier {self.depth_multiplier}: TFLM's kernel writes no output "
                            "(its loop over the multiplier never runs; the output keeps arena bytes)", out)
        ctx.check(w.shape[0] == 1, f"depthwise filter must have shape [1, KH, KW, C], has {list(w.shape)}", w)
        if out.shape[3] != x.shape[3] * self.depth_multiplier:
            # TFLM only DCHECKs this: its loops write output channel m + ic * dm for every input channel,
            # past the output or leaving part of it unwritten.
            ctx.unsupported(f"output depth {out.shape[3]} != input depth {x.shape[3]} x depth_multiplier "
                            f"{self.depth_multiplier}: TFLM's kernel would write outside the output or leave "
                            "part of it unwritten", out)
        kh, kw = self.kernel_hw
        if self.kind == "FLOAT32":
            self.weights = np.asarray(w.data, np.float32).reshape(kh, kw, -1)
            self.weights_split = self.weights.reshape(kh, kw, -1, self.depth_multiplier) \
                if self.depth_multiplier > 1 else self.weights
            self.use_matmul = False
            self._prepare_layout()
            return
        weights = np.asarray(w.data, np.int64).reshape(kh, kw, -1)
        # 16x8 depthwise always reads an int64 bias and uses the int64 requantization.
        self.int64_accumulator = self.kind == "INT16"
        self.bias_folded = self.folded_bias(weights.sum(axis=(0, 1)))
        tap_bound = int(np.abs(weights).sum(axis=(0, 1)).max(initial=0)) * self.max_abs_input
        # float32 sums of integers are exact below 2^24; int64 otherwise.
        self.compute_dtype = np.float32 if tap_bound < (1 << 24) else np.int64
        self.weights = weights.astype(self.compute_dtype)
        self.make_requantizer(tap_bound)
        # Many taps over few channels: one batched matrix product per channel beats a loop over taps.
        forced = self.force_layout
        wants_matmul = kh * kw >= self.MATMUL_MIN_TAPS if forced is None else forced == "matmul"
        self.use_matmul = wants_matmul and self.compute_dtype is np.float32
        dm = self.depth_multiplier
        # Output channel ic·dm + m reads input channel ic: keep (C_in, dm) apart instead of gathering.
        self.weights_split = self.weights.reshape(kh, kw, -1, dm) if dm > 1 else self.weights
        if self.compute_dtype is np.float32:  # exact: every partial sum is below 2^24 (tap_bound)
            self.weights_by_channel = np.ascontiguousarray(
                weights.reshape(kh * kw, -1, dm).transpose(1, 0, 2).astype(np.float32))  # (C_in, K, dm)
        # One input channel (a grayscale image) with a depth multiplier is an ordinary
        # convolution with dm filters: a short GEMM with the requantization folded in.
        self.scaled_weights = None
        wants_gemm = kh * kw <= 16 if forced is None else forced == "gemm"
        if self.kind == "INT8" and self.in_hwc[2] == 1 and dm > 1 and wants_gemm and not self.use_matmul:
            self.scaled_weights = self.requantizer.scaled_weights(weights.reshape(kh * kw, dm))
        if self.numerics == DEFAULT_NUMERICS:
            # TFLM's integer loop itself, with the raw bias (it wraps int32 as C does; see the module).
            self.compiled_params = compiled_depthwise.plan(
                self.kind, self.in_hwc, self.out_hw, self.stride, self.dilation, (self.pad_top, self.pad_left), dm,
                self.input_offset, self.output_offset, self.act_min, self.act_max, weights, self.bias,
                self.multiplier, self.shift)
            force = self.VNNI_FORCE
            channels = self.out_tensor.shape[3]
            wanted = dm == 1 and channels % 16 == 0 if force is None else force
            narrow = (channels in (1, 2, 4, 8) or channels == 16 and dm > 1) and force is None \
                if self.NARROW_FORCE is None else self.NARROW_FORCE
            if self.kind == "INT8" and narrow and self.compiled_params is not None:
                # Exact for every accumulator: int32 sums modulo 2^32 (the module's docstring).
                self.compiled_narrow = compiled_depthwise_narrow.plan(
                    self.in_hwc, self.out_hw, self.stride, self.dilation, (self.pad_top, self.pad_left), dm,
                    self.input_offset, self.output_offset, self.act_min, self.act_max, weights, self.bias,
                    self.multiplier, self.shift)
            if self.kind == "INT8" and wanted and self.compiled_params is not None:
                # Exact for every accumulator: int32 sums modulo 2^32 (the module's docstring).
                self.compiled_vnni = compiled_depthwise_vnni.plan(
                    self.in_hwc, self.out_hw, self.stride, self.dilation, (self.pad_top, self.pad_left), dm,
                    self.input_offset, self.output_offset, self.act_min, self.act_max, weights, self.bias,
                    self.multiplier, self.shift)
        self._prepare_layout()

    def _prepare_layout(self):
        """numpy runs fastest along long contiguous rows: with few channels and wide images the taps
        are summed in channel-major (NCHW) layout, whose innermost axis is the image row."""
        kh, kw = self.kernel_hw
        dm = self.depth_multiplier
        c_in = self.in_hwc[2]
        regular = min(self.stride + self.dilation) > 0 and min(self.pad_top, self.pad_left) >= 0
        (oh, ow), (h, w) = self.out_hw, self.in_hwc[:2]
        # The padded image the channel-major taps read: every row and column any output reaches.
        self.padded_hw = (max(h + self.pad_top, (oh - 1) * self.stride[0] + (kh - 1) * self.dilation[0] + 1),
                          max(w + self.pad_left, (ow - 1) * self.stride[1] + (kw - 1) * self.dilation[1] + 1))
        padded = self.padded_hw[0] * self.padded_hw[1]
        # The stride phases hold sh·sw images of (OH + reach) x (OW + reach).
        (sh, sw), (dh, dw) = self.stride, self.dilation
        phased = sh * sw * (oh + (kh - 1) * dh // max(sh, 1)) * (ow + (kw - 1) * dw // max(sw, 1))
        # Strides or dilations reaching far past the image would need a huge padded copy here.
        compact = max(padded, phased) <= 4 * (h * w + oh * ow * kh * kw) + 4096
        forced = self.force_layout
        wants_channel_major = c_in * dm < self.out_hw[1] if forced is None else forced == "channel_major"
        self.channel_major = regular and compact and not self.use_matmul and wants_channel_major
        # Otherwise (many channels) the taps are summed in NHWC over the same stride phases.
        self.nhwc_phases = (regular and compact and not self.use_matmul and not self.channel_major and dm == 1
                            and forced in (None, "nhwc_phases"))
        if self.channel_major or self.nhwc_phases:
            self._prepare_phases()
        if self.channel_major:
            shape = (kh, kw, c_in, dm, 1) if dm > 1 else (kh, kw, c_in, 1)
            self.weights_channel_major = np.ascontiguousarray(self.weights.reshape(shape))
        if self.nhwc_phases:
            # A tap's (OW, C) values are contiguous in its phase: weights repeated along the row
            # let each product run over OW·C values instead of C at a time.
            self.weights_by_row = np.ascontiguousarray(np.tile(self.weights, (1, 1, self.out_hw[1])))

    def _prepare_phases(self):
        """The padded image split into stride phases, as both tap layouts read it.

        Padded row oy·sh + ky·dh lies in row phase (ky·dh) mod sh, at row oy + (ky·dh) // sh of
        that phase; so every tap is a stride-1 window of one phase image. In NHWC a tap's
        (OW, C) block is then contiguous. Channel-major, computing the output over the phase's
        full width Wq (the columns past OW are discarded) makes each tap one contiguous run of
        the flattened phase, rows·Wq long, instead of rows·OW short rows.
        """
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_hw, self.stride, self.dilation
        (oh, ow) = self.out_hw
        self.phase_hw = (oh + (kh - 1) * dh // sh, ow + (kw - 1) * dw // sw)
        hq, wq = self.phase_hw
        # Reads past the last phase row for the discarded columns of the last output row.
        self.phase_tail = (kw - 1) * dw // sw
        # (phase, row offset, column offset) of each tap, and the flat offset in a phase plane.
        self.tap_windows = [[(((ky * dh) % sh) * sw + (kx * dw) % sw, (ky * dh) // sh, (kx * dw) // sw)
                             for kx in range(kw)] for ky in range(kh)]
        self.tap_phases = [[(p, ry * wq + rx) for p, ry, rx in row] for row in self.tap_windows]
        h, w, _ = self.in_hwc
        self.phase_copies = []
        for py in range(sh):
            i0 = (py - self.pad_top) % sh
            r0 = (self.pad_top + i0) // sh
            n_rows = max(0, min(-(-(h - i0) // sh), hq - r0))
            for px in range(sw):
                j0 = (px - self.pad_left) % sw
                c0 = (self.pad_left + j0) // sw
                n_cols = max(0, min(-(-(w - j0) // sw), wq - c0))
                if n_rows and n_cols:
                    self.phase_copies.append((py * sw + px, slice(r0, r0 + n_rows), slice(c0, c0 + n_cols),
                                              slice(i0, i0 + (n_rows - 1) * sh + 1, sh),
                                              slice(j0, j0 + (n_cols - 1) * sw + 1, sw)))

    def eval(self, inputs):
        x = inputs[0]
        if (self.compiled_params is not None and x.shape[0] * self.out_tensor.size >= self.COMPILED_MIN_ELEMENTS
                and compiled.enabled()):
            if self.compiled_narrow is not None and compiled_depthwise_narrow.available():
                y = compiled_depthwise_narrow.depthwise_conv(self.compiled_narrow, x, self.out_tensor.dtype)
                return [y.reshape((x.shape[0],) + self.out_tensor.shape)]
            if self.compiled_vnni is not None and compiled_depthwise_vnni.available():
                y = compiled_depthwise_vnni.depthwise_conv(self.compiled_vnni, x, self.out_tensor.dtype)
                return [y.reshape((x.shape[0],) + self.out_tensor.shape)]
            y = compiled_depthwise.depthwise_conv(self.compiled_params, x, self.out_hw, self.out_tensor.dtype)
            return [y.reshape((x.shape[0],) + self.out_tensor.shape)]
        if self.scaled_weights is not None:
            return [self._eval_gemm(x)]
        small = (self.weights_by_channel is not None
                 and x.shape[0] * self.out_tensor.size <= self.SMALL_MATMUL_ELEMENTS)
        if self.channel_major and not small:
            return [self._eval_channel_major(x)]
        if self.nhwc_phases and not small:
            return [self._eval_nhwc_phases(x)]
        win = self.windows(x)  # (N·B, OH, OW, KH, KW, C_in)
        oh, ow = self.out_hw
        oc = self.out_tensor.shape[3]
        out = np.empty((win.shape[0], oh, ow, oc), self.out_tensor.dtype)
        # Only the accumulator is materialised (the windows are views): size blocks by output row.
        for bs, rs in self.output_blocks(win.shape[0], ow * oc):
            part = win[bs, rs]
            out[bs, rs] = self.finish(self._taps(part, self.use_matmul or small))
        return [out.reshape((x.shape[0],) + self.out_tensor.shape)]

    def _eval_gemm(self, x: np.ndarray) -> np.ndarray:
        win = self.windows(x)  # (N·B, OH, OW, KH, KW, 1)
        oh, ow = self.out_hw
        oc = self.out_tensor.shape[3]
        out = np.empty((win.shape[0], oh, ow, oc), self.out_tensor.dtype)
        for bs, rs in self.output_blocks(win.shape[0], ow * (self.scaled_weights.shape[0] + oc)):
            part = win[bs, rs]
            out[bs, rs] = self._scaled_product(part).reshape(part.shape[:3] + (oc,))
        return out.reshape((x.shape[0],) + self.out_tensor.shape)

    def _taps(self, win: np.ndarray, matmul: bool) -> np.ndarray:
        """Σ over filter taps of window · weight, per output channel: (P…, OW, C_in·dm); with
        ``matmul``, as one batched float32 product per channel (exact only with weights_by_channel)."""
        kh, kw = self.kernel_hw
        dm = self.depth_multiplier
        if matmul:
            p = win.shape[0] * win.shape[1] * win.shape[2]
            by_channel = np.ascontiguousarray(win.reshape(p, kh * kw, -1).transpose(2, 0, 1))  # (C_in, P, K)
            acc = np.matmul(by_channel, self.weights_by_channel)  # (C_in, P, dm)
            return acc.transpose(1, 0, 2).reshape(win.shape[:3] + (-1,))
        shape = win.shape[:3] + ((win.shape[5], dm) if dm > 1 else (win.shape[5],))
        def taps():
            for ky in range(kh):
                for kx in range(kw):
                    tap = win[:, :, :, ky, kx, :]
                    # With dm > 1: (…, C_in, 1) against weights (C_in, dm).
                    yield (tap[..., None] if dm > 1 else tap), self.weights_split[ky, kx]

        acc = self._sum_of_taps(shape, taps())
        return acc.reshape(acc.shape[:3] + (-1,))

    def _sum_of_taps(self, shape, taps) -> np.ndarray:
        """Σ tap·weight over the (tap, weight) pairs, in their order (C's loop order, which the
        float kernel's rounding depends on), in a reused workspace of ``shape``."""
        acc = workspace("depthwise-acc", shape, self.compute_dtype)
        term = workspace("depthwise-term", shape, self.compute_dtype)
        for i, (tap, weight) in enumerate(taps):
            if i == 0:
                np.multiply(tap, weight, out=acc)
            else:
                np.multiply(tap, weight, out=term)
                acc += term
        return acc

    def _phase_dtype(self, x: np.ndarray):
        """The type the stride phases hold: with strides the input is several times the output,
        so the phases stay in the input's own type and the products convert as they read; at
        stride 1 converting once is cheaper (and a zero point the input type cannot hold forces
        the arithmetic type)."""
        strided = self.stride[0] * self.stride[1] > 1
        return x.dtype if strided and self.input_type_holds_pad(x.dtype) else self.compute_dtype

    def _eval_nhwc_phases(self, x: np.ndarray) -> np.ndarray:
        h, w, c = self.in_hwc
        (oh, ow), (kh, kw) = self.out_hw, self.kernel_hw
        sh, sw = self.stride
        hq, wq = self.phase_hw
        xb = x.reshape((-1, h, w, c))
        nb = xb.shape[0]
        phases = np.full((nb, sh * sw, hq, wq, c), self.pad_value, dtype=self._phase_dtype(xb))
        for p, rows, cols, in_rows, in_cols in self.phase_copies:
            phases[:, p, rows, cols] = xb[:, in_rows, in_cols]
        out = np.empty((nb, oh, ow, c), self.out_tensor.dtype)
        for bs, rs in self.output_blocks(nb, ow * c):
            rows = rs.stop - rs.start
            samples = len(range(*bs.indices(nb)))
            shape = (samples, rows, ow * c)

            def taps(bs=bs, rs=rs, shape=shape):
                for ky in range(kh):
                    for kx in range(kw):
                        p, ry, rx = self.tap_windows[ky][kx]
                        yield phases[bs, p, ry + rs.start:ry + rs.stop, rx:rx + ow].reshape(shape), \
                            self.weights_by_row[ky, kx]

            acc = self._sum_of_taps(shape, taps())
            out[bs, rs] = self.finish(acc.reshape(samples, rows, ow, c))
        return out.reshape((x.shape[0],) + self.out_tensor.shape)

    def _eval_channel_major(self, x: np.ndarray) -> np.ndarray:
        h, w, c = self.in_hwc
        (oh, ow), (kh, kw), dm = self.out_hw, self.kernel_hw, self.depth_multiplier
        sh, sw = self.stride
        hq, wq = self.phase_hw
        plane = hq * wq
        xb = x.reshape((-1, h, w, c))
        nb = xb.shape[0]
        phases = np.full((nb, c, sh * sw, plane + self.phase_tail), self.pad_value, dtype=self._phase_dtype(xb))
        channel_major = xb.transpose(0, 3, 1, 2)
        for p, rows, cols, in_rows, in_cols in self.phase_copies:
            phases[:, :, p, :plane].reshape(nb, c, hq, wq)[:, :, rows, cols] = channel_major[:, :, in_rows, in_cols]
        oc = c * dm
        out = np.empty((nb, oh, ow, oc), self.out_tensor.dtype)
        for bs, rs in self.output_blocks(nb, ow * oc):
            rows = rs.stop - rs.start
            samples = len(range(*bs.indices(nb)))
            length = rows * wq
            shape = (samples, c, dm, length) if dm > 1 else (samples, c, length)

            def taps(bs=bs, rs=rs, length=length):
                for ky in range(kh):
                    for kx in range(kw):
                        p, offset = self.tap_phases[ky][kx]
                        start = offset + rs.start * wq
                        tap = phases[bs, :, p, start:start + length]
                        # With dm > 1: (n, C_in, 1, L) against weights (C_in, dm, 1).
                        yield (tap[:, :, None] if dm > 1 else tap), self.weights_channel_major[ky, kx]

            acc = self._sum_of_taps(shape, taps()).reshape(samples, oc, length)
            if self.kind == "INT8":
                y = self.requantizer.channel_major(acc)
                out[bs, rs] = y.reshape(samples, oc, rows, wq)[..., :ow].transpose(0, 2, 3, 1)
            else:
                out[bs, rs] = self.finish(acc.reshape(samples, oc, rows, wq)[..., :ow].transpose(0, 2, 3, 1))
        return out.reshape((x.shape[0],) + self.out_tensor.shape)
