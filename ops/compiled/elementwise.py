"""Compiled elementwise binary ops for large (batched) tensors: the int8 table gather of ADD, SUB,
MUL and SQUARED_DIFFERENCE in one pass, int8 ADD / SUB / MUL's formula in vector registers, and
TFLM's int16 ADD / SUB / MUL formula per element.

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

* int8 ADD / SUB (``add_int8``): TFLM's AddFunc by its formula, without the 64 KB table (which
  does not fit L1: the gather costs ~0.5 ns per value). Per input i, TFLM's scaled value is
  t_i(x) = MBQM(wrap32((x + offset_i) << 20), m_i, shift_i), a function of one byte. ADD's
  prepare gives the input of the larger scale the multiplier 0.5 (m = 2^30, shift 0), whose
  t(x) = (x + offset)·2^19 exactly; ``add_int8_plan`` requires one such "linear" input and
  checks it on all 256 bytes. For the other ("general") input, with e = -shift and k = 11 + e,
  the double rounding is floor((v·m + 2^10 [+ 2^(10+e) - [v < 0]·2^11 for e >= 1]) / 2^k) with
  v = x + offset (depthwise.py's one-shift identity on v·2^20·m, divided through by 2^20; v·m
  < 0 exactly when v < 0 since m >= 2^30), and with m = Q·2^k + R (0 <= R < 2^k) that is
      t(x) = x·Q + offset·Q + ((x·R + c' - [x < -offset]·n) >> k)
  where the shifted operand needs only int32. The plan evaluates exactly these int32 lane
  operations on all 256 bytes, requires every operand of the arithmetic shift inside int32 (so
  no lane wraps before it) and the result equal to ops.fixedpoint's t on every byte: an
  exhaustive proof for the layer. TFLM's raw = wrap32(t_1 ± t_2) is then computed modulo 2^32
  (additions and the wrapping x·Q only; offset terms folded into one constant K), which equals
  it because the lane sums are congruent modulo 2^32. The output step is
  ops/compiled/lanes_ir.requantize_merged (its docstring proves the IR steps), depthwise.py's
  one-shift int64 form (p = raw·M, |p| <= 2^62, M in [0, 2^31), output shift -31..0) with the
  output offset folded into the rounding constant where |rounding| + 2^62 + 2^31 < 2^63 (the
  plan refuses otherwise), the int64 value truncated to int32 (= TFLM's wrap32(r + offset)),
  the clamp and the int8 store. Where activation_min >= output_offset the negative rounding
  step is dropped: it changes r only when p < -2^30, where both r and the unrounded r' <= 0,
  so r' + offset <= activation_min (|r| <= 2^30 + 1, no wrap) and the clamp gives
  activation_min either way. The first compiled call of a kernel also runs the plan on all
  65,536 pairs and compares with the table (ops/elementwise.py; a difference would keep the
  gather). LLVM IR integer operations wrap (no nsw/nuw flags), no float operation appears.
  Measured (1 thread, CPU, median of 9 alternating rounds, eval per call, gather -> formula,
  ns/value): pretrainedResnet ops 3/7/11 at batch 128 0.52-0.63 -> 0.24-0.27 (2.2-2.35x);
  MobileNetV2's ten ADDs at batch 8 0.46-0.67 -> 0.29-0.41 (1.60-1.68x: calls of 25-170 µs, where
  the ~10 µs of Python per call weighs; equal shapes take ``add_int8_flat``, four arguments).
  About 28 instructions per 16 values; the four multiplies (two vpmulld, two vpmuldq) dominate.

* int8 MUL (``mul_int8_plan``, mode 3 of the same kernel): MulElementwise's
  raw = wrap32((x1 + offset1)·(x2 + offset2)) as int32 lane additions and a multiply, which wrap
  modulo 2^32 as C's int32 arithmetic on x86 does (numpy's int64 product then wrap32 is the same
  residue), shifted left by max(shift, 0) & 31 in the lane (wraps, as ops.fixedpoint's int32
  left shift), then the output step above (offset folded, the same negative-rounding rule; for
  shift >= 0 the step is (p + 2^30) >> 31 with no negative term). Measured: a 32x32x16 MUL at
  batch 128, 0.46 -> 0.23 ns/value (2.0x). No benchmark model has an int8 MUL.

Only a call imports numba (``lazy_njit``): this module is imported by ops/elementwise.py at load
and ``int16_plan`` runs at prepare, neither of which may pay for numba.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from .. import fixedpoint as fp
from . import lanes_ir, lazy_njit

__all__ = ["layout", "int16_plan", "gather", "add_int16", "mul_int16", "AddInt8Plan", "add_int8_plan", "add_int8",
           "ADD_INT8_LANES", "vector_host",
           "add_int8_flat", "mul_int8_plan"]

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


# --- int8 ADD / SUB by its formula in vector registers -------------------------------------------

ADD_INT8_LANES = 16  # values per vector step; rows shorter than this keep the table gather
_MODES = ("linear + general", "linear - general", "general - linear")


@dataclass(frozen=True)
class AddInt8Plan:
    """What ``add_int8`` reads for one int8 ADD / SUB (module docstring, "int8 ADD / SUB")."""
    swap: bool  # the linear input is input2 (the kernel then reads x2 as its first operand)
    mode: int  # index into _MODES: how the two per-input terms combine
    negative: bool  # the output's negative rounding step is applied (not absorbed by the clamp)
    # (14,) int64: Q, R, c', n, k, x_lim, K, output multiplier, rounding, right shift, activation
    # min and max, mode, negative (the kernel reads them all from this one array).
    constants: np.ndarray


def _per_input_reference(x: np.ndarray, offset: int, multiplier: int, shift: int) -> np.ndarray:
    """TFLM's scaled input, MultiplyByQuantizedMultiplierSmallerThanOneExp((x + offset) << 20),
    in the default double rounding (ops.fixedpoint)."""
    return fp.multiply_by_quantized_multiplier(fp.wrap_int32((x + offset) << 20), multiplier, shift)


def add_int8_plan(sign: int, left_shift: int, input1: tuple[int, int, int], input2: tuple[int, int, int],
                  output_offset: int, output_multiplier: int, output_shift: int, act_min: int,
                  act_max: int) -> AddInt8Plan | None:
    """The plan for int8 ADD (sign +1) / SUB (-1) with the default double rounding, input_i =
    (offset, multiplier, shift), or None where it does not apply: no input whose scaled value is
    (x + offset)·2^19 (ADD/SUB always have one, the larger scale's multiplier 0.5), a per-input
    step that differs from ops.fixedpoint on any of the 256 bytes or leaves int32, an output
    multiplier outside [0, 2^31) or shift outside -31..0. numpy only (the 256 bytes), no numba."""
    x = np.arange(-128, 128, dtype=np.int64)
    if left_shift != 20 or output_shift > 0:
        return None
    scaled = [_per_input_reference(x, *i) for i in (input1, input2)]
    linear = [bool((s == (x + i[0]) << 19).all()) and abs(i[0]) < (1 << 11) for s, i in zip(scaled, (input1, input2))]
    if not any(linear):
        return None
    swap = not linear[0]
    (off_l, _, _), (off_g, m, shift) = (input2, input1) if swap else (input1, input2)
    t_g = scaled[0] if swap else scaled[1]
    e = -shift
    if not 0 <= e <= 20 or not 0 <= m <= _INT32_MAX:
        return None
    k = 11 + e
    q, r = m >> k, m & ((1 << k) - 1)
    c = (1 << 10) + ((1 << (10 + e)) if e else 0) + off_g * r
    n = (1 << 11) if e else 0
    low = x * r + c - np.where(x + off_g < 0, n, 0)
    if int(np.abs(x * r + c).max()) >= (1 << 31) or int(np.abs(low).max()) >= (1 << 31):
        return None  # the ashr must see the exact value: every step of ``low`` inside int32
    if not (x * q + off_g * q + (low >> k) == t_g).all():
        return None
    # raw = s_l·(x_l << 19) + s_g·(x_g·Q + (low >> k)) + K, all modulo 2^32.
    s_l, s_g = (sign, 1) if swap else (1, sign)
    mode = 0 if s_l > 0 and s_g > 0 else 1 if s_l > 0 else 2
    big_k = int(fp.wrap_int32(np.int64(s_l * (off_l << 19) + s_g * off_g * q)))
    step = _output_step(output_offset, output_multiplier, output_shift, act_min, act_max)
    if step is None or step[0] != 0:
        return None
    _, _, rounding, right, negative = step
    constants = np.array([q, r, c, n, k, -off_g, big_k, output_multiplier, rounding, right, act_min, act_max, mode,
                          negative], np.int64)
    constants.flags.writeable = False
    return AddInt8Plan(swap, mode, negative, constants)


def _output_step(output_offset: int, output_multiplier: int, output_shift: int, act_min: int,
                 act_max: int) -> tuple[int, int, int, int, bool] | None:
    """(left shift, output multiplier, rounding with the output offset folded in, right shift,
    negative rounding needed) of the output requantization (module docstring), or None where its
    bounds do not hold."""
    if not 0 <= output_multiplier <= _INT32_MAX or not -31 <= output_shift or not -128 <= act_min <= act_max <= 127:
        return None
    if not -(1 << 24) <= output_offset <= (1 << 24):
        return None
    left, e_o = max(output_shift, 0) & 31, max(-output_shift, 0)  # (x86 masks C's shift count)
    right = 31 + e_o
    rounding = (1 << 30) + ((1 << (30 + e_o)) if e_o else 0) + (output_offset << right)
    if abs(rounding) + (1 << 62) + (1 << 31) >= (1 << 63):
        return None
    return left, output_multiplier, rounding, right, bool(e_o) and act_min < output_offset


def mul_int8_plan(offset1: int, offset2: int, output_offset: int, output_multiplier: int, output_shift: int,
                  act_min: int, act_max: int) -> AddInt8Plan | None:
    """The plan for int8 MUL with the default double rounding (mode 3 of the same kernel:
    raw = wrap32(wrap32((x1 + offset1)·(x2 + offset2)) << left), the int32 lane product and
    shift wrapping as C's int32 arithmetic does on x86, then the output step), or None."""
    step = _output_step(output_offset, output_multiplier, output_shift, act_min, act_max)
    if step is None or not all(-(1 << 31) <= v <= _INT32_MAX for v in (offset1, offset2)):
        return None
    left, multiplier, rounding, right, negative = step
    constants = np.array([offset1, offset2, left, 0, 0, 0, 0, multiplier, rounding, right, act_min, act_max, 3,
                          negative], np.int64)
    constants.flags.writeable = False
    return AddInt8Plan(False, 3, negative, constants)


_add_rows = None
_add_lock = threading.Lock()
_vector_host = None


def vector_host() -> bool:
    """The host has AVX-512 (F, BW, DQ), where ``add_int8`` was measured faster than the gather
    (imports llvmlite: eval time only). Elsewhere LLVM lowers the same IR to narrower vectors;
    tests force it there too."""
    global _vector_host
    if _vector_host is None:
        try:
            from llvmlite import binding

            features = binding.get_host_cpu_features()
            _vector_host = all(bool(features.get(f)) for f in ("avx512f", "avx512bw", "avx512dq"))
        except Exception:  # pragma: no cover - llvmlite without host queries
            _vector_host = False
    return _vector_host


def _add_intrinsic():
    global _add_rows
    if _add_rows is None:
        with _add_lock:
            if _add_rows is None:
                _add_rows = _make_add_rows()


def _make_add_rows():
    """An intrinsic ``rows(xl, start_l, xg, start_g, out, start_out, count, constants)``: ``count``
    (>= 16) outputs of one int8 ADD / SUB (``AddInt8Plan.constants``), xl the operand whose scaled
    value is linear, 16 per step (the last step starts at count - 16 and rewrites some outputs with
    the same bytes). Generic LLVM vector IR: per step two 16-byte loads, ~12 int32 lane operations
    for the two scaled inputs, the output requantization on the even and the odd lanes as two
    8 x int64 vectors (vpmuldq), a clamp and a 16-byte store. Twelve copies of the loop (mode x
    negative rounding x constant int8 bounds), chosen once per call."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    lanes, half = ADD_INT8_LANES, ADD_INT8_LANES // 2
    v32, h64, v8, h32 = (ir.VectorType(i32, lanes), ir.VectorType(i64, half), ir.VectorType(i8, lanes),
                         ir.VectorType(i32, half))
    negative_rounding = ir.Constant(h64, [1 << 31] * half)
    nineteen = ir.Constant(v32, [19] * lanes)
    zeros32 = ir.Constant(v32, [0] * lanes)

    def splat(builder, value, vector_type):
        return lanes_ir.splat(builder, value, vector_type.count)

    def rows(typingctx, xl, start_l, xg, start_g, out, start_out, count, constants):
        arrays = (xl, xg, out, constants)
        if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
            return None
        if not (xl.dtype == xg.dtype == out.dtype == types.int8 and constants.dtype == types.int64):
            return None
        sig = types.void(xl, start_l, xg, start_g, out, start_out, count, constants)

        def codegen(context, builder, signature, args):
            xl_a, xg_a, out_a, c_a = (context.make_array(signature.args[n])(context, builder, args[n])
                                      for n in (0, 2, 4, 7))
            start_l, start_g, start_out, count = (
                context.cast(builder, args[n], signature.args[n], types.int64) for n in (1, 3, 5, 6))

            def scalar(array, n):
                return builder.load(builder.gep(array.data, [ir.Constant(i64, n)]))

            def s32(n):
                return splat(builder, builder.trunc(scalar(c_a, n), i32), v32)

            q, r, c, n_round, k, x_lim, big_k = (s32(n) for n in range(7))
            # The output multiplier as a sign-extended int32 (so LLVM multiplies with vpmuldq).
            multiplier = builder.sext(splat(builder, builder.trunc(scalar(c_a, 7), i32), h32), h64)
            rounding, right = splat(builder, scalar(c_a, 8), h64), splat(builder, scalar(c_a, 9), h64)
            act_min, act_max = (splat(builder, builder.trunc(scalar(c_a, n), i32), v32) for n in (10, 11))
            mode, negative = scalar(c_a, 12), scalar(c_a, 13)
            pointers = [builder.bitcast(a.data, i8.as_pointer()) for a in (xl_a, xg_a, out_a)]
            starts = (start_l, start_g, start_out)
            step = ir.Constant(i64, lanes)
            last = builder.sub(count, step)
            groups = builder.sdiv(builder.add(count, ir.Constant(i64, lanes - 1)), step)
            zero = ir.Constant(i64, 0)
            done = builder.append_basic_block("add8.done")

            def emit_loop(combine, with_negative, saturate):
                entry = builder.block
                loop = builder.append_basic_block("add8.loop")
                builder.branch(loop)
                builder.position_at_end(loop)
                t = builder.phi(i64)
                t.add_incoming(zero, entry)
                first = builder.mul(t, step)
                i = builder.select(builder.icmp_signed("<", first, last), first, last)
                x_l, x_g = (builder.sext(builder.load(builder.bitcast(
                    builder.gep(pointers[j], [builder.add(starts[j], i)]), v8.as_pointer()), align=1), v32)
                    for j in range(2))
                if combine == 3:  # MUL: wrap32(wrap32((x1 + offset1)·(x2 + offset2)) << left)
                    raw = builder.shl(builder.mul(builder.add(x_l, q), builder.add(x_g, r)), c)
                else:  # ADD / SUB
                    linear = builder.shl(x_l, nineteen)  # (x + offset)·2^19 without its offset (in K)
                    low = builder.add(builder.mul(x_g, r), c)
                    low = builder.sub(low, builder.select(builder.icmp_signed("<", x_g, x_lim), n_round, zeros32))
                    general = builder.add(builder.mul(x_g, q), builder.ashr(low, k))
                    if combine == 0:
                        raw = builder.add(linear, general)
                    elif combine == 1:
                        raw = builder.sub(linear, general)
                    else:
                        raw = builder.sub(general, linear)
                    raw = builder.add(raw, big_k)
                # The output step (lanes_ir.requantize_merged: the offset folded into the rounding).
                value = lanes_ir.requantize_merged(builder, raw, None, (multiplier,) * 2, (rounding,) * 2,
                                                   (negative_rounding,) * 2, (right,) * 2, None, act_min, act_max,
                                                   not with_negative, saturate)
                target = builder.gep(pointers[2], [builder.add(starts[2], i)])
                builder.store(value, builder.bitcast(target, v8.as_pointer()), align=1)
                t_next = builder.add(t, ir.Constant(i64, 1))
                t.add_incoming(t_next, builder.block)
                builder.cbranch(builder.icmp_signed("<", t_next, groups), loop, done)

            # One loop per (mode, negative rounding, bounds -128..127) triple: with the int8
            # bounds the clamp is constant (LLVM narrows with one saturating vpmovsdb).
            variants = [builder.append_basic_block(f"add8.variant{v}") for v in range(16)]
            modes = [builder.append_basic_block(f"add8.mode{v}") for v in range(4)]
            rounding_kinds = [builder.append_basic_block(f"add8.kind{v}") for v in range(8)]
            with_negative = builder.icmp_signed("!=", negative, zero)
            saturate = builder.and_(builder.icmp_signed("==", scalar(c_a, 10), ir.Constant(i64, -128)),
                                    builder.icmp_signed("==", scalar(c_a, 11), ir.Constant(i64, 127)))
            switch = builder.switch(mode, modes[0])
            for v in range(4):
                switch.add_case(ir.Constant(i64, v), modes[v])
                builder.position_at_end(modes[v])
                builder.cbranch(with_negative, rounding_kinds[2 * v + 1], rounding_kinds[2 * v])
                for w in range(2):
                    builder.position_at_end(rounding_kinds[2 * v + w])
                    builder.cbranch(saturate, variants[4 * v + 2 * w + 1], variants[4 * v + 2 * w])
            for v in range(16):
                builder.position_at_end(variants[v])
                emit_loop(v // 4, bool(v & 2), bool(v & 1))
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    rows.__name__ = "add_int8_rows"
    return intrinsic(rows)


@lazy_njit
def _add_int8(xl, sl, xg, sg, dims, constants, out):
    n0, n1, n2, n3 = dims[0], dims[1], dims[2], dims[3]
    o = 0
    for a in range(n0):
        for b in range(n1):
            for c in range(n2):
                il = a * sl[0] + b * sl[1] + c * sl[2]
                ig = a * sg[0] + b * sg[1] + c * sg[2]
                _add_rows(xl, il, xg, ig, out, o, n3, constants)
                o += n3


@lazy_njit
def _add_int8_flat(xl, xg, constants, out):
    _add_rows(xl, 0, xg, 0, out, 0, out.size, constants)


def add_int8(plan: AddInt8Plan, x1: np.ndarray, s1, x2: np.ndarray, s2, dims, out: np.ndarray) -> None:
    """int8 ADD / SUB over ``layout``'s loops whose innermost strides are both 1 and rows >= 16
    values (the caller checks): x1, x2 flat int8, out flat int8 C-ordered over dims."""
    _add_intrinsic()
    if plan.swap:
        x1, s1, x2, s2 = x2, s2, x1, s1
    _add_int8(x1, s1, x2, s2, dims, plan.constants, out)


def add_int8_flat(plan: AddInt8Plan, x1: np.ndarray, x2: np.ndarray, out: np.ndarray) -> None:
    """int8 ADD / SUB of two equal-shaped flat operands of >= 16 values (one run, the common
    case: four kernel arguments instead of seven)."""
    _add_intrinsic()
    if plan.swap:
        x1, x2 = x2, x1
    _add_int8_flat(x1, x2, plan.constants, out)
