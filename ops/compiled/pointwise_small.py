"""Compiled int8 1x1 CONV_2D (stride >= 1, no padding) with the requantization fused: TFLM's
reference_integer_ops::ConvPerChannel, one call from the int8 input to the int8 output.

Why: a 1x1 convolution over few input channels (vww_96's and person_detect's 48x48x8 -> 16, K = 8)
does little arithmetic per output (two vpdpbusd per 16 outputs), so everything around the dot
products dominates. Here one LLVM IR loop (a numba intrinsic) runs over a whole run of evenly
spaced pixels (all pixels of all images at once for stride 1; else one output row): per 16·V
output channels (their constants loaded once), per register block of R pixels, the R·V vectors of
16 int32 accumulators stay in registers through the dot products over the input bytes (flipped to
u = x + 128 as they are loaded: no separate pass), are requantized in registers
(ops/compiled/requant_ir.py) and stored as 16 int8 each (a masked store past the last channel:
no padded copy, no int32 accumulators in memory). Measured (one thread, CPU time, batch 64 for
vww, 128 for person_detect and kws, alternating with the previous version of this module —
gemm_u8's register blocks into an int32 chunk, then a numba requantization loop — ns per output):
vww / person 48x48x8->16 0.58-0.71 -> 0.21 (2.8-3.3x); 24x24x16->32 0.51-0.59 -> 0.24 (2.1-2.4x);
24x24x32->32 0.59-0.61 -> 0.33-0.35 (1.7-1.8x); 12x12x32->64 0.52-0.61 -> 0.30-0.32 (1.8-1.9x);
K = 64..256 1.3-1.7x; kws_ref_model 25x5x64->64 0.72-0.75 -> 0.44-0.47 (1.5-1.7x).
Not kept: 8 pixels per block for one vector, 6 for two (within noise); the quad loop unrolled
for a compile-time K = 8 (no gain); the flip as a vector xor / byte add on the broadcast word
(LLVM 22 did not finish compiling it in minutes: the flip stays a 32-bit xor before the broadcast).

Why it equals TFLM byte for byte. TFLM forms, per output (b, y, x, oc),
``int32 acc = Σ_k filter[oc, k]·(input[k] + input_offset)``, then ``acc += bias[oc]``, every step
an int32 multiplication or addition. C's int32 arithmetic wraps (two's complement, as on the MCUs
and x86 where the oracle runs), i.e. it is arithmetic modulo 2^32. The kernel's accumulators start
at ``init = bias + (input_offset - 128)·Σ_k w`` (computed exactly in int64 at prepare, then taken
modulo 2^32), and vpdpbusd (gemm_u8.vpdpbusd: not the saturating form) adds the exact products
w·u of the bytes u = x + 128 (0..255; x XOR 0x80, the int8 byte with its top bit flipped) four at
a time, modulo 2^32. So each accumulator is
    bias + (input_offset - 128)·Σw + Σ w·(x + 128) = bias + Σ w·(x + input_offset)   (mod 2^32),
the same int32 as TFLM's for EVERY accumulator bound (addition and multiplication modulo 2^32 are
associative and commutative, as ops/compiled/depthwise.py argues); the tests drive biases near ±2^31
to pin the wrapping case. (gemm_u8.plan, which packs the weights, also proves
max_o Σ|w|·128 < 2^31 or refuses; exactness does not rely on it.) Quads of four bytes run past K
when K is not a multiple of 4: they read the next pixel's bytes (or, past the last pixel, the
zeroed slack of a copy of the input that ``conv`` makes for such K) against zero weights, adding 0.
Output channels are padded to a multiple of 16 with zero weights; their lanes are never stored
(the store's mask). Then requant_ir.requantize16: MultiplyByQuantizedMultiplier, + output_offset
wrapped to int32, the clamp, the int8 store, in exactly ops/compiled/depthwise.py's one-shift form
(requant_ir's docstring proves each IR step equal to it; it needs int8 activation bounds, which
``plan`` checks). Layers without left shifts whose offset fits (``plan``: for every channel,
rounding + |output_offset|·2^right_shift + 2^31 <= 2^62) run a variant with the output offset
folded into the rounding constant, rounding' = rounding + output_offset·2^right_shift: for every
integer t, floor((t + o·2^s) / 2^s) = floor(t / 2^s) + o, so the int64 shift gives scaled + offset
exactly (|p| < 2^62 and the bound keep every sum below 2^63), and its int32 truncation is
int32(scaled + output_offset), the wrapped sum; the left shift by 0 and the int32 addition are
left out (12-13% on the K = 8 layer). The per-channel constants are the ones depthwise.plan
computes (called with this layer's channels as a 1x1 depthwise layer's), so the two kernels cannot
disagree on them.

vpdpbusd is reached through gemm_u8's intrinsic: AVX512-VNNI hosts only (``available()``); the
caller keeps its other paths elsewhere. Only eval imports numba: ``plan`` runs at prepare on numpy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import depthwise, gemm_u8, lazy_njit, requant_ir

__all__ = ["PointwiseSmallPlan", "plan", "conv", "available"]
LANES = 16
# Register blocks (pixels R, 16-lane channel vectors V) by OCp: % 64 -> (4, 4), % 32 -> (4, 2), else (4, 1).
BLOCKS = ((4, 4), (4, 2), (4, 1))
# Input bytes per chunk of pixels when the output channels take several passes of 16·V: the
# chunk's input stays in L1 between the passes.
CHUNK_BYTES = 8192
_INT32 = 1 << 32


@dataclass(frozen=True)
class PointwiseSmallPlan:
    """A 1x1 int8 CONV_2D (groups 1, padding 0, default numerics): packed weights, the start values
    of the accumulators, and depthwise.py's per-channel requantization constants (requant_ir)."""
    in_hwc: tuple
    out_hw: tuple
    stride: tuple  # (sh, sw), >= 1
    channels: int  # OC
    padded_channels: int  # OCp, a multiple of 16·V
    quads: int  # ceil(K / 4)
    packed: np.ndarray  # gemm_u8's flat (1, quads, OCp, 4) int8 weights, zeros past K and past OC
    init: np.ndarray  # (OCp,) int32: bias + (input_offset - 128)·Σw per output channel, modulo 2^32
    block: int  # index into BLOCKS, + 3 for the variant with the offset folded into the rounding
    chunk_pixels: int  # pixels per call of the register-block loop
    # depthwise.py's requantization per output channel (requant_ir's form; OCp lanes, the padding
    # channels' results are never stored):
    # scaled = ((acc << left)·M + rounding - [(acc << left)·M < -2^30]·negative_rounding) >> right_shift.
    left_shift: np.ndarray  # (OCp,) int32, 0..31
    # (4, OCp) int64, rows M (>= 0), rounding, negative_rounding, right_shift (31..62), each group of
    # 16 channels as its 8 even channels, then its 8 odd ones (requant_ir.constants).
    wide: np.ndarray
    output_offset: int
    activation_min: int
    activation_max: int


