"""Activation kernels: LOGISTIC, TANH, RELU, RELU6, LEAKY_RELU (HARD_SWISH and PRELU are in their
own modules, on the shared ``UnaryKernel`` here).

TFLM reference kernels: logistic.cc / logistic_common.cc, tanh.cc, activations.cc /
activations_common.cc, leaky_relu.cc / leaky_relu_common.cc; the math in
reference/integer_ops/logistic.h and tanh.h, reference/logistic.h, tanh.h and leaky_relu.h.

An int8 or int16 unary kernel is a function of the input value alone, so prepare evaluates its
integer formula once over the whole input type (256 or 65536 values) and eval is a table lookup.

The float32 LOGISTIC and TANH call the C library's expf / tanhf. microref calls the same functions
from the host's libm (ctypes), which is what the TFLM Python wheel uses; another libm (an MCU
toolchain's) may round differently in the last bit. Without a loadable libm, the float64 numpy
results rounded to float32 are used instead, which agree in all but rare last-bit cases.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fp
from .c_semantics import float_function
from .common import real_multiplier
from .elementwise import (
    ieee_float_arithmetic,
    integer_domain,
    multiply_by_quantized_multiplier,
    scale_and_zero_point,
    type_range_by_name,
)
from .params import params_as_dict
from .registry import OpKernel, PrepareContext, register


def checked_log2(x: float) -> tuple[bool, int]:
    """TFLM CheckedLog2(float): (is x a power of two within 1e-3 in log2, rounded log2).

    ``std::log(x) * (1.0f / std::log(2.0f))`` entirely in float32 (logf).
    """
    if not x > 0:
        return False, fp.INT32_MIN
    log_x = float_function("log")(np.float32(x))
    inv_log2 = np.float32(np.float32(1.0) / float_function("log")(np.float32(2.0)))
    x_log2 = np.float32(log_x * inv_log2)
    rounded = np.float32(fp.tflite_round(x_log2))
    with np.errstate(invalid="ignore"):  # an infinite scale: inf - inf is NaN, and NaN < 1e-3 is false, as in C
        frac = np.float32(x_log2 - rounded)
    return bool(abs(frac) < np.float32(1e-3)), int(rounded)


# ------------------------------------------------------------------------------ prepared parameters

@dataclass(frozen=True)
class OpDataLogistic:
    """logistic.h OpDataLogistic; TANH's tanh.cc OpData has the same fields (OpDataTanh).
    float32 has no parameters (all 0)."""
    kind: str                      # FLOAT32, INT8 or INT16: input and output type
    input_zero_point: int = 0      # int8: the input zero point (int16: 0, checked)
    input_range_radius: int = 0    # int8: CalculateInputRadius(4, input_left_shift, 31); |diff| beyond saturates
    input_multiplier: int = 0      # int8: frexp(s_in·2^27) rounded to Q31; int16: the LUT input multiplier
    input_left_shift: int = 0      # (0 with a power-of-two int16 scale: Eval then uses 3 << shift)


@dataclass(frozen=True)
class OpDataTanh(OpDataLogistic):
    """tanh.cc OpData: the fields of OpDataLogistic."""


@dataclass(frozen=True)
class ReluOpData:
    """activations.h ReluOpData: its ReluParams as CalculateReluOpData fills them (float32: all 0)."""
    kind: str                      # FLOAT32, INT8 or INT16: input and output type
    input_offset: int = 0          # the input zero point (subtracted: not negated, unlike ADD's)
    output_offset: int = 0         # the output zero point, added after the rescale
    output_multiplier: int = 0     # QuantizeMultiplier(s_in / s_out)
    output_shift: int = 0
    quantized_activation_min: int = 0  # max(qmin, output zero point): RELU's 0 in output units
    quantized_activation_max: int = 0  # qmax


@dataclass(frozen=True)
class Relu6OpData:
    """activations.h Relu6OpData (float32: all 0)."""
    kind: str                      # FLOAT32, INT8 or INT16: input (and output) type
    six: int = 0                   # FloatToQuantizedType(6.0) on the input scale
    zero: int = 0                  # the input zero point converted to the input type (wraps)


@dataclass(frozen=True)
class LeakyReluOpData:
    """leaky_relu.h LeakyReluOpData plus the alpha option (the float32 kernel's only parameter)."""
    kind: str                      # FLOAT32, INT8 or INT16: input and output type
    alpha: float                   # the option, as float32
    output_multiplier_alpha: int = 0   # QuantizeMultiplier(s_in·alpha / s_out) (negative for alpha < 0)
    output_shift_alpha: int = 0
    output_multiplier_identity: int = 0  # QuantizeMultiplier(s_in / s_out)
    output_shift_identity: int = 0
    input_zero_point: int = 0
    output_zero_point: int = 0


# ------------------------------------------------------------------------------ shared pieces

class UnaryKernel(OpKernel):
    """One input, one output. For int8/int16/uint8 inputs the integer formula is tabulated."""

    def prepare_operands(self, ctx: PrepareContext, require_same_type: bool):
        self.inp = ctx.require_input(0, "input")
        self.out = ctx.output(0)
        ctx.check(self.inp.size == self.out.size,
                  f"input shape {list(self.inp.shape)} and output shape {list(self.out.shape)} differ in size")
        if require_same_type:
            ctx.check(self.inp.type_name == self.out.type_name,
                      f"input type {self.inp.type_name} differs from output type {self.out.type_name} "
                      f"(TF_LITE_ENSURE_TYPES_EQ input->type, output->type)")
        self.kind = self.inp.type_name
        self.table = None

    def require_output_type(self, ctx: PrepareContext, why: str):
        ctx.check(self.out.type_name == self.kind,
                  f"output is {self.out.type_name} but {why} {self.kind}", self.out)

    def tabulate(self, formula):
        """Evaluate ``formula`` on every value of the input's integer type, once: the fast
        path's plan (``table``, ``table_offset``), computed from ``self.params``."""
        domain = integer_domain(self.kind)
        self.table_offset = int(domain[0])
        self.table = np.asarray(formula(domain)).astype(self.out.dtype)

    def lookup(self, x: np.ndarray) -> np.ndarray:
        return self.table[x.astype(np.intp) - self.table_offset]

    @ieee_float_arithmetic
    def eval(self, inputs):
        x = inputs[0]
        y = self.lookup(x) if self.table is not None else self.compute(x)
        return [y.reshape((x.shape[0],) + tuple(self.out.shape)).astype(self.out.dtype, copy=False)]

    def compute(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def frexp_multiplier(real: float) -> tuple[int, int]:
    """The inline multiplier of int8 LOGISTIC/TANH Prepare: frexp and round, without
    QuantizeMultiplier's fix-ups (no 2^31 carry, no flush of tiny values)."""
    q, shift = math.frexp(real)
    return fp.round_half_away_scalar(q * (1 << 31)), shift


# ------------------------------------------------------------------------------ gemmlowp helpers

def gemmlowp_logistic(a):
    """gemmlowp::logistic(FixedPoint<int32, 4>) -> Q0.31 raw value."""
    a = fp.as_int64(a)
    positive = a > 0
    abs_a = np.where(positive, a, -a)
    p = fp.one_over_one_plus_x_for_x_in_0_1(fp.exp_on_negative_values(-abs_a, 4))
    half = 1 << 30  # RoundingDivideByPOT(One = INT32_MAX, 1)
    return np.where(a == 0, half, np.where(positive, p, fp.wrap_int32(fp.INT32_MAX - p)))


def gemmlowp_tanh(a):
    """gemmlowp::tanh(FixedPoint<int32, 4>) -> Q0.31 raw value.

    neg_tanh_on_negative_values works on ExactMulByPot<1>(-|a|): the same raw value read as Q5.26.
    """
    a = fp.as_int64(a)
    negative = a < 0
    n = np.where(negative, a, -a)
    t = fp.one_minus_x_over_one_plus_x_for_x_in_0_1(fp.exp_on_negative_values(n, 5))
    return np.where(a == 0, 0, np.where(negative, -t, t))


SIGMOID_TABLE_UINT16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498,
    40149, 40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255,
    46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865,
    52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174,
    56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544, 58800, 59048, 59288,
    59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279, 61441,
    61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886,
    62990, 63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835,
    63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450,
    64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845,
    64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097,
    65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425,
    65429, 65433, 65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465,
    65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508,
    65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516, 65517, 65517, 65518,
    65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524, 65525,
    65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529,
    65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531,
    65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533,
    65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65535], dtype=np.int64)  # sigmoid_table_uint16 in kernels/internal/common.h


