"""LLVM IR building blocks for TFLM's int8 requantization of 16 int32 accumulators in vector
registers: the kernels written as numba intrinsics (first_conv, conv_u8_fused, depthwise_narrow,
depthwise_vnni, elementwise's int8 ADD / SUB / MUL) requantize the lanes that accumulated their
outputs with these blocks, so the arithmetic and its proofs live here once. Imports llvmlite only
when a block is called (codegen time); the plan helpers (``mode``, ``fold_offset``,
``even_odd_order``) run on numpy at prepare.

The formula. Per lane, with the per-channel constants of ops/compiled/depthwise.plan (left =
max(shift, 0) & 31, M in [0, 2^31), e = max(-shift, 0) <= 31, rounding = 2^30 + [e > 0]·2^(30+e),
negative_rounding = [e > 0]·2^31, right_shift = 31 + e):

    a      = acc·2^left                      (int32, wraps: x86's C ``x * (1 << left)``)
    p      = a·M                             (int64: |p| <= 2^31·(2^31 - 1) < 2^62, exact)
    r      = (p + rounding - [p < -2^30]·negative_rounding) >> right_shift      (int64)
    out    = min(max(int32(r + output_offset), act_min), act_max)             stored as int8

depthwise.py's docstring proves the one shift equal to TFLM's two roundings
(SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT). Why the IR is that formula exactly:

* ``shl <16 x i32> acc, left``: left <= 31 (below the width, so never poison) gives the low 32
  bits of acc·2^left, the int32 product modulo 2^32 (numba's ``np.int32(np.int64(a) << left)``).
* The int64 steps run on two halves of 8 lanes (``even_odd``): the 16 int32 lanes bitcast to
  8 int64 words (x86 is little-endian: word i holds lane 2i in its low half, lane 2i + 1 in its
  high half); ``ashr (shl w, 32), 32`` is lane 2i sign-extended, ``ashr w, 32`` lane 2i + 1. The
  per-lane int64 constants come in the same halves (``even_odd_order``: each group of 16 lanes as
  its 8 even lanes, then its 8 odd ones), so no lane moves before the results are put back. A
  multiplier given as an int64 word whose LOW half is M is sign-extended from it (M < 2^31: that is
  M), the form LLVM turns into vpmuldq's operand.
* ``mul`` of two int32 values sign-extended to i64: |p| <= 2^31·(2^31 - 1) < 2^62, exact.
* ``p + rounding - select(p < -2^30, negative_rounding, 0)`` (``rounded``): |p| + 2^30 + 2^61 +
  2^31 < 2^63, no wrap; ``ashr`` by right_shift in 31..62 (below 64: defined) is floor division by
  2^right_shift, as numba's ``>>`` on int64.
* Each half's int64 results are cut to their low 32 bits and put back in lane order
  (``interleave_low``: one shuffle, lane 2i from the even half's word i, lane 2i + 1 from the odd
  half's; ``merge_low``: the same words by a mask, a shift and an or): the int32 truncation. Then
  ``add`` the offset truncated to i32: (r + offset) modulo 2^32 equals trunc(r) + trunc(offset)
  modulo 2^32, so this is ``np.int32(r + output_offset)``.
* ``clamp``: two signed compares and selects in TFLM's order (max with act_min, then min with
  act_max), then ``trunc`` to i8 of a value already inside int8 (the callers' bounds are).
  LLVM IR integer operations here carry no nsw / nuw flags (they wrap, two's complement); no
  float operation appears anywhere.

The shortcuts, each chosen by a kernel's plan only where it changes no output byte:

* MODE_SKIP_NEGATIVE (``mode``: act_min >= output_offset and |output_offset| < 2^29, a fused
  ReLU / ReLU6, or no activation with the output zero point at -128): the negative rounding is
  left out. It is nonzero only for e >= 1, where it subtracts 2^31 when p < -2^30. Without it the
  numerator p + 2^30 + 2^(30+e) is < 2^(30+e) there, so r' = numerator >> (31 + e) <= 0, and with
  it r = r' or r' - 1 (2^31 < 2^(31+e)); elsewhere r' = r. Both are >= -2^(31-e) - 1 >= -2^30 - 1
  (|p| <= 2^62), so r + output_offset and r' + output_offset do not wrap in int32, and both are
  <= output_offset <= act_min: both clamp to act_min (then min(act_min, act_max), the same value).
* MODE_SATURATE (act_min = -128 and act_max = 127): the clamp compares with those constants (the
  same comparison; LLVM then narrows with one saturating vpmovsdb, which is that clamp and the
  truncation).
* The offset folded into the rounding constant (``fold_offset``, and ``requantize_merged`` given
  no offset): floor(X / 2^s) + off = floor((X + off·2^s) / 2^s) for integers X, off. With
  X = p + rounding - negative, |X| < 2^62 + 2^61 + 2^31; where |off|·2^s <= 2^60 on every lane the
  folded sum stays below 2^63 (no int64 wrap), so the int64 value then truncated to int32 is the
  same one. (Where the plan cannot fold, ``requantize_merged`` adds the offset to the int64 result
  before the truncation: int32(r + off) either way.)
* The high word (``requantize_high``, for right shifts s >= 32 only: e >= 1, so shift < 0 and the
  left shift max(shift, 0) is 0): r = q >> s = (q >> 32) >> (s - 32) (floor division by 2^32,
  then by 2^(s - 32)), and q >> 32 lies in [-2^31, 2^31) (|q| < 2^63), so it is exactly the high
  int32 word of q; the int32 arithmetic shift of the high words by s - 32 (0..30: defined) is then
  r itself, which fits int32, so int32(r) = r as in the int64 form. The plan must guarantee
  32 <= s <= 62 on every lane.
* ``clamp_int8`` (requant_ir's order): first to [-128, 127] in int32 and ``trunc`` to i8 (one
  vpmovsdb), then max with act_min and min with act_max in int8. For int8 bounds lo, hi this is
  TFLM's min(max(v, lo), hi) of the int32 v, with c the clamp to [-128, 127]: if v < -128,
  c(v) = -128 and max(-128, lo) = lo = max(v, lo); if v > 127, c(v) = 127, max(127, lo) = 127
  and min(127, hi) = hi = min(max(v, lo), hi) (max(v, lo) = v > hi); otherwise c(v) = v.

tests/test_compiled_lanes_ir.py runs every block on extreme accumulators (the int32 ends, around
the ±2^30 threshold), every shift -31..31 (left shifts that wrap), zero and extreme multipliers and
offsets at the modes' boundaries against ops.fixedpoint's multiply_by_quantized_multiplier.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LANES", "HALF", "MODE_SKIP_NEGATIVE", "MODE_SATURATE", "mode", "fold_offset", "even_odd_order",
           "channel_constants", "splat", "even_odd", "sign_extend_low", "rounded", "interleave_low", "merge_low",
           "clamp", "clamp_int8", "tails", "requantize", "requantize_merged", "requantize_high"]

LANES = 16
HALF = LANES // 2
MODE_SKIP_NEGATIVE = 1  # leave out the negative rounding: the clamp absorbs it (module docstring)
MODE_SATURATE = 2  # the activation bounds are -128 and 127: compared as constants
_THRESHOLD = -(1 << 30)  # p below it takes the negative rounding


# --- plan helpers (numpy, prepare time) ---------------------------------------------------------

def mode(activation_min: int, activation_max: int, output_offset: int) -> int:
    """MODE_SKIP_NEGATIVE | MODE_SATURATE where each holds (the module docstring's proofs)."""
    offset = int(output_offset)
    bits = MODE_SKIP_NEGATIVE if int(activation_min) >= offset and abs(offset) < (1 << 29) else 0
    if (int(activation_min), int(activation_max)) == (-128, 127):
        bits |= MODE_SATURATE
    return bits


def fold_offset(rounding, right_shift, output_offset: int) -> np.ndarray | None:
    """rounding + output_offset·2^right_shift per lane (int64), or None where some lane's
    |output_offset|·2^right_shift exceeds 2^60 (the fold could overflow int64: module docstring)."""
    off = int(output_offset)
    if not all(abs(off) << int(r) <= 1 << 60 for r in right_shift):
        return None
    return np.array([int(v) + (off << int(r)) for v, r in zip(rounding, right_shift)], np.int64)


def even_odd_order(values: np.ndarray) -> np.ndarray:
    """The last axis (a multiple of 16) with each group of 16 lanes as its 8 even lanes, then its 8
    odd ones: the layout the int64 halves read per-lane constants in."""
    values = np.asarray(values)
    shape = values.shape
    return np.ascontiguousarray(values.reshape(shape[:-1] + (-1, HALF, 2)).swapaxes(-1, -2).reshape(shape))


def channel_constants(requant, channels: int, padded: int):
    """depthwise.plan's per-channel constants (a CompiledDepthwiseParams for ``channels`` int8
    channels) padded to ``padded`` lanes (a multiple of 16) with M = 0 (those results are never
    stored), for ``requantize`` with per-lane constants: ``left`` (padded,) int32; ``wide`` (4,
    padded) int64, rows multiplier, rounding, negative_rounding, right_shift (31 in the padding), in
    ``even_odd_order``. Both read-only."""
    assert padded % LANES == 0 and padded >= channels
    left = np.zeros(padded, np.int32)
    left[:channels] = requant.left_shift
    wide = np.zeros((4, padded), np.int64)
    wide[3] = 31
    for row, values in enumerate((requant.multiplier, requant.rounding, requant.negative_rounding,
                                  requant.right_shift)):
        wide[row, :channels] = values
    wide = even_odd_order(wide)
    left.flags.writeable = False
    wide.flags.writeable = False
    return left, wide


# --- IR blocks (llvmlite, codegen time) ---------------------------------------------------------

def splat(builder, value, count: int):
    """<count x T> with every lane ``value`` (an IR value)."""
    from llvmlite import ir

    vector = ir.VectorType(value.type, count)
    one = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector, None), ir.Constant(ir.VectorType(ir.IntType(32), count),
                                                                                  [0] * count))


