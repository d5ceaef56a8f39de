"""Compiled elementwise binary ops for large (batched) tensors: the int8 table gather of ADD, SUB,
MUL and SQUARED_DIFFERENCE in one pass, and TFLM's int16 ADD / SUB / MUL formula per element.

ops/elementwise.py takes these for calls on more than ``BinaryKernel.compiled_elements`` values
when compiled kernels are enabled; smaller calls and anything ``layout`` cannot express keep the
numpy paths.

Exactness.

* int8 (``gather``). The numpy path looks the pair (x1, x2) up in the kernel's 256x256 table at
  index ``(uint8(x1) << 8) | uint8(x2)`` (BinaryKernel.lookup). This kernel reads the same table
  at the same index (uint8 bytes widened to int64, shifted, or-ed: no arithmetic that could
  differ), for the same pairs: ``layout`` lines the operands up as numpy broadcasting does
  (element strides of the broadcast views, 0 along broadcast axes). The table holds the kernel's
  formula with its own numerics (tests/test_fast_vs_reference.py checks every pair), so this
  path is exact whatever the Numerics variant.

* int16 (``add_int16``, ``mul_int16``): the operations of _AddSub.quantized / Mul.quantized for
  the default double rounding (ops/fixedpoint.py's MultiplyByQuantizedMultiplier), in int64:
    ADD/SUB   v = wrap32((x + offset) << left_shift)        per input
              s = MBQM(v, multiplier, shift)                  per input (shift <= 0)
              raw = wrap32(s1 ± s2)
    MUL       raw = wrap32((x1 + offset1)·(x2 + offset2))
    both      y = clamp(wrap32(MBQM(raw, M, shift) + output_offset), min, max), stored as int16
  where MBQM(v, m, shift) = RDBPOT(SRDHM(wrap32(v << l), m), e), l = max(shift, 0) & 31 (x86's
  masking of C's shift count, as ops.fixedpoint), e = max(-shift, 0),
  SRDHM(a, m) = (a·m + 2^30) >> 31 and RDBPOT(h, e) = (h + 2^(e-1) - [h < 0]) >> e for e >= 1.
  numpy computes (x + offset) and the products in int64 too, and both wrap modulo 2^64 (numba's
  int64 arithmetic wraps like numpy's); wrap32 keeps the low 32 bits, which a wrap modulo 2^64
  preserves, so the int32 values agree for any offsets. After the wraps every operand is an int32
  value, the multipliers are in [0, 2^31) (``int16_plan`` refuses others; QuantizeMultiplier
  gives no others), so a·m and v << l (l <= 31) stay below 2^62: no int64 overflow, and
  SRDHM's saturating case (INT32_MIN·INT32_MIN) cannot occur. e is limited to 0..31 (the plan
  refuses others) so 1 << e is defined. numpy's clip is minimum(maximum(x, lo), hi), this
  kernel's the same two comparisons in the same order; the int16 store truncates as numpy's
  astype does.

Only a call imports numba (``lazy_njit``): this module is imported by ops/elementwise.py at load
and ``int16_plan`` runs at prepare, neither of which may pay for numba.
"""
from __future__ import annotations

import math

import numpy as np

from . import lazy_njit

__all__ = ["layout", "int16_plan", "gather", "add_int16", "mul_int16"]

_INT32_MAX = (1 << 31) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
RANK = 4  # the kernels loop over 4 axes; operands needing more (after collapsing) stay in numpy


def _element_strides(x: np.ndarray, rank: int) -> list[int] | None:
    """x's strides in elements, right-aligned to ``rank`` axes, 0 along its size-1 axes (numpy
    broadcasting); None when x is not C-contiguous (the kernels read a flat base)."""
    if not x.flags.c_contiguous:
        return None
    strides, step = [0] * rank, 1
    for axis in range(x.ndim - 1, -1, -1):
        n = x.shape[axis]
        strides[rank - x.ndim + axis] = step if n != 1 else 0
        step *= n
    return strides