def int16_table_input_scaling(ctx: PrepareContext, inp, out, allowed_pot_shifts: tuple[int, ...]):
    """The int16 LOGISTIC/TANH Prepare: (input_multiplier, input_left_shift) for the LUT input.

    A power-of-two input scale whose shift is in ``allowed_pot_shifts`` uses multiplier 0 (Eval
    then uses 3 << shift); any other scale is rescaled to 1/(3*4096) with a <=15-bit multiplier.
    """
    s_in, z_in = scale_and_zero_point(inp)
    s_out, z_out = scale_and_zero_point(out)
    ctx.check(z_in == 0, f"int16 input zero_point must be 0, is {z_in} (TF_LITE_ENSURE_EQ)", inp)
    ctx.check(z_out == 0, f"int16 output zero_point must be 0, is {z_out} (TF_LITE_ENSURE_EQ)", out)
    if not (math.isfinite(s_in) and s_in > 0):
        # CheckedLog2 converts log2 of it (NaN or -inf) to int: undefined behaviour in C++.
        ctx.unsupported(f"int16 input scale {s_in!r}: TFLM's CheckedLog2 converts its NaN or infinite log2 "
                        "to int, which is undefined", inp)
    is_pot, log2_in = checked_log2(s_in)
    left_shift = 15 - 3 + log2_in
    if is_pot and left_shift in allowed_pot_shifts:
        multiplier = 0
    else:
        m = s_in * 4096.0 * 3.0
        left_shift = 0
        while m <= 32767.0 / 2.0 and left_shift <= 30:
            left_shift += 1
            m *= 2.0
        multiplier = int(m)
    out_pot, log2_out = checked_log2(s_out)
    ctx.check(out_pot, f"int16 output scale {s_out:g} must be a power of two (TF_LITE_ENSURE CheckedLog2)", out)
    ctx.check(log2_out == -15, f"int16 output scale must be 2^-15, is 2^{log2_out} "
                               f"(TF_LITE_ENSURE_EQ output_scale_log2_rounded, -15)", out)
    return multiplier, left_shift


