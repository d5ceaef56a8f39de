"""Compiled int8 DEPTHWISE_CONV_2D on AVX512-VNNI byte dot products: four taps x 16 channels per
``vpdpbusd``, the 16 int32 accumulators of a channel block kept in a register across all taps and
requantized there (ops/compiled/depthwise.py's exact int64 form, in the same LLVM IR), one pass
from the int8 input to the int8 output.

Layout. Taps are grouped in quads of four, and a quad image Q is built once per image: 64 bytes
per (quad position, 16 channels) whose byte 4i + k is u = x + 128 of channel i at the quad's tap
k, four 16-byte runs interleaved in registers (one vpermt2b) and stored, 64-byte aligned. Then for
output pixel (oy, ox) and 16 channels, each of its quads is one 64-byte load from Q, multiplied by
the packed weights (quads, OCp, 4) int8 in one vpdpbusd: a tap run is shuffled once per quad
position, not once per output pixel and filter row that reads it. Two kinds of quads:

* Row quads (stride 1, and every stride other than 2x2 with dilation 1): a filter row's taps
  kx = 4j .. 4j + 3 form quad j (J = ceil(KW / 4) per row; slots past KW have zero weights and
  read the quad's first tap's column, so more positions lie wholly inside the image). Q row py
  (a padded row: (OH - 1)·sh + (KH - 1)·dh + 1 of them) holds entry (ox, j), columns
  ox·sw + (4j + k)·dw; pixel (oy, ox) reads rows oy·sh + ky·dh. About one build per output pixel
  at stride 1, but two at stride 2 (every padded row is built, and each serves one output row
  or two).
* 2x2 quads (stride 2x2, dilation 1): Q row R, entry C holds padded rows 2R, 2R + 1 x columns
  2C, 2C + 1 (k = 2dy + dx), and pixel (oy, ox) reads entries (oy + a, ox + b) for
  a < ceil(KH / 2), b < ceil(KW / 2) with weights w[2a + dy, 2b + dx] (0 past the kernel): about
  one build per output pixel, for four dot products instead of three on a 3x3 kernel (measured
  1.05-1.32x on vww_96's stride-2 layers).

A tap outside the image reads the pad vector, the int8 zero point in every channel, whose u is
zero point + 128 (positions whose four taps are all inside the image skip that choice; builds of
16, 32 or 64 channels have no loop over channel blocks). Register blocks of R output pixels x 16
channels (R = 4, or 3 where that idles >10% fewer slots, as on 3x3 images) run over the image's
pixels in (oy, ox) order across row ends (kws's 5-pixel rows waste no slot but the image's last
block's, which repeats the last pixel, storing the same bytes again). With the usual ReLU-type
requantization (``mode`` bit 0 below) a 3x3 kernel's 3 or 4 quads are unrolled, their weights
loaded once per 16 channels. The accumulators are requantized
in registers and stored as int8: no int32 accumulator is stored or reloaded. Depth multipliers
and channel counts that are not a multiple of 16 first get an int8 copy of the input with each
channel repeated dm times and the zero point in the extra channels (they have zero weights); the
outputs of the extra channels are dropped. The kernel takes its constants as three flat tables
(one per element type; each array argument costs a numba call ~0.2 µs) and allocates its output
and Q itself: ~6 µs per call where twenty-two arguments and Python-side buffers cost ~15.

Why it equals TFLM byte for byte. TFLM forms, per output, ``int32 acc = bias + Σ w·(x + input_offset)``
over the taps inside the image, in int32 arithmetic that wraps (modulo 2^32, as the oracle's x86
does). With u = x + 128 (0..255, the int8 byte with its top bit flipped) and off = input_offset:

    Σ w·(x + off) = Σ w·u + (off - 128)·Σ w        (Σ over all KH·KW taps)

provided a tap outside the image holds the u whose x + off is 0, u = 128 - off = zero point + 128
(the pad vector's bytes, flipped like every other byte): then its w·u + (off - 128)·w is 0, as
TFLM skipping the tap adds nothing. ``plan`` refuses a zero point outside -128..127 (a malformed
model's), whose u would not be a byte. The zero-weight slots of a last quad and of the extra
channels add 0 whatever their bytes. The accumulator starts at the per-channel constant
``init = bias + (off - 128)·Σw`` taken modulo 2^32. vpdpbusd (NOT vpdpbusds, the saturating form,
and no vpmaddubsw, which saturates to int16) forms each product u·w exactly (|u·w| <= 255·128),
adds four of them exactly (< 2^17 in magnitude) and adds that to the int32 lane modulo 2^32.
So every accumulator is congruent modulo 2^32 to TFLM's int32 value, i.e. equal to it as an int32,
for EVERY accumulator bound: no bound needs checking, and biases near ±2^31 wrap as C's do.

The requantization is ops/compiled/lanes_ir.requantize (depthwise.py's exact int64 form on the
even and the odd lanes, vpmuldq) with depthwise.plan's per-channel constants; lanes_ir's docstring
proves each IR step and the two shortcuts ``plan`` chooses (``mode``: bit 0 MODE_SKIP_NEGATIVE,
bit 1 MODE_SATURATE), each forced by the tests. No float operation anywhere.

Measured (one thread, CPU time, batch 64 for vww_96, 128 for person_detect and kws, 8 for
MobileNetV2; ns per output, the previous kernel -> this one, same process, alternating rounds,
medians of 21): vww_96 / person_detect 48x48x16 s2 0.76 -> 0.34-0.36, 24x24x32 s1 0.59 -> 0.27,
s2 0.76-0.83 -> 0.34-0.35, 12x12x64 s1 0.59-0.60 -> 0.26, s2 0.84-0.87 -> 0.34, 6x6x128 s1 0.66 ->
0.30, s2 0.87-0.95 -> 0.41-0.42, 3x3x256 0.69-0.73 -> 0.33-0.34 (2.1-2.6x); kws 25x5x64 0.79 ->
0.28 (2.9x); MobileNetV2's 17 layers 0.59-0.80 -> 0.29-0.44 (1.8-2.3x). Whole models (run_batch,
one thread, CPU per sample): vww_96 0.169 -> 0.124 ms, person_detect 0.130 -> 0.103, kws 0.057 ->
0.036. Tried and not kept: a ring of KH quad rows kept in L1 instead of the whole image's
(0.84-1.01x: the per-row calls cost more than the cache misses), 16-channel quads built from one
64-byte run (1.04x, noise), register blocks of 5, 6 or 8 pixels (no difference), and quads of the
3x3 taps flattened (ky, kx) (not built: 9 taps need 3 quads either way, and such quads are not
shared between neighbouring pixels, so ~3 builds per pixel instead of ~1).

The LLVM intrinsic is x86-only (gemm_u8.vpdpbusd): ``available()`` is gemm_u8's host check
(numba targets the host, which has AVX512-VNNI and AVX512-BW); else the caller keeps
ops/compiled/depthwise.py. Only eval imports numba / llvmlite; ``plan`` runs on numpy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import depthwise, gemm_u8, lanes_ir, lazy_njit

__all__ = ["VnniDepthwisePlan", "plan", "depthwise_conv", "available"]

LANES = 16
# Output pixels per register block: 4, or 3 where that leaves >10% fewer slots idle (an image of
# 3x3 pixels: 9 slots, not 12; measured 1.14x on those layers; 5 for kws's 125 made no difference).
BLOCK_ROWS = (4, 3)
# Stride-2 layers (dilation 1) use quads of 2x2 taps (plan's ``patches``); tests turn it off to pin
# the row quads on them too.
PATCHES = True  # output pixels per register block: the variants compiled (ties prefer the first)
# The int64 table's header (VnniDepthwisePlan.wide).
(_H_COLUMNS, _H_QUADS, _H_PIXELS, _H_CHANNELS, _H_INTERIOR_LO, _H_INTERIOR_HI, _H_PAD_TOP, _H_OUTPUT_OFFSET,
 _H_ACT_MIN, _H_ACT_MAX, _H_MODE, _H_QUAD_ROWS, _H_ROW_BYTES, _H_OUT_HEIGHT, _H_OUT_WIDTH, _H_BLOCK_ROWS,
 _H_ROW_STEP, _H_SECOND_ROW) = range(18)
_HEADER = 18


def available() -> bool:
    """The host runs vpdpbusd and numba compiles for it (imports numba: eval time only)."""
    return gemm_u8.available()


@dataclass(frozen=True)
class VnniDepthwisePlan(depthwise.DepthwiseLayer):
    """The VNNI kernel's layout and its requantization constants (``requant``'s, padded)."""
    quads_per_row: int  # J = ceil(KW / 4)
    patches: bool  # quads of 2x2 taps (stride 2), else of 4 taps of a filter row
    quad_rows: int  # rows of Q: (OH - 1)·sh + (KH - 1)·dh + 1 padded rows (patches: OH + ceil(KH / 2) - 1 pairs)
    pad_byte: int  # u of a tap outside the image: zero point + 128 (0..255)
    mode: int  # conv_column's: 1 = the clamp absorbs the negative rounding, 2 = bounds -128, 127
    rows_per_block: int  # R, output pixels per register block (one of BLOCK_ROWS)
    # The kernel's tables (read-only), one per element type:
    # int64: _HEADER values (_H_* below), then columns (OW·J·4: input column of tap k of quad j at
    #   output column ox, times OCp; -1 outside the image), quad offsets (KH·J: quad (ky, j)'s byte
    #   in Q relative to its output pixel's), pixel offsets (OH·OW: output pixel (oy, ox)'s first
    #   byte in Q), rounding, negative rounding, right shift (OCp each, 31..62, in conv_column's
    #   lane order: per 16 channels the even ones, then the odd ones);
    # int32: init (bias + (input_offset - 128)·Σw modulo 2^32, 0 in the padding), multiplier,
    #   left shift (0..31), OCp each;
    # int8: pad (OCp: the zero point, what a tap outside the image reads before the flip), then the
    #   packed weights (KH·J, OCp, 4), zeros past KW and OC.
    wide: np.ndarray
    words: np.ndarray
    bytes: np.ndarray
    channels: int  # OC = C·dm
    padded_channels: int  # OCp, a multiple of 16

    @property
    def init(self) -> np.ndarray:
        """(OCp,) int32: each channel's accumulator start, bias + (input_offset - 128)·Σw modulo 2^32."""
        return self.words[:self.padded_channels]


