"""PRELU: TFLM's prelu.cc and reference/prelu.h (int8, int16 with int8 alpha, float32)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fp
from .elementwise import (
    BroadcastShapes,
    ieee_float_arithmetic,
    integer_domain,
    multiply_by_quantized_multiplier,
    scale_and_zero_point,
    type_range_by_name,
)
from .params import params_as_dict
from .registry import OpKernel, PrepareContext, register


@dataclass(frozen=True)
class PreluParams:
    """types.h PreluParams, as PreluPrepare fills them (float32: all 0)."""
    kind: str                      # FLOAT32, INT8 or INT16: the input and output type (alpha: int8 for int16)
    requires_broadcast: bool       # shapes differ: the broadcast loop (same values per element)
    input_offset: int = 0          # -input zero point
    alpha_offset: int = 0          # -alpha zero point
    output_offset: int = 0         # the output zero point
    output_multiplier_1: int = 0   # QuantizeMultiplier(s_in / s_out): x >= zero point
    output_shift_1: int = 0
    output_multiplier_2: int = 0   # QuantizeMultiplier(s_in·s_alpha / s_out): below it
    output_shift_2: int = 0


# ------------------------------------------------------------------------------ PRELU

@register("PRELU")
class Prelu(OpKernel):
    """PRELU: x >= zp_in rescaled by s_in/s_out; below, (x - zp_in)·(alpha - zp_alpha) rescaled by
    s_in·s_alpha/s_out. alpha broadcasts against the input (reference/prelu.h)."""

    supported_types = "int8, int16 (int8 alpha), float32"
    notes = "alpha broadcast to the input"

    def prepare(self, ctx: PrepareContext):
        self.inp = ctx.require_input(0, "input")
        self.alpha = ctx.require_input(1, "alpha")
        self.out = ctx.output(0)
        self.kind = self.inp.type_name
        self.shapes = BroadcastShapes(ctx, self.inp, self.alpha, self.out)
        self.table = None
        if self.kind not in ("FLOAT32", "INT8", "INT16"):
            ctx.unsupported(f"input of type {self.kind} is not supported by TFLM's PRELU", self.inp)
        ctx.check(self.out.type_name == self.kind,
                  f"output is {self.out.type_name} but TFLM's PRELU writes the input type {self.kind}", self.out)
        if self.kind == "INT16":
            ctx.check(self.alpha.type_name == "INT8", f"int16 PRELU needs int8 alpha, has {self.alpha.type_name} "
                                                      f"(TF_LITE_ENSURE alpha->type == kTfLiteInt8)", self.alpha)
        else:
            ctx.check(self.alpha.type_name == self.kind,
                      f"alpha is {self.alpha.type_name} but TFLM's PRELU reads it as {self.kind}", self.alpha)
        if self.kind == "FLOAT32":
            if max(len(self.inp.shape), len(self.alpha.shape), len(self.out.shape)) > 4:
                ctx.fail("float32 PRELU of rank above 4: TFLM's BroadcastPrelu4DSlowFloat is 4-D only and "
                         "its TFLITE_CHECK_GE(new_shape_size, DimensionsCount()) aborts")
            self.params = PreluParams(kind=self.kind, requires_broadcast=not self.shapes.flat)
            return
        s_in, z_in = scale_and_zero_point(self.inp)
        s_alpha, z_alpha = scale_and_zero_point(self.alpha)
        s_out, z_out = scale_and_zero_point(self.out)
        multiplier_1, shift_1 = fp.quantize_multiplier(s_in / s_out if s_out else float("inf"))
        multiplier_2, shift_2 = fp.quantize_multiplier(s_in * s_alpha / s_out if s_out else float("inf"))
        self.params = PreluParams(kind=self.kind, requires_broadcast=not self.shapes.flat,
                                  input_offset=-z_in, alpha_offset=-z_alpha, output_offset=z_out,
                                  output_multiplier_1=multiplier_1, output_shift_1=shift_1,
                                  output_multiplier_2=multiplier_2, output_shift_2=shift_2)
        if self.kind == "INT8":
            # The fast path's plan: the formula for every (input, alpha) pair of int8 values.
            domain = integer_domain("INT8")
            self.table = self.quantized(domain[:, None], domain[None, :])

    def quantized(self, x, alpha):
        p = self.params
        value = fp.as_int64(x) + p.input_offset
        positive = multiply_by_quantized_multiplier(self.numerics, value, p.output_multiplier_1, p.output_shift_1)
        product = fp.wrap_int32(value * (fp.as_int64(alpha) + p.alpha_offset))
        negative = multiply_by_quantized_multiplier(self.numerics, product, p.output_multiplier_2, p.output_shift_2)
        out = fp.wrap_int32(np.where(value >= 0, positive, negative) + p.output_offset)
        lo, hi = type_range_by_name(self.kind)
        return np.clip(out, lo, hi)

    @ieee_float_arithmetic
    def eval(self, inputs):
        x, alpha = self.shapes.operands(inputs[0], inputs[1])
        if self.kind == "FLOAT32":
            y = np.where(x >= np.float32(0), x, x * alpha)
        elif self.table is not None:
            y = self.table[x.astype(np.intp) + 128, alpha.astype(np.intp) + 128]
        else:
            y = self.quantized(x, alpha)
        return [self.shapes.result(y, self.out.dtype)]

    def describe(self):
        return params_as_dict(self.params)
