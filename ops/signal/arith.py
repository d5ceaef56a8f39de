"""The signal library's integer helpers (signal/src/msb_*.cc, square_root_*.cc, log.cc), on
numpy arrays of uint32/uint64 values. Every function computes exactly what the C function does
for each element, in uint64 arithmetic that wraps as the C unsigned types do."""
from __future__ import annotations

import numpy as np

U64 = np.uint64


def msb32(x: np.ndarray) -> np.ndarray:
    """MostSignificantBit32 as the wheel (GCC) builds it: ``32 - __builtin_clz(x)``, and 32 for
    x == 0 (not 0: the __GNUC__ branch returns 32 there)."""
    x = np.asarray(x, np.uint64) & U64(0xFFFFFFFF)
    return np.where(x == 0, 32, _bit_length(x)).astype(np.int64)


def msb64(x: np.ndarray) -> np.ndarray:
    """MostSignificantBit64 (GCC build): ``64 - __builtin_clzll(x)``, and 64 for x == 0."""
    x = np.asarray(x, np.uint64)
    return np.where(x == 0, 64, _bit_length(x)).astype(np.int64)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Number of significant bits of each uint64 (0 for 0), exactly (no float rounding)."""
    n = np.zeros(x.shape, np.int64)
    x = x.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = x >= (U64(1) << U64(shift))
        n = np.where(big, n + shift, n)
        x = np.where(big, x >> U64(shift), x)
    return n + (x != 0)


def _digit_sqrt(num: np.ndarray, width: int) -> np.ndarray:
    """The bit-by-bit loop shared by Sqrt32 (width 32) and Sqrt64 (width 64), without the final
    rounding step: returns (res, remainder num)."""
    msb = msb32(num) if width == 32 else msb64(num)
    max_bit_number = (width - msb) | 1
    bit = U64(1) << (width - 1 - max_bit_number).astype(np.uint64)
    iterations = (width - 1 - max_bit_number) // 2 + 1
    res = np.zeros(num.shape, np.uint64)
    num = num.copy()
    for step in range(int(iterations.max(initial=0))):
        active = step < iterations
        take = active & (num >= res + bit)
        num = np.where(take, num - (res + bit), num)
        res = np.where(take, (res >> U64(1)) + bit, np.where(active, res >> U64(1), res))
        bit = np.where(active, bit >> U64(2), bit)
    return res, num


def sqrt32(num: np.ndarray) -> np.ndarray:
    """Sqrt32(uint32) -> uint16: the rounded integer square root, 0 for 0."""
    num = np.asarray(num, np.uint64) & U64(0xFFFFFFFF)
    nonzero = num != 0
    safe = np.where(nonzero, num, U64(1))
    res, rem = _digit_sqrt(safe, 32)
    res = np.where((rem > res) & (res != U64(0xFFFF)), res + U64(1), res)
    return np.where(nonzero, res & U64(0xFFFF), U64(0))


def sqrt64(num: np.ndarray) -> np.ndarray:
    """Sqrt64(uint64) -> uint32 (values below 2**32 go through Sqrt32, as in C)."""
    num = np.asarray(num, np.uint64)
    small = (num >> U64(32)) == 0
    out_small = sqrt32(np.where(small, num, U64(0)))
    big = np.where(small, U64(1) << U64(32), num)
    res, rem = _digit_sqrt(big, 64)
    res = np.where((rem > res) & (res != U64(0xFFFFFFFF)), res + U64(1), res)
    return np.where(small, out_small, res & U64(0xFFFFFFFF))


# log.cc
LOG_LUT = np.array([
    0, 224, 442, 654, 861, 1063, 1259, 1450, 1636, 1817, 1992, 2163,
    2329, 2490, 2646, 2797, 2944, 3087, 3224, 3358, 3487, 3611, 3732, 3848,
    3960, 4068, 4172, 4272, 4368, 4460, 4549, 4633, 4714, 4791, 4864, 4934,
    5001, 5063, 5123, 5178, 5231, 5280, 5326, 5368, 5408, 5444, 5477, 5507,
    5533, 5557, 5578, 5595, 5610, 5622, 5631, 5637, 5640, 5641, 5638, 5633,
    5626, 5615, 5602, 5586, 5568, 5547, 5524, 5498, 5470, 5439, 5406, 5370,
    5332, 5291, 5249, 5203, 5156, 5106, 5054, 5000, 4944, 4885, 4825, 4762,
    4697, 4630, 4561, 4490, 4416, 4341, 4264, 4184, 4103, 4020, 3935, 3848,
    3759, 3668, 3575, 3481, 3384, 3286, 3186, 3084, 2981, 2875, 2768, 2659,
    2549, 2437, 2323, 2207, 2090, 1971, 1851, 1729, 1605, 1480, 1353, 1224,
    1094, 963, 830, 695, 559, 421, 282, 142, 0, 0], np.int64)
LOG_SEGMENTS_LOG2 = 7
LOG_SCALE = 65536
LOG_SCALE_LOG2 = 16
LOG_COEFF = 45426


def log2_fraction_part32(x: np.ndarray, log2x: np.ndarray) -> np.ndarray:
    """Log2FractionPart32 (int32 arithmetic; frac is below 2**16 after the alignment shift)."""
    frac = x.astype(np.int64) - (np.int64(1) << log2x)  # fits int32: x < 2**(log2x + 1)
    frac = np.where(log2x < LOG_SCALE_LOG2, frac << np.maximum(LOG_SCALE_LOG2 - log2x, 0),
                    frac >> np.maximum(log2x - LOG_SCALE_LOG2, 0))
    base_seg = frac >> (LOG_SCALE_LOG2 - LOG_SEGMENTS_LOG2)
    seg_unit = (1 << LOG_SCALE_LOG2) >> LOG_SEGMENTS_LOG2
    c0 = LOG_LUT[base_seg]
    c1 = LOG_LUT[base_seg + 1]
    seg_base = seg_unit * base_seg
    rel_pos = ((c1 - c0) * (frac - seg_base)) >> LOG_SCALE_LOG2  # arithmetic shift of an int32
    return (frac + c0 + rel_pos) & 0xFFFFFFFF


def log32(x: np.ndarray, out_scale: int) -> np.ndarray:
    """Log32(x, out_scale) for x > 1: the scaled natural log, in uint32 arithmetic (out_scale *
    loge wraps modulo 2**32 as in C)."""
    x = np.asarray(x, np.int64)
    integer = msb32(x) - 1
    fraction = log2_fraction_part32(x, integer)
    log2 = ((integer << LOG_SCALE_LOG2) + fraction) & 0xFFFFFFFF
    rnd = LOG_SCALE // 2
    loge = ((LOG_COEFF * log2 + rnd) >> LOG_SCALE_LOG2) & 0xFFFFFFFF  # uint64 product, < 2**49
    scaled = ((np.uint64(out_scale & 0xFFFFFFFF) * loge.astype(np.uint64)) & U64(0xFFFFFFFF))
    return (((scaled + U64(rnd)) & U64(0xFFFFFFFF)) >> U64(LOG_SCALE_LOG2)).astype(np.int64)
