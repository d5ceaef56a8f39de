"""Compiled int8 CONV_2D for a network's first layers (few input channels: an RGB or grayscale
image, or a spectrogram), from the int8 input to the int8 output in one call, the requantization
done in the registers that accumulated each output. The same kernel serves narrow 3x3 layers
(16-64 input channels, as in pretrainedResnet), where gemm_u8's separate requantization pass cost
as much as a third of the layer.

Why: with 1-3 input channels a first layer does little arithmetic per output (27-40 products),
so what surrounds the products dominated: the int16 / uint8 padded copy of the whole batch, the
int32 accumulators written to memory and read back by the op's Requantizer (~0.5 ns per output
on vww_96's and kws's first layers, more than the products), 8 output channels half-filling
16-lane vectors (ops/compiled/gemm_u8.py) or int16 pairs (ops/compiled/small_conv.py).

How. Per image, the bytes u = x + 128 are written into a small padded buffer (Hp, Wp, C) that is
reused for every image (its border of u(zero point) is written once per call), so it stays in L1
/ L2. The reduction runs over whole filter rows as in gemm_u8 (the KW·C bytes of a filter row are
consecutive; a "run" split into quads of four bytes, the last quad reading up to three bytes past
the run against zero weights; with dilation_w > 1 the runs are the taps' C channels). Two kinds
of register blocks, each issuing one vpdpbusd per (vector, quad):
- Row blocks (exactly 4, 8 or 16 output channels, output rows of >= 16 pixels, 16 pixels' windows
  within 128 bytes: 15·sw·C + 4·quads <= 128): lane i is pixel i of 16 consecutive pixels of an
  output row, one vector per output channel. Per run, the 128 bytes the 16 windows read are loaded
  once (two vectors) and each quad's operand is one vpermi2b of them (the byte index per lane is a
  plan constant, i·sw·C + 4q + b); the weight is a broadcast dword. After the requantization the
  channel-major bytes are transposed in registers and stored as 16·OC consecutive bytes (the last
  group of a row starts at OW - 16, rewriting some pixels with the same bytes).
- Pixel blocks (the rest): a lane is one output channel of one pixel, R vectors x V·16 lanes, each
  pixel's quad broadcast; with at most 4 (8) output channels a vector holds 4 (2) pixels' channels
  (the weights tiled across the lanes); channels not filling the block go through a small staging
  buffer.
When the reduction ends, the block requantizes its accumulators in registers (generic LLVM vector
IR: shifts, int64 multiplies, compares) and stores int8 bytes: no int32 value reaches memory.

Why it equals TFLM byte for byte (reference_integer_ops::ConvPerChannel). TFLM forms, per output,
``int32 acc = Σ filter·(input + input_offset)`` over the taps inside the image, then
``acc += bias``: int32 multiplications and additions, which wrap in C on the targets the oracle
runs on, i.e. arithmetic modulo 2^32. The accumulators here start at
``init = bias + (input_offset - 128)·Σ_taps w`` (exact in int64 at prepare, then modulo 2^32) and
vpdpbusd (not vpdpbusds, the saturating form) adds each exact product w·u of a byte u in 0..255
and an int8 w modulo 2^32. A tap outside the image reads u = zero_point + 128 from the padding
(``plan`` refuses zero points -input_offset outside int8), i.e. x + input_offset = 0 there,
adding nothing, as TFLM skips it. So every accumulator is
    bias + (input_offset - 128)·Σw + Σ w·(x + 128) = bias + Σ w·(x + input_offset)   (mod 2^32),
TFLM's int32 for EVERY accumulator bound (addition and multiplication modulo 2^32 are associative
and commutative; ops/compiled/depthwise.py and pointwise_small.py make the same argument; the
tests drive biases near ±2^31 to pin the wrapping case). Padding lanes of the quads and of the
channels carry zero weights; padding channels are never stored.
Then MultiplyByQuantizedMultiplier, + output_offset wrapped to int32, the clamp and the int8 store:
ops/compiled/lanes_ir.requantize on the register block's lanes (lanes_ir's docstring proves each
IR step and the two shortcuts ``plan`` chooses, MODE_SKIP_NEGATIVE and MODE_SATURATE), with the
per-channel constants depthwise.plan computes, called for this layer's channels as a 1x1 depthwise
layer's (as pointwise_small.plan does), so the kernels cannot disagree on them.

Measured (each layer alone, one thread, CPU time, median of 9, the path it replaces alternating
with this one in one process, same bytes; ns per output): vww_96 op 0 3x3/2 96x96x3->8 (batch 64,
small_conv + Requantizer) 1.73 -> 0.56 (3.1x, row block of 8 channels); kws_ref_model op 0 10x4/2
49x10x1->64 (batch 128, gemm_u8 + Requantizer) 1.24 -> 0.54 (2.3x, 4 pixels x 64 channels);
pretrainedResnet op 0 3x3 32x32x3->16 (batch 128, gemm_u8) 1.22 -> 0.46 (2.7x, row block of 16);
MobileNetV2-224 3x3/2 224x224x3->32 (batch 4, gemm_u8) 0.95 -> 0.51 (1.85x, 8 pixels x 32);
pretrainedResnet's 3x3 layers over 16-64 channels (batch 64, gemm_u8 + Requantizer, pixel blocks)
1.75-4.30 -> 0.89-3.12 (1.38-2.07x).
The in-register requantization costs ~0.25-0.3 ns per output of that (int64 lanes, as the
numba loop's); kws's 4-pixel blocks with 1-channel quads are dominated by it.

vpdpbusd is x86-specific (gemm_u8's ``vpdpbusd``) and the row blocks' table lookup is vpermi2b:
AVX512-VNNI + AVX512-VBMI hosts only (``available()``); the caller keeps its other paths
elsewhere. Only eval imports numba / llvmlite; ``plan`` runs on numpy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import depthwise, gemm_u8, lazy_njit
from .depthwise import read_only
from .lanes_ir import even_odd_order, requantize, splat, tails
from .lanes_ir import mode as requantize_mode

__all__ = ["FirstConvPlan", "plan", "conv", "available"]

LANES = 16
# Register blocks (pixels per vector P, channel vectors V, vector rows R): a block covers R·P
# pixels x 16·V/P output channels. P > 1 for at most 16/P output channels (all of them in one
# block); P = 1: by OCp (a multiple of 16), % 64 -> V = 4, % 32 -> V = 2, else V = 1.
BLOCKS = ((4, 1, 8), (2, 1, 8), (1, 1, 8), (1, 2, 8), (1, 4, 4))
_SHARE_4, _SHARE_2, _PLAIN_16, _PLAIN_32, _PLAIN_64 = range(5)
# Row blocks (block ids len(BLOCKS) + k): 16 pixels of an output row in the lanes, one vector per
# output channel, for exactly ROW_CHANNELS[k] output channels.
ROW_CHANNELS = (4, 8, 16)
# The requantization's two shortcuts (MODE_SKIP_NEGATIVE, MODE_SATURATE: ops/compiled/lanes_ir.py
# proves each; ``plan`` sets them where they hold).
# Bytes a row block's table holds (two 64-byte vectors for vpermi2b): 16 pixels' windows must fit.
_TABLE = 128


@dataclass(frozen=True)
class FirstConvPlan:
    """An int8 CONV_2D (groups 1, default numerics): geometry, packed weights, and depthwise.py's
    requantization constants per lane."""
    in_hwc: tuple
    out_hw: tuple
    stride: tuple  # (sh, sw), >= 1
    padding: tuple  # (top, left), >= 0
    padded_hw: tuple  # (Hp, Wp): every row and column an output reaches, and the whole image
    pad_byte: int  # u of the zero point, zero_point + 128 (0..255)
    runs: np.ndarray  # (R,) int64: each run's byte offset in the padded image, TFLM's (ky, kx) order
    quads: int  # ceil(run length / 4)
    channels: int  # OC
    lanes: int  # L: lanes of the constant tables and of a (run, quad) weight row (16 when P > 1, else OCp)
    stored: int  # bytes a pixel's block result spans: 16 / P when P > 1, else OCp
    packed: np.ndarray  # flat (R, quads, L, 4) int8: lane l holds channel l mod (16 / P) (P > 1) or l
    # Row blocks: (quads, 64) uint8, the table byte each lane's quad reads (i·sw·C + 4q + b); else empty.
    index: np.ndarray
    # (2, L) int32: the accumulators' start, bias + (input_offset - 128)·Σw modulo 2^32, and the
    # left shift; (4, L) int64: multiplier, rounding, negative rounding, right shift (depthwise.py's
    # fused requantization; padding lanes: 0, 0, 0, 0, 0, 31).
    consts32: np.ndarray
    consts64: np.ndarray
    output_offset: int
    activation_min: int
    activation_max: int
    mode: int  # lanes_ir.MODE_SKIP_NEGATIVE | lanes_ir.MODE_SATURATE where they hold
    block: int  # index into BLOCKS, or len(BLOCKS) + k for the row block of ROW_CHANNELS[k] channels


def plan(in_hwc, out_hw, kernel_hw, stride, dilation, padding, input_offset: int, output_offset: int,
         activation_min: int, activation_max: int, weights: np.ndarray, bias, multiplier,
         shift) -> FirstConvPlan | None:
    """The plan, or None where the kernel does not apply: non-positive strides or dilations,
    negative padding, a padded image far larger than input and output, a zero point
    (-input_offset) or weight outside int8, and what depthwise.plan refuses for the requantization
    (offsets outside int32, negative multipliers, shifts below -31). ``weights`` (KH·KW·C, OC)
    integers in TFLM's order (ky, kx, c); the input must be int8. Imports no numba."""
    (h, w, c), (oh, ow), (kh, kw) = in_hwc, out_hw, kernel_hw
    (sh, sw), (dh, dw), (pt, pl) = stride, dilation, padding
    if min(sh, sw, dh, dw) < 1 or min(pt, pl) < 0 or min(oh, ow, h, w, c, kh, kw) < 1:
        return None
    if not -128 <= -int(input_offset) <= 127:
        return None
    filters = np.asarray(weights, np.int64)
    if filters.ndim != 2 or filters.shape[0] != kh * kw * c or filters.shape[1] < 1:
        return None
    if int(filters.min()) < -128 or int(filters.max()) > 127:
        return None
    hp = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + pl, (ow - 1) * sw + (kw - 1) * dw + 1)
    if hp * wp * c > 4 * (h * w * c + oh * ow * kh * kw * c) + 4096:
        return None  # strides or dilations reaching far past the image: a huge padded buffer
    channels = filters.shape[1]
    requant = depthwise.plan_channels(channels, input_offset, output_offset, activation_min, activation_max, bias,
                                      multiplier, shift)
    if requant is None:
        return None
    runs, run, quads = gemm_u8.filter_runs((kh, kw), (dh, dw), wp, c)
    if channels in ROW_CHANNELS and ow >= LANES and 15 * sw * c + 4 * quads <= _TABLE:
        block, group = len(BLOCKS) + ROW_CHANNELS.index(channels), channels
    elif channels <= 4:
        block, group = _SHARE_4, 4
    elif channels <= 8:
        block, group = _SHARE_2, 8
    else:
        group = -(-channels // LANES) * LANES
        block = _PLAIN_64 if group % 64 == 0 else _PLAIN_32 if group % 32 == 0 else _PLAIN_16
    lanes = LANES if group < LANES else group
    index = np.zeros((0, 4 * LANES), np.uint8)
    if block >= len(BLOCKS):
        lanes = channels  # one lane of the tables per channel
        index = (np.arange(LANES)[:, None] * (sw * c) + np.arange(4)[None, :])[None] \
            + 4 * np.arange(quads)[:, None, None]
        index = index.reshape(quads, 4 * LANES).astype(np.uint8)
    lane_channel = np.arange(lanes) % group  # the output channel each lane computes
    valid = lane_channel < channels
    source = np.where(valid, lane_channel, 0)
    by_run = np.zeros((len(runs), 4 * quads, lanes), np.int64)
    by_run[:, :run, :] = filters.reshape(len(runs), run, channels)[:, :, source]
    by_run[:, :, ~valid] = 0
    packed = np.ascontiguousarray(by_run.reshape(len(runs), quads, 4, lanes).transpose(0, 1, 3, 2))
    # The accumulators start at bias + (input_offset - 128)·Σw modulo 2^32 (the docstring).
    start = gemm_u8.u8_start(requant.bias, input_offset, filters.sum(axis=0))
    consts32 = np.zeros((2, lanes), np.int64)
    consts64 = np.zeros((4, lanes), np.int64)
    consts64[3] = 31
    for row, values in ((0, start), (1, requant.left_shift)):
        consts32[row, valid] = np.asarray(values, np.int64)[source[valid]]
    for row, values in enumerate((requant.multiplier, requant.rounding, requant.negative_rounding,
                                  requant.right_shift)):
        consts64[row, valid] = np.asarray(values, np.int64)[source[valid]]
    if block < len(BLOCKS):  # each 16 lanes' int64 constants in lanes_ir.requantize's order: even lanes, then odd
        consts64 = even_odd_order(consts64)
    # lanes_ir's shortcuts where its proofs hold (the clamp absorbs the negative rounding; int8 bounds).
    mode = requantize_mode(requant.activation_min, requant.activation_max, requant.output_offset)
    assert 31 <= int(consts64[3].min()) and int(consts64[3].max()) <= 62 and 0 <= int(consts32[1].min()) \
        and int(consts32[1].max()) <= 31  # LLVM's shifts are defined for these counts
    runs = np.array(runs, np.int64)
    return FirstConvPlan(
        (int(h), int(w), int(c)), (int(oh), int(ow)), (int(sh), int(sw)), (int(pt), int(pl)), (int(hp), int(wp)),
        -int(input_offset) + 128, read_only(runs), quads, channels, lanes, group, read_only(packed.astype(np.int8)),
        read_only(index),
        read_only(consts32.astype(np.int32)), read_only(consts64), requant.output_offset, requant.activation_min,
        requant.activation_max, mode, block)


def available() -> bool:
    """gemm_u8's intrinsic is there (numba targets the host and the host has AVX512-VNNI) and the
    host has AVX512-VBMI (the row blocks' vpermi2b). Imports numba: eval time only."""
    return gemm_u8.vbmi_available()


# --- the intrinsic ------------------------------------------------------------------------------

_blocks = None
_build_lock = threading.Lock()
_block_s4 = _block_s2 = _block_p16 = _block_p32 = _block_p64 = _row_4 = _row_8 = _row_16 = None


def _intrinsics():
    """Build the register blocks (imports numba: eval time only)."""
    global _blocks, _block_s4, _block_s2, _block_p16, _block_p32, _block_p64, _row_4, _row_8, _row_16
    if _blocks is not None:
        return
    with _build_lock:
        if _blocks is None:
            made = [_make_block(*b) for b in BLOCKS]
            _block_s4, _block_s2, _block_p16, _block_p32, _block_p64 = made
            _row_4, _row_8, _row_16 = rows = [_make_row_block(c) for c in ROW_CHANNELS]
            _blocks = made + rows


def _make_block(share: int, vectors: int, rows: int):
    """An intrinsic ``block(image, pixels, runs, quads, weights, consts32, consts64, out, out_rows,
    column, output_offset, act_min, act_max, mode)``. For vector row r < rows, pixel s < share (pixel
    j = r·share + s) and lanes l of vector v < vectors, lane index i = column + 16·v + l and the
    lane's channel slot k = l // share·... (P = share > 1: lane l of pixel s is l - s·16/P):
        acc = consts32[0, i] + Σ_run Σ_q Σ_{b<4} image[pixels[j] + runs[run] + 4q + b]
                                            · weights[((run·quads + q)·L + i)·4 + b]   (int32, mod 2^32)
    then requantized with consts32[1, i] and consts64[:, i'] (the module docstring; consts64 holds
    each 16 lanes' constants in the even-then-odd order ``lanes_ir.requantize`` reads) and stored as
    int8 at out[out_rows[j] + column + 16·v + l] (P = 1) or out[out_rows[j] + l - s·16/P] (P > 1).
    ``mode``: FirstConvPlan.mode.
    image: flat uint8; weights: flat int8; consts32: flat (2·L) int32; consts64: flat (4·L) int64;
    out: flat int8; pixels, out_rows: (rows·share,) int64; runs: (R,) int64, R >= 1; quads >= 1."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    vec32 = ir.VectorType(i32, LANES)
    vec64 = ir.VectorType(i64, LANES // 2)
    width = LANES // share  # lanes (channels) per pixel

    def block(typingctx, image, pixels, runs, quads, weights, consts32, consts64, out, out_rows, column,
              output_offset, act_min, act_max, mode):
        arrays = (image, pixels, runs, weights, consts32, consts64, out, out_rows)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        scalars = (quads, column, output_offset, act_min, act_max, mode)
        if not (image.dtype == types.uint8 and weights.dtype == types.int8 and out.dtype == types.int8
                and consts32.dtype == types.int32 and consts64.dtype == types.int64
                and pixels.dtype == runs.dtype == out_rows.dtype == types.int64
                and all(isinstance(s, types.Integer) for s in scalars)):
            return None
        sig = types.void(image, pixels, runs, quads, weights, consts32, consts64, out, out_rows, column,
                         output_offset, act_min, act_max, mode)

        def codegen(context, builder, signature, args):
            (image_a, pixels_a, runs_a, _, weights_a, c32_a, c64_a, out_a, rows_a) = gemm_u8.array_arguments(
                context, builder, signature, args)[:9]
            dot, operand = gemm_u8.vpdpbusd(builder)

            def scalar(index, kind):
                return context.cast(builder, args[index], signature.args[index], kind)

            quads_v, column_v = scalar(3, types.int64), scalar(9, types.int64)
            offset_v, low_v, high_v = scalar(10, types.int32), scalar(11, types.int32), scalar(12, types.int32)
            mode_v = scalar(13, types.int64)
            run_count = builder.extract_value(runs_a.shape, 0)
            lanes = builder.extract_value(c64_a.shape, 0)
            lanes = builder.sdiv(lanes, ir.Constant(i64, 4))  # L
            image_data = builder.bitcast(image_a.data, i8.as_pointer())
            weight_data = builder.bitcast(weights_a.data, i8.as_pointer())
            c32 = builder.bitcast(c32_a.data, i32.as_pointer())
            c64 = builder.bitcast(c64_a.data, i64.as_pointer())
            out_data = builder.bitcast(out_a.data, i8.as_pointer())
            pixel_base = [builder.load(builder.gep(pixels_a.data, [ir.Constant(i64, j)]))
                          for j in range(rows * share)]
            quad_stride = builder.mul(lanes, ir.Constant(i64, 4))  # bytes per (run, quad) row

            def lane_vector(pointer, first, vector):
                address = builder.gep(pointer, [first])
                return builder.load(builder.bitcast(address, vector.as_pointer()), align=4)

            lane0 = [builder.add(column_v, ir.Constant(i64, LANES * v)) for v in range(vectors)]
            starts = [lane_vector(c32, lane0[v], vec32) for v in range(vectors)]

            def row_operand(r, quad_offset):  # the quads of vector row r's `share` pixels, each in 16 / share lanes
                words = ir.Constant(ir.VectorType(i32, share), None)
                for s in range(share):
                    address = builder.gep(image_data, [builder.add(pixel_base[r * share + s], quad_offset)])
                    word = builder.load(builder.bitcast(address, i32.as_pointer()), align=1)
                    words = builder.insert_element(words, word, ir.Constant(i32, s))
                spread = builder.shuffle_vector(words, words, ir.Constant(
                    ir.VectorType(i32, LANES), [lane // width for lane in range(LANES)]))
                return builder.bitcast(spread, operand) if operand != vec32 else spread

            updated = gemm_u8.pixel_block_reduction(builder, runs_a, run_count, quads_v, quad_stride, column_v,
                                                    weight_data, operand, dot, starts, rows, row_operand)
            # depthwise.py's requantization, lane by lane (the module docstring).
            consts = []
            for v in range(vectors):
                left = lane_vector(c32, builder.add(lanes, lane0[v]), vec32)
                halves = []
                for half in range(2):
                    first = builder.add(lane0[v], ir.Constant(i64, 8 * half))
                    halves.append([lane_vector(c64, builder.add(builder.mul(lanes, ir.Constant(i64, row)), first),
                                               vec64) for row in range(4)])
                consts.append((left, halves))
            offset, low, high = (splat(builder, value, LANES) for value in (offset_v, low_v, high_v))
            bytes_type = ir.VectorType(i8, LANES)

            def emit(skip_negative, saturate):
                for r in range(rows):
                    for v in range(vectors):
                        left, halves = consts[v]
                        result = requantize(builder, updated[r * vectors + v], left, halves, offset, low, high,
                                             skip_negative, saturate)
                        if share == 1:
                            row = builder.load(builder.gep(rows_a.data, [ir.Constant(i64, r)]))
                            address = builder.gep(out_data, [builder.add(row, lane0[v])])
                            builder.store(result, builder.bitcast(address, bytes_type.as_pointer()), align=1)
                            continue
                        piece_type = ir.VectorType(i8, width)
                        for s in range(share):
                            piece = builder.shuffle_vector(result, result, ir.Constant(
                                ir.VectorType(i32, width), list(range(s * width, (s + 1) * width))))
                            row = builder.load(builder.gep(rows_a.data, [ir.Constant(i64, r * share + s)]))
                            address = builder.gep(out_data, [row])
                            builder.store(piece, builder.bitcast(address, piece_type.as_pointer()), align=1)

            tails(builder, mode_v, emit)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"block_first_{share}x{vectors}x{rows}"
    return intrinsic(block)


def _make_row_block(channels: int):
    """An intrinsic ``block(image, base, runs, quads, index, weights, consts32, consts64, out, target,
    output_offset, act_min, act_max, mode)`` for 16 output pixels of one output row (lane i: pixel i) x
    ``channels`` output channels (one vector each). Per run, the 128 bytes from image[base + run
    offset] are the table of vpermi2b; quad q's operand takes table byte index[64q + 4i + b] for lane
    i, byte b (the module's plan: i·sw·C + 4q + b). Channel c's accumulator:
        acc_c = consts32[0, c] + Σ_run Σ_q Σ_{b<4} table_run[index[64q + 4i + b]]
                                         · weights[((run·quads + q)·channels + c)·4 + b]   (int32, mod 2^32)
    then requantized with consts32[1, c] and consts64[:, c] (the module docstring) and stored as
    out[target + i·channels + c] (int8): 16·channels consecutive bytes, one vector store after an
    in-register transpose (``mode``: FirstConvPlan.mode). image: flat uint8 with >= 128 readable
    bytes from every run's start; index: flat (quads·64) uint8; weights: flat int8; consts32: flat
    (2·channels) int32; consts64: flat (4·channels) int64; runs: (R,) int64, R >= 1; quads >= 1."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    table = ir.VectorType(i8, 4 * LANES)

    def block(typingctx, image, base, runs, quads, index, weights, consts32, consts64, out, target, output_offset,
              act_min, act_max, mode):
        arrays = (image, runs, index, weights, consts32, consts64, out)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        scalars = (base, quads, target, output_offset, act_min, act_max, mode)
        if not (image.dtype == index.dtype == types.uint8 and weights.dtype == types.int8
                and out.dtype == types.int8 and consts32.dtype == types.int32 and consts64.dtype == types.int64
                and runs.dtype == types.int64 and all(isinstance(s, types.Integer) for s in scalars)):
            return None
        sig = types.void(image, base, runs, quads, index, weights, consts32, consts64, out, target, output_offset,
                         act_min, act_max, mode)

        def codegen(context, builder, signature, args):
            made = gemm_u8.array_arguments(context, builder, signature, args)
            image_a, runs_a, index_a, weights_a, c32_a, c64_a, out_a = (made[k] for k in (0, 2, 4, 5, 6, 7, 8))
            dot, operand = gemm_u8.vpdpbusd(builder)
            permute = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                table, [table, table, table]), "llvm.x86.avx512.vpermi2var.qi.512")

            def scalar(k, kind):
                return context.cast(builder, args[k], signature.args[k], kind)

            base_v, quads_v, target_v = scalar(1, types.int64), scalar(3, types.int64), scalar(9, types.int64)
            offset_v, low_v, high_v = scalar(10, types.int32), scalar(11, types.int32), scalar(12, types.int32)
            mode_v = scalar(13, types.int64)
            run_count = builder.extract_value(runs_a.shape, 0)
            image_data = builder.bitcast(image_a.data, i8.as_pointer())
            index_data = builder.bitcast(index_a.data, i8.as_pointer())
            weight_words = builder.bitcast(weights_a.data, i32.as_pointer())
            c32 = builder.bitcast(c32_a.data, i32.as_pointer())
            c64 = builder.bitcast(c64_a.data, i64.as_pointer())
            starts = [splat(builder, builder.load(builder.gep(c32, [ir.Constant(i64, c)])), LANES)
                      for c in range(channels)]

            def run_body(run):
                start = builder.add(base_v, builder.load(builder.gep(runs_a.data, [run])))
                low_half = builder.load(builder.bitcast(builder.gep(image_data, [start]), table.as_pointer()),
                                        align=1)
                high_half = builder.load(builder.bitcast(builder.gep(image_data, [builder.add(
                    start, ir.Constant(i64, 4 * LANES))]), table.as_pointer()), align=1)
                run_words = builder.mul(builder.mul(run, quads_v), ir.Constant(i64, channels))
                return low_half, high_half, run_words

            def quad_body(state, q, sums):
                low_half, high_half, run_words = state
                selector = builder.load(builder.bitcast(builder.gep(index_data, [builder.mul(
                    q, ir.Constant(i64, 4 * LANES))]), table.as_pointer()), align=1)
                x = builder.call(permute, [low_half, selector, high_half])
                x = builder.bitcast(x, operand) if operand != table else x
                words = builder.add(run_words, builder.mul(q, ir.Constant(i64, channels)))
                updated = []
                for c in range(channels):
                    word = builder.load(builder.gep(weight_words, [builder.add(words, ir.Constant(i64, c))]), align=1)
                    w = builder.bitcast(splat(builder, word, LANES), operand)
                    updated.append(builder.call(dot, [sums[c], x, w]))
                return updated

            updated = gemm_u8.run_quad_loops(builder, "row", run_count, quads_v, starts, run_body, quad_body)
            offset, low, high = (splat(builder, value, LANES) for value in (offset_v, low_v, high_v))
            lefts, constants = [], []
            for c in range(channels):
                lefts.append(splat(builder, builder.load(builder.gep(c32, [ir.Constant(i64, channels + c)])), LANES))
                constants.append([splat(builder, builder.load(builder.gep(c64, [ir.Constant(
                    i64, row * channels + c)])), LANES // 2) for row in range(4)])
            address = builder.gep(builder.bitcast(out_a.data, i8.as_pointer()), [target_v])
            total = LANES * channels

            def emit(skip_negative, saturate):
                results = [requantize(builder, updated[c], lefts[c], (constants[c], constants[c]), offset, low, high,
                                       skip_negative, saturate) for c in range(channels)]
                # Concatenate (channel-major: joined[16c + i] = channel c of pixel i), then transpose.
                while len(results) > 1:
                    size = results[0].type.count
                    results = [builder.shuffle_vector(results[k], results[k + 1], ir.Constant(
                        ir.VectorType(i32, 2 * size), list(range(2 * size)))) for k in range(0, len(results), 2)]
                pixel_major = builder.shuffle_vector(results[0], results[0], ir.Constant(
                    ir.VectorType(i32, total), [(j % channels) * LANES + j // channels for j in range(total)]))
                builder.store(pixel_major, builder.bitcast(address, ir.VectorType(i8, total).as_pointer()), align=1)

            tails(builder, mode_v, emit)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"block_first_row_{channels}"
    return intrinsic(block)


# --- the kernel ---------------------------------------------------------------------------------

@lazy_njit
def _first_conv_kernel(x, height, width, depth, oh, ow, sh, sw, pt, pl, hp, wp, u, pad_byte, runs, quads, weights,
                       consts32, consts64, output_offset, act_min, act_max, mode, out, channels, stored, staging,
                       block):
    """Per image: u = x + 128 into the padded buffer ``u`` (its border and slack hold pad_byte,
    written once); per block of output pixels in (oy, ox) order (the last block repeats the last
    pixel: the same bytes written again): the register block's int8 results, straight into ``out``
    (flat, (image, oy, ox, OC)) when a pixel's result spans exactly its OC channels, else into
    ``staging`` and copied."""
    n_images = x.shape[0]
    if block == 0:
        share, rows, step = 4, 8, 16
    elif block == 1:
        share, rows, step = 2, 8, 16
    elif block == 2:
        share, rows, step = 1, 8, 16
    elif block == 3:
        share, rows, step = 1, 8, 32
    else:
        share, rows, step = 1, 4, 64
    per_block = rows * share
    direct = stored == channels
    row_bytes = width * depth
    flip = np.uint8(0x80)
    for j in range(u.size):
        u[j] = pad_byte
    pixels = np.empty(per_block, np.int64)
    out_rows = np.empty(per_block, np.int64)
    total = oh * ow
    for b in range(n_images):
        image = x[b]
        for y in range(height):
            target = u[((y + pt) * wp + pl) * depth:((y + pt) * wp + pl) * depth + row_bytes]
            source = image[y * row_bytes:(y + 1) * row_bytes]
            for j in range(row_bytes):
                target[j] = source[j] ^ flip  # u = x + 128: the int8 byte with its top bit flipped
        oy = 0
        ox = 0
        for first in range(0, total, per_block):
            for j in range(per_block):
                if first + j < total:
                    pixels[j] = (oy * sh * wp + ox * sw) * depth
                    out_rows[j] = (b * total + first + j) * channels if direct else j * stored
                    ox += 1
                    if ox == ow:
                        ox = 0
                        oy += 1
                else:
                    pixels[j] = pixels[j - 1]
                    out_rows[j] = out_rows[j - 1]
            target = out if direct else staging
            for column in range(0, stored if share == 1 else 1, step):
                if block == 0:
                    _block_s4(u, pixels, runs, quads, weights, consts32, consts64, target, out_rows, column,
                              output_offset, act_min, act_max, mode)
                elif block == 1:
                    _block_s2(u, pixels, runs, quads, weights, consts32, consts64, target, out_rows, column,
                              output_offset, act_min, act_max, mode)
                elif block == 2:
                    _block_p16(u, pixels, runs, quads, weights, consts32, consts64, target, out_rows, column,
                               output_offset, act_min, act_max, mode)
                elif block == 3:
                    _block_p32(u, pixels, runs, quads, weights, consts32, consts64, target, out_rows, column,
                               output_offset, act_min, act_max, mode)
                else:
                    _block_p64(u, pixels, runs, quads, weights, consts32, consts64, target, out_rows, column,
                               output_offset, act_min, act_max, mode)
            if not direct:
                count = min(per_block, total - first)
                for j in range(count):
                    row = out[(b * total + first + j) * channels:(b * total + first + j + 1) * channels]
                    source_row = staging[j * stored:j * stored + channels]
                    for o in range(channels):
                        row[o] = source_row[o]


@lazy_njit
def _row_conv_kernel(x, height, width, depth, oh, ow, sh, sw, pt, pl, wp, u, pad_byte, runs, quads, index, weights,
                     consts32, consts64, output_offset, act_min, act_max, mode, out, channels, block):
    """Per image: u = x + 128 into the padded buffer ``u`` (its border and slack hold pad_byte,
    written once); per output row, groups of 16 consecutive output pixels (the last group of a row
    starts at OW - 16: it may write some pixels again, with the same bytes), each one row block
    straight into ``out`` (flat, (image, oy, ox, OC))."""
    n_images = x.shape[0]
    row_bytes = width * depth
    flip = np.uint8(0x80)
    for j in range(u.size):
        u[j] = pad_byte
    for b in range(n_images):
        image = x[b]
        for y in range(height):
            target = u[((y + pt) * wp + pl) * depth:((y + pt) * wp + pl) * depth + row_bytes]
            source = image[y * row_bytes:(y + 1) * row_bytes]
            for j in range(row_bytes):
                target[j] = source[j] ^ flip  # u = x + 128: the int8 byte with its top bit flipped
        for oy in range(oh):
            row_base = oy * sh * wp * depth
            for group in range(0, ow, 16):
                ox = min(group, ow - 16)
                base = row_base + ox * sw * depth
                first = ((b * oh + oy) * ow + ox) * channels
                if block == 5:
                    _row_4(u, base, runs, quads, index, weights, consts32, consts64, out, first, output_offset,
                           act_min, act_max, mode)
                elif block == 6:
                    _row_8(u, base, runs, quads, index, weights, consts32, consts64, out, first, output_offset,
                           act_min, act_max, mode)
                else:
                    _row_16(u, base, runs, quads, index, weights, consts32, consts64, out, first, output_offset,
                            act_min, act_max, mode)


def conv(p: FirstConvPlan, x: np.ndarray, out_dtype) -> np.ndarray:
    """x (…, H, W, C) int8 (samples and the model's batch folded together) -> (N·B, OH, OW, OC)
    int8. Callers check ``available()`` first."""
    _intrinsics()
    h, w, c = p.in_hwc
    images = np.ascontiguousarray(x.reshape((-1, h * w * c))).view(np.uint8)  # the kernels read the bytes
    (oh, ow), (sh, sw), (pt, pl), (hp, wp) = p.out_hw, p.stride, p.padding, p.padded_hw
    out = np.empty(images.shape[0] * oh * ow * p.channels, out_dtype)
    if p.block >= len(BLOCKS):
        u = np.empty(hp * wp * c + _TABLE, np.uint8)  # slack for the last run's table
        _row_conv_kernel(images, h, w, c, oh, ow, sh, sw, pt, pl, wp, u, p.pad_byte, p.runs, p.quads,
                         p.index.reshape(-1), p.packed.reshape(-1), p.consts32.reshape(-1), p.consts64.reshape(-1),
                         p.output_offset, p.activation_min, p.activation_max, p.mode, out, p.channels, p.block)
        return out.reshape((images.shape[0], oh, ow, p.channels))
    u = np.empty(hp * wp * c + 4, np.uint8)  # four bytes of slack for the last quad
    share, _, rows = BLOCKS[p.block]
    staging = np.empty(rows * share * p.stored + LANES, np.int8)
    _first_conv_kernel(images, h, w, c, oh, ow, sh, sw, pt, pl, hp, wp, u, p.pad_byte, p.runs, p.quads, p.packed,
                       p.consts32.reshape(-1), p.consts64.reshape(-1), p.output_offset, p.activation_min,
                       p.activation_max, p.mode, out, p.channels, p.stored, staging, p.block)
    return out.reshape((images.shape[0], oh, ow, p.channels))
