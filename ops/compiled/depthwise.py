"""Compiled integer DEPTHWISE_CONV_2D: TFLM's reference_integer_ops::DepthwiseConvPerChannel
(int8, and 16x8 with its int64 accumulator) with the requantization fused, one pass per output.

Why it equals TFLM byte for byte (it runs the same integer operations, only in another order):

* int8. TFLM forms, per output (b, y, x, oc), ``int32 acc = Σ filter·(input + input_offset)`` over
  the taps inside the image, then ``acc += bias``; every operation is an int32 addition or
  multiplication. C's int32 arithmetic wraps (two's complement, as on the MCUs and x86 where the
  oracle runs), i.e. it is arithmetic modulo 2^32, and so is this kernel's: its accumulators are
  int32 (each store truncates modulo 2^32) and every product and sum is taken modulo 2^32 too.
  Addition and multiplication modulo 2^32 are associative and commutative, so the order of the
  taps, the bias added first instead of last, and the loop order (taps outer, channels inner)
  give the same int32 value as TFLM's for EVERY accumulator bound: no bound needs checking.
  (x + input_offset is stored in int16 when every value fits, else int32 modulo 2^32.)
* Then ``MultiplyByQuantizedMultiplier(acc, M, shift)`` as ops/fixedpoint.py defines it, then
  ``+ output_offset`` wrapped to int32, the clamp, and the store that truncates to int8. With
  a = acc·2^left as an int32 multiply (it wraps; left = max(shift, 0) & 31, x86's masking of C's
  ``1 << shift``), e = max(-shift, 0) and p = a·M (exact in int64: |p| <= 2^62), TFLM rounds twice:
  h = floor((p + 2^30) / 2^31) (SaturatingRoundingDoublingHighMul; its saturating case needs
  a = M = INT32_MIN, and prepare takes this path only for M >= 0), then for e >= 1
  r = floor((h + 2^(e-1) - [h < 0]) / 2^e) (RoundingDivideByPOT), r = h for e = 0. Since
  floor((floor(q / 2^31) + c) / 2^e) = floor((q + c·2^31) / 2^(31+e)) for integers q, c, and
  h < 0 exactly when q = p + 2^30 < 0:
      r = (p + 2^30 + 2^(30+e) - [p < -2^30]·2^31) >> (31 + e)        (e >= 1)
      r = (p + 2^30) >> 31                                                  (e = 0)
  one arithmetic shift of an int64 that cannot overflow (|p| + 2^30 + 2^61 < 2^63). prepare
  computes the two constants per channel and refuses the compiled path for e > 31 (which
  QuantizeMultiplier never produces). tests/test_compiled_depthwise.py also checks the formula
  against ops.fixedpoint on the extreme multipliers, shifts and accumulators directly.
* 16x8. TFLM accumulates ``int64 acc = Σ filter·input`` (|product| <= 2^22) + the int64 bias, then
  the int64 MultiplyByQuantizedMultiplier: the multiplier cut to 16 bits
  (``M < 0x7FFF0000 ? (M + 2^15) >> 16 : 0x7FFF``), ``(acc·m + 2^(t-1)) >> t`` with t = 15 - shift,
  both shift counts masked to 6 bits as x86 does, int64 products and sums wrapping (modulo 2^64,
  as numpy's int64 in ops.fixedpoint: numba's int64 arithmetic wraps the same way), the result
  truncated to int32, then the clamp. The same operations here, in the same form as the int8
  step with a zero negative-rounding term.

The accumulator bound of prepare (Σ_taps |w| · max|x + input_offset| + |bias|) therefore plays
no part in exactness; on real models it is far below 2^31 anyway (a 3x3 int8 layer:
9·128·255 + |bias|), and the tests drive biases near ±2^31 to pin the wrapping case.

Only eval imports numba (through ``lazy_njit``): this module is imported by ops/conv.py at load
time and its ``plan`` runs at prepare, neither of which may pay for numba.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import lazy_njit

__all__ = ["CompiledDepthwiseParams", "plan", "depthwise_conv"]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def read_only(a: np.ndarray) -> np.ndarray:
    """A C-contiguous read-only copy (rows of a table become arrays of their own)."""
    a = np.ascontiguousarray(a) if a.flags.c_contiguous and a.base is None else a.copy()
    a.flags.writeable = False
    return a


# Each tap's products run over a whole output row, in chunks of this many values at least (whole
# pixels, the per-channel arrays tiled to one chunk): few channels still make long vector loops.
CHUNK_VALUES = 512


@dataclass(frozen=True)
class CompiledDepthwiseParams:
    """What the compiled kernel reads: TFLM's DepthwiseParams, the per-channel arrays (the kernel
    tiles them to one chunk of whole pixels itself), and the padded image's layout."""
    stride_height: int
    stride_width: int
    dilation_height_factor: int
    dilation_width_factor: int
    padding_top: int  # may be negative (a model whose output is smaller than its padding says)
    padding_left: int
    depth_multiplier: int  # output channel ic·dm + m reads input channel ic
    input_offset: int  # -input zero point (0 for 16x8)
    output_offset: int  # output zero point (0 for 16x8)
    activation_min: int
    activation_max: int
    weights: np.ndarray  # (KH·KW, C·dm) int32 filter values, taps in TFLM's order (filter_y, filter_x)
    # Per tap: its row in the padded image relative to out_y·stride_h (filter_y·dilation_h), its
    # column phase ((filter_x·dilation_w) mod stride_w) and its first value in that phase's row
    # ((filter_x·dilation_w) div stride_w · C·dm).
    tap_row: np.ndarray
    tap_phase: np.ndarray
    tap_start: np.ndarray
    bias: np.ndarray  # (C·dm,) int32 (int8: the bias modulo 2^32) or int64 (16x8)
    # The requantization, per output channel: scaled = (acc·M + rounding - [acc·M < -2^30]·negative_rounding)
    # >> right_shift (the module docstring derives it from TFLM's two roundings and its int64 form).
    multiplier: np.ndarray  # (C·dm,) int32: int8 TFLM's quantized multiplier (>= 0); 16x8 cut to 16 bits
    left_shift: np.ndarray  # (C·dm,) int64: int8's max(shift, 0) & 31 (x86 masks C's 1 << shift)
    left_shifts: bool  # whether any channel shifts left (int8 only)
    rounding: np.ndarray  # (C·dm,) int64
    negative_rounding: np.ndarray  # (C·dm,) int64 (0 for 16x8)
    right_shift: np.ndarray  # (C·dm,) int64, 31..62 for int8, 0..63 for 16x8
    wide: bool  # 16x8: int64 accumulator and TFLM's int64 MultiplyByQuantizedMultiplier
    # The padded image (rows every output row reads, each split into the column stride's phases):
    # (padded rows, stride_w, phase columns, C·dm), int16 when input + input_offset fits, else int32.
    phases_shape: tuple
    phases_dtype: type