def plan(in_hwc, out_hw, kernel_hw, stride, padding, input_offset: int, output_offset: int, activation_min: int,
         activation_max: int, weights: np.ndarray, bias, multiplier, shift) -> PointwiseSmallPlan | None:
    """The plan, or None where the kernel does not apply: not 1x1, padding, non-positive strides,
    an output reaching past the input, what gemm_u8.plan
    refuses (a zero point or weight outside int8, the bound max_o Σ|w|·max|x| at or above 2^31) and
    what depthwise.plan refuses for the requantization (offsets outside int32, negative
    multipliers, shifts below -31). ``weights`` (K, OC) integers (K = input channels of a 1x1
    filter); the input must be int8. Imports no numba."""
    h, w, k = in_hwc
    (oh, ow), (sh, sw) = out_hw, stride
    if tuple(kernel_hw) != (1, 1) or tuple(padding) != (0, 0) or min(sh, sw) < 1 or min(oh, ow) < 1:
        return None
    if (oh - 1) * sh >= h or (ow - 1) * sw >= w or k < 1:
        return None
    filters = np.asarray(weights, np.int64)
    if filters.shape[0] != k:
        return None
    channels = filters.shape[1]
    packed = gemm_u8.plan(in_hwc, out_hw, kernel_hw, stride, (1, 1), padding, -int(input_offset), filters, 128)
    if packed is None or packed.runs.tolist() != [0]:
        return None
    # depthwise.plan's per-channel requantization constants for these channels (its geometry is that
    # of a 1x1x1 image, never read here).
    requant = depthwise.plan("INT8", (1, 1, channels), (1, 1), (1, 1), (1, 1), (0, 0), 1, input_offset,
                             output_offset, activation_min, activation_max, np.zeros((1, 1, channels), np.int64),
                             bias, multiplier, shift)
    if requant is None or requant.wide:
        return None
    if not (-128 <= requant.activation_min and requant.activation_max <= 127):
        return None  # requant_ir clamps in int8 (TFLM's int8 activation ranges always are)
    padded = packed.padded_channels
    block = 0 if padded % 64 == 0 else 1 if padded % 32 == 0 else 2
    rows, vectors = BLOCKS[block]
    # Several passes over a chunk of pixels when OCp > 16·V; one pass over a whole run otherwise.
    passes = padded // (LANES * vectors)
    chunk_pixels = rows * max(1, CHUNK_BYTES // (rows * k)) if passes > 1 else 1 << 40
    # The accumulators start at bias + (input_offset - 128)·Σw: vpdpbusd adds Σ w·(x + 128), so they
    # end at bias + Σ w·(x + input_offset) modulo 2^32, TFLM's int32 accumulator (the docstring).
    init = np.zeros(padded, np.int64)
    init[:channels] = (np.asarray(requant.bias, np.int64) + (int(input_offset) - 128) * filters.sum(axis=0)) % _INT32
    init = (init + (1 << 31)) % _INT32 - (1 << 31)
    init = init.astype(np.int32)
    init.flags.writeable = False
    left, wide = requant_ir.constants(requant, channels, padded)
    # Without left shifts, and where the bound keeps every int64 sum below 2^63 (|p| < 2^62), the
    # output offset joins the rounding constant: (t + offset·2^s) >> s = (t >> s) + offset exactly,
    # and the int32 truncation of that int64 is int32(scaled + offset) (the module docstring).
    offset = int(requant.output_offset)
    plain = not requant.left_shifts and all(
        int(r) + abs(offset) * (1 << int(s)) + (1 << 31) <= (1 << 62) for r, s in zip(wide[1], wide[3]))
    if plain:
        wide = wide.copy()
        wide[1] += np.int64(offset) * np.left_shift(np.int64(1), wide[3])  # |offset|·2^s < 2^62: exact
        wide.flags.writeable = False
    return PointwiseSmallPlan(
        (h, w, k), (int(oh), int(ow)), (int(sh), int(sw)), channels, padded, packed.quads, packed.packed,
        init, block + 3 * plain, int(chunk_pixels), left, wide, requant.output_offset, requant.activation_min,
        requant.activation_max)


def available() -> bool:
    """gemm_u8's intrinsic is there: numba targets the host and the host has AVX512-VNNI (imports
    numba: eval time only)."""
    return gemm_u8.available()


_ready = False
_lock = threading.Lock()
_run_4x4 = _run_4x2 = _run_4x1 = _plain_4x4 = _plain_4x2 = _plain_4x1 = None


def _intrinsics():
    """The register-block loops, bound to this module's globals before the kernel compiles."""
    global _ready, _run_4x4, _run_4x2, _run_4x1, _plain_4x4, _plain_4x2, _plain_4x1
    if _ready:
        return
    with _lock:
        if not _ready:
            _run_4x4, _run_4x2, _run_4x1 = [_make_run(r, v, False) for r, v in BLOCKS]
            _plain_4x4, _plain_4x2, _plain_4x1 = [_make_run(r, v, True) for r, v in BLOCKS]
            _ready = True


def _make_run(rows: int, vectors: int, plain: bool):
    """An intrinsic ``run(x, x_start, x_step, count, out, out_start, weights, init, left, wide,
    numbers)`` (``plan``'s left_shift and wide constants) with numbers = (quads, OCp, OC,
    output_offset, act_min, act_max) int64: for the ``count`` pixels i, input bytes at
    x_start + i·x_step (K bytes, read as ``quads`` quads; x int8 or uint8, flat), and every output
    channel oc < OC:
        acc = init[oc] + Σ_q Σ_{j<4} (x[x_start + i·x_step + 4q + j] ^ 0x80) · weights[(q·OCp + oc)·4 + j]
    (int32 modulo 2^32, vpdpbusd on the bytes u = x + 128), then requant_ir.requantize16 with
    channel oc's constants (``plain``: without the left shift and the offset, which ``wide``'s
    rounding row then holds), the int8 stored at out[out_start + i·OC + oc] (out flat int8).
    Loop order: per 16·V output channels (their constants loaded once), blocks of ``rows`` pixels
    (then single pixels), the quads in a loop with the rows·V accumulators in registers, then the
    requantization in registers and a masked 16-byte store per (pixel, vector)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i1, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
    acc_t = ir.VectorType(i32, LANES)
    half_t = ir.VectorType(i64, LANES // 2)
    bytes16 = ir.VectorType(i8, LANES)
    mask_t = ir.VectorType(i1, LANES)
    zeros = ir.Constant(acc_t, [0] * LANES)
    iota = ir.Constant(ir.VectorType(i64, LANES), list(range(LANES)))
    flip = ir.Constant(i32, 0x80808080 - (1 << 32))

    def run(typingctx, x, x_start, x_step, count, out, out_start, weights, init, left, wide, numbers):
        arrays = (x, out, weights, init, left, wide, numbers)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        if not (x.dtype in (types.int8, types.uint8) and out.dtype == types.int8 and weights.dtype == types.int8
                and init.dtype == left.dtype == types.int32 and wide.dtype == numbers.dtype == types.int64
                and wide.ndim == 2
                and all(isinstance(t, types.Integer) for t in (x_start, x_step, count, out_start))):
            return None
        sig = types.void(x, x_start, x_step, count, out, out_start, weights, init, left, wide, numbers)

        def codegen(context, builder, signature, args):
            arrays = [context.make_array(t)(context, builder, v) if isinstance(t, types.Array) else None
                      for t, v in zip(signature.args, args)]
            scalars = [context.cast(builder, v, t, types.int64) if isinstance(t, types.Integer) else None
                       for t, v in zip(signature.args, args)]
            x_a, out_a, w_a, init_a, left_a, wide_a, num_a = (arrays[0], arrays[4], arrays[6], arrays[7], arrays[8],
                                                              arrays[9], arrays[10])
            x_start_v, x_step_v, count_v, out_start_v = scalars[1], scalars[2], scalars[3], scalars[5]
            dot, operand = gemm_u8.vpdpbusd(builder)
            masked_store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                ir.VoidType(), [bytes16, i8.as_pointer(), i32, mask_t]), "llvm.masked.store.v16i8.p0")
            number = [builder.load(builder.gep(num_a.data, [ir.Constant(i64, j)])) for j in range(6)]
            quads, padded, channels = number[:3]
            offset = _splat(builder, builder.trunc(number[3], i32))
            act_min, act_max = [_splat(builder, builder.trunc(v, i8)) for v in number[4:]]
            x_data = builder.bitcast(x_a.data, i8.as_pointer())
            out_data = builder.bitcast(out_a.data, i8.as_pointer())
            w_data = builder.bitcast(w_a.data, i8.as_pointer())
            quad_stride = builder.mul(padded, ir.Constant(i64, 4))
            accs = [cgutils.alloca_once(builder, acc_t) for _ in range(rows * vectors)]

            def vector_at(array, index, ty, align):
                address = builder.gep(builder.bitcast(array.data, ty.element.as_pointer()), [index])
                return builder.load(builder.bitcast(address, ty.as_pointer()), align=align)

            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), padded,
                                         ir.Constant(i64, LANES * vectors), intp=i64) as (column, _):
                consts = []
                for v in range(vectors):
                    c = builder.add(column, ir.Constant(i64, LANES * v))
                    remaining = builder.sub(channels, c)
                    mask = builder.icmp_signed("<", iota, _splat(builder, remaining))
                    rows_wide = [[vector_at(wide_a, builder.add(builder.mul(ir.Constant(i64, row), padded),
                                                                builder.add(c, ir.Constant(i64, half * 8))),
                                            half_t, 8) for half in range(2)] for row in range(4)]
                    consts.append((c, vector_at(init_a, c, acc_t, 4), vector_at(left_a, c, acc_t, 4), rows_wide,
                                   mask))

                def pixels(first, count_r):
                    x_at = [builder.add(x_start_v, builder.mul(builder.add(first, ir.Constant(i64, r)), x_step_v))
                            for r in range(count_r)]
                    for r in range(count_r):
                        for v in range(vectors):
                            builder.store(consts[v][1], accs[r * vectors + v])
                    with cgutils.for_range(builder, quads, intp=i64) as q_loop:
                        q = q_loop.index
                        row = builder.add(builder.mul(q, quad_stride), builder.mul(column, ir.Constant(i64, 4)))
                        ws = []
                        for v in range(vectors):
                            address = builder.gep(w_data, [builder.add(row, ir.Constant(i64, 4 * LANES * v))])
                            ws.append(builder.load(builder.bitcast(address, operand.as_pointer()), align=1))
                        q4 = builder.mul(q, ir.Constant(i64, 4))
                        for r in range(count_r):
                            address = builder.gep(x_data, [builder.add(x_at[r], q4)])
                            word = builder.load(builder.bitcast(address, i32.as_pointer()), align=1)
                            word = builder.xor(word, flip)  # u = x + 128: the top bit of each byte flipped
                            one = builder.insert_element(ir.Constant(acc_t, None), word, ir.Constant(i32, 0))
                            spread = builder.shuffle_vector(one, one, zeros)
                            u = builder.bitcast(spread, operand)
                            for v in range(vectors):
                                slot = accs[r * vectors + v]
                                builder.store(builder.call(dot, [builder.load(slot), u, ws[v]]), slot)
                    for r in range(count_r):
                        pixel_out = builder.add(out_start_v, builder.mul(builder.add(first, ir.Constant(i64, r)),
                                                                         channels))
                        for v in range(vectors):
                            c, _, left_v, rows_wide, mask = consts[v]
                            value = requant_ir.requantize16(builder, builder.load(accs[r * vectors + v]),
                                                            None if plain else left_v, *rows_wide,
                                                            None if plain else offset, act_min, act_max)
                            address = builder.gep(out_data, [builder.add(pixel_out, c)])
                            builder.call(masked_store, [value, address, ir.Constant(i32, 1), mask])

                whole = builder.mul(builder.sdiv(count_v, ir.Constant(i64, rows)), ir.Constant(i64, rows))
                with cgutils.for_range_slice(builder, ir.Constant(i64, 0), whole, ir.Constant(i64, rows),
                                             intp=i64) as (first, _):
                    pixels(first, rows)
                with cgutils.for_range_slice(builder, whole, count_v, ir.Constant(i64, 1), intp=i64) as (first, _):
                    pixels(first, 1)
            return context.get_dummy_value()

        return sig, codegen

    run.__name__ = f"pointwise_run_{rows}x{vectors}{'_plain' if plain else ''}"
    return intrinsic(run)


def _splat(builder, value):
    """<16 x T> of one scalar."""
    from llvmlite import ir

    vector = ir.VectorType(value.type, LANES)
    one = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


def conv(p: PointwiseSmallPlan, x: np.ndarray, out_dtype) -> np.ndarray:
    """x (…, H, W, K) int8 (samples and the model's batch folded together) -> (N·B, OH, OW, OC) int8.
    Callers check ``available()`` first."""
    _intrinsics()
    h, w, k = p.in_hwc
    images = np.ascontiguousarray(x.reshape((-1, h * w * k)))
    (oh, ow), (sh, sw) = p.out_hw, p.stride
    n = images.shape[0]
    out = np.empty(n * oh * ow * p.channels, out_dtype)
    flat = images.reshape(-1)
    if k % 4:  # the last quad reads up to 3 bytes past the last pixel: a copy with 4 bytes of slack
        source = np.zeros(flat.size + 4, np.int8)
        source[:flat.size] = flat
    else:
        source = flat
    numbers = np.array([p.quads, p.padded_channels, p.channels, p.output_offset, p.activation_min,
                        p.activation_max], np.int64)
    contiguous = (oh, ow) == (h, w) and (sh, sw) == (1, 1)
    _pointwise_kernel(source, n, h * w * k, w * k, oh, ow, sh * w * k, sw * k, k, contiguous, p.chunk_pixels,
                      out, p.packed, p.init, p.left_shift, p.wide, numbers, p.block)
    return out.reshape((n, oh, ow, p.channels))


@lazy_njit
def _pointwise_kernel(source, n_images, plane, row_bytes, oh, ow, row_step, pixel_step, depth, contiguous, chunk,
                      out, weights, init, left, wide, numbers, block):
    """The runs of output pixels whose inputs are evenly spaced: all pixels of all images at once
    (stride 1, output = input), else one output row at a time; each in chunks of ``chunk``
    pixels, through the register-block loop of ``block``."""
    channels = numbers[2]
    if contiguous:
        runs, run_pixels, run_step = 1, n_images * oh * ow, depth
    else:
        runs, run_pixels, run_step = n_images * oh, ow, pixel_step
    for run in range(runs):
        if contiguous:
            start = 0
        else:
            b = run // oh
            start = b * plane + (run - b * oh) * row_step
        for first in range(0, run_pixels, chunk):
            count = min(chunk, run_pixels - first)
            x_start = start + first * run_step
            out_start = (run * run_pixels + first) * channels
            if block == 0:
                _run_4x4(source, x_start, run_step, count, out, out_start, weights, init, left, wide, numbers)
            elif block == 1:
                _run_4x2(source, x_start, run_step, count, out, out_start, weights, init, left, wide, numbers)
            elif block == 2:
                _run_4x1(source, x_start, run_step, count, out, out_start, weights, init, left, wide, numbers)
            elif block == 3:
                _plain_4x4(source, x_start, run_step, count, out, out_start, weights, init, left, wide, numbers)
            elif block == 4:
                _plain_4x2(source, x_start, run_step, count, out, out_start, weights, init, left, wide, numbers)
            else:
                _plain_4x1(source, x_start, run_step, count, out, out_start, weights, init, left, wide, numbers)
