"""Compiled int8 1x1 CONV_2D (stride >= 1, no padding) with the requantization fused: TFLM's
reference_integer_ops::ConvPerChannel, one call from the int8 input to the int8 output.

Why: a 1x1 convolution over few input channels (vww_96's and person_detect's 48x48x8 -> 16, K = 8)
does little arithmetic per output, so the passes around the dot products dominate: the float32
GEMM path converts, multiplies and requantizes in separate numpy passes, and gemm_u8 (0.77x on it)
writes int32 accumulators that the op's Requantizer reads back. Here each chunk of output pixels
(CHUNK_VALUES accumulators, L1-sized) gets its accumulators from gemm_u8's register blocks and is
requantized and stored while still in cache. (A plain numba loop over the output channels per
pixel measured 0.5-0.6x: LLVM vectorises it for long trip counts, and 16 channels ran in its
scalar remainder; with a constant 16, the accumulator array's possible aliasing kept it scalar.)

Why it equals TFLM byte for byte. TFLM forms, per output (b, y, x, oc),
``int32 acc = Σ_k filter[oc, k]·(input[k] + input_offset)``, then ``acc += bias[oc]``, every step
an int32 multiplication or addition. C's int32 arithmetic wraps (two's complement, as on the MCUs
and x86 where the oracle runs), i.e. it is arithmetic modulo 2^32. The kernel's accumulators start
at ``init = bias + (input_offset - 128)·Σ_k w`` (computed exactly in int64 at prepare, then taken
modulo 2^32), and gemm_u8's vpdpbusd adds the exact products w·u of the bytes u = x + 128 (0..255)
four at a time, modulo 2^32 (gemm_u8's docstring: not the saturating form). So each accumulator is
    bias + (input_offset - 128)·Σw + Σ w·(x + 128) = bias + Σ w·(x + input_offset)   (mod 2^32),
the same int32 as TFLM's for EVERY accumulator bound (addition and multiplication modulo 2^32 are
associative and commutative, as ops/compiled/depthwise.py argues); the tests drive biases near ±2^31
to pin the wrapping case. (gemm_u8.plan, which packs the weights, also proves
max_o Σ|w|·128 < 2^31 or refuses; exactness does not rely on it.) Quads of four bytes run past K
when K is not a multiple of 4: they read the next pixel's bytes (or 4 bytes of zeroed slack)
against zero weights, adding 0. Output channels are padded to a multiple of 16 with zero weights;
their results are never stored.
Then MultiplyByQuantizedMultiplier, + output_offset wrapped to int32, the clamp and the int8 store,
in exactly ops/compiled/depthwise.py's form: both of TFLM's roundings as one arithmetic shift of
an int64, ``(acc·2^left·M + rounding - [p < -2^30]·negative_rounding) >> right_shift``, derived
(and tested against ops.fixedpoint on extreme values) there. The per-channel constants are the ones
depthwise.plan computes (called with this layer's channels as a 1x1 depthwise layer's), so the two
kernels cannot disagree on them.

vpdpbusd is reached through gemm_u8's intrinsic: AVX512-VNNI hosts only (``available()``); the
caller keeps its other paths elsewhere. Only eval imports numba: ``plan`` runs at prepare on numpy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import depthwise, gemm_u8, lazy_njit

__all__ = ["PointwiseSmallPlan", "plan", "conv", "available"]
# Accumulators per chunk of pixels (whole register blocks): the chunk's int32 accumulators and the
# per-channel constants tiled to it stay in L1.
CHUNK_VALUES = 1024
_INT32 = 1 << 32


@dataclass(frozen=True)
class PointwiseSmallPlan:
    """A 1x1 int8 CONV_2D (groups 1, padding 0, default numerics): packed weights, the start values
    of the accumulators, and depthwise.py's fused requantization tiled to one chunk."""
    in_hwc: tuple
    out_hw: tuple
    stride: tuple  # (sh, sw), >= 1
    channels: int  # OC
    padded_channels: int  # OCp, a multiple of 16
    quads: int  # ceil(K / 4)
    packed: np.ndarray  # gemm_u8's flat (1, quads, OCp, 4) int8 weights, zeros past K and past OC
    init: np.ndarray  # (OCp,) int32: bias + (input_offset - 128)·Σw per output channel, modulo 2^32
    block: int  # index into gemm_u8.BLOCKS
    chunk_pixels: int  # pixels per chunk, a multiple of the block's rows
    # depthwise.py's fused requantization, per output channel tiled to chunk_pixels·OCp values
    # (index j holds channel j mod OCp; the padding channels' results are never stored):
    # scaled = (acc·2^left·M + rounding - [acc·2^left·M < -2^30]·negative_rounding) >> right_shift.
    multiplier: np.ndarray  # int32, >= 0
    left_shift: np.ndarray  # int64
    rounding: np.ndarray  # int64
    negative_rounding: np.ndarray  # int64
    right_shift: np.ndarray  # int64, 31..62
    left_shifts: bool  # whether any channel shifts left
    output_offset: int
    activation_min: int
    activation_max: int


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True, order="C")
    a.flags.writeable = False
    return a


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
    padded = packed.padded_channels
    rows = gemm_u8.BLOCKS[packed.block][0]
    chunk_pixels = rows * max(1, CHUNK_VALUES // (rows * padded))
    # The accumulators start at bias + (input_offset - 128)·Σw: vpdpbusd adds Σ w·(x + 128), so they
    # end at bias + Σ w·(x + input_offset) modulo 2^32, TFLM's int32 accumulator (the docstring).
    init = np.zeros(padded, np.int64)
    init[:channels] = (np.asarray(requant.bias, np.int64) + (int(input_offset) - 128) * filters.sum(axis=0)) % _INT32
    init = (init + (1 << 31)) % _INT32 - (1 << 31)
    table = np.zeros((5, padded), np.int64)  # the padding channels: all 0 but the shift
    table[4] = 31
    for row, values in enumerate((requant.multiplier, requant.left_shift, requant.rounding,
                                  requant.negative_rounding, requant.right_shift)):
        table[row, :channels] = values
    tiled = np.tile(table, chunk_pixels)
    return PointwiseSmallPlan(
        (h, w, k), (int(oh), int(ow)), (int(sh), int(sw)), channels, padded, packed.quads, packed.packed,
        _read_only(init.astype(np.int32)), packed.block, chunk_pixels, _read_only(tiled[0].astype(np.int32)),
        _read_only(tiled[1]), _read_only(tiled[2]), _read_only(tiled[3]), _read_only(tiled[4]),
        requant.left_shifts, requant.output_offset, requant.activation_min, requant.activation_max)


def available() -> bool:
    """gemm_u8's intrinsic is there: numba targets the host and the host has AVX512-VNNI (imports
    numba: eval time only)."""
    return gemm_u8.available()


_ready = False
_lock = threading.Lock()
_block_4x4 = _block_8x2 = _block_8x1 = None


def _intrinsics():
    """gemm_u8's register blocks, bound to this module's globals before the kernel compiles."""
    global _ready, _block_4x4, _block_8x2, _block_8x1
    if _ready:
        return
    with _lock:
        if not _ready:
            gemm_u8._intrinsics()
            _block_4x4, _block_8x2, _block_8x1 = gemm_u8._block_4x4, gemm_u8._block_8x2, gemm_u8._block_8x1
            _ready = True


def conv(p: PointwiseSmallPlan, x: np.ndarray, out_dtype) -> np.ndarray:
    """x (…, H, W, K) int8 (samples and the model's batch folded together) -> (N·B, OH, OW, OC) int8.
    Callers check ``available()`` first."""
    _intrinsics()
    h, w, k = p.in_hwc
    images = np.ascontiguousarray(x.reshape((-1, h * w * k)))
    (oh, ow), (sh, sw) = p.out_hw, p.stride
    out = np.empty((images.shape[0] * oh * ow, p.channels), out_dtype)
    u = np.empty(h * w * k + 4, np.uint8)
    acc = np.empty((p.chunk_pixels, p.padded_channels), np.int32)
    result = np.empty(p.chunk_pixels * p.padded_channels, np.int8)
    _pointwise_kernel(images, w, k, oh, ow, sh, sw, u, p.quads, p.packed, p.init, acc, result, out, p.multiplier,
                      p.left_shift, p.rounding, p.negative_rounding, p.right_shift, p.output_offset,
                      p.activation_min, p.activation_max, p.left_shifts, p.block)
    return out.reshape((images.shape[0], oh, ow, p.channels))


@lazy_njit
def _pointwise_kernel(images, width, depth, oh, ow, sh, sw, u, quads, weights, init, acc, result, out, multiplier,
                      left_shift, rounding, negative_rounding, right_shift, output_offset, act_min, act_max,
                      left_shifts, block):
    """Per image: u = x + 128 (bytes, plus 4 bytes of slack the last quad may read against zero
    weights); per chunk of output pixels: gemm_u8's register blocks form the int32 accumulators
    (rows x 16·V channels at a time, starting at ``init``), then one flat pass requantizes the
    chunk (depthwise.py's fused formula) and stores it. Inner loops index by range variables or
    views taken once per chunk (numba's negative-index handling of a computed index would keep
    LLVM from vectorising them)."""
    n_images, plane = images.shape
    chunk_pixels, padded = acc.shape
    channels = out.shape[1]
    total = oh * ow
    if block == 0:
        rows, step = 4, 64
    elif block == 1:
        rows, step = 8, 32
    else:
        rows, step = 8, 16
    pixels = np.empty(rows, np.int64)
    acc_rows = np.empty(rows, np.int64)
    acc_flat = acc.reshape(chunk_pixels * padded)
    quad = np.zeros(1, np.int64)  # the one run (1x1) starts at offset 0
    for j in range(plane, plane + 4):
        u[j] = 0
    for b in range(n_images):
        for j in range(plane):
            u[j] = np.uint8(np.int32(images[b, j]) + 128)
        for first in range(0, total, chunk_pixels):
            count = min(chunk_pixels, total - first)
            for group in range(0, count, rows):
                for r in range(rows):
                    if group + r < count:
                        pixel = first + group + r
                        oy = pixel // ow
                        ox = pixel - oy * ow
                        pixels[r] = (oy * sh * width + ox * sw) * depth
                        acc_rows[r] = group + r
                    else:  # past the chunk's end: the last pixel again (same row, same values)
                        pixels[r] = pixels[r - 1]
                        acc_rows[r] = acc_rows[r - 1]
                for column in range(0, padded, step):
                    if block == 0:
                        _block_4x4(u, pixels, quad, quads, weights, init, acc, acc_rows, column)
                    elif block == 1:
                        _block_8x2(u, pixels, quad, quads, weights, init, acc, acc_rows, column)
                    else:
                        _block_8x1(u, pixels, quad, quads, weights, init, acc, acc_rows, column)
            values = count * padded
            if left_shifts:
                for j in range(values):
                    acc_flat[j] = np.int32(np.int64(acc_flat[j]) << left_shift[j])  # int32 x·2^left, wraps
            start = (b * total + first) * channels
            target = out.reshape(out.size)[start:start + count * channels] if padded == channels else result
            for j in range(values):
                # Both roundings in one shift (ops/compiled/depthwise.py's docstring derives it).
                product = np.int64(acc_flat[j]) * np.int64(multiplier[j])
                negative = (product < -(1 << 30)) * negative_rounding[j]
                scaled = (product + rounding[j] - negative) >> right_shift[j]
                target[j] = min(max(np.int64(np.int32(scaled + output_offset)), act_min), act_max)
            if padded != channels:
                for r in range(count):
                    row = out[b * total + first + r]
                    source = result[r * padded:r * padded + channels]
                    for o in range(channels):
                        row[o] = source[o]
