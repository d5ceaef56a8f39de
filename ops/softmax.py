"""SOFTMAX: TFLM's reference kernel (softmax.cc, softmax_common.cc, reference/softmax.h).

int8 input: gemmlowp fixed-point exp and reciprocal (no float at run time).
int16 input: the two interpolated 513-entry lookup tables TFLM builds in float32 at Prepare.
"""
from __future__ import annotations

import numpy as np

from . import compiled
from . import fixedpoint as fp
from .c_semantics import expf
from .compiled import softmax as compiled_softmax
from .params import SoftmaxParams, params_as_dict
from .reference import softmax_int8
from .registry import OpKernel, PrepareContext, register

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


def lut_populate_int16(transform, input_scale, input_zero_point, output_scale, output_zero_point):
    """TFLM LUTPopulateInt16<float>: a 513-entry int16 table of ``transform`` with each entry biased
    so that linear interpolation between entries best matches the midpoint (float32 arithmetic)."""
    f32 = np.float32
    input_scale, output_scale = f32(input_scale), f32(output_scale)
    input_min = f32(input_scale * f32(-32768 - input_zero_point))
    input_max = f32(input_scale * f32(32767 - input_zero_point))
    output_min = f32(output_scale * f32(-32768 - output_zero_point))
    output_max = f32(output_scale * f32(32767 - output_zero_point))
    steps = 512
    step = f32((input_max - input_min) / f32(steps))
    half_step = f32(step / f32(2))
    inv = f32(f32(65536) / f32(output_max - output_min))
    i = np.arange(steps, dtype=np.float32)
    x = (input_min + i * step).astype(np.float32)
    val = transform(x).astype(np.float32)
    val_mid = transform((input_min + i * step + half_step).astype(np.float32)).astype(np.float32)
    val_next = transform((input_min + (i + f32(1)) * step).astype(np.float32)).astype(np.float32)
    sample = fp.tflite_round((val * inv).astype(np.float32))
    mid_interp = fp.tflite_round(((val_next * inv + fp.tflite_round((val * inv).astype(np.float32)))
                                  / f32(2)).astype(np.float32))
    mid_val = fp.tflite_round((val_mid * inv).astype(np.float32))
    bias = fp.tflite_round(((mid_interp - mid_val) / f32(2)).astype(np.float32))
    lut = np.empty(steps + 1, np.int64)
    lut[:steps] = np.clip(sample - bias, -32768, 32767).astype(np.int64)
    last = fp.tflite_round((transform(np.array([input_max], np.float32)).astype(np.float32) * inv).astype(np.float32))
    lut[steps] = int(np.clip(last, -32768, 32767)[0])
    return lut


def lut_lookup_int16(values, lut):
    """TFLM LUTLookup(int16): linear interpolation between 512 base entries, Q0.7 offsets."""
    v = np.asarray(values, np.int64)
    index = 256 + (v >> 7)
    offset = v & 0x7F
    base = lut[index]
    slope = lut[index + 1] - base
    return ((base + ((slope * offset + 64) >> 7)) + 32768) % 65536 - 32768


_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _srdhm(a: int, b: int) -> int:
    """fp.saturating_rounding_doubling_high_mul on two Python ints."""
    return _INT32_MAX if a == b == _INT32_MIN else (a * b + (1 << 30)) >> 31


def _saturating_shift_left(x: int, k: int) -> int:
    limit = (1 << (31 - k)) - 1
    return _INT32_MAX if x > limit else _INT32_MIN if x < -limit - 1 else x << k


def reciprocal_scalar(x: int, x_integer_digits: int) -> tuple[int, int]:
    """fp.get_reciprocal (TFLM GetReciprocal) of one int32 value, step for step in Python ints.

    The same operations as the array version, whose thirty-odd numpy calls on a one-element
    array cost about a hundred microseconds: int8 SOFTMAX of a few rows (the classifier head of a
    batch-1 run) computes its reciprocals here instead.
    """
    unsigned = x & 0xFFFFFFFF
    headroom_plus_one = 32 - unsigned.bit_length()  # CountLeadingZeros (32 for 0)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    a = _wrap32(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    # one_over_one_plus_x_for_x_in_0_1: RoundingHalfSum(a, INT32_MAX), then Newton-Raphson.
    total = a + _INT32_MAX
    total += 1 if total >= 0 else -1
    half_denominator = abs(total) // 2 * (1 if total >= 0 else -1)  # C division truncates
    r = _wrap32(1515870810 + _srdhm(half_denominator, -1010580540))  # 48/17 - 32/17·d
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - _srdhm(half_denominator, r))
        r = _wrap32(r + _saturating_shift_left(_srdhm(r, one_minus), 2))
    return _saturating_shift_left(r, 1), num_bits_over_unit


