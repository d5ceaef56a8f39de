"""HARD_SWISH: TFLM's hard_swish.cc and reference/hard_swish.h (int8: int16 fixed-point
multipliers, float32)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fp
from .activations import UnaryKernel
from .common import real_multiplier
from .elementwise import (
    scale_and_zero_point,
)
from .params import params_as_dict
from .registry import PrepareContext, register


@dataclass(frozen=True)
class HardSwishParams:
    """types.h HardSwishParams, as HardSwishPrepare fills them (float32: all 0)."""
    kind: str                      # FLOAT32 or INT8: input and output type
    input_zero_point: int = 0
    output_zero_point: int = 0
    reluish_multiplier_fixedpoint_int16: int = 0  # (s_in/128) / (3/32768), downscaled to int16
    reluish_multiplier_exponent: int = 0          # its exponent (either sign)
    output_multiplier_fixedpoint_int16: int = 0   # (s_in/128) / s_out, downscaled to int16
    output_multiplier_exponent: int = 0           # its exponent (<= 0, checked)


# ------------------------------------------------------------------------------ HARD_SWISH

def downscale_multiplier_to_int16(multiplier_int32: int) -> int:
    """DownScaleInt32ToInt16Multiplier (kernels/internal/common.h)."""
    if multiplier_int32 >= fp.INT32_MAX - (1 << 15):
        return fp.INT16_MAX
    return (multiplier_int32 + (1 << 15)) >> 16


def saturating_rounding_doubling_high_mul_int16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul for int16 operands."""
    a, b = fp.as_int64(a), fp.as_int64(b)
    ab = a * b
    nudged = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    high = fp.wrap_int16(fp.truncating_divide(nudged, 1 << 15))
    return np.where((a == b) & (a == fp.INT16_MIN), fp.INT16_MAX, high)


def saturating_doubling_high_mul_int16(a, b):
    """reference_ops::SaturatingDoublingHighMul in hard_swish.h: a*b / 2^15 truncated, no rounding."""
    a, b = fp.as_int64(a), fp.as_int64(b)
    high = fp.wrap_int16(fp.truncating_divide(a * b, 1 << 15))
    return np.where((a == b) & (a == fp.INT16_MIN), fp.INT16_MAX, high)


def rounding_divide_by_pot_int16(x, exponent: int):
    """gemmlowp RoundingDivideByPOT on int16 values; for exponents >= 16 the int16 mask wraps to -1,
    as in C."""
    x = fp.as_int64(x)
    mask = int(fp.wrap_int16((1 << exponent) - 1))
    remainder = fp.wrap_int16(x & mask)
    threshold = (mask >> 1) + (x < 0)
    return fp.wrap_int16((x >> exponent) + (remainder > threshold))


def saturating_left_shift_int16(x, amount: int):
    return np.clip(fp.as_int64(x) * (1 << amount), fp.INT16_MIN, fp.INT16_MAX)


@register("HARD_SWISH")
class HardSwish(UnaryKernel):
    """HARD_SWISH int8: x·relu6(x+3)/6 in int16 fixed point (reference/hard_swish.h)."""

    supported_types = "int8, float32"
    notes = ""

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx, require_same_type=False)
        if self.kind not in ("FLOAT32", "INT8"):
            ctx.unsupported(f"type {self.kind} is not supported by TFLM's HARD_SWISH", self.inp)
        self.require_output_type(ctx, "TFLM's HARD_SWISH writes the input type")
        if self.kind == "FLOAT32":
            self.params = HardSwishParams(kind=self.kind)
            return
        s_in, z_in = scale_and_zero_point(self.inp)
        s_out, z_out = scale_and_zero_point(self.out)
        hires_input_scale = np.float32(np.float32(1.0 / 128.0) * np.float32(s_in))
        reluish_scale = np.float32(3.0 / 32768.0)
        m_out, output_exponent = fp.quantize_multiplier(
            real_multiplier(self.numerics, hires_input_scale, divisor=s_out))
        ctx.check(output_exponent <= 0,
                  f"output multiplier exponent {output_exponent} must be <= 0, i.e. input scale / 128 "
                  f"must be below the output scale (TF_LITE_ENSURE output_multiplier_exponent <= 0)")
        m_reluish, reluish_exponent = fp.quantize_multiplier(
            real_multiplier(self.numerics, hires_input_scale, divisor=float(reluish_scale)))
        self.params = HardSwishParams(
            kind=self.kind, input_zero_point=z_in, output_zero_point=z_out,
            reluish_multiplier_fixedpoint_int16=downscale_multiplier_to_int16(m_reluish),
            reluish_multiplier_exponent=reluish_exponent,
            output_multiplier_fixedpoint_int16=downscale_multiplier_to_int16(m_out),
            output_multiplier_exponent=output_exponent)
        self.tabulate(self.quantized)

    def quantized(self, x):
        p = self.params
        value = fp.wrap_int16(fp.as_int64(x) - p.input_zero_point)
        hires = fp.wrap_int16(value * (1 << 7))
        preshift_output = saturating_rounding_doubling_high_mul_int16(hires, p.output_multiplier_fixedpoint_int16)
        reluish = hires
        if p.reluish_multiplier_exponent > 0:
            reluish = saturating_left_shift_int16(reluish, p.reluish_multiplier_exponent - 1)
        reluish = saturating_rounding_doubling_high_mul_int16(reluish, p.reluish_multiplier_fixedpoint_int16)
        if p.reluish_multiplier_exponent > 0:
            reluish = saturating_left_shift_int16(reluish, 1)
        if p.reluish_multiplier_exponent < 0:
            reluish = rounding_divide_by_pot_int16(reluish, -p.reluish_multiplier_exponent)
        reluish = (reluish + (1 << 15)) >> 1
        preshift_value = saturating_doubling_high_mul_int16(reluish, preshift_output)
        out = rounding_divide_by_pot_int16(preshift_value, -p.output_multiplier_exponent)
        out = fp.wrap_int16(out + p.output_zero_point)
        return np.clip(out, -128, 127)

    def compute(self, x):
        three, six, zero = np.float32(3), np.float32(6), np.float32(0)
        shifted = x + three
        relu6 = np.where(zero < shifted, shifted, zero)  # std::max(0, in + 3)
        relu6 = np.where(relu6 < six, relu6, six)  # std::min(6, ...)
        return ((x * relu6) / six).astype(np.float32)

    def describe(self):
        return params_as_dict(self.params)