def int16_lut_input(x, multiplier: int, left_shift: int):
    """``(x * input_multiplier + round) >> input_left_shift`` of the int16 LOGISTIC/TANH Eval."""
    if multiplier == 0:
        multiplier, left_shift = 3 << left_shift, 0
    rounding = (1 << (left_shift - 1)) if left_shift > 0 else 0
    return fp.wrap_int32(fp.as_int64(x) * multiplier + rounding) >> left_shift


def logistic_int16(x, input_multiplier: int, input_left_shift: int):
    """reference_integer_ops::Logistic(int16): 256-entry sigmoid table, 9-bit interpolation (LOGISTIC
    and the LSTM's gates)."""
    v = int16_lut_input(x, input_multiplier, input_left_shift)
    abs_v = np.abs(v)
    uh = abs_v >> 9
    idx = np.minimum(uh, 254)
    ua, ub = SIGMOID_TABLE_UINT16[idx], SIGMOID_TABLE_UINT16[idx + 1]
    result = np.where(uh >= 255, 0x7FFF << 10, (ua << 9) + (abs_v & 0x1FF) * (ub - ua))
    result = np.where(v >= 0, result + (1 << 9), (1 << (16 + 9)) - result + (1 << 9) - 1)
    return fp.wrap_int16(result >> 10)