@dataclass(frozen=True)
class DepthwiseLayer:
    """The layer every compiled int8 depthwise plan records (depthwise_vnni's and depthwise_narrow's
    plans extend it with their layouts): this module's per-channel constants and the geometry."""
    requant: CompiledDepthwiseParams  # this module's per-channel constants (``plan``)
    in_hwc: tuple
    out_hw: tuple
    stride: tuple
    dilation: tuple
    padding: tuple  # (top, left), may be negative
    kernel_hw: tuple
    depth_multiplier: int


def _geometry(in_hwc, out_hw, kernel_hw, stride, dilation):
    """(padded rows, phase columns) of the padded image every tap reads."""
    (oh, ow), (kh, kw) = out_hw, kernel_hw
    rows = (oh - 1) * stride[0] + (kh - 1) * dilation[0] + 1
    return rows, ow + (kw - 1) * dilation[1] // stride[1]


def plan(kind: str, in_hwc, out_hw, stride, dilation, padding, depth_multiplier: int, input_offset: int,
         output_offset: int, activation_min: int, activation_max: int, weights: np.ndarray, bias, multiplier,
         shift) -> CompiledDepthwiseParams | None:
    """The compiled kernel's parameters, or None where it does not apply (numpy runs instead).

    ``weights`` (KH, KW, C·dm) integer filter values; ``bias`` (C·dm,) or None; ``multiplier``
    and ``shift`` per output channel (or broadcastable). Imports no numba, and runs at every
    prepare: a few dozen numpy calls, no more.
    """
    if kind not in ("INT8", "INT16"):
        return None  # float32 depthwise stays numpy: its float order is part of the result
    if min(stride) < 1 or min(dilation) < 1 or depth_multiplier < 1 or min(out_hw) < 1:
        return None  # int16 wraps can make strides 0 or negative: the numpy kernel handles those
    kh, kw, channels = weights.shape
    h, w, _ = in_hwc
    rows, columns = _geometry(in_hwc, out_hw, (kh, kw), stride, dilation)
    if rows * stride[1] * columns > 4 * (h * w + out_hw[0] * out_hw[1] * kh * kw) + 4096:
        return None  # strides or dilations reaching far past the image: a huge padded copy
    for v in (input_offset, output_offset, activation_min, activation_max):
        if not _INT32_MIN <= int(v) <= _INT32_MAX:
            return None  # outside C's int32 parameters: leave such models to the int64 numpy code
    wide = kind == "INT16"
    if wide and (input_offset or output_offset):
        return None  # 16x8 applies no zero points
    # Per channel: bias, multiplier, left shift, rounding, negative rounding, right shift.
    table = np.zeros((6, channels), np.int64)
    table[0] = 0 if bias is None else bias
    table[1] = multiplier
    shift = np.broadcast_to(np.asarray(shift, np.int64), (channels,))
    m_low, m_high = int(table[1].min()), int(table[1].max())
    if wide:
        if m_low < _INT32_MIN or m_high > _INT32_MAX:
            return None
        # TFLM's int64 MultiplyByQuantizedMultiplier: the multiplier cut to 16 bits, then
        # (acc·m + 2^(t-1)) >> t with t = 15 - shift, both counts masked to 6 bits as x86 does
        # (1 << 63 is INT64_MIN).
        table[1] = np.where(table[1] < 0x7FFF0000, (table[1] + (1 << 15)) >> 16, 0x7FFF)
        t = 15 - shift
        table[3] = np.left_shift(np.ones(channels, np.uint64), ((t - 1) & 63).astype(np.uint64)).view(np.int64)
        table[5] = t & 63
        largest = 1 << 15
    else:
        if m_low < 0 or m_high > _INT32_MAX:
            return None  # (a negative scale): keeps SaturatingRoundingDoublingHighMul off its saturating case
        if int(shift.min()) < -31:
            return None  # RoundingDivideByPOT is defined for exponents 0..31 only
        e = np.maximum(-shift, 0)
        table[2] = np.maximum(shift, 0) & 31
        table[3] = (1 << 30) + np.where(e > 0, np.int64(1) << (30 + e), 0)
        table[4] = np.where(e > 0, 1 << 31, 0)
        table[5] = 31 + e
        # The bias enters the int32 accumulator: only its value modulo 2^32 matters.
        table[0] = ((table[0] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        largest = 128
    filters = np.asarray(weights)
    if int(filters.min(initial=0)) < -(1 << 15) or int(filters.max(initial=0)) >= (1 << 15):
        return None  # (int8 and int4 filters always pass)
    # input + input_offset in int16 when it fits (values in [-largest, largest) plus the offset).
    phases_dtype = np.int16 if abs(int(input_offset)) + largest <= (1 << 15) - 1 else np.int32
    (dh, dw), sw = dilation, int(stride[1])
    taps = np.array([(fy * dh, fx * dw % sw, fx * dw // sw * channels) for fy in range(kh) for fx in range(kw)],
                    np.int64).T
    return CompiledDepthwiseParams(
        stride_height=int(stride[0]), stride_width=sw, dilation_height_factor=int(dh),
        dilation_width_factor=int(dw), padding_top=int(padding[0]), padding_left=int(padding[1]),
        depth_multiplier=int(depth_multiplier), input_offset=int(input_offset), output_offset=int(output_offset),
        activation_min=int(activation_min), activation_max=int(activation_max),
        weights=read_only(filters.reshape(kh * kw, channels).astype(np.int32)),
        tap_row=read_only(taps[0]), tap_phase=read_only(taps[1]), tap_start=read_only(taps[2]),
        bias=read_only(table[0] if wide else table[0].astype(np.int32)),
        multiplier=read_only(table[1].astype(np.int32)), left_shift=read_only(table[2]),
        left_shifts=bool(table[2].any()), rounding=read_only(table[3]), negative_rounding=read_only(table[4]),
        right_shift=read_only(table[5]), wide=wide, phases_shape=(rows, sw, columns, channels),
        phases_dtype=phases_dtype)


def plan_channels(channels: int, input_offset: int, output_offset: int, activation_min: int, activation_max: int,
                  bias, multiplier, shift) -> CompiledDepthwiseParams | None:
    """``plan``'s int8 per-channel requantization constants for ``channels`` output channels, as a
    1x1 depthwise layer's (what the fused int8 CONV_2D kernels requantize with, so no kernel can
    disagree on them), or None where ``plan`` refuses them or the activation range is not inside
    int8 (TFLM's int8 range always is)."""
    requant = plan("INT8", (1, 1, channels), (1, 1), (1, 1), (1, 1), (0, 0), 1, input_offset, output_offset,
                   activation_min, activation_max, np.zeros((1, 1, channels), np.int64), bias, multiplier, shift)
    if requant is None or requant.wide or not -128 <= requant.activation_min <= requant.activation_max <= 127:
        return None
    return requant


def depthwise_conv(p: CompiledDepthwiseParams, x: np.ndarray, output_hw, out_dtype) -> np.ndarray:
    """x (…, H, W, C) int8 or int16 (samples and the model's batch folded together) ->
    (N·B, OH, OW, C·dm) in ``out_dtype``."""
    h, w, c = x.shape[-3:]
    images = np.ascontiguousarray(x.reshape((-1, h, w, c)))
    oc = p.phases_shape[3]
    out = np.empty((images.shape[0], output_hw[0], output_hw[1], oc), out_dtype)
    acc = np.empty(output_hw[1] * oc, np.int64 if p.wide else np.int32)
    phases = np.empty(p.phases_shape, p.phases_dtype)
    chunk = oc * -(-CHUNK_VALUES // oc)
    _depthwise_kernel(images, chunk, p.weights, p.tap_row, p.tap_phase, p.tap_start, p.bias, p.multiplier,
                      p.left_shift, p.rounding, p.negative_rounding, p.right_shift, out, acc, phases, p.stride_height,
                      p.padding_top, p.padding_left, p.depth_multiplier, p.input_offset, p.output_offset,
                      p.activation_min, p.activation_max, p.left_shifts)
    return out


@lazy_njit
def _depthwise_kernel(x, chunk, weights, tap_row, tap_phase, tap_start, bias, multiplier, left_shift, rounding,
                      negative_rounding, right_shift, out, acc, phases, stride_h, pad_top, pad_left,
                      depth_multiplier, input_offset, output_offset, act_min, act_max, left_shifts):
    """Per sample: the padded image, input_offset added (pads 0, so taps outside the image add
    nothing, as TFLM skips them), split into the column stride's phases, channels repeated
    depth_multiplier times; then per output row: acc (OW·OC) starts at the bias and each tap adds
    one contiguous run of products (weights tiled to a chunk of whole pixels), and the row is
    requantized and stored."""
    batches, height, width, channels = x.shape
    _, out_height, out_width, out_channels = out.shape
    taps = weights.shape[0]
    # The per-channel arrays tiled to the chunk (index j holds channel j mod C·dm).
    weights_flat = np.empty((taps, chunk), np.int32)
    for t in range(taps):
        for j in range(chunk):
            weights_flat[t, j] = weights[t, j % out_channels]
    bias_tiled = np.empty(chunk, bias.dtype)
    multiplier_tiled = np.empty(chunk, np.int32)
    left_tiled, rounding_tiled = np.empty(chunk, np.int64), np.empty(chunk, np.int64)
    negative_tiled, right_tiled = np.empty(chunk, np.int64), np.empty(chunk, np.int64)
    for j in range(chunk):
        c = j % out_channels
        bias_tiled[j], multiplier_tiled[j], left_tiled[j] = bias[c], multiplier[c], left_shift[c]
        rounding_tiled[j], negative_tiled[j], right_tiled[j] = rounding[c], negative_rounding[c], right_shift[c]
    padded_height, stride_w, phase_width, _ = phases.shape
    row = out_width * out_channels
    flat = phases.reshape(padded_height, stride_w, phase_width * out_channels)
    for b in range(batches):
        for py in range(padded_height):
            in_y = py - pad_top
            for phase in range(stride_w):
                for q in range(phase_width):
                    in_x = q * stride_w + phase - pad_left
                    dst = phases[py, phase, q]
                    if 0 <= in_y < height and 0 <= in_x < width:
                        src = x[b, in_y, in_x]
                        if depth_multiplier == 1:
                            for ic in range(channels):
                                dst[ic] = src[ic] + input_offset
                        else:
                            for ic in range(channels):
                                v = src[ic] + input_offset
                                for m in range(depth_multiplier):
                                    dst[ic * depth_multiplier + m] = v
                    else:
                        for oc in range(out_channels):
                            dst[oc] = 0
        out_rows = out[b].reshape(out_height, row)
        for out_y in range(out_height):
            # (Inner loops index views by the loop variable alone: numba's negative-index handling
            # of a computed index would keep LLVM from vectorising them.)
            for j0 in range(0, row, chunk):
                acc_part = acc[j0:j0 + chunk]
                for j in range(acc_part.size):
                    acc_part[j] = bias_tiled[j]
            # The taps in TFLM's order (filter_y, filter_x), three per pass over the row: the
            # accumulator is read and written once per three taps.
            row_origin = out_y * stride_h
            for t in range(0, taps, 3):
                group = min(3, taps - t)
                start = tap_start[t]
                src_a = flat[row_origin + tap_row[t], tap_phase[t], start:start + row]
                w_a = weights_flat[t]
                if group == 3:
                    start_b, start_c = tap_start[t + 1], tap_start[t + 2]
                    src_b = flat[row_origin + tap_row[t + 1], tap_phase[t + 1], start_b:start_b + row]
                    src_c = flat[row_origin + tap_row[t + 2], tap_phase[t + 2], start_c:start_c + row]
                    w_b, w_c = weights_flat[t + 1], weights_flat[t + 2]
                    for j0 in range(0, row, chunk):
                        acc_part = acc[j0:j0 + chunk]
                        a_part, b_part, c_part = src_a[j0:j0 + chunk], src_b[j0:j0 + chunk], src_c[j0:j0 + chunk]
                        for j in range(acc_part.size):
                            acc_part[j] += w_a[j] * a_part[j] + w_b[j] * b_part[j] + w_c[j] * c_part[j]
                elif group == 2:
                    start_b = tap_start[t + 1]
                    src_b = flat[row_origin + tap_row[t + 1], tap_phase[t + 1], start_b:start_b + row]
                    w_b = weights_flat[t + 1]
                    for j0 in range(0, row, chunk):
                        acc_part = acc[j0:j0 + chunk]
                        a_part, b_part = src_a[j0:j0 + chunk], src_b[j0:j0 + chunk]
                        for j in range(acc_part.size):
                            acc_part[j] += w_a[j] * a_part[j] + w_b[j] * b_part[j]
                else:
                    for j0 in range(0, row, chunk):
                        acc_part = acc[j0:j0 + chunk]
                        a_part = src_a[j0:j0 + chunk]
                        for j in range(acc_part.size):
                            acc_part[j] += w_a[j] * a_part[j]
            dst = out_rows[out_y]
            for j0 in range(0, row, chunk):
                acc_part = acc[j0:j0 + chunk]
                dst_part = dst[j0:j0 + chunk]
                if left_shifts:
                    for j in range(acc_part.size):
                        acc_part[j] = np.int32(np.int64(acc_part[j]) << left_tiled[j])  # int32 x·2^left, wraps
                for j in range(acc_part.size):
                    # Both roundings in one shift (see the module docstring); the int8 path's
                    # negative rounding term is 0 in 16x8 (whose sums wrap modulo 2^64 as in C).
                    product = np.int64(acc_part[j]) * np.int64(multiplier_tiled[j])
                    negative = (product < -(1 << 30)) * negative_tiled[j]
                    scaled = (product + rounding_tiled[j] - negative) >> right_tiled[j]
                    dst_part[j] = min(max(np.int64(np.int32(scaled + output_offset)), act_min), act_max)
