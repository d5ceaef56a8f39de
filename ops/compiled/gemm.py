"""Compiled integer convolution / matrix product for CONV_2D and FULLY_CONNECTED: int16 operands,
int32 accumulators, register-blocked, so that the CPU's integer multiply-add instructions do the
work (benchmarks/gemm_probe.py has the measurements).

Why. microref's convolutions run im2col plus OpenBLAS's float32 sgemm. An integer multiply-add of
int16 pairs (x86 vpmaddwd / AVX512-VNNI vpdpwssd, ARM smlal) does twice the multiply-accumulates of
a float32 FMA per instruction, and a direct convolution needs no im2col copy at all.

How (a direct convolution, no im2col). Per chunk of images the input is copied once into a padded
int16 image (Hp, Wp, Cp): taps outside the image read the input zero point, Cp = C rounded up to
even. The weights are packed once (prepare) as (taps, Cp/2, OCp, 2) int16: for each tap and pair of
input channels, a row of OCp output channels times the pair. The inner block, R output pixels x
V·16 output channels, keeps R·V accumulators of 16 int32 lanes (one 512-bit vector each) and, for
every tap and channel pair, broadcasts the pixel's two input values to all lanes, multiplies them
with the V weight vectors and adds each lane's two products into the accumulator: exactly the
vpdpwssd instruction. LLVM's loop vectoriser does not find this by itself (with several dot
products in flight it falls back to 4-lane vectors and vpmulld), so the block is written as LLVM
IR (a numba intrinsic built on first use) in target-independent form: sext, mul, shufflevector,
add; the x86 back end selects vpdpwssd (AVX512-VNNI) or vpmaddwd + vpaddd, other targets their own
multiply-adds. (A FULLY_CONNECTED would be the case of 1x1 images of K channels and a 1x1 filter;
not wired up yet.)

Exactness. Every operation above is an int32 addition or multiplication of integers, which the IR
performs modulo 2^32 (no nsw flags, no saturating instruction: vpdpwssd, not vpdpwssds). So each
accumulator is the exact sum Σ x·w over the filter's taps reduced modulo 2^32 to int32, in any
order, and it IS the exact sum when |Σ x·w| < 2^31. ``weights_plan`` proves that with the bound of
ops.common.ExactIntegerMatmul, max_o Σ_k |W[k, o]| · max|x|, where max|x| covers the padded taps'
zero point too, and refuses (returns None) when the bound reaches 2^31. The accumulator is then the
same integer the numpy path's float32 / float64 / int64 GEMM computes, and the caller hands it to
the same Requantizer (with the folded bias: Σ w·(x - zp) = Σ w·x - zp·Σw), whose compiled pass is
ops/compiled/requantize.py: this module does not repeat the requantization formula.

Only eval imports numba: the intrinsics are built, and the kernel compiled (``lazy_njit``, cached
on disk), on the first call; ``weights_plan`` and ``conv_plan`` run at prepare on numpy alone.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import lazy_njit

__all__ = ["GemmWeights", "ConvGeometry", "weights_plan", "conv_plan", "conv"]

LANES = 16  # int32 accumulator lanes per vector (512 bits), so output channels go in sixteens
# The register blocks (output pixels R, channel vectors V): R·V accumulators + V weight vectors +
# one broadcast fit the 32 vector registers of AVX-512. Chosen by the channels: OCp % 64 == 0 ->
# (4, 4), % 32 -> (8, 2), else (8, 1).
BLOCKS = ((4, 4), (8, 2), (8, 1))
_INT32_LIMIT = 1 << 31


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class ConvGeometry:
    """The direct convolution's geometry (TFLM's ConvParams, groups == 1) and padded image."""
    in_hwc: tuple
    out_hw: tuple
    kernel_hw: tuple
    stride: tuple
    dilation: tuple
    padding: tuple  # (top, left), >= 0
    pad_value: int  # the input zero point: a padded tap then adds w·(zp - zp) = 0 once the bias is folded
    padded_hwc: tuple  # (Hp, Wp, Cp): every row and column an output reaches, channels rounded up to even
    taps: np.ndarray  # (KH·KW,) int64: each tap's element offset in the padded image, TFLM's order (ky, kx)


@dataclass(frozen=True)
class GemmWeights:
    """The weights packed for the kernel: (taps, Cp/2, OCp, 2) int16, zeros in the padding."""
    packed: np.ndarray  # flat, read-only
    taps: int
    pairs: int  # Cp / 2
    channels: int  # OC
    padded_channels: int  # OCp, a multiple of 16·V
    block: int  # index into BLOCKS
    bound: int  # max_o Σ |w| · max|x| (< 2^31): every partial sum of every order is below it


def conv_plan(in_hwc, out_hw, kernel_hw, stride, dilation, padding, pad_value: int) -> ConvGeometry | None:
    """The geometry, or None where the kernel does not apply (non-positive strides or dilations,
    negative padding, a zero point outside int16, a padded image far larger than input and output:
    the numpy kernel handles those)."""
    (h, w, c), (oh, ow), (kh, kw) = in_hwc, out_hw, kernel_hw
    (sh, sw), (dh, dw), (pt, pl) = stride, dilation, padding
    if min(sh, sw, dh, dw) < 1 or min(pt, pl) < 0 or min(oh, ow, h, w, c, kh, kw) < 1:
        return None
    if not -(1 << 15) <= int(pad_value) < (1 << 15):
        return None
    hp = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + pl, (ow - 1) * sw + (kw - 1) * dw + 1)
    cp = _round_up(c, 2)
    if hp * wp * cp > 4 * (h * w * c + oh * ow * kh * kw * c) + 4096:
        return None
    taps = np.array([(ky * dh * wp + kx * dw) * cp for ky in range(kh) for kx in range(kw)], np.int64)
    taps.flags.writeable = False
    return ConvGeometry(tuple(int(v) for v in in_hwc), (int(oh), int(ow)), (int(kh), int(kw)), (int(sh), int(sw)),
                        (int(dh), int(dw)), (int(pt), int(pl)), int(pad_value), (int(hp), int(wp), int(cp)), taps)


def weights_plan(weights: np.ndarray, channels_in: int, max_abs_input: int,
                 channel_multiple: int = LANES) -> GemmWeights | None:
    """``weights`` (KH·KW·C, OC) integers in TFLM's order (ky, kx, c) — the numpy path's x @ W
    operand. None when the int32 accumulator could leave int32 (the module docstring's bound) or a
    value does not fit int16. ``channels_in`` is the length of each tap's run of consecutive
    values (ops/compiled/small_conv.py passes KW·C: a whole filter row); output channels are
    padded to a multiple of ``channel_multiple`` (16; 8 or 4 for blocks of shared vectors)."""
    w = np.asarray(weights, np.int64)
    depth, channels = w.shape
    if depth == 0 or channels == 0 or depth % channels_in:
        return None
    if int(w.min()) < -(1 << 15) or int(w.max()) >= (1 << 15) or not 0 < max_abs_input <= (1 << 15):
        return None
    bound = int(np.abs(w).sum(axis=0).max()) * int(max_abs_input)
    if bound >= _INT32_LIMIT:
        return None
    taps, pairs = depth // channels_in, _round_up(channels_in, 2) // 2
    padded = _round_up(channels, channel_multiple)
    block = 0 if padded % 64 == 0 else 1 if padded % 32 == 0 else 2
    packed = np.zeros((taps, 2 * pairs, padded), np.int16)
    packed[:, :channels_in, :channels] = w.reshape(taps, channels_in, channels)
    packed = np.ascontiguousarray(packed.reshape(taps, pairs, 2, padded).transpose(0, 1, 3, 2)).reshape(-1)
    packed.flags.writeable = False
    return GemmWeights(packed=packed, taps=taps, pairs=pairs, channels=channels, padded_channels=padded,
                       block=block, bound=bound)


# --- the intrinsic ------------------------------------------------------------------------------

_block_4x4 = _block_8x2 = _block_8x1 = None  # built by _intrinsics() before the kernel compiles
_build_lock = threading.Lock()


def _intrinsics():
    """Build the numba intrinsics (imports numba: eval time only)."""
    global _block_4x4, _block_8x2, _block_8x1
    if _block_8x1 is not None:
        return
    with _build_lock:
        if _block_8x1 is None:
            made = [_make_block(r, v) for r, v in BLOCKS]
            _block_4x4, _block_8x2 = made[0], made[1]
            _block_8x1 = made[2]


def _make_block(rows: int, vectors: int, pixels_per_vector: int = 1):
    """An intrinsic ``block(image, pixels, taps, pairs, weights, acc, acc_rows, column)``: for r <
    rows and output channels column .. column + G·vectors (G = 16 / pixels_per_vector lanes per
    pixel),
        acc[acc_rows[r], oc] = Σ_tap Σ_q Σ_{i<2} image[pixels[r] + taps[tap] + 2q + i]
                                                 · weights[((tap·pairs + q)·OCp + oc)·2 + i]
    (int32, modulo 2^32); image, weights: flat int16; pixels, acc_rows: (rows,) int64; taps:
    (T,) int64, T >= 1; pairs >= 1; acc: 2-D int32 (…, OCp), C-contiguous.

    With pixels_per_vector P > 1 (ops/compiled/small_conv.py: few output channels) one 16-lane
    accumulator holds P pixels' G channels: the weight row's G pairs are repeated P times, the P
    pixels' input pairs each broadcast over their G lanes, and each pixel's G lanes are stored in
    its own accumulator row (rows must be a multiple of P)."""
    share = int(pixels_per_vector)
    if share not in (1, 2, 4, 8) or rows % share:
        raise ValueError(f"pixels_per_vector {pixels_per_vector} with {rows} rows")
    lanes = LANES // share  # output channels per pixel in one vector
    groups = rows // share  # accumulator vectors per channel vector
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
    operand = ir.VectorType(i16, 2 * LANES)
    widened = ir.VectorType(i32, 2 * LANES)
    accumulator = ir.VectorType(i32, LANES)
    even = ir.Constant(ir.VectorType(i32, LANES), [2 * q for q in range(LANES)])
    odd = ir.Constant(ir.VectorType(i32, LANES), [2 * q + 1 for q in range(LANES)])
    broadcast = ir.Constant(ir.VectorType(i32, 2 * LANES), [q % 2 for q in range(2 * LANES)])
    # Shared vectors: a weight row of `lanes` pairs repeated `share` times, and pixel k's pair
    # (elements 2k, 2k + 1 of the gathered pairs) over lanes k·lanes .. (k + 1)·lanes - 1.
    part_operand = ir.VectorType(i16, 2 * lanes)
    repeat = ir.Constant(ir.VectorType(i32, 2 * LANES), [q % (2 * lanes) for q in range(2 * LANES)])
    spread = ir.Constant(ir.VectorType(i32, 2 * LANES), [2 * (q // (2 * lanes)) + q % 2 for q in range(2 * LANES)])

    def block(typingctx, image, pixels, taps, pairs, weights, acc, acc_rows, column):
        arrays = (image, pixels, taps, weights, acc, acc_rows)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        if not (image.dtype == weights.dtype == types.int16 and acc.dtype == types.int32
                and pixels.dtype == taps.dtype == acc_rows.dtype == types.int64
                and isinstance(pairs, types.Integer) and isinstance(column, types.Integer)):
            return None
        sig = types.void(image, pixels, taps, pairs, weights, acc, acc_rows, column)

        def codegen(context, builder, signature, args):
            (image_a, pixels_a, taps_a, _, weights_a, acc_a, rows_a, _) = [
                context.make_array(t)(context, builder, v) if isinstance(t, types.Array) else None
                for t, v in zip(signature.args, args)]
            pairs_v = context.cast(builder, args[3], signature.args[3], types.int64)
            column_v = context.cast(builder, args[7], signature.args[7], types.int64)
            tap_count = builder.extract_value(taps_a.shape, 0)
            width = builder.extract_value(acc_a.shape, 1)  # OCp
            image_data = builder.bitcast(image_a.data, i16.as_pointer())
            weight_data = builder.bitcast(weights_a.data, i16.as_pointer())
            pixel_base = [builder.load(builder.gep(pixels_a.data, [ir.Constant(i64, r)])) for r in range(rows)]
            pair_stride = builder.mul(width, ir.Constant(i64, 2))  # int16 values per (tap, pair) row
            entry = builder.block
            tap_loop = builder.append_basic_block("block.tap")
            pair_loop = builder.append_basic_block("block.pair")
            tap_end = builder.append_basic_block("block.tap_end")
            done = builder.append_basic_block("block.done")
            builder.branch(tap_loop)

            builder.position_at_end(tap_loop)
            tap = builder.phi(i64)
            tap.add_incoming(ir.Constant(i64, 0), entry)
            tap_sums = []
            for _ in range(groups * vectors):
                phi = builder.phi(accumulator)
                phi.add_incoming(ir.Constant(accumulator, None), entry)
                tap_sums.append(phi)
            tap_offset = builder.load(builder.gep(taps_a.data, [tap]))
            tap_weights = builder.add(builder.mul(builder.mul(tap, pairs_v), pair_stride),
                                      builder.mul(column_v, ir.Constant(i64, 2)))
            builder.branch(pair_loop)

            builder.position_at_end(pair_loop)
            q = builder.phi(i64)
            q.add_incoming(ir.Constant(i64, 0), tap_loop)
            sums = []
            for k in range(groups * vectors):
                phi = builder.phi(accumulator)
                phi.add_incoming(tap_sums[k], tap_loop)
                sums.append(phi)
            weight_row = builder.add(tap_weights, builder.mul(q, pair_stride))
            ws = []
            for v in range(vectors):
                if share == 1:
                    address = builder.gep(weight_data, [builder.add(weight_row, ir.Constant(i64, 2 * LANES * v))])
                    ws.append(builder.sext(builder.load(builder.bitcast(address, operand.as_pointer()), align=2),
                                           widened))
                else:  # the row's `lanes` pairs, repeated for each pixel of the vector
                    address = builder.gep(weight_data, [builder.add(weight_row, ir.Constant(i64, 2 * lanes * v))])
                    row = builder.load(builder.bitcast(address, part_operand.as_pointer()), align=2)
                    ws.append(builder.sext(builder.shuffle_vector(row, row, repeat), widened))
            pair_offset = builder.add(tap_offset, builder.mul(q, ir.Constant(i64, 2)))
            xs = []
            if share == 1:
                for r in range(rows):
                    address = builder.gep(image_data, [builder.add(pixel_base[r], pair_offset)])
                    word = builder.load(builder.bitcast(address, i32.as_pointer()), align=2)
                    two = builder.bitcast(word, ir.VectorType(i16, 2))
                    xs.append(builder.sext(builder.shuffle_vector(two, two, broadcast), widened))
            else:  # each pixel's pair over its own `lanes` lanes
                for j in range(groups):
                    words = ir.Constant(ir.VectorType(i32, share), None)
                    for k in range(share):
                        address = builder.gep(image_data, [builder.add(pixel_base[j * share + k], pair_offset)])
                        word = builder.load(builder.bitcast(address, i32.as_pointer()), align=2)
                        words = builder.insert_element(words, word, ir.Constant(i32, k))
                    pairs_vector = builder.bitcast(words, ir.VectorType(i16, 2 * share))
                    xs.append(builder.sext(builder.shuffle_vector(pairs_vector, pairs_vector, spread), widened))
            updated = []
            for r in range(groups):
                for v in range(vectors):
                    product = builder.mul(xs[r], ws[v])
                    pair_sum = builder.add(builder.shuffle_vector(product, product, even),
                                           builder.shuffle_vector(product, product, odd))
                    updated.append(builder.add(sums[r * vectors + v], pair_sum))
            q_next = builder.add(q, ir.Constant(i64, 1))
            q.add_incoming(q_next, pair_loop)
            for phi, value in zip(sums, updated):
                phi.add_incoming(value, pair_loop)
            builder.cbranch(builder.icmp_signed("<", q_next, pairs_v), pair_loop, tap_end)

            builder.position_at_end(tap_end)
            tap_next = builder.add(tap, ir.Constant(i64, 1))
            tap.add_incoming(tap_next, tap_end)
            for phi, value in zip(tap_sums, updated):
                phi.add_incoming(value, tap_end)
            builder.cbranch(builder.icmp_signed("<", tap_next, tap_count), tap_loop, done)

            builder.position_at_end(done)
            acc_data = builder.bitcast(acc_a.data, i32.as_pointer())
            for r in range(rows):
                row = builder.load(builder.gep(rows_a.data, [ir.Constant(i64, r)]))
                start = builder.add(builder.mul(row, width), column_v)
                for v in range(vectors):
                    address = builder.gep(acc_data, [builder.add(start, ir.Constant(i64, lanes * v))])
                    value = updated[(r // share) * vectors + v]
                    if share == 1:
                        builder.store(value, builder.bitcast(address, accumulator.as_pointer()), align=4)
                    else:  # this pixel's lanes of the shared vector
                        k = r % share
                        part = builder.shuffle_vector(value, value, ir.Constant(
                            ir.VectorType(i32, lanes), [k * lanes + i for i in range(lanes)]))
                        builder.store(part, builder.bitcast(address, ir.VectorType(i32, lanes).as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"block_{rows}x{vectors}" + (f"_shared{share}" if share > 1 else "")
    return intrinsic(block)


# --- the kernel ---------------------------------------------------------------------------------

@lazy_njit
def _conv_kernel(x, oh, ow, sh, sw, pad_top, pad_left, pad_value, padded, taps, pairs, weights, acc, block):
    """Direct convolution of the images x (B, H, W, C) (int8 or int16) into acc (B·OH·OW, OCp)
    int32, rows in (image, oy, ox) order: the padded int16 copy ``padded`` (B, Hp, Wp, Cp) first
    (pad_value around and in the extra channel), then blocks of R consecutive output pixels (the
    last block of the chunk repeats its last pixel: the same row written again with the same
    values) x V·16 channels through the intrinsic."""
    images, height, width, channels = x.shape
    _, hp, wp, cp = padded.shape
    for n in range(images):
        for py in range(hp):
            iy = py - pad_top
            for px in range(wp):
                ix = px - pad_left
                dst = padded[n, py, px]
                if 0 <= iy < height and 0 <= ix < width:
                    src = x[n, iy, ix]
                    for c in range(channels):
                        dst[c] = src[c]
                    for c in range(channels, cp):
                        dst[c] = pad_value
                else:
                    for c in range(cp):
                        dst[c] = pad_value
    flat = padded.reshape(-1)
    plane = hp * wp * cp
    total = images * oh * ow
    out_plane = oh * ow
    width_padded = acc.shape[1]
    if block == 0:
        rows, step = 4, 64
    elif block == 1:
        rows, step = 8, 32
    else:
        rows, step = 8, 16
    pixels = np.empty(rows, np.int64)
    acc_rows = np.empty(rows, np.int64)
    for first in range(0, total, rows):
        for r in range(rows):
            p = min(first + r, total - 1)
            n = p // out_plane
            rest = p - n * out_plane
            oy = rest // ow
            ox = rest - oy * ow
            pixels[r] = n * plane + (oy * sh * wp + ox * sw) * cp
            acc_rows[r] = p
        for column in range(0, width_padded, step):
            if block == 0:
                _block_4x4(flat, pixels, taps, pairs, weights, acc, acc_rows, column)
            elif block == 1:
                _block_8x2(flat, pixels, taps, pairs, weights, acc, acc_rows, column)
            else:
                _block_8x1(flat, pixels, taps, pairs, weights, acc, acc_rows, column)


def conv(w: GemmWeights, g: ConvGeometry, x: np.ndarray, padded: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """The exact int32 accumulators (B·OH·OW, OC) of the images x (B, H, W, C), int8 or int16.
    ``padded`` (B, Hp, Wp, Cp) int16 and ``acc`` (B·OH·OW, OCp) int32: the caller's scratch
    buffers (contents undefined); the result is a view of ``acc``."""
    _intrinsics()
    (oh, ow), (sh, sw), (pt, pl) = g.out_hw, g.stride, g.padding
    _conv_kernel(x, oh, ow, sh, sw, pt, pl, g.pad_value, padded, g.taps, w.pairs, w.packed, acc, w.block)
    return acc[:, :w.channels]
