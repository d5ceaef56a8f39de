"""ADD, SUB and MUL on quantized operands, and the per-element requantization of QUANTIZE
(int -> int) and RELU: reference_integer_ops::AddFunc / reference_ops::SubElementwise /
reference_integer_ops::MulElementwise (add.h, sub.h, mul.h) and reference_ops::Requantize
(requantize.h) / ReluQuantized (activations_common.cc).

    ADD, SUB (ArithmeticParams):
        input1_val = input1_offset + input1          input2_val likewise
        shifted_input1_val = input1_val · 2^left_shift                   (int32)
        scaled_input1_val = MBQMSmallerThanOneExp(shifted_input1_val, input1_multiplier, input1_shift)
        raw_sum = scaled_input1_val ± scaled_input2_val
        raw_output = MBQMSmallerThanOneExp(raw_sum, output_multiplier, output_shift) + output_offset
        output = clamp(raw_output, quantized_activation_min, quantized_activation_max)
    MUL:
        unclamped = output_offset + MBQM((input1_offset + input1)·(input2_offset + input2), M, shift)
    Requantize / ReluQuantized:
        output = clamp(output_zero_point + MBQM(input - input_zero_point, M, shift), min, max)

The inputs are numpy-broadcast against each other (TFLM's flat and broadcast loops compute the
same value per element). MBQM is the build's MultiplyByQuantizedMultiplier: the wheel's double
rounding (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT) or, with
``rounding="single"``, TFLITE_SINGLE_ROUNDING's one rounding. With ``steps`` (a dict) every
intermediate array is recorded under the name the C code gives it, for ``explain``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import fixedpoint as fp


@dataclass(frozen=True)
class ArithmeticParams:
    """The ArithmeticParams fields ADD, SUB and MUL read (types.h)."""
    input1_offset: int             # -input1 zero point
    input2_offset: int             # -input2 zero point
    output_offset: int             # the output zero point
    output_multiplier: int         # ADD/SUB: 2·max(s1, s2)/(2^left_shift·s_out); MUL: s1·s2/s_out
    output_shift: int
    quantized_activation_min: int
    quantized_activation_max: int
    left_shift: int = 0            # ADD/SUB: 20 for int8, 15 for int16
    input1_multiplier: int = 0     # ADD/SUB: s1 / (2·max(s1, s2))
    input1_shift: int = 0
    input2_multiplier: int = 0     # ADD/SUB: s2 / (2·max(s1, s2))
    input2_shift: int = 0
    rounding: str = "double"       # "double" (the wheel) or "single" (TFLITE_SINGLE_ROUNDING)


@dataclass(frozen=True)
class RequantizeParams:
    """reference_ops::Requantize's arguments (QUANTIZE int -> int); ReluOpData.params for RELU."""
    input_zero_point: int
    output_zero_point: int
    multiplier: int                # s_in / s_out
    shift: int
    output_min: int                # the output type's range (RELU: max(qmin, zero point), qmax)
    output_max: int
    rounding: str = "double"


def multiply_by_quantized_multiplier(x, multiplier: int, shift: int, rounding: str,
                                     steps: dict | None = None, name: str = "scaled") -> np.ndarray:
    """MultiplyByQuantizedMultiplier of the build; with ``steps``, the double rounding's two
    roundings are recorded as ``<name>_shifted`` (x·2^left, int32), ``<name>_high``
    (SaturatingRoundingDoublingHighMul) and the result as ``<name>``."""
    x = fp.as_int64(x)
    if rounding == "single":
        scaled = fp.wrap_int32(fp.multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift))
    else:
        left = max(int(shift), 0) & 31  # C's 1 << shift: x86 masks the count to 5 bits
        shifted = fp.wrap_int32(x << left)
        high = fp.saturating_rounding_doubling_high_mul(shifted, multiplier)
        scaled = fp.rounding_divide_by_pot(high, max(-int(shift), 0))
        if steps is not None:
            steps[f"{name}_shifted"], steps[f"{name}_high"] = shifted, high
    if steps is not None:
        steps[name] = scaled
    return scaled


def _clamp(p: ArithmeticParams, raw):
    return np.minimum(p.quantized_activation_max, np.maximum(p.quantized_activation_min, raw))


def _add_sub(p: ArithmeticParams, input1, input2, sign: int, steps: dict | None):
    input1_val = p.input1_offset + fp.as_int64(input1)
    input2_val = p.input2_offset + fp.as_int64(input2)
    shifted_input1_val = fp.wrap_int32(input1_val << p.left_shift)
    shifted_input2_val = fp.wrap_int32(input2_val << p.left_shift)
    scaled_input1_val = multiply_by_quantized_multiplier(shifted_input1_val, p.input1_multiplier, p.input1_shift,
                                                         p.rounding, steps, "scaled_input1_val")
    scaled_input2_val = multiply_by_quantized_multiplier(shifted_input2_val, p.input2_multiplier, p.input2_shift,
                                                         p.rounding, steps, "scaled_input2_val")
    raw = fp.wrap_int32(scaled_input1_val + sign * scaled_input2_val)
    scaled = multiply_by_quantized_multiplier(raw, p.output_multiplier, p.output_shift, p.rounding, steps,
                                              "scaled_output")
    raw_output = fp.wrap_int32(scaled + p.output_offset)
    output = _clamp(p, raw_output)
    if steps is not None:
        steps.update(input1_val=input1_val, input2_val=input2_val, shifted_input1_val=shifted_input1_val,
                     shifted_input2_val=shifted_input2_val, raw=raw, raw_output=raw_output, output=output)
    return output


def add(p: ArithmeticParams, input1: np.ndarray, input2: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """AddFunc per element (int8 and int16 ADD); ``raw`` is C's raw_sum."""
    return _add_sub(p, input1, input2, +1, steps)


def sub(p: ArithmeticParams, input1: np.ndarray, input2: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """SubElementwise per element (int8 and int16 SUB); ``raw`` is C's raw_sub."""
    return _add_sub(p, input1, input2, -1, steps)


def mul(p: ArithmeticParams, input1: np.ndarray, input2: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """MulElementwise per element (int8 and int16 MUL)."""
    input1_val = p.input1_offset + fp.as_int64(input1)
    input2_val = p.input2_offset + fp.as_int64(input2)
    product = fp.wrap_int32(input1_val * input2_val)
    scaled = multiply_by_quantized_multiplier(product, p.output_multiplier, p.output_shift, p.rounding, steps,
                                              "scaled_output")
    unclamped_result = fp.wrap_int32(p.output_offset + scaled)
    output = _clamp(p, unclamped_result)
    if steps is not None:
        steps.update(input1_val=input1_val, input2_val=input2_val, product=product, raw_output=unclamped_result,
                     output=output)
    return output


def requantize_elementwise(p: RequantizeParams, input: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """Requantize / ReluQuantized per element: clamp(zp_out + MBQM(input - zp_in, M, shift))."""
    diff = fp.wrap_int32(fp.as_int64(input) - p.input_zero_point)
    scaled = multiply_by_quantized_multiplier(diff, p.multiplier, p.shift, p.rounding, steps, "scaled")
    raw_output = fp.wrap_int32(scaled + p.output_zero_point)
    output = np.minimum(np.maximum(raw_output, p.output_min), p.output_max)
    if steps is not None:
        steps.update(diff=diff, raw_output=raw_output, output=output)
    return output
