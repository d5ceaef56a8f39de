"""Compiled int8 DEPTHWISE_CONV_2D on AVX512-VNNI byte dot products: four taps x 16 channels per
``vpdpbusd``, the 16 int32 accumulators of a channel block kept in a register across all taps,
then ops/compiled/depthwise.py's fused exact requantization.

Layout. A filter row's taps kx = 4j .. 4j + 3 form quad j (J = ceil(KW / 4) quads per row; the
missing taps of the last one get zero weights). Per image, the padded image (Hp, Wp, OCp) uint8
holds u = x + 128 for output channel oc (input channel oc // dm, so the depth multiplier is a
plain channel index; OCp = OC rounded up to 16), the pad byte outside the image and in the extra
channels; with dm = 1 and OC = OCp its rows are copied whole. For output pixel (oy, ox), quad
(ky, j) and 16 channels, the four taps' 16-byte runs (padded columns ox·sw + (4j + k)·dw, k < 4)
are interleaved in registers (one vpermt2b-style shuffle) into 64 bytes, byte 4i + k = tap k of
channel i, which one vpdpbusd multiplies by the packed weights (KH·J, OCp, 4) int8 and adds into
the 16 int32 lanes. A register block of R = 4 output pixels x 16 channels runs all KH·J quads
with its accumulators in registers and stores them once into a row (OW, OCp); the row is then
requantized and stored as int8.

Why it equals TFLM byte for byte. TFLM forms, per output, ``int32 acc = bias + Σ w·(x + input_offset)``
over the taps inside the image, in int32 arithmetic that wraps (modulo 2^32, as the oracle's x86
does). With u = x + 128 (0..255, the int8 byte with its top bit flipped) and off = input_offset:

    Σ w·(x + off) = Σ w·u + (off - 128)·Σ w        (Σ over all KH·KW taps)

provided a tap outside the image holds the u whose x + off is 0, u = 128 - off = zero point + 128:
then its w·u + (off - 128)·w is 0, as TFLM skipping the tap adds nothing. ``plan`` refuses a zero
point outside -128..127 (a malformed model's), whose u would not be a byte. The zero-weight slots
of a last quad add 0 whatever their bytes. The accumulator starts at the per-channel constant
``init = bias + (off - 128)·Σw`` taken modulo 2^32. vpdpbusd (NOT vpdpbusds, the saturating form,
and no vpmaddubsw, which saturates to int16) forms each product u·w exactly (|u·w| <= 255·128),
adds four of them exactly (< 2^17 in magnitude) and adds that to the int32 lane modulo 2^32.
So every accumulator is congruent modulo 2^32 to TFLM's int32 value, i.e. equal to it as an int32,
for EVERY accumulator bound: no bound needs checking, and biases near ±2^31 wrap as C's do. The
requantization is ops/compiled/depthwise.py's (its docstring proves the single int64 shift equal to
TFLM's two roundings); ``plan`` reuses that module's plan for its per-channel constants.

The LLVM intrinsic is x86-only (gemm_u8.vpdpbusd): ``available()`` is gemm_u8's host check
(numba targets the host, which has AVX512-VNNI and AVX512-BW); else the caller keeps
ops/compiled/depthwise.py. Only eval imports numba / llvmlite; ``plan`` runs on numpy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import depthwise, gemm_u8, lazy_njit

__all__ = ["VnniDepthwisePlan", "plan", "depthwise_conv", "available"]

LANES = 16
ROWS = 4  # output pixels per register block
_INT32 = 1 << 32


def available() -> bool:
    """The host runs vpdpbusd and numba compiles for it (imports numba: eval time only)."""
    return gemm_u8.available()


@dataclass(frozen=True)
class VnniDepthwisePlan:
    """The VNNI kernel's layout; the requantization constants are ``requant``'s."""
    requant: depthwise.CompiledDepthwiseParams  # ops/compiled/depthwise.py's per-channel constants
    in_hwc: tuple
    out_hw: tuple
    stride: tuple
    dilation: tuple
    padding: tuple  # (top, left), may be negative
    kernel_hw: tuple
    depth_multiplier: int
    quads_per_row: int  # J = ceil(KW / 4)
    padded_hw: tuple  # (Hp, Wp): the rows and columns the quads read, (OH - 1)·s + (KH - 1 or 4J - 1)·d + 1
    pad_byte: int  # u of a tap outside the image: zero point + 128 (0..255)
    packed: np.ndarray  # flat (KH·J, OCp, 4) int8, zeros past KW and OC; read-only
    quad_offsets: np.ndarray  # (KH·J,) int64: quad (ky, j)'s first byte relative to its output pixel's
    init: np.ndarray  # (OCp,) int32: bias + (input_offset - 128)·Σw modulo 2^32 (0 in the padding)
    channels: int  # OC = C·dm
    padded_channels: int  # OCp, a multiple of 16


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
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    quads = -(-kw // 4)
    padded = -(-channels // LANES) * LANES
    # The padded image: every row and column a quad reads (the last quad's zero-weight taps too).
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (4 * quads - 1) * dw + 1
    if hp * wp * padded > 8 * (in_hwc[0] * in_hwc[1] * channels + oh * ow * padded) + 4096:
        return None  # strides or dilations reaching far past the image: a huge padded copy
    packed = np.zeros((kh, quads * 4, padded), np.int8)
    packed[:, :kw, :channels] = w
    packed = np.ascontiguousarray(packed.reshape(kh, quads, 4, padded).transpose(0, 1, 3, 2)).reshape(-1)
    packed.flags.writeable = False
    offsets = np.array([(ky * dh * wp + 4 * j * dw) * padded for ky in range(kh) for j in range(quads)], np.int64)
    offsets.flags.writeable = False
    init = np.zeros(padded, np.int64)
    init[:channels] = requant.bias.astype(np.int64) + (int(input_offset) - 128) * w.sum(axis=(0, 1))
    init = (((init + (1 << 31)) % _INT32) - (1 << 31)).astype(np.int32)  # modulo 2^32, as int32
    init.flags.writeable = False
    return VnniDepthwisePlan(requant, tuple(int(v) for v in in_hwc), (int(oh), int(ow)), (int(sh), int(sw)),
                             (int(dh), int(dw)), (int(padding[0]), int(padding[1])), (int(kh), int(kw)),
                             int(depth_multiplier), quads, (hp, wp), 128 - int(input_offset), packed, offsets, init,
                             channels, padded)


# --- the intrinsic ------------------------------------------------------------------------------

_block = None
_build_lock = threading.Lock()


def _intrinsics():
    global _block
    if _block is None:
        with _build_lock:
            if _block is None:
                _block = _make_block(ROWS)


def _make_block(rows: int):
    """An intrinsic ``block(image, pixels, offsets, step, weights, init, acc, acc_rows, column)``:
    for r < rows and the 16 output channels oc = column .. column + 15 (i = oc - column),
        acc[acc_rows[r], oc] = init[oc] + Σ_g Σ_{k<4} image[pixels[r] + offsets[g] + k·step + oc]
                                                   · weights[(g·OCp + oc)·4 + k]
    (int32, modulo 2^32): for each quad g the four 16-byte runs k are interleaved in registers
    (byte 4i + k of the operand is run k's byte i) and one vpdpbusd adds them. image flat uint8,
    weights flat int8, pixels / offsets / acc_rows int64 (G >= 1 offsets), step an integer, init
    (OCp,) int32, acc 2-D int32 (…, OCp) C-contiguous."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    accumulator = ir.VectorType(i32, LANES)
    run = ir.VectorType(i8, LANES)
    bytes64 = ir.VectorType(i8, 4 * LANES)
    concat = ir.Constant(ir.VectorType(i32, 2 * LANES), list(range(2 * LANES)))
    interleave = ir.Constant(ir.VectorType(i32, 4 * LANES), [16 * (q % 4) + q // 4 for q in range(4 * LANES)])

    def block(typingctx, image, pixels, offsets, step, weights, init, acc, acc_rows, column):
        arrays = (image, pixels, offsets, weights, init, acc, acc_rows)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        if not (image.dtype == types.uint8 and weights.dtype == types.int8 and acc.dtype == init.dtype == types.int32
                and pixels.dtype == offsets.dtype == acc_rows.dtype == types.int64
                and isinstance(step, types.Integer) and isinstance(column, types.Integer)):
            return None
        sig = types.void(image, pixels, offsets, step, weights, init, acc, acc_rows, column)

        def codegen(context, builder, signature, args):
            (image_a, pixels_a, offsets_a, _, weights_a, init_a, acc_a, rows_a, _) = [
                context.make_array(t)(context, builder, v) if isinstance(t, types.Array) else None
                for t, v in zip(signature.args, args)]
            dot, operand = gemm_u8.vpdpbusd(builder)
            step_v = context.cast(builder, args[3], signature.args[3], types.int64)
            column_v = context.cast(builder, args[8], signature.args[8], types.int64)
            count = builder.extract_value(offsets_a.shape, 0)
            width = builder.extract_value(acc_a.shape, 1)  # OCp
            image_data = builder.bitcast(image_a.data, i8.as_pointer())
            weight_data = builder.bitcast(weights_a.data, i8.as_pointer())
            init_data = builder.bitcast(init_a.data, i32.as_pointer())
            pixel_base = [builder.add(builder.load(builder.gep(pixels_a.data, [ir.Constant(i64, r)])), column_v)
                          for r in range(rows)]
            weight_stride = builder.mul(width, ir.Constant(i64, 4))  # bytes per quad of weights
            column_bytes = builder.mul(column_v, ir.Constant(i64, 4))
            steps = [builder.mul(step_v, ir.Constant(i64, k)) for k in range(4)]
            start = builder.load(builder.bitcast(builder.gep(init_data, [column_v]), accumulator.as_pointer()),
                                 align=4)
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
            offset = builder.load(builder.gep(offsets_a.data, [g]))
            w_address = builder.gep(weight_data, [builder.add(builder.mul(g, weight_stride), column_bytes)])
            w = builder.load(builder.bitcast(w_address, operand.as_pointer()), align=1)
            updated = []
            for r in range(rows):
                first = builder.add(pixel_base[r], offset)
                runs = [builder.load(builder.bitcast(builder.gep(image_data, [builder.add(first, steps[k])]),
                                                     run.as_pointer()), align=1) for k in range(4)]
                low = builder.shuffle_vector(runs[0], runs[1], concat)
                high = builder.shuffle_vector(runs[2], runs[3], concat)
                u = builder.shuffle_vector(low, high, interleave)
                if operand != bytes64:
                    u = builder.bitcast(u, operand)
                updated.append(builder.call(dot, [sums[r], u, w]))
            g_next = builder.add(g, ir.Constant(i64, 1))
            g.add_incoming(g_next, loop)
            for phi, value in zip(sums, updated):
                phi.add_incoming(value, loop)
            builder.cbranch(builder.icmp_signed("<", g_next, count), loop, done)

            builder.position_at_end(done)
            acc_data = builder.bitcast(acc_a.data, i32.as_pointer())
            for r in range(rows):
                row = builder.load(builder.gep(rows_a.data, [ir.Constant(i64, r)]))
                address = builder.gep(acc_data, [builder.add(builder.mul(row, width), column_v)])
                builder.store(updated[r], builder.bitcast(address, accumulator.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"depthwise_vnni_{rows}"
    return intrinsic(block)


# --- the kernel ---------------------------------------------------------------------------------

@lazy_njit
def _kernel(x, image, packed, offsets, step, init, acc, out, multiplier, left_shift, rounding, negative_rounding,
            right_shift, stride_h, stride_w, pad_top, pad_left, depth_multiplier, pad_byte, output_offset,
            act_min, act_max, left_shifts):
    """Per image: the padded image of u bytes (the pad byte outside the image and in the padded
    channels), then per output row the register blocks into acc (OW, OCp) and the
    requantization into out[b, oy]."""
    batches, height, width, channels = x.shape
    _, out_height, out_width, out_channels = out.shape
    padded_height, padded_width, padded = image.shape
    flat = image.reshape(-1)
    pixels = np.empty(ROWS, np.int64)
    acc_rows = np.empty(ROWS, np.int64)
    # Whole rows at once where the copy is contiguous (no depth multiplier, no padded channels).
    contiguous = depth_multiplier == 1 and channels == padded and pad_left >= 0 and pad_left + width <= padded_width
    for b in range(batches):
        for py in range(padded_height):
            in_y = py - pad_top
            if contiguous:
                line = image[py].reshape(-1)
                if 0 <= in_y < height:
                    src_line = x[b, in_y].reshape(-1)
                    left = pad_left * padded
                    for i in range(left):
                        line[i] = pad_byte
                    dst_line = line[left:left + width * padded]
                    for i in range(dst_line.size):
                        dst_line[i] = np.uint8(src_line[i] ^ -128)
                    rest = line[left + width * padded:]
                    for i in range(rest.size):
                        rest[i] = pad_byte
                else:
                    for i in range(line.size):
                        line[i] = pad_byte
                continue
            for px in range(padded_width):
                in_x = px - pad_left
                dst = image[py, px]
                if 0 <= in_y < height and 0 <= in_x < width:
                    src = x[b, in_y, in_x]
                    if depth_multiplier == 1:
                        for c in range(channels):
                            dst[c] = np.uint8(src[c] ^ -128)
                    else:
                        for c in range(channels):
                            v = np.uint8(src[c] ^ -128)
                            for m in range(depth_multiplier):
                                dst[c * depth_multiplier + m] = v
                    for c in range(out_channels, padded):
                        dst[c] = pad_byte
                else:
                    for c in range(padded):
                        dst[c] = pad_byte
        for oy in range(out_height):
            base = oy * stride_h * padded_width * padded
            for column in range(0, padded, LANES):
                for first in range(0, out_width, ROWS):
                    for r in range(ROWS):
                        ox = min(first + r, out_width - 1)
                        pixels[r] = base + ox * stride_w * padded
                        acc_rows[r] = ox
                    _block(flat, pixels, offsets, step, packed, init, acc, acc_rows, column)
            dst_row = out[b, oy]
            for ox in range(out_width):
                a = acc[ox]
                d = dst_row[ox]
                if left_shifts:
                    for c in range(out_channels):
                        a[c] = np.int32(np.int64(a[c]) << left_shift[c])  # int32 x·2^left, wraps
                for c in range(out_channels):
                    # depthwise.py's requantization: both roundings in one int64 shift.
                    product = np.int64(a[c]) * np.int64(multiplier[c])
                    negative = (product < -(1 << 30)) * negative_rounding[c]
                    scaled = (product + rounding[c] - negative) >> right_shift[c]
                    d[c] = min(max(np.int64(np.int32(scaled + output_offset)), act_min), act_max)


def depthwise_conv(p: VnniDepthwisePlan, x: np.ndarray, out_dtype=np.int8) -> np.ndarray:
    """x (…, H, W, C) int8 (samples and the model's batch folded together) -> (N·B, OH, OW, C·dm)
    int8. Callers check ``available()`` first."""
    _intrinsics()
    h, w, c = p.in_hwc
    images = np.ascontiguousarray(x.reshape((-1, h, w, c)))
    (oh, ow), q = p.out_hw, p.requant
    out = np.empty((images.shape[0], oh, ow, p.channels), out_dtype)
    image = np.empty(p.padded_hw + (p.padded_channels,), np.uint8)
    acc = np.empty((ow, p.padded_channels), np.int32)
    _kernel(images, image, p.packed, p.quad_offsets, p.dilation[1] * p.padded_channels, p.init, acc, out,
            q.multiplier, q.left_shift, q.rounding, q.negative_rounding, q.right_shift, p.stride[0], p.stride[1],
            p.padding[0], p.padding[1], p.depth_multiplier, np.uint8(p.pad_byte), q.output_offset,
            q.activation_min, q.activation_max, q.left_shifts)
    return out
