"""QUANTIZE and DEQUANTIZE: TFLM's quantize.cc / quantize_common.cc and dequantize.cc /
dequantize_common.cc, with the math of reference/quantize.h, requantize.h and dequantize.h."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fp
from .activations import UnaryKernel
from .elementwise import multiply_by_quantized_multiplier, scale_and_zero_point, type_range_by_name
from .params import params_as_dict
from .registry import PrepareContext, register

# (input type, output type) pairs EvalQuantizeReference has a kernel for.
QUANTIZE_KERNELS = {
    ("FLOAT32", "INT8"), ("FLOAT32", "INT16"),
    ("INT32", "INT8"), ("INT32", "INT16"),
    ("INT16", "INT8"), ("INT16", "INT16"), ("INT16", "INT32"),
    ("INT8", "INT8"), ("INT8", "UINT8"), ("INT8", "INT16"), ("INT8", "INT32"),
    ("UINT8", "INT8"),
}


def float32_to_int32_like_x86(x: np.ndarray) -> np.ndarray:
    """static_cast<int32_t>(float) as the x86 cvttss2si instruction does it: truncation toward zero,
    and INT32_MIN for NaN and for values outside the int32 range."""
    x = np.asarray(x, dtype=np.float32)
    in_range = np.isfinite(x) & (x >= np.float32(-(2.0 ** 31))) & (x < np.float32(2.0 ** 31))
    return np.where(in_range, np.trunc(np.where(in_range, x, 0)).astype(np.int64), fp.INT32_MIN)


@dataclass(frozen=True)
class OpDataQuantizeReference:
    """quantize.h OpDataQuantizeReference: the output's QuantizationParams, the requantization
    multiplier and the input zero point (int -> int only; 0 for float32 input)."""
    input_type: str                # FLOAT32, INT32, INT16, INT8 or UINT8
    output_type: str               # INT8, INT16, INT32 or UINT8
    output_scale: float            # quantization_params.scale (float32 input: the divisor, as float32)
    output_zero_point: int         # quantization_params.zero_point
    output_min: int                # the output type's range: the clamp
    output_max: int
    input_zero_point: int = 0      # int -> int: subtracted before the rescale
    requantize_output_multiplier: int = 0  # int -> int: QuantizeMultiplier(s_in / s_out)
    requantize_output_shift: int = 0


@dataclass(frozen=True)
class DequantizeOpData:
    """dequantize.h DequantizeOpData's quantization_params (the multiplier fields go unused by
    the reference float32 output)."""
    input_type: str                # INT8, INT16 or UINT8 (the output is FLOAT32)
    scale: float                   # the input scale, multiplied in double
    zero_point: int                # the input zero point


@register("QUANTIZE")
class Quantize(UnaryKernel):
    """float32 -> int: clamp((int32)roundf(x / scale) + zp), the quotient a float32 DIVISION.
    int -> int: requantize with MultiplyByQuantizedMultiplier(x - zp_in, s_in/s_out) + zp_out."""

    supported_types = ("float32→int8/int16; int8→int8/uint8/int16/int32, int16→int8/int16/int32, int32→int8/int16, "
                       "uint8→int8")
    notes = "requantization with TFLM's multiplier and shift"

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx, require_same_type=False)
        out_q = self.out.quantization
        ctx.check(out_q is not None, "the output must be affine-quantized (TF_LITE_ENSURE_EQ "
                                     "output->quantization.type, kTfLiteAffineQuantization)", self.out)
        ctx.check(out_q.scales.size == 1,
                  f"the output must be quantized per tensor, has {out_q.scales.size} scales "
                  f"(TF_LITE_ENSURE affine_quantization->scale->size == 1)", self.out)
        ctx.check(self.kind in ("FLOAT32", "INT32", "INT16", "INT8", "UINT8"),
                  f"input type {self.kind} is not one of FLOAT32, INT32, INT16, INT8, UINT8 (TF_LITE_ENSURE)",
                  self.inp)
        ctx.check(self.out.type_name in ("INT8", "INT16", "INT32", "UINT8"),
                  f"output type {self.out.type_name} is not one of INT8, INT16, INT32, UINT8 (TF_LITE_ENSURE)",
                  self.out)
        ctx.check((self.kind, self.out.type_name) in QUANTIZE_KERNELS,
                  f"TFLM's QUANTIZE has no {self.kind} -> {self.out.type_name} kernel (fails at Eval: "
                  f"\"Input {self.kind}, output {self.out.type_name} not supported\")")
        output_scale, output_zero_point = scale_and_zero_point(self.out)
        output_min, output_max = type_range_by_name(self.out.type_name)
        common = dict(input_type=self.kind, output_type=self.out.type_name, output_scale=output_scale,
                      output_zero_point=output_zero_point, output_min=output_min, output_max=output_max)
        if self.kind == "FLOAT32":
            self.params = OpDataQuantizeReference(**common)
            return
        s_in, input_zero_point = scale_and_zero_point(self.inp)
        real = s_in / output_scale if output_scale else float("inf")
        multiplier, shift = fp.quantize_multiplier(real)
        self.params = OpDataQuantizeReference(**common, input_zero_point=input_zero_point,
                                              requantize_output_multiplier=multiplier,
                                              requantize_output_shift=shift)
        if self.kind != "INT32":
            self.tabulate(self.requantize)

    def requantize(self, x):
        """reference_ops::Requantize (its int8<->uint8 XOR fast path gives the same values)."""
        p = self.params
        diff = fp.wrap_int32(fp.as_int64(x) - p.input_zero_point)
        scaled = multiply_by_quantized_multiplier(self.numerics, diff, p.requantize_output_multiplier,
                                                  p.requantize_output_shift)
        return np.clip(fp.wrap_int32(scaled + p.output_zero_point), p.output_min, p.output_max)

    def affine_quantize(self, x):
        """reference_ops::AffineQuantize."""
        p = self.params
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            quotient = np.asarray(x, np.float32) / np.float32(p.output_scale)
            rounded = fp.tflite_round(quotient)
        unclamped = fp.wrap_int32(float32_to_int32_like_x86(rounded) + p.output_zero_point)
        return np.clip(unclamped, p.output_min, p.output_max)

    def compute(self, x):
        return self.affine_quantize(x) if self.kind == "FLOAT32" else self.requantize(x)

    def describe(self):
        return params_as_dict(self.params)


@register("DEQUANTIZE")
class Dequantize(UnaryKernel):
    """y = (float)(double(scale) * (q - zp)): the product in double, rounded once to float32."""

    supported_types = "int8, int16, uint8 → float32"
    notes = ""

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx, require_same_type=False)
        ctx.check(self.kind in ("INT8", "INT16", "UINT8"),
                  f"input type {self.kind} is not INT8, INT16 or UINT8 (TF_LITE_ENSURE)", self.inp)
        ctx.check(self.out.type_name == "FLOAT32",
                  f"output type {self.out.type_name} is not FLOAT32 (TF_LITE_ENSURE)", self.out)
        scale, zero_point = scale_and_zero_point(self.inp)
        self.params = DequantizeOpData(input_type=self.kind, scale=scale, zero_point=zero_point)
        self.tabulate(self.dequantize)

    def dequantize(self, q):
        p = self.params
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN or infinite scale gives NaN/inf, as in C
            return (np.float64(p.scale) * (fp.as_int64(q) - p.zero_point).astype(np.float64)).astype(np.float32)

    def describe(self):
        return params_as_dict(self.params)