def layout(x1: np.ndarray, x2: np.ndarray):
    """How the kernels walk two numpy-broadcast operands: ``(shape, dims, s1, s2)`` with ``shape``
    the broadcast shape, ``dims`` (RANK,) the loop sizes after merging axes that both operands
    step through contiguously (the output is C-ordered over them), ``s1``/``s2`` (RANK,) each
    operand's element strides (0 where broadcast); None when more than RANK loop axes remain or
    an operand is not C-contiguous."""
    shape = np.broadcast_shapes(x1.shape, x2.shape)
    rank = len(shape)
    a, b = _element_strides(x1, rank), _element_strides(x2, rank)
    if a is None or b is None:
        return None
    if x1.shape == x2.shape:  # the common case: one flat run
        n = math.prod(shape)
        return shape, (1,) * (RANK - 1) + (n,), (0,) * (RANK - 1) + (1,), (0,) * (RANK - 1) + (1,)
    dims: list[list[int]] = []  # [size, stride1, stride2], outermost first
    for n, t1, t2 in zip(shape, a, b):
        if n == 1:
            continue
        if dims and dims[-1][1] == t1 * n and dims[-1][2] == t2 * n:
            dims[-1] = [dims[-1][0] * n, t1, t2]
        else:
            dims.append([n, t1, t2])
    if len(dims) > RANK:
        return None
    dims = [[1, 0, 0]] * (RANK - len(dims)) + dims
    return (shape, tuple(d[0] for d in dims), tuple(d[1] for d in dims), tuple(d[2] for d in dims))


def int16_plan(left_shift: int, multipliers: tuple[tuple[int, int], ...], *offsets_and_bounds: int):
    """The left/right shift counts of each (multiplier, shift) pair, flattened, when the compiled
    int16 kernels' bounds hold (module docstring): multipliers in [0, 2^31), right shifts 0..31,
    every other parameter an int64; None otherwise (the numpy path then runs)."""
    shifts: list[int] = []
    for multiplier, shift in multipliers:
        right = max(-shift, 0)
        if not 0 <= multiplier <= _INT32_MAX or right > 31:
            return None
        shifts += [multiplier, max(shift, 0) & 31, right]
    if not 0 <= left_shift <= 31 or not all(_INT64_MIN <= v <= _INT64_MAX for v in offsets_and_bounds):
        return None
    return tuple(shifts)


@lazy_njit
def gather(x1, s1, x2, s2, dims, table, out):
    """``out[i] = table[(x1 << 8) | x2]`` over the broadcast pairs (``layout``): x1, x2 the flat
    operands viewed as uint8, s1, s2, dims (RANK,) int64, out flat C-ordered over dims. The
    innermost strides are 1 or 0 (``layout``): rows are slices, so no index can be negative
    (numba then skips its wraparound checks and the loops vectorise)."""
    n0, n1, n2, n3 = dims[0], dims[1], dims[2], dims[3]
    t1, t2 = s1[3], s2[3]
    o = 0
    for a in range(n0):
        for b in range(n1):
            for c in range(n2):
                i1 = a * s1[0] + b * s1[1] + c * s1[2]
                i2 = a * s2[0] + b * s2[1] + c * s2[2]
                row = out[o:o + n3]
                if t1 == 1 and t2 == 1:
                    r1, r2 = x1[i1:i1 + n3], x2[i2:i2 + n3]
                    for d in range(n3):
                        row[d] = table[(np.int64(r1[d]) << 8) | np.int64(r2[d])]
                elif t1 == 1:
                    r1, v2 = x1[i1:i1 + n3], np.int64(x2[i2])
                    for d in range(n3):
                        row[d] = table[(np.int64(r1[d]) << 8) | v2]
                elif t2 == 1:
                    v1, r2 = np.int64(x1[i1]) << 8, x2[i2:i2 + n3]
                    for d in range(n3):
                        row[d] = table[v1 | np.int64(r2[d])]
                else:
                    v = table[(np.int64(x1[i1]) << 8) | np.int64(x2[i2])]
                    for d in range(n3):
                        row[d] = v
                o += n3


