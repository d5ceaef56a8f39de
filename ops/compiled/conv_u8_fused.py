"""Compiled int8 CONV_2D with the requantization fused, for wide layers whose output rows hold
16 pixels (or exactly 8): from the int8 input to the int8 output in one call, 16 output pixels of
a row in the lanes, one byte dot product (AVX512-VNNI vpdpbusd) per 16 pixels x 1 output channel x
4 input channels, requantized in the registers that accumulated them.

Why: ops/compiled/gemm_u8.py and ops/compiled/first_conv.py's pixel blocks put output channels in
the lanes and broadcast each pixel's four input bytes: with 8 pixels x 16 channels per block the
eight pixel addresses (plus the weights and loop state) do not fit the general registers inside
the compiled driver, and LLVM reloads them from the stack in the inner loop (two loads per vector
dot product). Here the lanes are pixels: per reduction step one 64-byte load of 16 pixels' input
quads, then 16 vpdpbusd whose weight operand is a broadcast from memory (``{1to16}``, folded into
the instruction): one base pointer, one weight pointer, 16 accumulators. The cost is a layout
change per image (below) and an in-register transpose of the int8 results.

Layout. Per image, the bytes u = x + 128 (the int8 bytes with the top bit flipped) go into a
padded buffer of dwords (four consecutive input channels each) in (Hp, C/4, row_width) order:
for each padded row and channel quad, the padded row's columns are consecutive, so the quads of
16 consecutive pixels are one vector (a transpose of 16 pixels' dwords in registers per call).
The border holds u(zero point) = zero_point + 128 in every byte (written once per call). One
reduction step per (ky, kx, channel quad) in TFLM's order; its dword offset from a group's first
pixel is (ky·dh·C/4 + q)·row_width + kx·dw (``plan``). With output rows of exactly 8 pixels the
16 lanes are two rows (two 32-byte loads per step). The last group of a row (of a pair of rows)
starts at OW - 16 (OH - 2): it writes some pixels again, with the same bytes.

Why it equals TFLM byte for byte (reference_integer_ops::ConvPerChannel). TFLM forms, per output,
``int32 acc = Σ filter·(input + input_offset)`` over the taps inside the image, then
``acc += bias``: int32 multiplications and additions, which wrap in C on the targets the oracle
runs on, i.e. arithmetic modulo 2^32. The accumulators here start at
``init = bias + (input_offset - 128)·Σ_taps w`` (exact in int64 at prepare, then modulo 2^32) and
vpdpbusd (not vpdpbusds, the saturating form) adds each exact product w·u of a byte u in 0..255
and an int8 w, four at a time (< 2^18), modulo 2^32. A tap outside the image reads
u = zero_point + 128 from the border (``plan`` refuses zero points -input_offset outside int8),
i.e. x + input_offset = 0 there, adding nothing, as TFLM skips it. So every accumulator is
    bias + (input_offset - 128)·Σw + Σ w·(x + 128) = bias + Σ w·(x + input_offset)   (mod 2^32),
TFLM's int32 for EVERY accumulator bound (addition and multiplication modulo 2^32 are associative
and commutative, as ops/compiled/depthwise.py argues; the tests drive biases near ±2^31 to pin
the wrapping case). Lanes repeated at a row's end recompute the same pixels.
Then MultiplyByQuantizedMultiplier, + output_offset wrapped to int32, the clamp and the int8
store: ops/compiled/lanes_ir.requantize_high with depthwise.plan's per-channel constants (called
for this layer's channels as a 1x1 depthwise layer's, as pointwise_small.plan and first_conv.plan
do). ``plan`` takes only layers whose right shifts are all >= 32 (e = max(-shift, 0) >= 1, the
multiplier below 1/2: every real layer's), the precondition under which lanes_ir's docstring
proves r equal to the high int32 words of the int64 sums shifted by s - 32, and sets lanes_ir's
MODE_SKIP_NEGATIVE / MODE_SATURATE where its proofs hold. No float anywhere, no fastmath.

Measured (each layer alone, one thread, CPU time, batch 128, median of 9, alternating in one
process with the paths it replaces, same bytes, a shared and loaded machine; ns per output,
gemm_u8 + Requantizer / first_conv's pixel blocks / this): pretrainedResnet 3x3 32x32x16->16
(ops 1, 2) 1.64-1.85 / 0.90-1.01 / 0.80-0.92 (1.9-2.2x over gemm_u8, 1.10-1.19x over first_conv);
3x3 16x16x32->32 (op 5) 2.25-2.52 / 1.53-1.60 / 1.47-1.59 (1.00-1.04x over first_conv); 3x3
8x8x64->64 (op 9, two rows per group) 3.48-3.84 / 3.06-3.14 / 2.75-2.94 (1.07-1.13x); the whole
model, run_batch(128) on one thread, CPU per sample 0.127 -> 0.117-0.124 ms (1.03-1.09x).
Of op 1's ~0.82: the products ~0.61 (2.25 vpdpbusd per output at
one per cycle), the per-image layout change ~0.06-0.08, the requantization, transpose and stores
~0.14-0.17. (Before the changes that made it so: the layout
change as a scalar loop 0.11-0.4, the requantization with per-lane constants hoisted out of the
mode switch 0.28 and LLVM's own byte transpose 0.24. A stride-2 variant, the even dwords of two
loads per step, lost to first_conv on 3x3/2 32x32x16->32: 1.06-1.14 against 0.93.)

vpdpbusd is x86-specific (gemm_u8's ``vpdpbusd``): AVX512-VNNI hosts only (``available()``); the
caller keeps its other paths elsewhere. Only eval imports numba / llvmlite; ``plan`` runs on numpy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import depthwise, gemm_u8, lazy_njit
from .depthwise import read_only
from .lanes_ir import mode as requantize_mode
from .lanes_ir import requantize_high, splat, tails

__all__ = ["FusedU8ConvPlan", "plan", "conv", "available"]

LANES = 16
# The per-image transposes of 16 (or 8) pixels' dwords exist for these C/4 (others: a scalar loop).
TRANSPOSED_QUADS = (2, 4, 8, 16)


@dataclass(frozen=True)
class FusedU8ConvPlan:
    """An int8 CONV_2D (groups 1, default numerics, stride_w 1): geometry, the weights per reduction
    step, and depthwise.py's requantization constants per output channel."""
    in_hwc: tuple  # (H, W, C), C a multiple of 4
    out_hw: tuple  # (OH, OW): OW >= 16, or OW = 8 and OH >= 2
    stride_h: int
    padding: tuple  # (top, left), >= 0
    padded_h: int  # Hp: every row an output reaches, and the whole image
    row_width: int  # dwords per (padded row, channel quad): every column an output reaches, and W + left
    pad_byte: int  # u of the zero point, zero_point + 128 (0..255)
    split: bool  # OW = 8: two output rows per group of 16 lanes
    step_offsets: np.ndarray  # (S,) int64: each step's dword offset from a group's first pixel
    weights: np.ndarray  # flat (S·OC) int32: step s, channel o: the four int8 weights of its quad
    channels: int  # OC, a multiple of 16
    # (3, OC) int32: the accumulators' start, bias + (input_offset - 128)·Σw modulo 2^32, the
    # right shift - 32 (0..30) and the multiplier; (4, OC) int64: multiplier, rounding, negative rounding, right shift
    # (32..62), depthwise.py's (each row in the form the block loads it, broadcast from memory).
    consts32: np.ndarray
    consts64: np.ndarray
    output_offset: int
    activation_min: int
    activation_max: int
    mode: int  # lanes_ir.MODE_SKIP_NEGATIVE | lanes_ir.MODE_SATURATE where they hold