def _halves_type():
    from llvmlite import ir

    return ir.VectorType(ir.IntType(64), HALF)


def sign_extend_low(builder, words):
    """<8 x i64>: each word's low int32 half sign-extended (``ashr(shl(w, 32), 32)``)."""
    from llvmlite import ir

    thirty_two = ir.Constant(words.type, [32] * words.type.count)
    return builder.ashr(builder.shl(words, thirty_two), thirty_two)


def even_odd(builder, acc):
    """<16 x i32> -> (even lanes, odd lanes) as two <8 x i64> of the sign-extended int32 values."""
    from llvmlite import ir

    words = builder.bitcast(acc, _halves_type())
    return sign_extend_low(builder, words), builder.ashr(words, ir.Constant(words.type, [32] * HALF))


def rounded(builder, x, multiplier, rounding, negative_rounding, skip_negative: bool, negative_first: bool = False):
    """<8 x i64> q = x·M + rounding - [x·M < -2^30]·negative_rounding (x, M sign-extended int32:
    the product is exact); ``skip_negative``: without the last term (MODE_SKIP_NEGATIVE).
    ``negative_first`` changes only the order the instructions are emitted in (the negative term
    before the sum: the same values), which LLVM's scheduler follows; each kernel keeps the order
    its speed was measured with, so the machine code it compiles to is the one measured."""
    from llvmlite import ir

    product = builder.mul(x, multiplier)  # exact: |p| < 2^62
    if skip_negative:
        return builder.add(product, rounding)
    vector = product.type
    if negative_first:
        below = builder.icmp_signed("<", product, ir.Constant(vector, [_THRESHOLD] * vector.count))
        negative = builder.select(below, negative_rounding, ir.Constant(vector, [0] * vector.count))
        return builder.sub(builder.add(product, rounding), negative)
    total = builder.add(product, rounding)
    below = builder.icmp_signed("<", product, ir.Constant(vector, [_THRESHOLD] * vector.count))
    return builder.sub(total, builder.select(below, negative_rounding, ir.Constant(vector, [0] * vector.count)))


