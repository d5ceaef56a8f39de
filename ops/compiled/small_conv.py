"""Compiled integer convolution for CONV_2D's small layers: few input channels (a network's first
convolution over an RGB or grayscale image) or few output channels (a narrow pointwise layer),
where ops/compiled/gemm.py wastes most of its work and the float32 GEMM path reaches only 4-9 G
MAC/s.

Why gemm.py's layout loses here. It reduces tap by tap over the input channels rounded up to
even (3 channels -> 2 pairs of which one value is padding; 1 channel -> half of every pair is
padding), and vectorises over sixteens of output channels (8 channels -> half of every vector is
padding), with a tap loop of 1-2 pair iterations.

How this module differs, with the same register-block intrinsic (gemm._make_block, the
vpdpwssd / vpmaddwd multiply-add of int16 pairs into int32 lanes):
- The reduction runs over whole filter rows. In the padded int16 image (Hp, Wp, C), channels
  NOT rounded up, the KW·C values one filter row reads are consecutive (dilation_w = 1), so a
  "tap" of the intrinsic is a filter row, its run of KW·C values split into ceil(KW·C / 2) pairs
  (3x3x3: 3 rows of 5 pairs instead of 9 taps of 2 pairs). An odd run's last pair reads one value
  past the run (the next pixel's, or the buffer's slack), against a zero weight. With a
  dilation_w > 1 the runs are the taps' C channels.
- Up to 8 (or 4) output channels: one 16-lane vector holds 2 (or 4) pixels' channels
  (pixels_per_vector of gemm._make_block), so no lane is padding when OC is 8 (or 4).

Exactness is gemm.py's: every operation is an int32 addition or multiplication, modulo 2^32, and
gemm.weights_plan proves max_o Σ|w|·max|x| < 2^31 (max|x| covering the padding's zero point) or
refuses; a pair's padding slot has weight 0, so whatever value it reads adds 0. The accumulator
is then the exact Σ w·x the numpy GEMM computes, and the caller hands it to the op's own
Requantizer (bias folded), as for gemm.py.

Only eval imports numba: ``plan`` runs at prepare on numpy alone.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import gemm, lazy_njit

__all__ = ["SmallConvPlan", "plan", "conv", "buffer_shape"]

# (pixels per vector, output-channel step, rows, channel vectors) by output channels: <= 4
# channels: 4 pixels share a vector; <= 8: 2 pixels; else gemm's 16-lane blocks, columns of
# 16, 32 or 64 channels (the output channels padded to a multiple of the step).
_SHARE_4, _SHARE_2, _PLAIN_16, _PLAIN_32, _PLAIN_64 = 0, 1, 2, 3, 4
_BLOCKS = {_SHARE_4: (4, 4, 32, 1), _SHARE_2: (2, 8, 16, 1), _PLAIN_16: (1, 16, 8, 1), _PLAIN_32: (1, 32, 8, 2),
           _PLAIN_64: (1, 64, 4, 4)}


@dataclass(frozen=True)
class SmallConvPlan:
    """Geometry and packed weights of one CONV_2D (groups 1, int8 / 16x8, default numerics)."""
    in_hwc: tuple
    out_hw: tuple
    stride: tuple
    padding: tuple  # (top, left), >= 0
    pad_value: int  # the input zero point (int16)
    padded_hw: tuple  # (Hp, Wp): every row and column an output reaches
    runs: np.ndarray  # (R,) int64: each run's element offset in the padded image (row-major over filter rows/taps)
    weights: gemm.GemmWeights  # packed (R, pairs, OCp, 2) int16 with zeros in every padding slot
    kind: int  # index into _BLOCKS


def plan(in_hwc, out_hw, kernel_hw, stride, dilation, padding, pad_value: int, weights: np.ndarray,
         max_abs_input: int) -> SmallConvPlan | None:
    """The plan, or None where it does not apply (see gemm.conv_plan and gemm.weights_plan:
    non-positive strides or dilations, negative padding, values outside int16, a padded image far
    larger than input and output, an accumulator bound at or above 2^31)).
    ``weights``: (KH·KW·C, OC) integers in TFLM's order (ky, kx, c)."""
    geometry = gemm.conv_plan(in_hwc, out_hw, kernel_hw, stride, dilation, padding, pad_value)
    if geometry is None:
        return None
    c, (kh, kw), (dh, dw) = geometry.in_hwc[2], geometry.kernel_hw, geometry.dilation
    hp, wp, _ = geometry.padded_hwc
    oc = int(np.shape(weights)[1])
    if oc <= 4:
        kind = _SHARE_4
    elif oc <= 8:
        kind = _SHARE_2
    elif oc % 64 == 0:
        kind = _PLAIN_64
    elif oc % 32 == 0 or (oc > 16 and -(-oc // 32) * 32 == -(-oc // 16) * 16):
        kind = _PLAIN_32
    else:
        kind = _PLAIN_16
    if dw == 1:  # a filter row's KW·C values are consecutive
        run = kw * c
        runs = [ky * dh * wp * c for ky in range(kh)]
    else:
        run = c
        runs = [(ky * dh * wp + kx * dw) * c for ky in range(kh) for kx in range(kw)]
    packed = gemm.weights_plan(weights, run, max_abs_input, channel_multiple=_BLOCKS[kind][1])
    if packed is None:
        return None
    assert packed.bound < (1 << 31)
    runs = np.array(runs, np.int64)
    runs.flags.writeable = False
    return SmallConvPlan(geometry.in_hwc, geometry.out_hw, geometry.stride, geometry.padding, geometry.pad_value,
                         (hp, wp), runs, packed, kind)


def buffer_shape(p: SmallConvPlan, images: int) -> tuple:
    """The flat int16 padded-image buffer for ``images`` images: two values of slack at the end for
    the last run's odd pair."""
    return (images * p.padded_hw[0] * p.padded_hw[1] * p.in_hwc[2] + 2,)


# --- the intrinsics -----------------------------------------------------------------------------

_blocks = None
_build_lock = threading.Lock()


def _intrinsics():
    """Build the register blocks (imports numba: eval time only)."""
    global _blocks, _block_s4, _block_s2, _block_p16, _block_p32, _block_p64
    if _blocks is not None:
        return
    with _build_lock:
        if _blocks is None:
            made = {k: gemm._make_block(rows, vectors, share) for k, (share, _, rows, vectors) in _BLOCKS.items()}
            _block_s4, _block_s2 = made[_SHARE_4], made[_SHARE_2]
            _block_p16, _block_p32, _block_p64 = made[_PLAIN_16], made[_PLAIN_32], made[_PLAIN_64]
            _blocks = made


_block_s4 = _block_s2 = _block_p16 = _block_p32 = _block_p64 = None


@lazy_njit
def _small_conv_kernel(images, oh, ow, sh, sw, hp, wp, channels, flat, runs, pairs, weights, acc, kind):
    """Direct convolution of the padded int16 images ``flat`` (images·Hp·Wp·C + slack) into acc
    (images·OH·OW, OCp) int32, rows in (image, oy, ox) order, in blocks of consecutive output
    pixels (the last block repeats the last pixel: the same row written again with the same
    values)."""
    plane = hp * wp * channels
    total = images * oh * ow
    if kind == 0:
        rows, step = 32, 4
    elif kind == 1:
        rows, step = 16, 8
    elif kind == 2:
        rows, step = 8, 16
    elif kind == 3:
        rows, step = 8, 32
    else:
        rows, step = 4, 64
    pixels = np.empty(rows, np.int64)
    acc_rows = np.empty(rows, np.int64)
    n = 0
    oy = 0
    ox = 0
    for first in range(0, total, rows):
        for r in range(rows):
            if first + r < total:
                pixels[r] = n * plane + (oy * sh * wp + ox * sw) * channels
                acc_rows[r] = first + r
                ox += 1
                if ox == ow:
                    ox = 0
                    oy += 1
                    if oy == oh:
                        oy = 0
                        n += 1
            else:
                pixels[r] = pixels[r - 1]
                acc_rows[r] = acc_rows[r - 1]
        for column in range(0, acc.shape[1], step):
            if kind == 0:
                _block_s4(flat, pixels, runs, pairs, weights, acc, acc_rows, column)
            elif kind == 1:
                _block_s2(flat, pixels, runs, pairs, weights, acc, acc_rows, column)
            elif kind == 2:
                _block_p16(flat, pixels, runs, pairs, weights, acc, acc_rows, column)
            elif kind == 3:
                _block_p32(flat, pixels, runs, pairs, weights, acc, acc_rows, column)
            else:
                _block_p64(flat, pixels, runs, pairs, weights, acc, acc_rows, column)


def conv(p: SmallConvPlan, x: np.ndarray, flat: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """The exact int32 accumulators (B·OH·OW, OC) of the images x (B, H, W, C), int8 or int16.
    ``flat`` (buffer_shape) int16 and ``acc`` (B·OH·OW, OCp) int32: the caller's scratch buffers
    (contents undefined); the result is a view of ``acc``."""
    _intrinsics()
    (oh, ow), (sh, sw), (pt, pl), (hp, wp) = p.out_hw, p.stride, p.padding, p.padded_hw
    (h, w, c), images = p.in_hwc, x.shape[0]
    # The padded copy in numpy (~0.1 ns a value; numba's indexed loops measured 0.4-1 ns): the
    # image at (pt, pl), the zero point around it (conv_plan: Hp >= H + pt, Wp >= W + pl) and in
    # the slack.
    end = images * hp * wp * c
    image = flat[:end].reshape(images, hp, wp, c)
    image[:, pt:pt + h, pl:pl + w] = x
    for region in (image[:, :pt], image[:, pt + h:], image[:, pt:pt + h, :pl], image[:, pt:pt + h, pl + w:]):
        if region.size:
            region.fill(p.pad_value)
    flat[end:] = p.pad_value
    packed = p.weights
    _small_conv_kernel(images, oh, ow, sh, sw, hp, wp, c, flat, p.runs, packed.pairs, packed.packed, acc, p.kind)
    return acc[:, :packed.channels]