@lazy_njit
def add_int16(x1, s1, x2, s2, dims, sign, left_shift, offset1, m1, l1, r1, offset2, m2, l2, r2,
              output_offset, mo, lo, ro, act_min, act_max, out):
    """int16 ADD (sign +1) / SUB (sign -1) per broadcast pair (module docstring): AddFunc with the
    double-rounding MultiplyByQuantizedMultiplier; out flat int16, C-ordered over dims."""
    n0, n1, n2, n3 = dims[0], dims[1], dims[2], dims[3]
    u1, u2 = s1[3] == 1, s2[3] == 1  # the innermost strides: 1 or 0 (``layout``)
    t1, t2 = s1[3], s2[3]
    half1, down1 = (np.int64(1) << r1) >> 1, 1 if r1 > 0 else 0
    half2, down2 = (np.int64(1) << r2) >> 1, 1 if r2 > 0 else 0
    halfo, downo = (np.int64(1) << ro) >> 1, 1 if ro > 0 else 0
    o = 0
    for a in range(n0):
        for b in range(n1):
            for c in range(n2):
                i1 = a * s1[0] + b * s1[1] + c * s1[2]
                i2 = a * s2[0] + b * s2[1] + c * s2[2]
                p1, p2, row = x1[i1:i1 + n3 * t1 + 1 - t1], x2[i2:i2 + n3 * t2 + 1 - t2], out[o:o + n3]
                for d in range(n3):
                    v = ((((np.int64(p1[d if u1 else 0]) + offset1) << left_shift) + 2147483648) & 4294967295) \
                        - 2147483648
                    v = (((v << l1) + 2147483648) & 4294967295) - 2147483648
                    h = (v * m1 + 1073741824) >> 31
                    h1 = (h + half1 - (down1 if h < 0 else 0)) >> r1
                    v = ((((np.int64(p2[d if u2 else 0]) + offset2) << left_shift) + 2147483648) & 4294967295) \
                        - 2147483648
                    v = (((v << l2) + 2147483648) & 4294967295) - 2147483648
                    h = (v * m2 + 1073741824) >> 31
                    h2 = (h + half2 - (down2 if h < 0 else 0)) >> r2
                    v = ((h1 + sign * h2 + 2147483648) & 4294967295) - 2147483648
                    v = (((v << lo) + 2147483648) & 4294967295) - 2147483648
                    h = (v * mo + 1073741824) >> 31
                    h = (h + halfo - (downo if h < 0 else 0)) >> ro
                    y = ((h + output_offset + 2147483648) & 4294967295) - 2147483648
                    if y < act_min:
                        y = act_min
                    if y > act_max:
                        y = act_max
                    row[d] = y
                o += n3


@lazy_njit
def mul_int16(x1, s1, x2, s2, dims, offset1, offset2, output_offset, mo, lo, ro, act_min, act_max, out):
    """int16 MUL per broadcast pair (module docstring): MulElementwise with the double-rounding
    MultiplyByQuantizedMultiplier; out flat int16, C-ordered over dims."""
    n0, n1, n2, n3 = dims[0], dims[1], dims[2], dims[3]
    u1, u2 = s1[3] == 1, s2[3] == 1  # the innermost strides: 1 or 0 (``layout``)
    t1, t2 = s1[3], s2[3]
    halfo, downo = (np.int64(1) << ro) >> 1, 1 if ro > 0 else 0
    o = 0
    for a in range(n0):
        for b in range(n1):
            for c in range(n2):
                i1 = a * s1[0] + b * s1[1] + c * s1[2]
                i2 = a * s2[0] + b * s2[1] + c * s2[2]
                p1, p2, row = x1[i1:i1 + n3 * t1 + 1 - t1], x2[i2:i2 + n3 * t2 + 1 - t2], out[o:o + n3]
                for d in range(n3):
                    v = (np.int64(p1[d if u1 else 0]) + offset1) * (np.int64(p2[d if u2 else 0]) + offset2)
                    v = ((v + 2147483648) & 4294967295) - 2147483648
                    v = (((v << lo) + 2147483648) & 4294967295) - 2147483648
                    h = (v * mo + 1073741824) >> 31
                    h = (h + halfo - (downo if h < 0 else 0)) >> ro
                    y = ((h + output_offset + 2147483648) & 4294967295) - 2147483648
                    if y < act_min:
                        y = act_min
                    if y > act_max:
                        y = act_max
                    row[d] = y
                o += n3
