"""TFLM's int8 requantization of 16 int32 accumulators as LLVM IR, under the names pointwise_small
and its tests use: ``requantize16`` is ops/compiled/lanes_ir.requantize with int8 bounds (the
saturating narrowing, then the int8 clamp) and ``constants`` is lanes_ir.channel_constants; the
proofs of every step are in lanes_ir's docstring (the one requantization IR of the tree).
"""
from __future__ import annotations

from .lanes_ir import LANES, requantize
from .lanes_ir import channel_constants as constants

__all__ = ["requantize16", "constants", "LANES"]


def requantize16(builder, acc, left, multiplier, rounding, negative_rounding, right_shift, offset, act_min, act_max):
    """IR for ``min(max(int32(((acc << left)·M + rounding - [·< -2^30]·negative_rounding) >> right_shift
    + offset), act_min), act_max)`` on 16 lanes, narrowed to int8 (lanes_ir.requantize). ``acc``,
    ``left``, ``offset``: <16 x i32>; ``act_min``, ``act_max``: <16 x i8> (int8 bounds); the int64
    constants ``multiplier``, ``rounding``, ``negative_rounding``, ``right_shift``: pairs (even
    lanes, odd lanes) of <8 x i64>, as ``constants`` lays them out. Returns <16 x i8>.
    ``left=None``: no lane shifts left; ``offset=None``: no addition (a caller that has folded the
    offset into ``rounding``, where it proved that exact: lanes_ir.fold_offset)."""
    halves = list(zip(multiplier, rounding, negative_rounding, right_shift))
    return requantize(builder, acc, left, halves, offset, act_min, act_max, int8_bounds=True, negative_first=True)
