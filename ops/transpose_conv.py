"""TRANSPOSE_CONV: TFLM's transpose_conv.cc Prepare and its reference kernels
(reference/transpose_conv.h for float32, reference/integer_ops/transpose_conv.h for int8 and 16x8).

Inputs: 0 output_shape (never read: TFLM takes the output size from the output tensor), 1 filter
[OC, KH, KW, IC], 2 input [B, H, W, IC], 3 bias (optional; a fourth input written as -1 is no bias).

The reference kernel *scatters*: every input pixel adds ``x · w`` to the KH x KW output pixels its
filter covers, into a zeroed accumulator (the float output itself, an int32 scratch for int8, an
int64 scratch for 16x8); the accumulator is then biased and requantized per output channel.
``eval_reference`` is that loop (vectorised over samples, filter taps and output channels only);
``eval`` takes the exact fast paths described at ``_integer_accumulate`` and ``_float_accumulate``,
which tests/test_ops_transpose_conv.py pins to the reference bit for bit.

Where TFLM's release build (NDEBUG: its DCHECKs evaluate but do not abort) reads a tensor's bytes
as another type, microref does the same: an int8 kernel reads its bias as int32 words and a 16x8
kernel as int64 words whatever the bias tensor's type (an int16 bias is converted, as TFLM does),
and a 16x8 kernel reads an int16 filter's bytes as int8. What would read or write past a tensor is
refused.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fp
from .common import (
    ExactIntegerMatmul,
    activation_range_float,
    activation_range_quantized,
    clamp_float,
    compute_padding_height_width,
    quantize_channel_multipliers,
    real_multiplier,
)
from .parse_checks import check_parsed_options
from .registry import OpKernel, PrepareContext, register

# Tensor positions (TFLM's kTransposeConv*Tensor).
OUTPUT_SHAPE, FILTER, INPUT, BIAS = 0, 1, 2, 3

# The accumulator (scratch) element type of each kernel, and the type the bias is read as.
_SCRATCH_TYPE = {"INT8": np.int32, "INT16": np.int64}
_BIAS_TYPE = {"FLOAT32": np.float32, "INT8": np.int32, "INT16": np.int64}
# Bytes of per-tap contributions the integer fast path holds at once.
_CONTRIBUTION_BYTES = 64 << 20


@dataclass(frozen=True)
class TransposeConvParams:
    kind: str                    # input and output type: "INT8", "INT16" (16x8) or "FLOAT32"
    stride_height: int           # ConvParams.stride_height (an int16_t, as TFLM stores it)
    stride_width: int            # ConvParams.stride_width (int16_t)
    padding_height: int          # ConvParams.padding_values.height (int16_t): rows cut off the top
    padding_width: int           # ConvParams.padding_values.width (int16_t)
    input_offset: int            # -input zero point (int8; the 16x8 kernel applies no zero point)
    output_offset: int           # output zero point (int8; 0 for 16x8)
    output_multiplier: tuple[int, ...]  # per output channel: QuantizeMultiplier(s_in * s_filter[c] / s_out)
    output_shift: tuple[int, ...]       # per output channel, the exponent of that multiplier
    quantized_activation_min: int       # integer clamp after the zero point (CalculateActivationRangeQuantized)
    quantized_activation_max: int
    float_activation_min: float         # float clamp (CalculateActivationRange), float32 kernel only
    float_activation_max: float
    has_bias: bool               # whether the kernel adds a bias (a constant read as _BIAS_TYPE[kind])


def _reinterpret(values: np.ndarray, dtype, count: int) -> np.ndarray | None:
    """The first ``count`` elements of ``values``' bytes read as ``dtype`` (what a C kernel gets from
    GetTensorData<T> on a tensor of another type), or None when the bytes do not reach that far."""
    raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    width = np.dtype(dtype).itemsize
    if len(raw) < count * width:
        return None
    return np.frombuffer(raw[:count * width], dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


@register("TRANSPOSE_CONV")
class TransposeConv(OpKernel):
    # The filter [OC, KH, KW, IC] and bias (OC values) as the kernel reads them, set by prepare.
    supported_types = ("int8 (per-tensor or per-channel int8 filters, int32 bias), int16x8 (int64 or int16 bias), "
                       "float32")
    notes = ("SAME/VALID, strides (0 and negative too), optional bias, fused activations; the output size is the "
             "output tensor's, as in TFLM. TFLM's scatter loop into an int32/int64 scratch "
             '(`kernels="reference"`), with exact whole-image fast paths; float sums in the loop\'s order. A bias '
             "of another type is read as TFLM reads it (int32 words for int8, int64 for 16x8); one it would read "
             "past is refused")

    filter: np.ndarray
    bias: np.ndarray | None

    def prepare(self, ctx: PrepareContext):
        check_parsed_options(ctx)
        out = ctx.output(0)
        x = ctx.require_input(INPUT, "input")
        w = ctx.require_input(FILTER, "filter")
        if not (x.type_name == w.type_name or (x.type_name == "INT16" and w.type_name == "INT8")):
            ctx.fail(f"input {x.type_name} with filter {w.type_name}: Hybrid models are not supported on "
                     "TFLite Micro.", w)
        # SizeOfDimension(output, 1..2), SizeOfDimension(filter, 1..2) and the kernels' 4-D offsets
        # read dims a tensor of another rank does not have.
        for t, role in ((x, "input"), (w, "filter"), (out, "output")):
            if len(t.shape) != 4:
                ctx.unsupported(f"{role} must be 4-D, has shape {list(t.shape)} (TFLM's result is undefined)", t)
        kind = x.type_name
        channels = w.shape[0]  # kTransposeConvQuantizedDimension
        # Quantized kernels use a scratch accumulator of the output's size.
        if kind in _SCRATCH_TYPE:
            self.scratch_bytes.append(out.size * np.dtype(_SCRATCH_TYPE[kind]).itemsize)
            wq = w.quantization
            ctx.check(wq is not None, "filter needs affine quantization (per-tensor or per-channel)", w)
            ctx.check(wq.scales.size in (1, channels),
                      f"filter has {wq.scales.size} scales; TFLM needs 1 or one per output channel ({channels})", w)
            ctx.check(wq.scales.size == np.asarray(wq.zero_points).size,
                      f"filter has {wq.scales.size} scales but {np.asarray(wq.zero_points).size} zero points", w)
        # CalculateOpData.
        n_inputs = len(ctx.op.inputs)
        ctx.check(n_inputs in (3, 4), f"takes 3 or 4 inputs, has {n_inputs}")
        ctx.check(len(ctx.op.outputs) == 1, f"takes 1 output, has {len(ctx.op.outputs)}")
        bias = ctx.input(BIAS)
        opts = ctx.options
        stride = (opts.get("stride_h", 1), opts.get("stride_w", 1))
        # Padding as for a forward convolution from the output back to the input (dilation 1).
        pad_top, pad_left = compute_padding_height_width(opts.get("padding", 0), out.shape[1:3], w.shape[1:3], stride)
        activation = opts.get("fused_activation_function", 0)
        multipliers, shifts = (), ()
        act_min, act_max = 0, 0
        input_offset, output_offset = 0, 0
        if kind != "FLOAT32":
            xq, wq, oq = x.quantization, w.quantization, out.quantization
            # PopulateConvolutionQuantizationParams.
            ctx.check(xq is not None, "input needs affine quantization", x)
            ctx.check(wq is not None, "filter needs affine quantization", w)
            if wq.scales.size > 1:
                ctx.check(kind in ("INT8", "INT16"), f"per-channel quantization needs an int8 or int16 input, "
                                                     f"has {kind}", x)
                ctx.check(w.type_name in ("INT8", "INT4"), f"per-channel quantization needs an int8 or int4 "
                                                           f"filter, has {w.type_name}", w)
                ctx.check(wq.scales.size == channels,
                          f"filter has {wq.scales.size} scales for {channels} output channels", w)
                qdim = wq.quantized_dimension
                ctx.check(0 <= qdim < 4 and w.shape[qdim] == channels,
                          f"filter quantized_dimension {qdim} (size {w.shape[qdim] if 0 <= qdim < 4 else '?'}) "
                          f"does not have {channels} entries", w)
            scales = wq.scales if wq.scales.size > 1 else np.repeat(wq.scales[:1], channels)
            output_scale = oq.scale if oq is not None else 0.0
            real = [real_multiplier(None, xq.scale, s, divisor=output_scale) for s in scales]
            m, s = quantize_channel_multipliers(np.array(real))
            multipliers, shifts = tuple(int(v) for v in m), tuple(int(v) for v in s)
            if kind not in ("INT8", "UINT8", "INT16"):
                ctx.fail(f"input type {kind} is not supported (Type {kind} not supported at Eval)", x)
            ctx.check(out.type_name in ("INT8", "UINT8", "INT16"),
                      f"output type {out.type_name} has no quantized activation range", out)
            act_min, act_max = activation_range_quantized(activation, out, ctx)
            if kind == "INT16" and bias is not None and bias.type_name == "INT16":
                # The int16 bias is widened into an int64 scratch buffer at every Eval.
                self.scratch_bytes.append(bias.size * 8)
            if kind == "INT8":
                # int32 arithmetic in the kernel: -zero_point and the output offset are int32.
                input_offset = int(fp.wrap_int32(-int(fp.wrap_int32(xq.zero_point))))
                output_offset = int(fp.wrap_int32(oq.zero_point)) if oq is not None else 0
        # Eval: TF_LITE_ENSURE_EQ(input->type, output->type), then the type switch.
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}",
                  out)
        if kind not in ("FLOAT32", "INT8", "INT16"):
            ctx.fail(f"input type {kind} is not supported (Type {kind} not supported at Eval)", x)
        float_min, float_max = activation_range_float(activation)

        # The kernels take batches = input dim 0, input_depth = input dim 3 and output_depth =
        # filter dim 0 (MatchingDim, whose DCHECKs do not abort in TFLM's release build) and index
        # every tensor with its own shape: a mismatch would read or write past a tensor, or leave
        # part of the output unwritten — TFLM's result is undefined.
        undefined = " (TFLM's result is undefined)"
        if x.shape[0] != out.shape[0]:
            ctx.unsupported(f"input batch {x.shape[0]} differs from output batch {out.shape[0]}{undefined}", out)
        if channels != out.shape[3]:
            ctx.unsupported(f"filter has {channels} output channels, output has {out.shape[3]}{undefined}", w)
        if w.shape[3] < x.shape[3]:
            ctx.unsupported(f"filter depth {w.shape[3]} is smaller than the input depth {x.shape[3]}: TFLM's kernel "
                            f"reads past the filter{undefined}", w)
        if w.data is None:
            ctx.unsupported("non-constant filters are not supported", w)
        if bias is not None and bias.data is None:
            ctx.unsupported("non-constant bias is not supported", bias)

        # The filter as the kernel reads it: int8 for 16x8 (an int16 filter's bytes reinterpreted),
        # only its first input_depth channels when it has more.
        filter_values = np.asarray(w.data)
        if kind == "INT16" and w.type_name != "INT8":
            filter_values = _reinterpret(filter_values, np.int8, w.size).reshape(w.shape)
        self.filter = np.ascontiguousarray(filter_values[..., :x.shape[3]])
        self.bias = None
        if bias is not None:
            if kind == "INT16" and bias.type_name == "INT16":
                self.bias = np.asarray(bias.data).reshape(-1)[:channels].astype(np.int64)
            elif bias.type_name == "INT4":
                ctx.unsupported("an int4 bias is not supported", bias)
            else:
                self.bias = _reinterpret(np.asarray(bias.data), _BIAS_TYPE[kind], channels)
            if self.bias is None or self.bias.size < channels:
                ctx.unsupported(f"bias of {bias.size} {bias.type_name} values is read as {channels} "
                                f"{np.dtype(_BIAS_TYPE[kind]).name} values: TFLM's kernel reads past it (its result "
                                "is undefined)", bias)

        # ConvParams holds strides and paddings as int16_t.
        stride = tuple(int(fp.wrap_int16(v)) for v in stride)
        pad_top, pad_left = int(fp.wrap_int16(pad_top)), int(fp.wrap_int16(pad_left))
        for axis, name in ((0, "height"), (1, "width")):
            reach = (x.shape[1 + axis] * abs(stride[axis]) + abs((pad_top, pad_left)[axis]) + w.shape[1 + axis]
                     + out.shape[1 + axis])
            if reach >= (1 << 31):
                ctx.unsupported(f"the {name} stride overflows TFLM's int32 index arithmetic (its result is then "
                                "undefined behaviour)")
        self.in_shape = tuple(x.shape[1:])
        self.out_tensor = out
        self.params = TransposeConvParams(
            kind=kind, stride_height=stride[0], stride_width=stride[1], padding_height=pad_top,
            padding_width=pad_left, input_offset=input_offset, output_offset=output_offset,
            output_multiplier=multipliers, output_shift=shifts, quantized_activation_min=int(act_min),
            quantized_activation_max=int(act_max), float_activation_min=float_min, float_activation_max=float_max,
            has_bias=self.bias is not None)
        if kind != "FLOAT32":
            # Largest |x + input_offset| (int8) or |x| (16x8), for the exact integer products.
            lo, hi = (-128, 127) if kind == "INT8" else (-32768, 32767)
            max_abs_input = max(abs(lo + input_offset), abs(hi + input_offset))
            ic = x.shape[3]
            # (IC, KH·KW·OC): one product gives every tap's contribution of every input pixel.
            taps = self.filter.astype(np.int64).transpose(3, 1, 2, 0).reshape(ic, -1)
            self.tap_matmul = ExactIntegerMatmul(taps, max_abs_input)

    def describe(self):
        return dataclasses.asdict(self.params)

    # ------------------------------------------------------------------ eval
    def eval(self, inputs):
        return [self._finish(self._accumulate(inputs[INPUT], fast=True), inputs[INPUT].shape[0])]

    def eval_reference(self, inputs):
        """The output through TFLM's scatter loop itself (slow; the fast paths are tested against it)."""
        return [self._finish(self._accumulate(inputs[INPUT], fast=False), inputs[INPUT].shape[0])]

    def _accumulate(self, x: np.ndarray, fast: bool) -> np.ndarray:
        """The scratch accumulator (N·B, OH, OW, OC) before bias and requantization."""
        p = self.params
        x = x.reshape((-1,) + self.in_shape)
        out_hw = tuple(self.out_tensor.shape[1:3])
        if p.kind == "FLOAT32":
            x = x.astype(np.float32, copy=False)
            if fast and p.stride_height > 0 and p.stride_width > 0:
                return _float_accumulate(p, x, self.filter, out_hw)
            return scatter_reference(p, x, self.filter.astype(np.float32), out_hw, np.float32)
        # (input_value + input_offset) in int32 arithmetic; int64 holds it exactly, and the sums
        # below are exact in int64, so wrapping once at the end equals the kernel's wrapping int32
        # adds (Z/2^32 is a ring).
        x = x.astype(np.int64) + p.input_offset
        if fast:
            # Every tap's contribution of every pixel is held at once: a few batches at a time.
            per_batch = math.prod(x.shape[1:3]) * math.prod(self.filter.shape[:3]) * 8
            step = max(1, _CONTRIBUTION_BYTES // max(per_batch, 1))
            acc = np.concatenate([_integer_accumulate(p, x[b:b + step], self.tap_matmul, self.filter.shape, out_hw)
                                  for b in range(0, x.shape[0], step)])
        else:
            acc = scatter_reference(p, x, self.filter.astype(np.int64), out_hw, np.int64)
        return fp.wrap_int32(acc) if p.kind == "INT8" else acc

    def _finish(self, acc: np.ndarray, n: int) -> np.ndarray:
        """Bias, requantization and clamp of the accumulator, as the kernel's second loop does."""
        p = self.params
        out = self.out_tensor
        if p.kind == "FLOAT32":
            if self.bias is not None:
                acc = acc + self.bias
            y = clamp_float(acc, p.float_activation_min, p.float_activation_max)
        elif p.kind == "INT8":
            if self.bias is not None:
                acc = fp.wrap_int32(acc + self.bias.astype(np.int64))
            multiplier = np.asarray(p.output_multiplier, np.int64)
            shift = np.asarray(p.output_shift, np.int64)
            if self.numerics.rounding == "single":
                scaled = fp.multiply_by_quantized_multiplier_single_rounding(acc, multiplier, shift)
            else:
                scaled = fp.multiply_by_quantized_multiplier(acc, multiplier, shift)
            scaled = fp.wrap_int32(scaled + p.output_offset)
            y = np.minimum(np.maximum(scaled, p.quantized_activation_min), p.quantized_activation_max)
        else:
            if self.bias is not None:
                with np.errstate(over="ignore"):
                    acc = acc + self.bias  # int64, wrapping as the C int64 add does on x86
            scaled = fp.multiply_by_quantized_multiplier_int64(acc, np.asarray(p.output_multiplier, np.int64),
                                                               np.asarray(p.output_shift, np.int64))
            y = np.minimum(np.maximum(scaled, p.quantized_activation_min), p.quantized_activation_max)
        return y.astype(out.dtype).reshape((n,) + tuple(out.shape))


def scatter_reference(p: TransposeConvParams, x: np.ndarray, filt: np.ndarray, out_hw, acc_dtype) -> np.ndarray:
    """TFLM's TransposeConv scatter loop: the accumulator (B, OH, OW, OC) of ``x`` (B, H, W, IC),
    already offset by input_offset, and ``filt`` (OC, KH, KW, IC).

    The loops over batch, filter taps and output channels run as numpy operations; the loops
    over input rows, columns and channels run here, in TFLM's order. One (in_y, in_x, in_channel)
    step adds at most one term to each output element (different taps land on different output
    pixels), so every output element receives its terms in exactly the C loop's order.
    """
    batches, input_height, input_width, input_depth = x.shape
    output_depth, filter_height, filter_width, _ = filt.shape
    output_height, output_width = out_hw
    scratch = np.zeros((batches, output_height, output_width, output_depth), acc_dtype)
    # (KH, KW, IC, OC): the taps of one input channel as a (KH, KW, OC) block.
    taps = filt.transpose(1, 2, 3, 0)
    for in_y in range(input_height):
        out_y_origin = in_y * p.stride_height - p.padding_height
        # filter_y such that 0 <= out_y_origin + filter_y < output_height ("we cannot accumulate out of bounds").
        fy0, fy1 = max(0, -out_y_origin), min(filter_height, output_height - out_y_origin)
        if fy0 >= fy1:
            continue
        for in_x in range(input_width):
            out_x_origin = in_x * p.stride_width - p.padding_width
            fx0, fx1 = max(0, -out_x_origin), min(filter_width, output_width - out_x_origin)
            if fx0 >= fx1:
                continue
            target = scratch[:, out_y_origin + fy0:out_y_origin + fy1, out_x_origin + fx0:out_x_origin + fx1, :]
            for in_channel in range(input_depth):
                input_value = x[:, in_y, in_x, in_channel][:, None, None, None]
                filter_value = taps[fy0:fy1, fx0:fx1, in_channel, :][None]
                target += input_value * filter_value
    return scratch


def _integer_accumulate(p: TransposeConvParams, x: np.ndarray, tap_matmul: ExactIntegerMatmul, filter_shape,
                        out_hw) -> np.ndarray:
    """The integer scratch accumulator, exactly, by whole-image products.

    Why it equals the scatter loop: every term (x + input_offset)·w is an integer, and the
    loop only adds terms; integer addition is associative and commutative, and int64 holds
    every partial sum (|term| < 2^39, far fewer than 2^24 terms per element), so any order gives
    the same int64 sum. ``tap_matmul`` computes every tap's contribution of every input pixel
    exactly (ExactIntegerMatmul only uses float BLAS below 2^24 / 2^53). Each tap's contributions
    are then added at their output pixels (out = in·stride - pad + tap), dropping those outside
    the output as the loop does; a stride of 0 sends a whole row (column) of inputs to one output
    row (column), so those are summed first.
    """
    batches, h, w, ic = x.shape
    oc, kh, kw, _ = filter_shape
    oh, ow = out_hw
    scratch = np.zeros((batches, oh, ow, oc), np.int64)
    contrib = tap_matmul(x.reshape(-1, ic)).reshape(batches, h, w, kh, kw, oc)
    for fy in range(kh):
        rows, ry = _landing(h, p.stride_height, p.padding_height, fy, oh)
        if rows is None:
            continue
        for fx in range(kw):
            cols, rx = _landing(w, p.stride_width, p.padding_width, fx, ow)
            if cols is None:
                continue
            part = contrib[:, :, :, fy, fx, :][:, ry][:, :, rx]
            if p.stride_height == 0:
                part = part.sum(axis=1, keepdims=True)
            if p.stride_width == 0:
                part = part.sum(axis=2, keepdims=True)
            scratch[:, rows[:, None], cols[None, :], :] += part
    return scratch


def _landing(size: int, stride: int, pad: int, tap: int, out_size: int):
    """(distinct output indices, input indices landing on them) of one tap along one axis: input i
    lands on i·stride - pad + tap; inputs landing outside [0, out_size) are dropped. With stride 0
    every input lands on the same index (one output index; the caller sums the inputs)."""
    i = np.arange(size, dtype=np.int64)
    out = i * stride - pad + tap
    keep = (out >= 0) & (out < out_size)
    if not keep.any():
        return None, None
    if stride == 0:
        return out[:1], keep  # keep is all-true here: every input lands on the same index
    return out[keep], np.nonzero(keep)[0]


def _float_accumulate(p: TransposeConvParams, x: np.ndarray, filt: np.ndarray, out_hw) -> np.ndarray:
    """The float32 accumulator of the scatter loop, as a gather in the loop's own order (strides >= 1).

    Why it is bit-identical: float addition is not associative, so each output element must get
    the same terms, each rounded the same way (x·w in float32), added to 0.0f in the same order.
    The loop adds to output (oy, ox) the terms of the input pixels (in_y, in_x) whose footprint
    covers it, in order of in_y, then in_x, then in_channel (one term per pixel and channel: the
    tap is fy = oy + pad - in_y·stride). Writing t = oy + pad = q·stride + r (0 <= r < stride), the
    covering rows are in_y = q - j with tap fy = r + j·stride < KH, for j = 0, 1, …: every output
    row of one phase r has the same list of taps, and ascending in_y is descending j. So per
    output phase (r_y, r_x), for j_y descending, j_x descending, in_channel ascending, each output
    element adds x[q_y - j_y, q_x - j_x, ic] · w[oc, r_y + j_y·s_y, r_x + j_x·s_x, ic] when that
    input pixel exists — the loop's own sequence of float32 operations, vectorised over elements.
    """
    batches, h, w, ic = x.shape
    oc, kh, kw, _ = filt.shape
    oh, ow = out_hw
    sh, sw = p.stride_height, p.stride_width
    acc = np.zeros((batches, oh, ow, oc), np.float32)
    taps = filt.transpose(1, 2, 3, 0)  # (KH, KW, IC, OC)
    for ry in range(sh):
        oys = np.arange((ry - p.padding_height) % sh, oh, sh, dtype=np.int64)  # rows with (oy + pad) % sh == ry
        if oys.size == 0 or ry >= kh:
            continue
        qy = (oys + p.padding_height - ry) // sh
        jys = range((kh - ry + sh - 1) // sh)
        for rx in range(sw):
            oxs = np.arange((rx - p.padding_width) % sw, ow, sw, dtype=np.int64)
            if oxs.size == 0 or rx >= kw:
                continue
            qx = (oxs + p.padding_width - rx) // sw
            jxs = range((kw - rx + sw - 1) // sw)
            phase = np.zeros((batches, oys.size, oxs.size, oc), np.float32)
            for jy in reversed(jys):
                iy = qy - jy
                vy = (iy >= 0) & (iy < h)
                if not vy.any():
                    continue
                for jx in reversed(jxs):
                    ix = qx - jx
                    vx = (ix >= 0) & (ix < w)
                    if not vx.any():
                        continue
                    valid = (vy[:, None] & vx[None, :])[None, :, :, None]
                    everywhere = bool(valid.all())
                    pixels = x[:, np.clip(iy, 0, h - 1)][:, :, np.clip(ix, 0, w - 1)]  # (B, nY, nX, IC)
                    block = taps[ry + jy * sh, rx + jx * sw]  # (IC, OC)
                    for c in range(ic):
                        summed = phase + pixels[..., c:c + 1] * block[c]
                        phase = summed if everywhere else np.where(valid, summed, phase)
            acc[:, oys[:, None], oxs[None, :], :] = phase
    return acc