def plan(in_hwc, out_hw, stride, dilation, padding, depth_multiplier: int, input_offset: int,
         output_offset: int, activation_min: int, activation_max: int, weights: np.ndarray, bias, multiplier,
         shift) -> VnniDepthwisePlan | None:
    """The plan for an int8 depthwise convolution, or None where it does not apply (the int8
    refusals of depthwise.plan, a zero point outside int8, a filter value outside int8).
    ``weights`` (KH, KW, C·dm); ``bias`` (C·dm,) or None. numpy only: runs at prepare."""
    requant = depthwise.plan("INT8", in_hwc, out_hw, stride, dilation, padding, depth_multiplier, input_offset,
                             output_offset, activation_min, activation_max, weights, bias, multiplier, shift)
    if requant is None:
        return None
    if not -128 <= -int(input_offset) <= 127:
        return None  # the padded taps' u = zero point + 128 would not be a byte
    w = np.asarray(weights, np.int64)
    kh, kw, channels = w.shape
    if channels == 0 or int(w.min()) < -128 or int(w.max()) > 127:
        return None
    (h, width, _), (oh, ow), (sh, sw), (dh, dw) = in_hwc, out_hw, stride, dilation
    top, left = int(padding[0]), int(padding[1])
    quads = -(-kw // 4)
    padded = -(-channels // LANES) * LANES
    entry = padded * 4  # bytes of Q per quad
    patches = PATCHES and sh == sw == 2 and dh == dw == 1
    if patches:
        # Quads of 2x2 taps: Q row R, entry C holds padded rows 2R, 2R + 1 x columns 2C, 2C + 1
        # (byte 4i + 2dy + dx), and output pixel (oy, ox) reads entries (oy + a, ox + b).
        ph, pw = -(-kh // 2), -(-kw // 2)
        rows, entries, row_step, second = oh + ph - 1, ow + pw - 1, 2, 1
        row_bytes = entries * entry
        packed = np.zeros((2 * ph, 2 * pw, padded), np.int8)
        packed[:kh, :kw, :channels] = w
        packed = packed.reshape(ph, 2, pw, 2, padded).transpose(0, 2, 4, 1, 3).reshape(-1)
        cols = np.array([2 * c + k % 2 - left for c in range(entries) for k in range(4)], np.int64)
        quad_offsets = np.array([a * row_bytes + b * entry for a in range(ph) for b in range(pw)], np.int64)
        pixel_offsets = (np.arange(oh, dtype=np.int64)[:, None] * row_bytes
                         + np.arange(ow, dtype=np.int64)[None, :] * entry).reshape(-1)
    else:
        # Quads of 4 taps of a filter row: Q row py (padded row py), entry ox·J + j holds columns
        # ox·sw + (4j + k)·dw (byte 4i + k); output pixel (oy, ox) reads rows oy·sh + ky·dh.
        rows, entries, row_step, second = (oh - 1) * sh + (kh - 1) * dh + 1, ow * quads, 1, 0
        row_bytes = entries * entry
        packed = np.zeros((kh, quads * 4, padded), np.int8)
        packed[:, :kw, :channels] = w
        packed = packed.reshape(kh, quads, 4, padded).transpose(0, 1, 3, 2).reshape(-1)
        # A zero-weight slot (4j + k >= KW) reads its quad's first tap's column: any byte adds 0
        # there, and an in-image one leaves more entries wholly inside the image (no per-tap choice).
        cols = np.array([ox * sw + 4 * j * dw - left + (k * dw if 4 * j + k < kw else 0)
                         for ox in range(ow) for j in range(quads) for k in range(4)], np.int64)
        quad_offsets = np.array([ky * dh * row_bytes + j * entry for ky in range(kh) for j in range(quads)],
                                np.int64)
        pixel_offsets = (np.arange(oh, dtype=np.int64)[:, None] * (sh * row_bytes)
                         + np.arange(ow, dtype=np.int64)[None, :] * quads * entry).reshape(-1)
    if rows * row_bytes > 16 * (h * width * channels + oh * ow * padded) + 65536:
        return None  # strides or dilations reaching far past the image: a huge quad image
    cols = np.where((cols >= 0) & (cols < width), cols * padded, -1)
    inside = (cols.reshape(-1, 4) >= 0).all(axis=1)
    interior_lo = int(np.argmax(inside)) if inside.any() else 0
    interior_hi = interior_lo + int(np.argmin(np.append(inside[interior_lo:], False)))
    init = np.zeros(padded, np.int32)  # modulo 2^32, as int32; 0 in the padding
    init[:channels] = gemm_u8.u8_start(requant.bias, input_offset, w.sum(axis=(0, 1)))
    # The negative rounding (2^31 where p < -2^30, for e >= 1) changes r only from r' = k <= 0 to
    # k - 1 (see the module docstring): when act_min >= output_offset both clamp to act_min.
    mode = lanes_ir.mode(activation_min, activation_max, output_offset)

    def per_channel(values, dtype, fill, lanes=False):
        out = np.full(padded, fill, dtype)
        out[:channels] = values
        # lanes: (column + 2i for i < 8, then column + 2i + 1) per 16 channels, conv_column's order
        return lanes_ir.even_odd_order(out) if lanes else out

    pixels = oh * ow
    slots = [-(-pixels // r) * r for r in BLOCK_ROWS]
    rows_per_block = BLOCK_ROWS[0] if slots[-1] >= 0.9 * slots[0] else BLOCK_ROWS[-1]
    header = [len(cols), len(quad_offsets), pixels, padded, interior_lo, interior_hi, top, int(output_offset),
              int(activation_min), int(activation_max), mode, rows, row_bytes, oh, ow, rows_per_block, row_step,
              second]
    # Three flat tables (the kernel's arguments: each array costs the call ~0.2 µs to type-check).
    wide = np.concatenate([np.array(header, np.int64), cols, quad_offsets, pixel_offsets,
                           per_channel(requant.rounding, np.int64, 0, True),
                           per_channel(requant.negative_rounding, np.int64, 0, True),
                           per_channel(requant.right_shift, np.int64, 31, True)])
    words = np.concatenate([init, per_channel(requant.multiplier, np.int32, 0),
                            per_channel(requant.left_shift, np.int32, 0)])
    bytes_ = np.concatenate([np.full(padded, -int(input_offset), np.int8), packed])
    for table in (wide, words, bytes_):
        table.flags.writeable = False
    return VnniDepthwisePlan(
        requant, tuple(int(v) for v in in_hwc), (int(oh), int(ow)), (int(sh), int(sw)), (int(dh), int(dw)),
        (top, left), (int(kh), int(kw)), int(depth_multiplier), quads, patches, int(rows), 128 - int(input_offset),
        mode, rows_per_block, wide, words, bytes_, channels, padded)


# --- the intrinsics -----------------------------------------------------------------------------

_quad_row = None
_conv_column = None  # R = 4
_conv_column_3 = None
_build_lock = threading.Lock()


def _intrinsics():
    global _quad_row, _conv_column, _conv_column_3
    if _conv_column is None:
        with _build_lock:
            if _conv_column is None:
                _quad_row = _make_quad_row()
                _conv_column_3 = _make_conv_column(3)
                _conv_column = _make_conv_column(4)


def _make_quad_row():
    """An intrinsic ``quad_row(src, row_start, inside, columns, pad, q, q_start, interior_lo,
    interior_hi)``: one row of the quad image. For each entry e < len(columns) / 4 (an (output
    column, quad) pair) and 16-channel block c (OCp = len(pad) channels), the 64 bytes at
    q[q_start + e·4·OCp + 64c ...] (64-byte aligned) get byte 4i + k = (s[16c + i] ^ 0x80) with
    s = src[row_start + columns[4e + k] ...] when inside != 0 and columns[4e + k] >= 0, else
    s = pad. The caller promises columns[4e + k] >= 0 for interior_lo <= e < interior_hi. src,
    pad flat int8; q flat uint8; columns int64."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i8, i64 = ir.IntType(8), ir.IntType(64)
    run = ir.VectorType(i8, LANES)
    bytes64 = ir.VectorType(i8, 4 * LANES)
    concat = ir.Constant(ir.VectorType(ir.IntType(32), 2 * LANES), list(range(2 * LANES)))
    interleave = ir.Constant(ir.VectorType(ir.IntType(32), 4 * LANES),
                             [16 * (q % 4) + q // 4 for q in range(4 * LANES)])
    flip = ir.Constant(bytes64, [0x80] * (4 * LANES))

    def quad_row(typingctx, src, row_start, inside, row_start2, inside2, columns, pad, q, q_start, interior_lo,
                 interior_hi):
        if not all(isinstance(a, types.Array) for a in (src, columns, pad, q)):
            return None
        if not (src.dtype == pad.dtype == types.int8 and q.dtype == types.uint8 and columns.dtype == types.int64
                and all(isinstance(v, types.Integer) for v in (row_start, inside, row_start2, inside2, q_start,
                                                                interior_lo, interior_hi))):
            return None
        sig = types.void(src, row_start, inside, row_start2, inside2, columns, pad, q, q_start, interior_lo,
                         interior_hi)

        def codegen(context, builder, signature, args):
            src_a, _, _, _, _, columns_a, pad_a, q_a, *_ = gemm_u8.array_arguments(context, builder, signature, args)
            row_start_v, inside_v, row_start2_v, inside2_v, q_start_v, lo_v, hi_v = (
                context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 2, 3, 4, 8, 9, 10))
            src_data = builder.bitcast(src_a.data, i8.as_pointer())
            pad_data = builder.bitcast(pad_a.data, i8.as_pointer())
            q_data = builder.bitcast(q_a.data, i8.as_pointer())
            zero = ir.Constant(i64, 0)
            # Taps k = 0, 1 read the first row, k = 2, 3 the second (the same row for row quads).
            row_data = [builder.gep(src_data, [row_start_v]), builder.gep(src_data, [row_start2_v])]
            rows_inside = [builder.icmp_signed("!=", inside_v, zero), builder.icmp_signed("!=", inside2_v, zero)]
            row_inside = builder.and_(rows_inside[0], rows_inside[1])
            channels = builder.extract_value(pad_a.shape, 0)
            entries = builder.sdiv(builder.extract_value(columns_a.shape, 0), ir.Constant(i64, 4))
            blocks = builder.sdiv(channels, ir.Constant(i64, LANES))
            entry_bytes = builder.mul(channels, ir.Constant(i64, 4))
            # Entries interior_lo .. interior_hi - 1 of a row inside the image read the image only
            # (the caller's promise): no per-tap choice there.
            lo = builder.select(row_inside, lo_v, zero)
            hi = builder.select(row_inside, hi_v, zero)

            def build(sources, out_row, channel):
                runs = [builder.load(builder.bitcast(builder.gep(s, [channel]), run.as_pointer()), align=1)
                        for s in sources]
                low = builder.shuffle_vector(runs[0], runs[1], concat)
                high = builder.shuffle_vector(runs[2], runs[3], concat)
                u = builder.xor(builder.shuffle_vector(low, high, interleave), flip)
                address = builder.gep(out_row, [builder.mul(channel, ir.Constant(i64, 4))])
                builder.store(u, builder.bitcast(address, bytes64.as_pointer()), align=64)

            def entries_in(start, stop, checked, unrolled=0):
                with cgutils.for_range(builder, stop, start=start) as e_loop:
                    e = e_loop.index
                    sources = []
                    for k in range(4):
                        col = builder.load(builder.gep(columns_a.data, [builder.add(builder.mul(
                            e, ir.Constant(i64, 4)), ir.Constant(i64, k))]))
                        source = builder.gep(row_data[k // 2], [col])
                        if checked:
                            ok = builder.and_(rows_inside[k // 2], builder.icmp_signed(">=", col, zero))
                            source = builder.select(ok, source, pad_data)
                        sources.append(source)
                    out_row = builder.gep(q_data, [builder.add(q_start_v, builder.mul(e, entry_bytes))])
                    if unrolled:  # 16, 32 or 64 channels: no loop over channel blocks
                        for c in range(unrolled):
                            build(sources, out_row, ir.Constant(i64, LANES * c))
                    else:
                        with cgutils.for_range(builder, blocks) as c_loop:
                            build(sources, out_row, builder.mul(c_loop.index, ir.Constant(i64, LANES)))

            entries_in(zero, lo, True)
            with builder.if_else(builder.icmp_signed("==", blocks, ir.Constant(i64, 1))) as (then, otherwise):
                with then:
                    entries_in(lo, hi, False, unrolled=1)
                with otherwise:
                    with builder.if_else(builder.icmp_signed("==", blocks, ir.Constant(i64, 2))) as (then2, other2):
                        with then2:
                            entries_in(lo, hi, False, unrolled=2)
                        with other2:
                            with builder.if_else(builder.icmp_signed("==", blocks, ir.Constant(i64, 4))) as (then4,
                                                                                                           other4):
                                with then4:
                                    entries_in(lo, hi, False, unrolled=4)
                                with other4:
                                    entries_in(lo, hi, False)
            entries_in(hi, entries, True)
            return context.get_dummy_value()

        return sig, codegen

    return intrinsic(quad_row)


def _make_conv_column(rows: int):
    """An intrinsic ``conv_column(q, pixel_offsets, quad_offsets, weights, init, multiplier,
    left_shift, rounding, negative_rounding, right_shift, out, out_start, column, output_offset,
    act_min, act_max, mode)``: for every output pixel p < P = len(pixel_offsets) (in register
    blocks of ``rows`` pixels; the last block repeats pixel P - 1) and the 16 channels
    oc = column + i,
        acc = init[oc] + Σ_g Σ_{k<4} q[pixel_offsets[p] + quad_offsets[g] + 4·oc + k]
                                  · weights[(g·OCp + oc)·4 + k]          (int32, modulo 2^32)
    then depthwise.py's requantization (the module docstring), stored as int8 at
    out[out_start + p·OCp + oc]. q flat uint8, weights flat int8, OCp = len(init). rounding,
    negative_rounding and right_shift are in lane order (column + 2i for i < 8, then column + 2i + 1):
    the products of the even and the odd int32 lanes are two vectors of 8 int64. ``mode`` bit 0:
    leave out the negative rounding (``plan``'s proof that the clamp absorbs it); bit 1: the
    activation bounds are -128 and 127."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    accumulator = ir.VectorType(i32, LANES)
    wide = ir.VectorType(i64, LANES // 2)  # 8 int64: the even or the odd int32 lanes' products
    narrow = ir.VectorType(i8, LANES)

    def conv_column(typingctx, q, pixel_offsets, quad_offsets, weights, init, multiplier, left_shift, rounding,
                    negative_rounding, right_shift, out, out_start, column, output_offset, act_min, act_max, mode):
        arrays = (q, pixel_offsets, quad_offsets, weights, init, multiplier, left_shift, rounding,
                  negative_rounding, right_shift, out)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        if not (q.dtype == types.uint8 and weights.dtype == out.dtype == types.int8
                and init.dtype == multiplier.dtype == left_shift.dtype == types.int32
                and pixel_offsets.dtype == quad_offsets.dtype == rounding.dtype == negative_rounding.dtype
                == right_shift.dtype == types.int64
                and all(isinstance(v, types.Integer) for v in (out_start, column, output_offset, act_min, act_max,
                                                                mode))):
            return None
        sig = types.void(q, pixel_offsets, quad_offsets, weights, init, multiplier, left_shift, rounding,
                         negative_rounding, right_shift, out, out_start, column, output_offset, act_min, act_max,
                         mode)

        def codegen(context, builder, signature, args):
            (q_a, pixels_a, quads_a, weights_a, init_a, mult_a, left_a, round_a, neg_a, right_a, out_a,
             *_) = gemm_u8.array_arguments(context, builder, signature, args)
            out_start_v, column_v, mode_v = (context.cast(builder, args[i], signature.args[i], types.int64)
                                             for i in (11, 12, 16))
            offset_v, low_v, high_v = (context.cast(builder, args[i], signature.args[i], types.int32)
                                       for i in (13, 14, 15))
            dot, operand = gemm_u8.vpdpbusd(builder)

            def vector_at(array, vector, element, extra=0):
                data = builder.bitcast(array.data, element.as_pointer())
                index = builder.add(column_v, ir.Constant(i64, extra))
                return builder.load(builder.bitcast(builder.gep(data, [index]), vector.as_pointer()), align=4)

            start = vector_at(init_a, accumulator, i32)
            left = vector_at(left_a, accumulator, i32)
            # The multipliers of the even lanes and of the odd lanes, sign-extended.
            mults = lanes_ir.even_odd(builder, vector_at(mult_a, accumulator, i32))
            roundings = [vector_at(round_a, wide, i64, h * LANES // 2) for h in (0, 1)]
            negatives = [vector_at(neg_a, wide, i64, h * LANES // 2) for h in (0, 1)]
            rights = [vector_at(right_a, wide, i64, h * LANES // 2) for h in (0, 1)]
            offset, low, high = (lanes_ir.splat(builder, v, LANES) for v in (offset_v, low_v, high_v))

            q_data = builder.bitcast(q_a.data, i8.as_pointer())
            w_data = builder.bitcast(weights_a.data, i8.as_pointer())
            out_data = builder.bitcast(out_a.data, i8.as_pointer())
            width = builder.extract_value(init_a.shape, 0)  # OCp
            quad_bytes = builder.mul(width, ir.Constant(i64, 4))
            column_bytes = builder.mul(column_v, ir.Constant(i64, 4))
            count = builder.extract_value(quads_a.shape, 0)
            total = builder.extract_value(pixels_a.shape, 0)
            last = builder.sub(total, ir.Constant(i64, 1))
            blocks = builder.sdiv(builder.add(total, ir.Constant(i64, rows - 1)), ir.Constant(i64, rows))

            halves = tuple(zip(mults, roundings, negatives, rights))

            def requantize(acc, skip_negative, saturate):
                return lanes_ir.requantize(builder, acc, left, halves, offset, low, high, skip_negative, saturate,
                                           multiplier_in_low_half=False)

            def emit(skip_negative, saturate, fixed=0):
                # fixed > 0: exactly that many quads, their weights and offsets loaded once.
                fixed_quads = []
                for g in range(fixed):
                    g_v = ir.Constant(i64, g)
                    w_address = builder.gep(w_data, [builder.add(builder.mul(g_v, quad_bytes), column_bytes)])
                    fixed_quads.append((builder.load(builder.gep(quads_a.data, [g_v])),
                                        builder.load(builder.bitcast(w_address, operand.as_pointer()), align=1)))
                with cgutils.for_range(builder, blocks) as block_loop:
                    first = builder.mul(block_loop.index, ir.Constant(i64, rows))
                    pixels, bases = [], []
                    for r in range(rows):
                        p = builder.add(first, ir.Constant(i64, r))
                        p = builder.select(builder.icmp_signed("<", p, last), p, last)
                        pixels.append(p)
                        base = builder.load(builder.gep(pixels_a.data, [p]))
                        bases.append(builder.gep(q_data, [builder.add(base, column_bytes)]))
                    if fixed:
                        updated = [start] * rows
                        for quad_offset, w in fixed_quads:
                            updated = [builder.call(dot, [updated[r], builder.load(builder.bitcast(
                                builder.gep(bases[r], [quad_offset]), operand.as_pointer()), align=1), w])
                                for r in range(rows)]
                    else:
                        entry = builder.block
                        loop = builder.append_basic_block("dw.quad")
                        done = builder.append_basic_block("dw.done")
                        builder.branch(loop)

                        builder.position_at_end(loop)
                        g = builder.phi(i64)
                        g.add_incoming(ir.Constant(i64, 0), entry)
                        sums = []
                        for _ in range(rows):
                            phi = builder.phi(accumulator)
                            phi.add_incoming(start, entry)
                            sums.append(phi)
                        quad_offset = builder.load(builder.gep(quads_a.data, [g]))
                        w_address = builder.gep(w_data, [builder.add(builder.mul(g, quad_bytes), column_bytes)])
                        w = builder.load(builder.bitcast(w_address, operand.as_pointer()), align=1)
                        updated = []
                        for r in range(rows):
                            u = builder.load(builder.bitcast(builder.gep(bases[r], [quad_offset]),
                                                             operand.as_pointer()), align=1)
                            updated.append(builder.call(dot, [sums[r], u, w]))
                        g_next = builder.add(g, ir.Constant(i64, 1))
                        g.add_incoming(g_next, loop)
                        for phi, value in zip(sums, updated):
                            phi.add_incoming(value, loop)
                        builder.cbranch(builder.icmp_signed("<", g_next, count), loop, done)
                        builder.position_at_end(done)

                    for r in range(rows):
                        address = builder.gep(out_data, [builder.add(out_start_v, builder.add(
                            builder.mul(pixels[r], width), column_v))])
                        builder.store(requantize(updated[r], skip_negative, saturate),
                                      builder.bitcast(address, narrow.as_pointer()), align=1)

            def emit_by_count(skip_negative, saturate):
                """3x3 kernels: 3 row quads or 4 2x2 quads, unrolled; else the loop over quads."""
                with builder.if_else(builder.icmp_signed("==", count, ir.Constant(i64, 3))) as (then, otherwise):
                    with then:
                        emit(skip_negative, saturate, 3)
                    with otherwise:
                        with builder.if_else(builder.icmp_signed("==", count, ir.Constant(i64, 4))) as (then4, other):
                            with then4:
                                emit(skip_negative, saturate, 4)
                            with other:
                                emit(skip_negative, saturate)

            skip = builder.icmp_signed("!=", builder.and_(mode_v, ir.Constant(i64, 1)), ir.Constant(i64, 0))
            full = builder.icmp_signed("!=", builder.and_(mode_v, ir.Constant(i64, 2)), ir.Constant(i64, 0))
            with builder.if_else(skip) as (then, otherwise):
                for flag, branch in ((True, then), (False, otherwise)):
                    with branch:
                        with builder.if_else(full) as (then2, otherwise2):
                            with then2:
                                (emit_by_count if flag else emit)(flag, True)
                            with otherwise2:
                                (emit_by_count if flag else emit)(flag, False)
            return context.get_dummy_value()

        return sig, codegen

    conv_column.__name__ = f"depthwise_vnni_{rows}"
    return intrinsic(conv_column)


# --- the kernel ---------------------------------------------------------------------------------

@lazy_njit
def _kernel(src, wide, words, bytes_):
    """src (N, H, W, OCp) int8 -> (N, OH, OW, OCp) int8. Per image: the quad image's rows, then
    every 16-channel block of every output pixel, requantized."""
    batches, height, width, channels = src.shape
    n_columns, n_quads, n_pixels = wide[_H_COLUMNS], wide[_H_QUADS], wide[_H_PIXELS]
    interior_lo, interior_hi, pad_top = wide[_H_INTERIOR_LO], wide[_H_INTERIOR_HI], wide[_H_PAD_TOP]
    output_offset, act_min, act_max, mode = wide[_H_OUTPUT_OFFSET], wide[_H_ACT_MIN], wide[_H_ACT_MAX], wide[_H_MODE]
    rows, row_bytes, block_rows = wide[_H_QUAD_ROWS], wide[_H_ROW_BYTES], wide[_H_BLOCK_ROWS]
    row_step, second_row = wide[_H_ROW_STEP], wide[_H_SECOND_ROW]
    at = _HEADER
    columns = wide[at:at + n_columns]
    at += n_columns
    quad_offsets = wide[at:at + n_quads]
    at += n_quads
    pixel_offsets = wide[at:at + n_pixels]
    at += n_pixels
    rounding = wide[at:at + channels]
    negative_rounding = wide[at + channels:at + 2 * channels]
    right_shift = wide[at + 2 * channels:at + 3 * channels]
    init = words[:channels]
    multiplier = words[channels:2 * channels]
    left_shift = words[2 * channels:3 * channels]
    pad = bytes_[:channels]
    packed = bytes_[channels:]
    out = np.empty((batches, wide[_H_OUT_HEIGHT], wide[_H_OUT_WIDTH], channels), np.int8)
    # The quad image, 64-byte aligned: its 64-byte loads and stores never straddle cache lines
    # (quad_row's stores rely on it).
    size = rows * row_bytes
    raw = np.empty(size + 64, np.uint8)
    skip = (-raw.ctypes.data) % 64
    q = raw[skip:skip + size]
    flat = src.reshape(-1)
    out_flat = out.reshape(-1)
    plane = n_pixels * channels
    for b in range(batches):
        for py in range(rows):
            y = py * row_step - pad_top
            inside = 0 <= y < height
            row_start = ((b * height + y) * width * channels) if inside else 0
            y2 = y + second_row
            inside2 = 0 <= y2 < height
            row_start2 = ((b * height + y2) * width * channels) if inside2 else 0
            _quad_row(flat, row_start, np.int64(inside), row_start2, np.int64(inside2), columns, pad, q,
                      py * row_bytes, interior_lo, interior_hi)
        for column in range(0, channels, 16):
            if block_rows == 3:
                _conv_column_3(q, pixel_offsets, quad_offsets, packed, init, multiplier, left_shift, rounding,
                               negative_rounding, right_shift, out_flat, b * plane, column, output_offset, act_min,
                               act_max, mode)
            else:
                _conv_column(q, pixel_offsets, quad_offsets, packed, init, multiplier, left_shift, rounding,
                             negative_rounding, right_shift, out_flat, b * plane, column, output_offset, act_min,
                             act_max, mode)
    return out


def depthwise_conv(p: VnniDepthwisePlan, x: np.ndarray, out_dtype=np.int8) -> np.ndarray:
    """x (…, H, W, C) int8 (samples and the model's batch folded together) -> (N·B, OH, OW, C·dm)
    int8. Callers check ``available()`` first."""
    if _conv_column is None:
        _intrinsics()
    h, w, c = p.in_hwc
    images = np.ascontiguousarray(x.reshape((-1, h, w, c)))
    if p.depth_multiplier != 1 or p.channels != p.padded_channels:
        src = np.empty(images.shape[:3] + (p.padded_channels,), np.int8)
        src[..., :p.channels] = np.repeat(images, p.depth_multiplier, axis=3) if p.depth_multiplier > 1 else images
        src[..., p.channels:] = p.bytes[0]
        out = _kernel(src, p.wide, p.words, p.bytes)[..., :p.channels]
    else:
        out = _kernel(images, p.wide, p.words, p.bytes)
    return out if out_dtype == np.int8 else out.astype(out_dtype)