def plan(in_hwc, out_hw, kernel_hw, stride, dilation, padding, input_offset: int, output_offset: int,
         activation_min: int, activation_max: int, weights: np.ndarray, bias, multiplier,
         shift) -> FusedU8ConvPlan | None:
    """The plan, or None where the kernel does not apply: C not a multiple of 4, OC not a multiple
    of 16, output rows of neither >= 16 nor exactly 8 pixels (or a single row of 8), stride_w != 1,
    non-positive strides or dilations, negative padding, a padded image far larger than input and
    output, a zero point (-input_offset) or weight outside int8, a right shift below 32 in some
    channel, and what depthwise.plan refuses for the requantization (offsets outside int32,
    negative multipliers, shifts below -31). ``weights`` (KH·KW·C, OC) integers in TFLM's order
    (ky, kx, c); the input must be int8. Imports no numba."""
    (h, w, c), (oh, ow), (kh, kw) = in_hwc, out_hw, kernel_hw
    (sh, sw), (dh, dw), (pt, pl) = stride, dilation, padding
    if min(sh, sw, dh, dw) < 1 or min(pt, pl) < 0 or min(oh, ow, h, w, c, kh, kw) < 1 or sw != 1:
        return None
    split = ow == 8 and oh >= 2
    if c % 4 or not (ow >= LANES or split):
        return None
    if not -128 <= -int(input_offset) <= 127:
        return None
    filters = np.asarray(weights, np.int64)
    if filters.ndim != 2 or filters.shape[0] != kh * kw * c or filters.shape[1] % LANES or filters.shape[1] < 1:
        return None
    if int(filters.min()) < -128 or int(filters.max()) > 127:
        return None
    hp = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + pl, ow + (kw - 1) * dw)
    if hp * wp * c > 4 * (h * w * c + oh * ow * kh * kw * c) + 4096:
        return None  # strides or dilations reaching far past the image: a huge padded buffer
    channels = filters.shape[1]
    requant = depthwise.plan_channels(channels, input_offset, output_offset, activation_min, activation_max, bias,
                                      multiplier, shift)
    if requant is None:
        return None
    consts64 = np.stack([np.asarray(v, np.int64) for v in (requant.multiplier, requant.rounding,
                                                             requant.negative_rounding, requant.right_shift)])
    # A channel whose multiplier is 0 (a zero scale) has p = 0 and r = rounding >> right_shift = 0
    # whatever its shift (rounding = 2^30 + [e > 0]·2^(30+e) < 2^(31+e)); so do 0 >> 32 with zero
    # rounding terms, which lanes_ir.requantize_high can take.
    dead = consts64[0] == 0
    consts64[1:, dead] = 0
    consts64[3, dead] = 32
    if int(consts64[3].min()) < 32:
        return None  # e = 0 somewhere: lanes_ir.requantize_high needs right shifts >= 32
    assert int(np.max(np.asarray(requant.left_shift)[~dead], initial=0)) == 0 and int(consts64[3].max()) <= 62
    # The accumulators start at bias + (input_offset - 128)·Σw modulo 2^32 (the docstring).
    start = gemm_u8.u8_start(requant.bias, input_offset, filters.sum(axis=0))
    # lanes_ir's shortcuts, where they change no byte (its docstring).
    offset = int(requant.output_offset)
    mode = requantize_mode(requant.activation_min, requant.activation_max, offset)
    quads = c // 4
    offsets = np.array([(ky * dh * quads + q) * wp + kx * dw for ky in range(kh) for kx in range(kw)
                        for q in range(quads)], np.int64)
    packed = np.ascontiguousarray(filters.reshape(kh * kw * quads, 4, channels).transpose(0, 2, 1)).astype(np.int8)
    return FusedU8ConvPlan(
        (int(h), int(w), int(c)), (int(oh), int(ow)), int(sh), (int(pt), int(pl)), int(hp), int(wp),
        -int(input_offset) + 128, bool(split), read_only(offsets), read_only(packed.view(np.int32).reshape(-1)),
        channels, read_only(np.stack([start, consts64[3] - 32, consts64[0]]).astype(np.int32)), read_only(consts64),
        offset, requant.activation_min,
        requant.activation_max, mode)