def interleave_low(builder, even, odd):
    """<16 x i32>: the low int32 halves of the even and the odd lanes' <8 x i64> results, back in
    lane order by one shuffle (the int32 truncation)."""
    from llvmlite import ir

    vec32 = ir.VectorType(ir.IntType(32), LANES)
    return builder.shuffle_vector(builder.bitcast(even, vec32), builder.bitcast(odd, vec32), ir.Constant(
        vec32, [j // 2 * 2 + (LANES if j % 2 else 0) for j in range(LANES)]))


def merge_low(builder, even, odd):
    """``interleave_low`` by a mask, a shift and an or (the odd lanes' low halves moved up)."""
    from llvmlite import ir

    low_half = ir.Constant(even.type, [0xFFFFFFFF] * HALF)
    thirty_two = ir.Constant(even.type, [32] * HALF)
    return builder.bitcast(builder.or_(builder.and_(even, low_half), builder.shl(odd, thirty_two)),
                           ir.VectorType(ir.IntType(32), LANES))


def clamp(builder, value, low, high, saturate: bool):
    """<16 x i32> min(max(value, low), high) (TFLM's order); ``saturate``: the bounds are the
    constants -128, 127 (MODE_SATURATE) instead of ``low``, ``high``."""
    from llvmlite import ir

    if saturate:
        low, high = (ir.Constant(value.type, [v] * value.type.count) for v in (-128, 127))
    value = builder.select(builder.icmp_signed("<", value, low), low, value)
    return builder.select(builder.icmp_signed(">", value, high), high, value)


def _narrow(builder, value):
    from llvmlite import ir

    return builder.trunc(value, ir.VectorType(ir.IntType(8), value.type.count))


def clamp_int8(builder, value, act_min, act_max):
    """<16 x i32> -> <16 x i8>: clamped to [-128, 127], narrowed, then max with ``act_min`` and min
    with ``act_max`` (<16 x i8>) in int8: TFLM's clamp for int8 bounds (module docstring)."""
    from llvmlite import ir

    def smax(a, b):
        return builder.select(builder.icmp_signed(">", a, b), a, b)

    def smin(a, b):
        return builder.select(builder.icmp_signed("<", a, b), a, b)

    dwords = value.type
    value = smin(smax(value, ir.Constant(dwords, [-128] * LANES)), ir.Constant(dwords, [127] * LANES))
    return smin(smax(_narrow(builder, value), act_min), act_max)


def tails(builder, mode_value, emit):
    """Branch on ``mode_value`` (an integer IR value: bit 0 MODE_SKIP_NEGATIVE, bit 1
    MODE_SATURATE) to four copies of ``emit(skip_negative, saturate)``, then continue after them."""
    from llvmlite import ir

    after = builder.append_basic_block("tail.after")
    targets = [builder.append_basic_block(f"tail.mode{m}") for m in range(4)]
    switch = builder.switch(mode_value, targets[0])
    for m in range(1, 4):
        switch.add_case(ir.Constant(mode_value.type, m), targets[m])
    for m, target in enumerate(targets):
        builder.position_at_end(target)
        emit(bool(m & 1), bool(m & 2))
        builder.branch(after)
    builder.position_at_end(after)


def requantize(builder, acc, left, halves, offset, low, high, skip_negative: bool = False, saturate: bool = False,
               multiplier_in_low_half: bool = True, int8_bounds: bool = False, negative_first: bool = False):
    """The <16 x i32> accumulators ``acc`` requantized to <16 x i8> (the module docstring's formula,
    the results put back by ``interleave_low``, the offset added in int32). ``left`` <16 x i32>
    (0..31), or None where no lane shifts left; ``halves``: the even lanes' and the odd lanes'
    (multiplier, rounding, negative_rounding, right_shift) as <8 x i64> (right shifts 31..62);
    ``multiplier_in_low_half``: the multiplier words carry M in their low int32 half (sign-extended
    here), else they are M already; ``offset``: <16 x i32> output_offset, or None where the plan
    folded it into the roundings (``fold_offset``); ``low``, ``high``: act_min, act_max (inside
    int8) as <16 x i32>, or with ``int8_bounds`` as <16 x i8> for ``clamp_int8``.
    ``skip_negative`` / ``saturate``: MODE_SKIP_NEGATIVE / MODE_SATURATE where the plan proved them;
    ``negative_first``: ``rounded``'s emission order."""
    if left is not None:
        acc = builder.shl(acc, left)  # int32 acc·2^left, wraps (left 0..31)
    parts = []
    for x, (multiplier, rounding, negative_rounding, right) in zip(even_odd(builder, acc), halves):
        if multiplier_in_low_half:
            multiplier = sign_extend_low(builder, multiplier)
        total = rounded(builder, x, multiplier, rounding, negative_rounding, skip_negative, negative_first)
        parts.append(builder.ashr(total, right))
    value = interleave_low(builder, *parts)
    if offset is not None:
        value = builder.add(value, offset)  # + output_offset, modulo 2^32
    if int8_bounds:
        return clamp_int8(builder, value, low, high)
    return _narrow(builder, clamp(builder, value, low, high, saturate))


def requantize_merged(builder, acc, left, multipliers, roundings, negative_roundings, rights, offset, low, high,
                      skip_negative: bool = False, saturate: bool = False, negative_first: bool = False):
    """``requantize`` with the results merged back by ``merge_low`` and the output offset added to
    the int64 results before the truncation (``offset`` <8 x i64>), or folded into ``roundings``
    by the plan (``offset`` None: ``fold_offset``). ``left`` None: no left shift (every lane's is 0);
    multipliers, roundings, negative_roundings, rights: (even, odd) pairs of <8 x i64>, the
    multipliers sign-extended already; ``negative_first``: ``rounded``'s emission order. Returns <16 x i8>."""
    if left is not None:
        acc = builder.shl(acc, left)  # int32 acc·2^left, wraps (left 0..31)
    results = []
    for h, x in enumerate(even_odd(builder, acc)):
        total = rounded(builder, x, multipliers[h], roundings[h], negative_roundings[h], skip_negative,
                        negative_first)
        scaled = builder.ashr(total, rights[h])
        results.append(builder.add(scaled, offset) if offset is not None else scaled)
    return _narrow(builder, clamp(builder, merge_low(builder, *results), low, high, saturate))


def requantize_high(builder, acc, multiplier, rounding, negative_rounding, right, offset, low, high,
                    skip_negative: bool = False, saturate: bool = False):
    """``requantize`` for lanes whose right shifts s are all >= 32 (so no left shift; the plan
    checks it), r taken from the high int32 words of the int64 sums (module docstring). The same
    constants in every lane's half: ``multiplier`` <8 x i64> whose low halves are M;
    ``rounding``, ``negative_rounding`` <8 x i64>; ``right`` <16 x i32>: s - 32; ``offset``,
    ``low``, ``high`` <16 x i32>. Returns <16 x i8>."""
    from llvmlite import ir

    vec32 = ir.VectorType(ir.IntType(32), LANES)
    words = builder.bitcast(acc, _halves_type())
    # M sign-extended from its low half, in the form LLVM turns into vpmuldq's operand.
    m = sign_extend_low(builder, multiplier)
    parts = []
    for x in (sign_extend_low(builder, words), builder.ashr(words, ir.Constant(words.type, [32] * HALF))):
        parts.append(builder.bitcast(rounded(builder, x, m, rounding, negative_rounding, skip_negative), vec32))
    # Lane 2i: the even half's word i's high half (element 2i + 1), lane 2i + 1: the odd half's.
    high_words = builder.shuffle_vector(parts[0], parts[1], ir.Constant(
        vec32, [j + 1 if j % 2 == 0 else LANES + j for j in range(LANES)]))
    value = builder.add(builder.ashr(high_words, right), offset)  # + output_offset, modulo 2^32
    return _narrow(builder, clamp(builder, value, low, high, saturate))
