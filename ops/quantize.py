"""QUANTIZE and DEQUANTIZE: TFLM's quantize.cc / quantize_common.cc and dequantize.cc /
dequantize_common.cc, with the math of reference/quantize.h, requantize.h and dequantize.h."""
from __future__ import annotations

import numpy as np

from . import fixedpoint as fp
from .activations import UnaryKernel
from .elementwise import multiply_by_quantized_multiplier, scale_and_zero_point, type_range_by_name
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
        self.output_scale, self.output_zero_point = scale_and_zero_point(self.out)
        self.output_min, self.output_max = type_range_by_name(self.out.type_name)
        if self.kind == "FLOAT32":
            return
        s_in, self.input_zero_point = scale_and_zero_point(self.inp)
        real = s_in / self.output_scale if self.output_scale else float("inf")
        self.multiplier, self.shift = fp.quantize_multiplier(real)
        if self.kind != "INT32":
            self.tabulate(self.requantize)

    def requantize(self, x):
        """reference_ops::Requantize (its int8<->uint8 XOR fast path gives the same values)."""
        diff = fp.wrap_int32(fp.as_int64(x) - self.input_zero_point)
        scaled = multiply_by_quantized_multiplier(self.numerics, diff, self.multiplier, self.shift)
        return np.clip(fp.wrap_int32(scaled + self.output_zero_point), self.output_min, self.output_max)

    def affine_quantize(self, x):
        """reference_ops::AffineQuantize."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            quotient = np.asarray(x, np.float32) / np.float32(self.output_scale)
            rounded = fp.tflite_round(quotient)
        unclamped = fp.wrap_int32(float32_to_int32_like_x86(rounded) + self.output_zero_point)
        return np.clip(unclamped, self.output_min, self.output_max)

    def compute(self, x):
        return self.affine_quantize(x) if self.kind == "FLOAT32" else self.requantize(x)

    def describe(self):
        d = {"input_type": self.kind, "output_type": self.out.type_name, "output_scale": self.output_scale,
             "output_zero_point": self.output_zero_point}
        if self.kind != "FLOAT32":
            d.update(input_zero_point=self.input_zero_point, multiplier=self.multiplier, shift=self.shift)
        return d


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
        self.scale, self.zero_point = scale_and_zero_point(self.inp)
        self.tabulate(self.dequantize)

    def dequantize(self, q):
        return (np.float64(self.scale) * (fp.as_int64(q) - self.zero_point).astype(np.float64)).astype(np.float32)

    def describe(self):
        return {"scale": self.scale, "zero_point": self.zero_point}
