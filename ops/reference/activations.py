"""Per-element activations with their integer steps recorded, for ``explain``:
LEAKY_RELU (reference_ops::QuantizeLeakyRelu, leaky_relu.h), int8 and int16, HARD_SWISH
(reference_ops::HardSwish, hard_swish.h), int8, and int8 LOGISTIC / TANH
(reference_integer_ops::Logistic / Tanh, integer_ops/logistic.h and tanh.h).

LEAKY_RELU:
    input_value = input - input_zero_point
    input_value >= 0:  scaled = MBQM(input_value, output_multiplier_identity, output_shift_identity)
    input_value <  0:  scaled = MBQM(input_value, |output_multiplier_alpha|, output_shift_alpha),
                       negated when alpha < 0 (the multiplier then is negative)
    output = clamp(output_zero_point + scaled, the output type's range)

HARD_SWISH (int16 fixed point throughout):
    input_value = input - input_zero_point
    input_value_on_hires_input_scale = input_value << 7
    input_value_on_preshift_output_scale = SRDHM16(hires, output_multiplier_fixedpoint_int16)
    reluish_value = hires, SaturatingLeftShift(exponent - 1) when the reluish exponent > 0,
                    SRDHM16(., reluish_multiplier_fixedpoint_int16), SaturatingLeftShift(1) (exponent > 0)
                    or RoundingDivideByPOT(-exponent) (exponent < 0)
    reluish_value = (reluish_value + 2^15) >> 1      (from [-32768, 32767] to [0, 32767]: relu6(x+3)/6)
    preshift_output_value = SaturatingDoublingHighMul(reluish_value, preshift output)   (truncates)
    output = clamp(RoundingDivideByPOT(., -output_multiplier_exponent) + output_zero_point, int8)

LOGISTIC / TANH int8:
    input = x - input_zero_point
    input >=  input_range_radius: output 127;   input <= -input_range_radius: output -128
    otherwise input_in_q4 = MBQM(input, input_multiplier, input_left_shift)        (Q4.27)
        LOGISTIC: output_in_q023 = RDBPOT(gemmlowp::logistic(input_in_q4), 31 - 8)  output - 128, clamped
        TANH:     output_in_q024 = RDBPOT(gemmlowp::tanh(input_in_q4), 31 - 7)      clamped
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..activations import gemmlowp_logistic, gemmlowp_tanh
from ..hard_swish import (
    rounding_divide_by_pot_int16,
    saturating_doubling_high_mul_int16,
    saturating_left_shift_int16,
    saturating_rounding_doubling_high_mul_int16,
)
from .elementwise import multiply_by_quantized_multiplier

TYPE_RANGES = {"INT8": (-128, 127), "INT16": (-32768, 32767)}


def leaky_relu(p, input: np.ndarray, rounding: str = "double", steps: dict | None = None) -> np.ndarray:
    """QuantizeLeakyRelu per element; ``p`` is the kernel's LeakyReluOpData.

    With ``steps``: ``input_value``, ``identity`` (the identity multiplier's result, with its
    rounding steps as ``identity_shifted`` / ``identity_high``), ``alpha_scaled`` (likewise),
    ``scaled`` (the branch the sign picks), ``unclamped_output`` and ``output``."""
    input_value = fp.wrap_int32(fp.as_int64(input) - p.input_zero_point)
    identity = multiply_by_quantized_multiplier(input_value, p.output_multiplier_identity, p.output_shift_identity,
                                                rounding, steps, "identity")
    alpha_scaled = multiply_by_quantized_multiplier(input_value, abs(p.output_multiplier_alpha),
                                                    p.output_shift_alpha, rounding, steps, "alpha_scaled")
    if p.output_multiplier_alpha < 0:
        alpha_scaled = -alpha_scaled
    scaled = np.where(input_value >= 0, identity, alpha_scaled)
    unclamped_output = fp.wrap_int32(p.output_zero_point + scaled)
    lo, hi = TYPE_RANGES[p.kind]
    output = np.clip(unclamped_output, lo, hi)
    if steps is not None:
        steps.update(input_value=input_value, alpha_scaled=alpha_scaled, scaled=scaled,
                     unclamped_output=unclamped_output, output=output)
    return output


def hard_swish(p, input: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """reference_ops::HardSwish per element; ``p`` is the kernel's HardSwishParams (int8).

    With ``steps``, each int16 value under its C name: ``input_value``,
    ``input_value_on_hires_input_scale``, ``input_value_on_preshift_output_scale``,
    ``reluish_prescaled`` (after the left shift by exponent - 1, or hires), ``reluish_srdhm``,
    ``reluish_scaled`` (after the final shift), ``reluish_value`` (in [0, 32767]),
    ``preshift_output_value``, ``output_value`` (rounded, + zero point) and ``output``."""
    input_value = fp.wrap_int16(fp.as_int64(input) - p.input_zero_point)
    hires = fp.wrap_int16(input_value * (1 << 7))
    preshift_output = saturating_rounding_doubling_high_mul_int16(hires, p.output_multiplier_fixedpoint_int16)
    exponent = p.reluish_multiplier_exponent
    prescaled = saturating_left_shift_int16(hires, exponent - 1) if exponent > 0 else hires
    srdhm = saturating_rounding_doubling_high_mul_int16(prescaled, p.reluish_multiplier_fixedpoint_int16)
    if exponent > 0:
        scaled = saturating_left_shift_int16(srdhm, 1)
    elif exponent < 0:
        scaled = rounding_divide_by_pot_int16(srdhm, -exponent)
    else:
        scaled = srdhm
    reluish_value = (scaled + (1 << 15)) >> 1
    preshift_output_value = saturating_doubling_high_mul_int16(reluish_value, preshift_output)
    output_value = fp.wrap_int16(rounding_divide_by_pot_int16(preshift_output_value, -p.output_multiplier_exponent)
                                 + p.output_zero_point)
    output = np.clip(output_value, -128, 127)
    if steps is not None:
        steps.update(input_value=input_value, input_value_on_hires_input_scale=hires,
                     input_value_on_preshift_output_scale=preshift_output, reluish_prescaled=prescaled,
                     reluish_srdhm=srdhm, reluish_scaled=scaled, reluish_value=reluish_value,
                     preshift_output_value=preshift_output_value, output_value=output_value, output=output)
    return output


def sigmoid_like_int8(p, input: np.ndarray, which: str, rounding: str = "double",
                      steps: dict | None = None) -> np.ndarray:
    """int8 LOGISTIC (``which="LOGISTIC"``) or TANH per element; ``p`` is the kernel's
    OpDataLogistic / OpDataTanh. With ``steps``: ``input`` (x - zp), ``input_in_q4`` (Q4.27, with
    its rounding steps as ``input_in_q4_shifted`` / ``input_in_q4_high``), ``output_in_q0`` (gemmlowp
    logistic/tanh, Q0.31), ``output_rounded`` (Q0.8 / Q0.7, RoundingDivideByPOT), ``unsaturated``
    (the clamped formula) and ``output`` (after the two saturation branches)."""
    diff = fp.as_int64(input) - p.input_zero_point
    in_q4 = multiply_by_quantized_multiplier(diff, p.input_multiplier, p.input_left_shift, rounding, steps,
                                             "input_in_q4")
    if which == "LOGISTIC":
        out_q0 = gemmlowp_logistic(in_q4)
        rounded = fp.rounding_divide_by_pot(out_q0, 31 - 8)
        unsaturated = np.clip(rounded - 128, -128, 127)
    else:
        out_q0 = gemmlowp_tanh(in_q4)
        rounded = fp.rounding_divide_by_pot(out_q0, 31 - 7)
        unsaturated = np.clip(rounded, -128, 127)
    # The C if / else-if order: >= radius first; with a radius of 0, a zero difference gives -128.
    output = np.where(diff >= p.input_range_radius, 127, unsaturated)
    output = np.where(diff <= -p.input_range_radius, -128, output)
    if steps is not None:
        steps.update(input=diff, output_in_q0=out_q0, output_rounded=rounded, unsaturated=unsaturated, output=output)
    return output