def tanh_int16(x, input_multiplier: int, input_left_shift: int):
    """reference_integer_ops::Tanh(int16): the sigmoid table read as tanh(x) = 2·sigmoid(2x) - 1 (TANH
    and the LSTM's cell). The interpolation stays within [0, 0xFFFF << 8], so the result shifted
    back lies in [-32767, 32767] and the int16 store (the wrap) keeps every value."""
    v = int16_lut_input(x, input_multiplier, input_left_shift)
    abs_v = np.abs(v)
    uh = abs_v >> 8
    idx = np.minimum(uh, 254)
    ua, ub = SIGMOID_TABLE_UINT16[idx], SIGMOID_TABLE_UINT16[idx + 1]
    result = np.where(uh >= 255, 0xFFFF << 8, (ua << 8) + (abs_v & 0xFF) * (ub - ua))
    result = np.where(v >= 0, result - (1 << (14 + 9)) + (1 << (9 - 2)),
                      -result + (1 << (14 + 9)) + (1 << (9 - 2)) - 1)
    return fp.wrap_int16(result >> (9 - 1))


def logistic_float(x: np.ndarray) -> np.ndarray:
    """reference_ops::Logistic(float): 1 above 16.619047, expf(x) below -9, else 1/(1+expf(-x))
    (LOGISTIC and the LSTM's float gates)."""
    v = x.astype(np.float32, copy=False)
    result = np.empty(v.shape, np.float32)
    upper = v > np.float32(16.619047164916992188)
    lower = v < np.float32(-9.0)
    middle = ~(upper | lower)
    result[upper] = np.float32(1.0)
    result[lower] = float_function("exp")(v[lower])
    result[middle] = np.float32(1.0) / (np.float32(1.0) + float_function("exp")(-v[middle]))
    return result


# ------------------------------------------------------------------------------ LOGISTIC / TANH

class _SigmoidLike(UnaryKernel):
    """Shared Prepare of LOGISTIC and TANH (int8: Q4.27 input rescale; int16: LUT scaling)."""

    pot_shifts: tuple[int, ...] = ()
    params_class = OpDataLogistic

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx, require_same_type=True)
        if self.kind not in ("FLOAT32", "INT8", "INT16"):
            ctx.unsupported(f"type {self.kind} is not supported by TFLM's {self.op_name}", self.inp)
        if self.kind == "INT8":
            self.prepare_int8(ctx)
            s_in, input_zero_point = scale_and_zero_point(self.inp)
            input_multiplier, input_left_shift = frexp_multiplier(s_in * float(1 << 27))
            if input_left_shift < 0:
                ctx.unsupported(f"input scale {s_in:g} is too small (input_left_shift "
                                f"{input_left_shift} < 0 makes CalculateInputRadius undefined)", self.inp)
            self.params = self.params_class(
                kind=self.kind, input_zero_point=input_zero_point,
                input_range_radius=fp.calculate_input_radius(4, input_left_shift, 31),
                input_multiplier=input_multiplier, input_left_shift=input_left_shift)
            self.tabulate(self.int8_formula)
        elif self.kind == "INT16":
            input_multiplier, input_left_shift = int16_table_input_scaling(ctx, self.inp, self.out, self.pot_shifts)
            self.params = self.params_class(kind=self.kind, input_multiplier=input_multiplier,
                                            input_left_shift=input_left_shift)
            self.tabulate(self.int16_formula)
        else:
            self.params = self.params_class(kind=self.kind)

    def prepare_int8(self, ctx):
        pass

    def int8_formula(self, x):
        p = self.params
        diff = fp.as_int64(x) - p.input_zero_point
        in_q4 = multiply_by_quantized_multiplier(self.numerics, diff, p.input_multiplier, p.input_left_shift)
        y = self.int8_from_q4(in_q4)
        # The C if / else-if order matters when the radius is 0: a zero difference gives -128.
        y = np.where(diff >= p.input_range_radius, 127, y)
        return np.where(diff <= -p.input_range_radius, -128, y)

    def describe(self):
        return params_as_dict(self.params)


@register("LOGISTIC")
class Logistic(_SigmoidLike):
    """LOGISTIC. int8 output is fixed at scale 1/256, zero point -128: only the zero point is checked."""

    supported_types = "int8, int16, float32"
    notes = ""

    pot_shifts = (0,)

    def prepare_int8(self, ctx):
        _, z_out = scale_and_zero_point(self.out)
        ctx.check(z_out == -128, f"int8 output zero_point must be -128, is {z_out} "
                                 f"(TF_LITE_ENSURE_EQ output->params.zero_point, INT8_MIN)", self.out)

    def int8_from_q4(self, in_q4):
        out_q23 = fp.rounding_divide_by_pot(gemmlowp_logistic(in_q4), 31 - 8)
        return np.clip(out_q23 - 128, -128, 127)

    def int16_formula(self, x):
        return logistic_int16(x, self.params.input_multiplier, self.params.input_left_shift)

    def compute(self, x):
        return logistic_float(x)


