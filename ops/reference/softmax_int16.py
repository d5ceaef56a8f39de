"""int16 SOFTMAX with its steps recorded, for ``explain``: reference_ops::SoftmaxInt16 (softmax.h).

    for each row:
        max_in_row = max(input)
        input_diff = input - max_in_row                                   (<= 0)
        scaled_diff = MultiplyByQuantizedMultiplier(input_diff, M, shift)  (beta·s_in / (10/65535))
        sym_scaled_diff = scaled_diff + 32767                             (clamped to int16)
        exp_result = LUTLookup(sym_scaled_diff, exp_lut)                  (exp over [-10, 0] in Q0.15-ish)
        sum_of_exps = Σ exp_result                                        (int32)
        headroom_plus_one = CountLeadingZeros(sum_of_exps)
        shifted_sum = ((sum_of_exps << (headroom_plus_one - 1)) + 2^13) >> 14
        sym_shifted_sum = shifted_sum - (2^15 + 2^16)                     (clamped to int16)
        reciprocal_scale_Q015 = LUTLookup(sym_shifted_sum, one_over_one_plus_x_lut)
        right_shift = 31 - headroom_plus_one
        output = clamp((exp_result · reciprocal + 2^(right_shift-1)) >> right_shift, 0, 32767)

LUTLookup(x, lut): index = 256 + (x >> 7), offset = x & 127,
base = lut[index], slope = lut[index + 1] - base, result = base + ((slope·offset + 64) >> 7).
The two 513-entry tables are the ones the kernel built at Prepare (LUTPopulateInt16, float32).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import fixedpoint as fp
from ..softmax import lut_lookup_int16


@dataclass(frozen=True)
class SoftmaxInt16Params:
    """The SoftmaxParams fields SoftmaxInt16 reads (softmax_common.cc, int16 input)."""
    input_multiplier: int          # QuantizeMultiplier(beta·s_in / (10/65535))
    input_left_shift: int          # its shift (either sign)
    exp_lut: np.ndarray            # 513 int16 entries: exp(x) for x in [-10, 0]
    one_over_one_plus_x_lut: np.ndarray  # 513 int16 entries: 1/(1+x) for x in [0, 1]


def lut_steps(values, lut) -> dict:
    """LUTLookup written out: index, offset, base, slope and the result."""
    v = np.asarray(values, np.int64)
    index = 256 + (v >> 7)
    offset = v & 0x7F
    base = lut[index]
    slope = lut[index + 1] - base
    return dict(index=index, offset=offset, base=base, slope=slope, result=lut_lookup_int16(v, lut))


def softmax_int16(p: SoftmaxInt16Params, input: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """Over the last axis; the output has the input's shape (int64 values of int16).

    With ``steps``: ``max_in_row``, ``input_diff``, ``scaled_diff``, ``sym_scaled_diff``,
    ``exp_result`` (with ``exp_index``, ``exp_offset``, ``exp_base``, ``exp_slope``),
    ``sum_of_exps``, ``headroom_plus_one``, ``shifted_sum``, ``sym_shifted_sum``,
    ``reciprocal_scale_Q015`` (with ``recip_index`` ...), ``right_shift``, ``unsat_output`` and ``output``."""
    x = fp.as_int64(input)
    max_in_row = x.max(axis=-1, keepdims=True)
    input_diff = x - max_in_row
    scaled_diff = fp.multiply_by_quantized_multiplier(input_diff, p.input_multiplier, p.input_left_shift)
    sym_scaled_diff = np.clip(scaled_diff + 32767, -32768, 32767)
    exp = lut_steps(sym_scaled_diff, p.exp_lut)
    exp_result = exp["result"]
    sum_of_exps = exp_result.sum(axis=-1, keepdims=True)
    headroom_plus_one = fp.count_leading_zeros32(sum_of_exps)
    shifted_sum = ((sum_of_exps << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    sym_shifted_sum = np.clip(shifted_sum - ((1 << 15) + (1 << 16)), -32768, 32767)
    recip = lut_steps(sym_shifted_sum, p.one_over_one_plus_x_lut)
    reciprocal = recip["result"]
    right_shift = 31 - headroom_plus_one
    unsat = (exp_result * reciprocal + (np.int64(1) << (right_shift - 1))) >> right_shift
    output = np.clip(unsat, 0, 32767)
    if steps is not None:
        steps.update(max_in_row=max_in_row, input_diff=input_diff, scaled_diff=scaled_diff,
                     sym_scaled_diff=sym_scaled_diff, exp_result=exp_result, sum_of_exps=sum_of_exps,
                     headroom_plus_one=headroom_plus_one, shifted_sum=shifted_sum, sym_shifted_sum=sym_shifted_sum,
                     reciprocal_scale_Q015=reciprocal, right_shift=right_shift, unsat_output=unsat, output=output)
        steps.update({f"exp_{k}": v for k, v in exp.items() if k != "result"})
        steps.update({f"recip_{k}": v for k, v in recip.items() if k != "result"})
    return output


def params_of(kernel) -> SoftmaxInt16Params:
    """The int16 SOFTMAX kernel's prepared multiplier, shift and tables."""
    return SoftmaxInt16Params(int(kernel.multiplier), int(kernel.shift), kernel.exp_lut, kernel.recip_lut)