def available() -> bool:
    """gemm_u8's intrinsic is there: numba targets the host and the host has AVX512-VNNI (imports
    numba: eval time only)."""
    return gemm_u8.available()


# --- the intrinsics -----------------------------------------------------------------------------

_built = False
_build_lock = threading.Lock()
_row = _row_split = None
_t16_2 = _t16_4 = _t16_8 = _t16_16 = _t8_2 = _t8_4 = _t8_8 = _t8_16 = None


def _intrinsics():
    """Build the register blocks and transposes (imports numba: eval time only)."""
    global _built, _row, _row_split, _t16_2, _t16_4, _t16_8, _t16_16, _t8_2, _t8_4, _t8_8, _t8_16
    if _built:
        return
    with _build_lock:
        if not _built:
            _row, _row_split = _make_row_block(False), _make_row_block(True)
            _t16_2, _t16_4, _t16_8, _t16_16 = [_make_transpose(q, LANES) for q in TRANSPOSED_QUADS]
            _t8_2, _t8_4, _t8_8, _t8_16 = [_make_transpose(q, LANES // 2) for q in TRANSPOSED_QUADS]
            _built = True


def _make_transpose(quads: int, pixels: int):
    """An intrinsic ``transpose(source, start, image, target, row_width)``: for i < pixels and
    q < quads, image[target + q·row_width + i] = source[start + i·quads + q] ^ 0x80808080 (the
    four bytes u = x + 128 of channels 4q..4q+3 of pixel i). source, image: flat uint32; pixels·quads
    a multiple of 16."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i32, i64 = ir.IntType(32), ir.IntType(64)
    vec32 = ir.VectorType(i32, LANES)
    row_type = ir.VectorType(i32, pixels)

    def transpose(typingctx, source, start, image, target, row_width):
        if not (isinstance(source, types.Array) and isinstance(image, types.Array)
                and source.dtype == image.dtype == types.uint32
                and all(isinstance(v, types.Integer) for v in (start, target, row_width))):
            return None
        sig = types.void(source, start, image, target, row_width)

        def codegen(context, builder, signature, args):
            source_a = context.make_array(signature.args[0])(context, builder, args[0])
            image_a = context.make_array(signature.args[2])(context, builder, args[2])
            start_v, target_v, width_v = (context.cast(builder, args[k], signature.args[k], types.int64)
                                          for k in (1, 3, 4))
            words = builder.gep(builder.bitcast(source_a.data, i32.as_pointer()), [start_v])
            flip = ir.Constant(vec32, [0x80808080 - (1 << 32)] * LANES)
            loaded = [builder.xor(builder.load(builder.bitcast(builder.gep(words, [ir.Constant(i64, LANES * k)]),
                                                               vec32.as_pointer()), align=4), flip)
                      for k in range(pixels * quads // LANES)]
            while len(loaded) > 1:  # concatenated: element i·quads + q is pixel i's quad q
                size = loaded[0].type.count
                loaded = [builder.shuffle_vector(loaded[k], loaded[k + 1], ir.Constant(
                    ir.VectorType(i32, 2 * size), list(range(2 * size)))) for k in range(0, len(loaded), 2)]
            joined = loaded[0]
            into = builder.gep(builder.bitcast(image_a.data, i32.as_pointer()), [target_v])
            for q in range(quads):
                value = builder.shuffle_vector(joined, joined, ir.Constant(
                    row_type, [i * quads + q for i in range(pixels)]))
                address = builder.gep(into, [builder.mul(width_v, ir.Constant(i64, q))])
                builder.store(value, builder.bitcast(address, row_type.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    transpose.__name__ = f"transpose_u8_fused_{pixels}x{quads}"
    return intrinsic(transpose)


def _make_row_block(split: bool):
    """An intrinsic ``block(image, base, second, offsets, weights, consts32, consts64, out, target,
    column, stride, output_offset, act_min, act_max, mode)`` for 16 output pixels (lane i: pixel i;
    consecutive columns of one output row, or with ``split`` 8 of one row and 8 of the next, which
    start ``second`` dwords further in the image) x 16 output channels column + c (c < 16, one
    vector each):
        acc_c[i] = consts32[column + c] + Σ_s Σ_{b<4} byte b of image[base + offsets[s] + d(i)]
                                                   · byte b of weights[s·OCp + column + c]   (int32, mod 2^32)
    with d(i) = i, or (split) i for i < 8 and second + i - 8 for i >= 8; then requantized with the
    constants of channel column + c (``lanes_ir.requantize_high``; consts64 rows multiplier, rounding,
    negative rounding, right shift) and stored as int8 at out[target + i·stride + column + c].
    image: flat uint32 (four u bytes each); weights: flat int32 (four int8 each); consts32: flat
    (3·OCp) int32 (starts, right shifts - 32, multipliers); consts64: flat (4·OCp) int64; offsets: (S,) int64,
    S >= 1; ``mode``: FusedU8ConvPlan.mode."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    vec32 = ir.VectorType(i32, LANES)
    channels = LANES

    def block(typingctx, image, base, second, offsets, weights, consts32, consts64, out, target, column, stride,
              output_offset, act_min, act_max, mode):
        arrays = (image, offsets, weights, consts32, consts64, out)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        scalars = (base, second, target, column, stride, output_offset, act_min, act_max, mode)
        if not (image.dtype == types.uint32 and weights.dtype == types.int32 and out.dtype == types.int8
                and consts32.dtype == types.int32 and consts64.dtype == types.int64
                and offsets.dtype == types.int64 and all(isinstance(v, types.Integer) for v in scalars)):
            return None
        sig = types.void(image, base, second, offsets, weights, consts32, consts64, out, target, column, stride,
                         output_offset, act_min, act_max, mode)

        def codegen(context, builder, signature, args):
            made = gemm_u8.array_arguments(context, builder, signature, args)
            image_a, offsets_a, weights_a, c32_a, c64_a, out_a = (made[k] for k in (0, 3, 4, 5, 6, 7))
            dot, operand = gemm_u8.vpdpbusd(builder)

            def scalar(k, kind):
                return context.cast(builder, args[k], signature.args[k], kind)

            base_v, second_v, target_v, column_v, stride_v = (scalar(k, types.int64) for k in (1, 2, 8, 9, 10))
            offset_v, low_v, high_v = scalar(11, types.int32), scalar(12, types.int32), scalar(13, types.int32)
            mode_v = scalar(14, types.int64)
            steps = builder.extract_value(offsets_a.shape, 0)
            lanes = builder.sdiv(builder.extract_value(c64_a.shape, 0), ir.Constant(i64, 4))  # OCp
            image_words = builder.gep(builder.bitcast(image_a.data, i32.as_pointer()), [base_v])
            weight_words = builder.gep(builder.bitcast(weights_a.data, i32.as_pointer()), [column_v])
            c32 = builder.gep(builder.bitcast(c32_a.data, i32.as_pointer()), [column_v])
            c64 = builder.gep(builder.bitcast(c64_a.data, i64.as_pointer()), [column_v])
            starts = [splat(builder, builder.load(builder.gep(c32, [ir.Constant(i64, c)])), LANES)
                      for c in range(channels)]
            entry = builder.block
            loop = builder.append_basic_block("row.step")
            done = builder.append_basic_block("row.done")
            builder.branch(loop)

            builder.position_at_end(loop)
            step = builder.phi(i64)
            step.add_incoming(ir.Constant(i64, 0), entry)
            sums = []
            for c in range(channels):
                phi = builder.phi(vec32)
                phi.add_incoming(starts[c], entry)
                sums.append(phi)
            offset = builder.load(builder.gep(offsets_a.data, [step]))
            start = builder.gep(image_words, [offset])
            if split:  # two runs of 8 pixels
                half = ir.VectorType(i32, LANES // 2)
                first = builder.load(builder.bitcast(start, half.as_pointer()), align=4)
                other = builder.load(builder.bitcast(builder.gep(start, [second_v]), half.as_pointer()), align=4)
                u = builder.shuffle_vector(first, other, ir.Constant(vec32, list(range(LANES))))
            else:
                u = builder.load(builder.bitcast(start, vec32.as_pointer()), align=4)
            x = builder.bitcast(u, operand) if operand != vec32 else u
            row = builder.gep(weight_words, [builder.mul(step, lanes)])
            updated = []
            for c in range(channels):
                word = builder.load(builder.gep(row, [ir.Constant(i64, c)]), align=4)
                w = splat(builder, word, LANES)
                w = builder.bitcast(w, operand) if operand != vec32 else w
                updated.append(builder.call(dot, [sums[c], x, w]))
            step_next = builder.add(step, ir.Constant(i64, 1))
            step.add_incoming(step_next, loop)
            for phi, value in zip(sums, updated):
                phi.add_incoming(value, loop)
            builder.cbranch(builder.icmp_signed("<", step_next, steps), loop, done)

            builder.position_at_end(done)
            offset, low, high = (splat(builder, value, LANES) for value in (offset_v, low_v, high_v))
            c64_rows = [builder.gep(c64, [builder.mul(lanes, ir.Constant(i64, k))]) for k in range(4)]

            def channel_constants(c):
                """Channel c's multiplier, rounding and negative rounding (<8 x i64>) and right shift
                - 32 (<16 x i32>), loaded where the requantization uses them (hoisted, 64 vectors
                would spill)."""
                values = [builder.load(builder.gep(row, [ir.Constant(i64, c)])) for row in c64_rows[1:3]]
                right, multiplier = (builder.load(builder.gep(c32, [builder.add(builder.mul(lanes, ir.Constant(
                    i64, k)), ir.Constant(i64, c))])) for k in (1, 2))
                # The multiplier in both halves of each int64 lane: lanes_ir.requantize_high reads the low one.
                multiplier = builder.bitcast(splat(builder, multiplier, LANES), ir.VectorType(i64, LANES // 2))
                return [multiplier] + [splat(builder, v, LANES // 2) for v in values] + [splat(builder, right, LANES)]
            out_data = builder.gep(builder.bitcast(out_a.data, i8.as_pointer()), [builder.add(target_v, column_v)])
            piece = ir.VectorType(i8, channels)

            def emit(skip_negative, saturate):
                results = []
                for c in range(channels):
                    multiplier, rounding, negative, right = channel_constants(c)
                    results.append(requantize_high(builder, updated[c], multiplier, rounding, negative, right, offset,
                                                    low, high, skip_negative, saturate))
                # In-register transpose to pixel-major bytes: quarters[k] byte 16m + i = channel 4k + m of
                # pixel i; pixels[j] byte 16p + c = channel c of pixel 4j + p, taken from quarters[c // 4]
                # byte 16(c % 4) + 4j + p: channels 0..7 from quarters 0, 1 and 8..15 from 2, 3 (one
                # two-source byte permutation each), then a constant blend.
                quarters = []
                for k in range(4):
                    pair = [builder.shuffle_vector(results[4 * k + 2 * h], results[4 * k + 2 * h + 1], ir.Constant(
                        ir.VectorType(i32, 2 * LANES), list(range(2 * LANES)))) for h in range(2)]
                    quarters.append(builder.shuffle_vector(pair[0], pair[1], ir.Constant(
                        ir.VectorType(i32, 4 * LANES), list(range(4 * LANES)))))
                wide = ir.VectorType(i8, 4 * LANES)
                high_channels = ir.Constant(ir.VectorType(ir.IntType(1), 4 * LANES),
                                            [byte % LANES >= 8 for byte in range(4 * LANES)])
                pixels = []
                for j in range(4):
                    halves = []
                    for h in range(2):
                        index = [(c // 4 - 2 * h) * 4 * LANES + 16 * (c % 4) + 4 * j + byte // LANES
                                 for byte in range(4 * LANES) for c in [byte % LANES]]
                        index = [v if 0 <= v < 8 * LANES else 0 for v in index]
                        halves.append(builder.shuffle_vector(quarters[2 * h], quarters[2 * h + 1], ir.Constant(
                            ir.VectorType(i32, 4 * LANES), index)))
                    pixels.append(builder.select(high_channels, halves[1], halves[0]))
                dense = builder.block
                packed = builder.append_basic_block("row.dense")
                spread = builder.append_basic_block("row.spread")
                stored = builder.append_basic_block("row.stored")
                builder.cbranch(builder.icmp_signed("==", stride_v, ir.Constant(i64, channels)), packed, spread)
                del dense
                builder.position_at_end(packed)  # OC = 16: the 256 bytes are consecutive
                for j in range(4):
                    address = builder.gep(out_data, [ir.Constant(i64, 4 * LANES * j)])
                    builder.store(pixels[j], builder.bitcast(address, wide.as_pointer()), align=1)
                builder.branch(stored)
                builder.position_at_end(spread)  # each pixel's 16 bytes at its own row
                for i in range(LANES):
                    piece_value = builder.shuffle_vector(pixels[i // 4], pixels[i // 4], ir.Constant(
                        ir.VectorType(i32, channels), [16 * (i % 4) + c for c in range(channels)]))
                    address = builder.gep(out_data, [builder.mul(stride_v, ir.Constant(i64, i))])
                    builder.store(piece_value, builder.bitcast(address, piece.as_pointer()), align=1)
                builder.branch(stored)
                builder.position_at_end(stored)

            tails(builder, mode_v, emit)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"block_u8_fused_row{'_split' if split else ''}"
    return intrinsic(block)


# --- the kernel ---------------------------------------------------------------------------------

@lazy_njit
def _row_kernel(x, height, width, quads, oh, ow, sh, pt, pl, row_width, image, pad_word, offsets, weights,
                consts32, consts64, output_offset, act_min, act_max, mode, out, channels, split):
    """Per image: its dwords (u = x + 128, four channels each) into ``image`` in the row layout
    (its border holds pad_word, written once); per output row (pair of rows when ``split``),
    groups of 16 output pixels (the last group starts at OW - 16, the last pair at OH - 2: it may
    write some pixels again, with the same bytes), one row block per 16 output channels, straight
    into ``out`` (flat, (image, oy, ox, OC))."""
    n_images = x.shape[0]
    flip = np.uint32(0x80808080)
    for j in range(image.size):
        image[j] = pad_word
    plane = quads * row_width  # dwords per padded image row
    pixels = 16 if width >= 16 else 8 if width >= 8 else 0
    fast = pixels > 0 and (quads == 2 or quads == 4 or quads == 8 or quads == 16)
    for b in range(n_images):
        source = x[b]
        for y in range(height):
            if fast:  # `pixels` pixels at a time (the last group starts at W - pixels: the same words again)
                for group in range(0, width, pixels):
                    xx = min(group, width - pixels)
                    start = (y * width + xx) * quads
                    target = (y + pt) * plane + pl + xx
                    if pixels == 16:
                        if quads == 2:
                            _t16_2(source, start, image, target, row_width)
                        elif quads == 4:
                            _t16_4(source, start, image, target, row_width)
                        elif quads == 8:
                            _t16_8(source, start, image, target, row_width)
                        else:
                            _t16_16(source, start, image, target, row_width)
                    else:
                        if quads == 2:
                            _t8_2(source, start, image, target, row_width)
                        elif quads == 4:
                            _t8_4(source, start, image, target, row_width)
                        elif quads == 8:
                            _t8_8(source, start, image, target, row_width)
                        else:
                            _t8_16(source, start, image, target, row_width)
                continue
            row = image[(y + pt) * plane:(y + pt + 1) * plane]
            words = source[y * width * quads:(y + 1) * width * quads]
            for q in range(quads):
                into = row[q * row_width + pl:q * row_width + pl + width]
                for xx in range(width):
                    into[xx] = words[xx * quads + q] ^ flip  # four bytes x + 128
        if split:  # pairs of output rows of 8 pixels
            second = sh * plane  # the next output row's first pixel
            for pair in range(0, oh, 2):
                oy = min(pair, oh - 2)
                base = oy * sh * plane
                target = (b * oh + oy) * 8 * channels
                for column in range(0, channels, 16):
                    _row_split(image, base, second, offsets, weights, consts32, consts64, out, target, column,
                               channels, output_offset, act_min, act_max, mode)
            continue
        for oy in range(oh):
            for group in range(0, ow, 16):
                ox = min(group, ow - 16)
                base = oy * sh * plane + ox
                target = ((b * oh + oy) * ow + ox) * channels
                for column in range(0, channels, 16):
                    _row(image, base, 0, offsets, weights, consts32, consts64, out, target, column, channels,
                         output_offset, act_min, act_max, mode)


def conv(p: FusedU8ConvPlan, x: np.ndarray, out_dtype=np.int8) -> np.ndarray:
    """x (…, H, W, C) int8 (samples and the model's batch folded together) -> (N·B, OH, OW, OC)
    int8. Callers check ``available()`` first."""
    _intrinsics()
    h, w, c = p.in_hwc
    images = np.ascontiguousarray(x.reshape((-1, h * w * c))).view(np.uint32)  # four bytes per dword
    (oh, ow), (pt, pl) = p.out_hw, p.padding
    out = np.empty(images.shape[0] * oh * ow * p.channels, out_dtype)
    quads = c // 4
    image = np.empty(p.padded_h * quads * p.row_width, np.uint32)
    _row_kernel(images, h, w, quads, oh, ow, p.stride_h, pt, pl, p.row_width, image,
                np.uint32(p.pad_byte * 0x01010101), p.step_offsets, p.weights, p.consts32.reshape(-1),
                p.consts64.reshape(-1), p.output_offset, p.activation_min, p.activation_max, p.mode, out, p.channels,
                p.split)
    return out.reshape((images.shape[0], oh, ow, p.channels))