@register("TANH")
class Tanh(_SigmoidLike):
    """TANH. int8 output is fixed at scale 1/128, zero point 0; nothing about it is checked."""

    supported_types = "int8, int16, float32"
    notes = ""

    pot_shifts = (0, 1)
    params_class = OpDataTanh

    def int8_from_q4(self, in_q4):
        out_q24 = fp.rounding_divide_by_pot(gemmlowp_tanh(in_q4), 31 - 7)
        return np.clip(out_q24, -128, 127)

    def int16_formula(self, x):
        return tanh_int16(x, self.params.input_multiplier, self.params.input_left_shift)

    def compute(self, x):
        return float_function("tanh")(x)


# ------------------------------------------------------------------------------ RELU / RELU6

@register("RELU")
class Relu(UnaryKernel):
    """RELU requantizes: clamp(zp_out + MBQM(x - zp_in, s_in/s_out), max(qmin, zp_out), qmax)."""

    supported_types = "int8, int16, float32"
    notes = ""

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx, require_same_type=False)
        if self.kind not in ("FLOAT32", "INT8", "INT16"):
            ctx.unsupported(f"type {self.kind} is not supported by TFLM's RELU", self.inp)
        self.require_output_type(ctx, "TFLM's RELU writes the input type")
        if self.kind == "FLOAT32":
            self.params = ReluOpData(kind=self.kind)
            return
        s_in, z_in = scale_and_zero_point(self.inp)
        s_out, z_out = scale_and_zero_point(self.out)
        if self.kind == "INT16":
            ctx.check(z_in == 0, f"int16 input zero_point must be 0, is {z_in} (TF_LITE_ENSURE_EQ)", self.inp)
            ctx.check(z_out == 0, f"int16 output zero_point must be 0, is {z_out} (TF_LITE_ENSURE_EQ)", self.out)
        # The wheel divides in double; older TFLM in float32 (numerics.scale_precision).
        real = real_multiplier(self.numerics, s_in, divisor=s_out)
        multiplier, shift = fp.quantize_multiplier(real)
        qmin, qmax = type_range_by_name(self.kind)
        # zero_point + (int32)roundf(0.0f / scale) is the zero point itself.
        self.params = ReluOpData(kind=self.kind, input_offset=z_in, output_offset=z_out,
                                 output_multiplier=multiplier, output_shift=shift,
                                 quantized_activation_min=max(qmin, z_out), quantized_activation_max=qmax)
        self.tabulate(self.quantized)

    def quantized(self, x):
        p = self.params
        scaled = multiply_by_quantized_multiplier(self.numerics, fp.as_int64(x) - p.input_offset,
                                                  p.output_multiplier, p.output_shift)
        return np.clip(fp.wrap_int32(scaled + p.output_offset), p.quantized_activation_min,
                       p.quantized_activation_max)

    def compute(self, x):
        return np.where(x < np.float32(0), np.float32(0), x).astype(np.float32)

    def describe(self):
        return params_as_dict(self.params)


def float_to_quantized(value: float, scale: float, zero_point: int, type_name: str) -> int:
    """FloatToQuantizedType<T> (micro_utils.h): clamp(int32(round(value / scale) + zero_point)).

    The quotient is float32; an out-of-range conversion gives INT32_MIN as on x86.
    """
    lo, hi = type_range_by_name(type_name)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = float(fp.tflite_round(np.float32(np.float32(value) / np.float32(scale)))) + zero_point
    if not math.isfinite(q) or not -(2.0 ** 31) <= q < 2.0 ** 31:
        as_int = fp.INT32_MIN
    else:
        as_int = int(q)
    return min(max(as_int, lo), hi)