@register("SOFTMAX")
class Softmax(OpKernel):
    supported_types = "int8→int8, int8→int16, int16→int16, float32"
    notes = "beta ≠ 1; gemmlowp fixed point / TFLM's int16 LUTs"
    # int8 inputs of at most this many rows compute their reciprocals in Python ints
    # (reciprocal_scalar); more rows use the array version. Tests force either.
    SCALAR_RECIPROCAL_MAX_ROWS = 8
    # int8 inputs of more rows than this run ops/compiled/softmax.py when compiled kernels are
    # enabled (a batched classifier head: 128 rows of 12 classes 133 -> ~10 µs). Tests force it.
    COMPILED_MIN_ROWS = 9

    def prepare(self, ctx: PrepareContext):
        ctx.check(len(ctx.op.inputs) == 1 and len(ctx.op.outputs) == 1, "takes exactly one input and one output")
        x, out = ctx.require_input(0), ctx.output(0)
        ctx.check(len(x.shape) >= 1, "input must have rank >= 1", x)
        if x.size != out.size:
            # TFLM loops over the input's shape and writes as many output values: the rest of the
            # output keeps whatever the arena held (or the kernel writes past it).
            ctx.unsupported(f"input {list(x.shape)} and output {list(out.shape)} hold different numbers of "
                            "values: TFLM's kernel writes only the input's count — undefined behaviour", out)
        self.out_tensor = out
        self.beta = float(np.float32(ctx.options.get("beta", 1.0)))
        pair = (x.type_name, out.type_name)
        if pair not in {("FLOAT32", "FLOAT32"), ("INT8", "INT8"), ("INT8", "INT16"), ("INT16", "INT16")}:
            if x.type_name in ("INT8", "INT16") and out.type_name != "INT16":
                ctx.fail(f"input type {x.type_name} needs output type {x.type_name} or INT16, got {out.type_name}")
            ctx.unsupported(f"{x.type_name} -> {out.type_name} softmax is not supported by TFLM")
        self.kind = pair
        if x.type_name == "FLOAT32":
            return
        xq, oq = x.quantization, out.quantization
        ctx.check(xq is not None and oq is not None, "quantized softmax needs input and output quantization")
        if x.type_name == "INT16":
            ctx.check(xq.zero_point == 0, f"int16 input zero point must be 0, is {xq.zero_point}", x)
            ctx.check(oq.zero_point == 0, f"int16 output zero point must be 0, is {oq.zero_point}", out)
            ctx.check(abs(np.float32(oq.scale) - np.float32(1 / 32768)) <= np.float32(0.001 / 32768),
                      f"int16 output scale must be 1/32768 (within 0.1%), is {oq.scale!r}", out)
            self.multiplier, self.shift = fp.quantize_multiplier(xq.scale * self.beta / (10.0 / 65535.0))
            r = np.float32(65535)
            self.exp_lut = lut_populate_int16(expf, np.float32(10.0) / r, 32767,
                                              np.float32(2.0) / r, 0)
            self.recip_lut = lut_populate_int16(lambda v: np.float32(1) / (np.float32(1) + v),
                                                np.float32(1.0) / r, -32768, np.float32(2.0) / r, 0)
            return
        if out.type_name == "INT16":
            ctx.check(oq.zero_point == -32768, f"int16 output zero point must be -32768, is {oq.zero_point}", out)
            ctx.check(abs(np.float32(oq.scale) - np.float32(1 / 65536)) <= np.float32(0.001 / 65536),
                      f"int16 output scale must be 1/65536 (within 0.1%), is {oq.scale!r}", out)
        else:
            ctx.check(oq.zero_point == -128, f"int8 output zero point must be -128, is {oq.zero_point}", out)
            ctx.check(np.float32(oq.scale) == np.float32(1.0 / 256),
                      f"int8 output scale must be exactly 1/256, is {oq.scale!r}", out)
        real = min(self.beta * xq.scale * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)), float((1 << 31) - 1))
        ctx.check(real > 1.0, f"input_scale * beta * 2^26 = {real!r} must exceed 1 "
                              "(TFLM's QuantizeMultiplierGreaterThanOne check)", x)
        self.multiplier, self.left_shift = fp.quantize_multiplier_greater_than_one(real)
        self.diff_min = -fp.calculate_input_radius(SCALED_DIFF_INTEGER_BITS, self.left_shift)
        self.output_bits = 16 if out.type_name == "INT16" else 8
        self.params = SoftmaxParams(input_multiplier=int(self.multiplier), input_left_shift=int(self.left_shift),
                                    diff_min=int(self.diff_min), output_bits=self.output_bits)
        # x - max(x) of int8 values is one of 256 differences, -255..0: the fixed-point exp of
        # each, and its share of the sum, are tabulated once here. A difference below diff_min
        # contributes nothing and outputs the minimum; an exp of 0 gives exactly that below.
        diff = np.arange(-255, 1, dtype=np.int64)
        active = diff >= self.diff_min
        rescaled = fp.saturating_rounding_doubling_high_mul(
            fp.wrap_int32(np.where(active, diff, 0) << self.left_shift), self.multiplier)
        exps = fp.exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
        self.exp_table = np.where(active, exps, 0)
        self.term_table = np.where(active, fp.rounding_divide_by_pot(exps, ACCUMULATION_INTEGER_BITS), 0)

    def eval_reference(self, inputs):
        if self.kind[0] != "INT8":
            return type(self).eval(self, inputs)  # the int16 and float kernels are the plain formula
        x = inputs[0]
        y = softmax_int8(self.params, x).astype(self.out_tensor.dtype)
        return [y.reshape((x.shape[0],) + self.out_tensor.shape)]

    def eval(self, inputs):
        x = inputs[0]
        if self.kind == ("FLOAT32", "FLOAT32"):
            y = self._eval_float(x)
        elif self.kind[0] == "INT16":
            y = self._eval_int16(x)
        else:
            y = self._eval_int8(x)
        # The values in the input's order, laid into the output's shape (same count).
        return [y.reshape((x.shape[0],) + self.out_tensor.shape)]

    def _eval_int8(self, x):
        columns = x.shape[-1]
        rows = x.size // columns if columns else 0
        if rows >= self.COMPILED_MIN_ROWS and columns and compiled.enabled():
            flat = np.ascontiguousarray(x.reshape(rows, columns))
            out = np.empty((rows, columns), self.out_tensor.dtype)
            lo, hi = (-32768, 32767) if self.output_bits == 16 else (-128, 127)
            compiled_softmax.softmax_int8_rows(flat, self.exp_table, self.term_table, self.output_bits, lo, hi, out)
            return out.reshape(x.shape)
        wide = x.astype(np.intp)
        index = wide - wide.max(axis=-1, keepdims=True) + 255
        exps = self.exp_table[index]
        sum_of_exps = fp.wrap_int32(self.term_table[index].sum(axis=-1, keepdims=True))
        lo, hi = (-32768, 32767) if self.output_bits == 16 else (-128, 127)
        if sum_of_exps.size == 1 and self.SCALAR_RECIPROCAL_MAX_ROWS >= 1:
            # One row: a scalar reciprocal and exponent (the primitives' scalar branches).
            scale, bits_over_unit = reciprocal_scalar(int(sum_of_exps.reshape(-1)[0]), ACCUMULATION_INTEGER_BITS)
            exponent = min(max(bits_over_unit + 31 - self.output_bits, 0), 31)
        else:
            if sum_of_exps.size <= self.SCALAR_RECIPROCAL_MAX_ROWS:
                pairs = [reciprocal_scalar(int(v), ACCUMULATION_INTEGER_BITS) for v in sum_of_exps.ravel()]
                scale = np.array([p[0] for p in pairs], np.int64).reshape(sum_of_exps.shape)
                bits_over_unit = np.array([p[1] for p in pairs], np.int64).reshape(sum_of_exps.shape)
            else:
                scale, bits_over_unit = fp.get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
            exponent = np.minimum(np.maximum(bits_over_unit + 31 - self.output_bits, 0), 31)
        unsat = fp.rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(scale, exps), exponent)
        # np.minimum/np.maximum: the same clamp as np.clip, without its per-call overhead.
        return np.minimum(np.maximum(unsat + lo, lo), hi).astype(self.out_tensor.dtype)

    def _eval_int16(self, x):
        x64 = x.astype(np.int64)
        diff = x64 - x64.max(axis=-1, keepdims=True)
        scaled = fp.multiply_by_quantized_multiplier(diff, self.multiplier, self.shift)
        exps = lut_lookup_int16(np.clip(scaled + 32767, -32768, 32767), self.exp_lut)
        sums = exps.sum(axis=-1, keepdims=True)
        headroom_plus_one = fp.count_leading_zeros32(sums)
        shifted = ((sums << (headroom_plus_one - 1)) + (1 << 13)) >> 14
        recip = lut_lookup_int16(np.clip(shifted - ((1 << 15) + (1 << 16)), -32768, 32767), self.recip_lut)
        right = 31 - headroom_plus_one
        y = (exps * recip + (np.int64(1) << (right - 1))) >> right
        return np.clip(y, 0, 32767).astype(np.int16)

    def _eval_float(self, x):
        f = np.float32
        mx = x.max(axis=-1, keepdims=True)
        e = expf(((x - mx) * f(self.beta)).astype(np.float32))
        # The C loop sums exps left to right in float32.
        total = np.zeros(e.shape[:-1] + (1,), np.float32)
        for c in range(e.shape[-1]):
            total += e[..., c:c + 1]
        return (e / total).astype(np.float32)

    def describe(self):
        if self.kind[0] == "INT8":
            return {"beta": self.beta, **params_as_dict(self.params)}
        return {"beta": self.beta}