@register("RELU6")
class Relu6(UnaryKernel):
    """RELU6 clamps in the input's quantized domain and never looks at the output quantization
    (notes §2.20): out = min(max(x, zp_in), q(6.0)) with q(6.0) on the input scale."""

    supported_types = "int8, int16, float32"
    notes = "ignores the output quantization, as TFLM does"

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx, require_same_type=False)
        if self.kind not in ("FLOAT32", "INT8", "INT16"):
            ctx.unsupported(f"type {self.kind} is not supported by TFLM's RELU6", self.inp)
        self.require_output_type(ctx, "TFLM's RELU6 writes the input type")
        if self.kind == "FLOAT32":
            self.params = Relu6OpData(kind=self.kind)
            return
        s_in, z_in = scale_and_zero_point(self.inp)
        lo, hi = type_range_by_name(self.kind)
        # Relu6OpData::zero is the int32 zero point; Relu6Quantized<T>(T lower, ...) converts it to T,
        # which wraps (two's complement) a zero point outside T's range: 300 -> 44 for int8.
        self.params = Relu6OpData(kind=self.kind, six=float_to_quantized(6.0, s_in, z_in, self.kind),
                                  zero=int((z_in - lo) % (hi - lo + 1) + lo))
        self.tabulate(self.quantized)

    def quantized(self, x):
        x, six, zero = fp.as_int64(x), self.params.six, self.params.zero
        return np.where(x > six, six, np.where(x < zero, zero, x))

    def compute(self, x):
        six, zero = np.float32(6.0), np.float32(0.0)
        return np.where(x > six, six, np.where(x < zero, zero, x)).astype(np.float32)

    def describe(self):
        return params_as_dict(self.params)


# ------------------------------------------------------------------------------ LEAKY_RELU

@register("LEAKY_RELU")
class LeakyRelu(UnaryKernel):
    """LEAKY_RELU: identity multiplier for x >= zp_in, |alpha| multiplier (negated for alpha < 0)
    below it (reference/leaky_relu.h)."""

    supported_types = "int8, int16, float32"
    notes = ""

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx, require_same_type=True)
        if self.kind not in ("FLOAT32", "INT8", "INT16"):
            ctx.unsupported(f"type {self.kind} is not supported by TFLM's LEAKY_RELU", self.inp)
        alpha = np.float32(ctx.options.get("alpha", 0.0))
        if self.kind == "FLOAT32":
            self.params = LeakyReluOpData(kind=self.kind, alpha=alpha)
            return
        s_in, z_in = scale_and_zero_point(self.inp)
        s_out, z_out = scale_and_zero_point(self.out)
        multiplier_alpha, shift_alpha = fp.quantize_multiplier(
            real_multiplier(self.numerics, s_in, float(alpha), divisor=s_out))
        multiplier_identity, shift_identity = fp.quantize_multiplier(
            real_multiplier(self.numerics, s_in, divisor=s_out))
        self.params = LeakyReluOpData(kind=self.kind, alpha=alpha,
                                      output_multiplier_alpha=multiplier_alpha, output_shift_alpha=shift_alpha,
                                      output_multiplier_identity=multiplier_identity,
                                      output_shift_identity=shift_identity,
                                      input_zero_point=z_in, output_zero_point=z_out)
        self.tabulate(self.quantized)

    def quantized(self, x):
        p = self.params
        value = fp.as_int64(x) - p.input_zero_point
        identity = multiply_by_quantized_multiplier(self.numerics, value, p.output_multiplier_identity,
                                                    p.output_shift_identity)
        alpha_negative = p.output_multiplier_alpha < 0
        scaled_alpha = multiply_by_quantized_multiplier(self.numerics, value, abs(p.output_multiplier_alpha),
                                                        p.output_shift_alpha)
        if alpha_negative:
            scaled_alpha = -scaled_alpha
        out = fp.wrap_int32(p.output_zero_point + np.where(value >= 0, identity, scaled_alpha))
        lo, hi = type_range_by_name(self.kind)
        return np.clip(out, lo, hi)

    def compute(self, x):
        return np.where(x > np.float32(0), x, x * self.params.alpha).astype(np.float32)

    def describe(self):
        return {**params_as_dict(self.params), "alpha": float(self.params.alpha)}
