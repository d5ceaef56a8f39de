"""Elementwise unary kernels: ABS, NEG, CEIL, FLOOR, ROUND, SQRT, RSQRT, SQUARE, EXP, LOG, SIN, COS,
LOGICAL_NOT, ZEROS_LIKE and ELU.

TFLM reference kernels: elementwise.cc (ABS, SIN, COS, LOG, SQRT, RSQRT, SQUARE, LOGICAL_NOT),
exp.cc, neg.cc, ceil.cc, floor.cc, round.cc, zeros_like.cc, elu.cc; the math in
reference/neg.h, ceil.h, floor.h, round.h, exp.h, elu.h and GetInvSqrtQuantizedMultiplierExp in
kernels/internal/common.h.

Which types each kernel runs (the pinned wheel, checked op by op):

* float32 only: NEG, CEIL, FLOOR, ROUND, SQRT, SQUARE, EXP, LOG, SIN, COS;
* ABS: float32, int8 (quantized), int16 quantized (zero points 0) or unquantized (plain abs);
* RSQRT: float32, int8 and int16 (both quantized, int16 with zero points 0);
* LOGICAL_NOT: bool; ZEROS_LIKE: int8, int32, int64, float32; ELU: int8 (a table), float32.

elementwise.cc's ``GenericPrepare`` / ``PrepareAbsRsqrt`` mean to refuse other types, but their
test ``IsSupportedType(input->type)`` casts the type to the function-pointer typedef instead of
calling the template argument, so it never fires: those models fail at Invoke, in Eval's type
check. microref refuses them at load as unsupported.

Float kernels compute in float32 in the order TFLM does; ``expf``, ``expm1f``, ``logf``, ``sinf``
and ``cosf`` come from the host's C library (ops/libm.py), which is the one the wheel calls.
Square root, division, negation, floor and ceil are correctly rounded IEEE operations, so numpy's
float32 versions give the same bits.

A narrow integer kernel (ABS, RSQRT, ELU on int8/int16) is a function of the input value alone:
prepare evaluates TFLM's integer formula once on every value of the type and eval is a lookup.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from interp.errors import InvokeError

from . import fixedpoint as fp
from .c_semantics import float_function, float_to_int32_x86
from .common import real_multiplier
from .elementwise import ieee_float_arithmetic, integer_domain, multiply_by_quantized_multiplier, type_range_by_name
from .registry import OpKernel, PrepareContext, register

FLOAT32_ONE = np.float32(1.0)
FLOAT32_HALF = np.float32(0.5)
# RuntimeShape::kMaxSmallSize: GetTensorShape copies a tensor's dims into a RuntimeShape that holds
# six; a larger rank writes past it (undefined behaviour: the wheel's broadcast loops then compare
# the wrong elements at rank 8). Kernels that only call ElementCount have no such limit.
RUNTIME_SHAPE_MAX_RANK = 6
# What the operator table says about it (the notes of every kernel require_runtime_shape_rank refuses for).
RUNTIME_SHAPE_RANK_NOTE = (f"ranks above {RUNTIME_SHAPE_MAX_RANK} refused (TFLM copies shapes into a "
                           f"{RUNTIME_SHAPE_MAX_RANK}-dimension RuntimeShape)")


# ------------------------------------------------------------------------------ shared pieces

@dataclass(frozen=True)
class UnaryParams:
    """What an elementwise kernel without an OpData of its own needs: the type it runs."""

    input_type: str  # the input's TensorType name; Eval dispatches on it


def require_runtime_shape_rank(ctx: PrepareContext, *tensors):
    for t in tensors:
        if len(t.shape) > RUNTIME_SHAPE_MAX_RANK:
            ctx.unsupported(f"rank {len(t.shape)}: TFLM's {ctx.op.op_name} copies the shape into a RuntimeShape, "
                            f"which holds {RUNTIME_SHAPE_MAX_RANK} dimensions (a larger rank overruns it)", t)


def same_element_count(ctx: PrepareContext, inp, out):
    """Eval loops over the input's element count and writes the output: a larger output would be
    left partly unwritten, a smaller one overrun (TFLM checks neither)."""
    ctx.check(inp.size == out.size,
              f"input shape {list(inp.shape)} and output shape {list(out.shape)} differ in size "
              f"(Eval writes one output element per input element)")


def require_same_type(ctx: PrepareContext, inp, out):
    ctx.check(inp.type_name == out.type_name,
              f"input type {inp.type_name} differs from output type {out.type_name} "
              f"(TF_LITE_ENSURE_TYPES_EQ input->type, output->type)", out)


def require_eval_type(ctx: PrepareContext, tensor, allowed: tuple[str, ...], role: str = "input"):
    """A type Eval's switch does not handle: TFLM fails at Invoke, microref refuses at load."""
    if tensor.type_name not in allowed:
        ctx.unsupported(f"{role} type {tensor.type_name} is not supported by TFLM's {ctx.op.op_name} "
                        f"(its Eval handles {', '.join(allowed)})", tensor)


def require_float32_output(ctx: PrepareContext, out):
    """Kernels without a Prepare write float32 values whatever the output tensor's type."""
    if out.type_name != "FLOAT32":
        ctx.unsupported(f"output type {out.type_name}: TFLM's {ctx.op.op_name} writes float32 values into it "
                        f"without checking its type", out)


def require_identical_shapes(ctx: PrepareContext, inp, out):
    """The Prepare of CEIL, ROUND and EXP: same type, same bytes, same dims."""
    ctx.check(inp.type_name == "FLOAT32",
              f"input type {inp.type_name} is not FLOAT32 (TF_LITE_ENSURE_TYPES_EQ input->type, kTfLiteFloat32)",
              inp)
    require_same_type(ctx, inp, out)
    ctx.check(inp.nbytes == out.nbytes, f"output has {out.nbytes} bytes, input {inp.nbytes} "
                                        f"(TF_LITE_ENSURE_EQ output->bytes, input->bytes)", out)
    ctx.check(len(inp.shape) == len(out.shape),
              f"output rank {len(out.shape)} differs from input rank {len(inp.shape)} "
              f"(TF_LITE_ENSURE_EQ output->dims->size, input->dims->size)", out)
    ctx.check(tuple(inp.shape) == tuple(out.shape),
              f"output shape {list(out.shape)} differs from input shape {list(inp.shape)} "
              f"(TF_LITE_ENSURE_EQ output->dims->data[i], input->dims->data[i])", out)


class _Unary(OpKernel):
    """One input, one output, the output computed element by element."""

    eval_types: tuple[str, ...] = ()  # the input types Eval's switch handles

    def operands(self, ctx: PrepareContext):
        self.inp = ctx.require_input(0, "input")
        self.out = ctx.output(0)
        return self.inp, self.out

    def generic_operands(self, ctx: PrepareContext):
        """elementwise.cc's GenericPrepare (one input, one output, of one type), Eval's type switch
        (``eval_types``) and the element count Eval writes."""
        ctx.check_io_counts(1, 1)
        inp, out = self.operands(ctx)
        require_same_type(ctx, inp, out)
        require_eval_type(ctx, inp, self.eval_types)
        same_element_count(ctx, inp, out)
        return inp, out

    @ieee_float_arithmetic
    def eval(self, inputs):
        x = inputs[0]
        y = self.compute(x)
        return [y.reshape((x.shape[0],) + tuple(self.out.shape)).astype(self.out.dtype, copy=False)]

    def compute(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self):
        return asdict(self.params)


class _GenericUnary(_Unary):
    """A kernel of elementwise.cc with GenericPrepare and nothing more to prepare."""

    def prepare(self, ctx: PrepareContext):
        inp, _ = self.generic_operands(ctx)
        self.params = UnaryParams(input_type=inp.type_name)


class _FloatUnary(_GenericUnary):
    """A float32-only kernel of elementwise.cc (GenericPrepare, then EvalNumeric's type check)."""

    eval_types = ("FLOAT32",)


class _IdenticalShapeFloat(_Unary):
    """EXP, CEIL and ROUND: Prepare requires float32 and an output of exactly the input's type, bytes
    and dims; their Eval copies the shapes into RuntimeShapes. EXP counts the inputs and outputs
    before it fetches the tensors, CEIL and ROUND after (``counts_first``), as TFLM's Prepares do."""

    counts_first = False

    def prepare(self, ctx: PrepareContext):
        if self.counts_first:
            ctx.check_io_counts(1, 1)
        inp, out = self.operands(ctx)
        if not self.counts_first:
            ctx.check_io_counts(1, 1)
        require_identical_shapes(ctx, inp, out)
        require_runtime_shape_rank(ctx, inp, out)
        self.params = UnaryParams(input_type=inp.type_name)


class _UncheckedFloat(_Unary):
    """NEG and FLOOR: no Prepare; Eval handles a float32 input only and writes float32 values."""

    def prepare(self, ctx: PrepareContext):
        inp, out = self.operands(ctx)
        require_eval_type(ctx, inp, ("FLOAT32",))
        require_float32_output(ctx, out)
        same_element_count(ctx, inp, out)
        require_runtime_shape_rank(ctx, inp, out)
        self.params = UnaryParams(input_type=inp.type_name)


# ------------------------------------------------------------------------------ float32 math

@register("SIN")
class Sin(_FloatUnary):
    supported_types = "float32"
    notes = "`sinf` from the host's C library, as the wheel calls it"

    def compute(self, x):
        return float_function("sin")(x)


@register("COS")
class Cos(_FloatUnary):
    supported_types = "float32"
    notes = "`cosf` from the host's C library, as the wheel calls it"

    def compute(self, x):
        return float_function("cos")(x)


@register("LOG")
class Log(_FloatUnary):
    supported_types = "float32"
    notes = "`logf` from the host's C library, as the wheel calls it"

    def compute(self, x):
        return float_function("log")(x)


@register("SQRT")
class Sqrt(_FloatUnary):
    supported_types = "float32"
    notes = ""

    def compute(self, x):
        # sqrtf is correctly rounded (IEEE 754), as numpy's float32 square root is.
        return np.sqrt(x.astype(np.float32, copy=False))


@register("SQUARE")
class Square(_FloatUnary):
    supported_types = "float32"
    notes = ""

    def compute(self, x):
        x = x.astype(np.float32, copy=False)
        return x * x


@register("EXP")
class Exp(_IdenticalShapeFloat):
    """EXP: Prepare requires float32 and an output of exactly the input's shape."""

    supported_types = "float32"
    notes = "`expf` from the host's C library, as the wheel calls it; " + RUNTIME_SHAPE_RANK_NOTE

    counts_first = True

    def compute(self, x):
        return float_function("exp")(x)


@register("CEIL")
class Ceil(_IdenticalShapeFloat):
    supported_types = "float32"
    notes = RUNTIME_SHAPE_RANK_NOTE

    def compute(self, x):
        return np.ceil(x.astype(np.float32, copy=False))


@register("ROUND")
class Round(_IdenticalShapeFloat):
    """ROUND: reference_ops::RoundToNearest, half to even written with floor (round.h)."""

    supported_types = "float32"
    notes = "half to even; " + RUNTIME_SHAPE_RANK_NOTE

    def compute(self, x):
        return round_to_nearest(x.astype(np.float32, copy=False))


def round_to_nearest(value: np.ndarray) -> np.ndarray:
    """RoundToNearest(float): floor, then up when the rest is above one half or exactly one half
    with an odd floor. ``static_cast<int>(floor_val) % 2`` is evaluated only on an exact half,
    where |floor_val| < 2^23, so fmod gives the same parity without the int conversion."""
    floor_val = np.floor(value)
    diff = value - floor_val
    even = np.fmod(floor_val, np.float32(2.0)) == 0
    keep = (diff < FLOAT32_HALF) | ((diff == FLOAT32_HALF) & even)
    return np.where(keep, floor_val, floor_val + FLOAT32_ONE).astype(np.float32, copy=False)


@register("NEG")
class Neg(_UncheckedFloat):
    """NEG has no Prepare; its Eval handles float32 only."""

    supported_types = "float32"
    notes = RUNTIME_SHAPE_RANK_NOTE

    def compute(self, x):
        return np.negative(x.astype(np.float32, copy=False))


@register("FLOOR")
class Floor(_UncheckedFloat):
    """FLOOR has no Prepare; Eval ensures a float32 input (TF_LITE_ENSURE_TYPES_EQ at Invoke)."""

    supported_types = "float32"
    notes = RUNTIME_SHAPE_RANK_NOTE

    def compute(self, x):
        return np.floor(x.astype(np.float32, copy=False))


@register("LOGICAL_NOT")
class LogicalNot(_GenericUnary):
    supported_types = "bool"
    notes = ""

    eval_types = ("BOOL",)

    def compute(self, x):
        return np.logical_not(x)


# ------------------------------------------------------------------------------ ABS and RSQRT

@dataclass(frozen=True)
class OpDataAbsRsqrt:
    """TFLM's OpDataAbsRsqrt, plus the quantized formula tabulated over the input type."""

    input_type: str  # TensorType name of input and output
    quantized: bool  # int8, or int16 with quantization parameters: the requantizing path
    input_offset: int  # input zero point
    output_offset: int  # output zero point
    needs_rescale: bool  # input scale != output scale (ABS only; RSQRT always rescales)
    multiplier: int  # QuantizeMultiplier(s_in / s_out) for ABS, (1 / (sqrt(s_in) * s_out)) for RSQRT
    shift: int
    table: np.ndarray | None  # output for input value table_offset + i (quantized paths)
    table_offset: int  # the type's lowest value


class _AbsRsqrt(_Unary):
    """PrepareAbsRsqrt of elementwise.cc, shared by ABS and RSQRT."""

    def prepare(self, ctx: PrepareContext):
        inp, out = self.generic_operands(ctx)
        kind = inp.type_name
        quantized = kind == "INT8" or (kind == "INT16" and inp.quantization is not None)
        input_offset = output_offset = multiplier = shift = 0
        needs_rescale = False
        if quantized:
            for t, role in ((inp, "input"), (out, "output")):
                ctx.check(t.quantization is not None,
                          f"{kind} {self.op_name} needs a quantized {role} "
                          f"(TF_LITE_ENSURE_EQ {role}->quantization.type, kTfLiteAffineQuantization)", t)
            input_offset, output_offset = inp.quantization.zero_point, out.quantization.zero_point
            if kind == "INT16":
                ctx.check(input_offset == 0, f"int16 input zero_point must be 0, is {input_offset} "
                                             f"(TF_LITE_ENSURE_EQ op_data->input_offset, 0)", inp)
                ctx.check(output_offset == 0, f"int16 output zero_point must be 0, is {output_offset} "
                                              f"(TF_LITE_ENSURE_EQ op_data->output_offset, 0)", out)
            s_in, s_out = inp.quantization.scale, out.quantization.scale
            needs_rescale = s_in != s_out
            real = self.real_multiplier(s_in, s_out)
            if real is not None:
                if not math.isfinite(real):
                    ctx.unsupported(f"the rescaling multiplier {real} is not finite (input scale {s_in:g}, "
                                    f"output scale {s_out:g}); TFLM's QuantizeMultiplier is undefined there", out)
                multiplier, shift = fp.quantize_multiplier(real)
        elif kind == "INT16" and self.op_name == "RSQRT":
            ctx.unsupported("an unquantized int16 RSQRT: TFLM's Prepare computes no rescaling for it and its "
                            "Eval reads the uninitialised OpData", inp)
        params = OpDataAbsRsqrt(input_type=kind, quantized=quantized, input_offset=input_offset,
                                output_offset=output_offset, needs_rescale=needs_rescale,
                                multiplier=multiplier, shift=shift, table=None, table_offset=0)
        if quantized:
            domain = integer_domain(kind)
            table = np.asarray(self.quantized(params, domain), dtype=np.int64).astype(out.dtype)
            table.flags.writeable = False
            params = replace(params, table=table, table_offset=int(domain[0]))
            if self.op_name == "RSQRT" and inp.is_constant and bool((inp.data < input_offset).any()):
                ctx.fail(f"constant input values below the input zero point {input_offset}: TFLM's Eval fails "
                         f"(\"Rsqrt is only defined for positive values\")", inp)
        self.params = params

    def real_multiplier(self, s_in: float, s_out: float) -> float | None:
        raise NotImplementedError

    def lookup(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        return p.table[x.astype(np.intp) - p.table_offset]

    def describe(self):
        d = asdict(self.params)
        d.pop("table")
        return d


@register("ABS")
class Abs(_AbsRsqrt):
    supported_types = "int8, int16, float32"
    notes = ("quantized int8/int16 (zero points 0) tabulated, s_in/s_out in double (the wheel) or float32 "
             "(`scale_precision`); unquantized int16 is plain `abs` (-32768 stays -32768)")

    eval_types = ("FLOAT32", "INT8", "INT16")

    def real_multiplier(self, s_in, s_out):
        # The wheel divides the float32 scales in double; older TFLM source divides in float32.
        if s_in == s_out:
            return None
        return real_multiplier(self.numerics, s_in, divisor=s_out)

    def quantized(self, p: OpDataAbsRsqrt, x):
        """AbsEvalQuantized<T>: |x - zp_in|, rescaled when the scales differ, plus zp_out, clamped."""
        lo, hi = type_range_by_name(p.input_type)
        value = fp.wrap_int32(np.abs(fp.wrap_int32(fp.as_int64(x) - p.input_offset)))
        if p.needs_rescale:
            value = multiply_by_quantized_multiplier(self.numerics, value, p.multiplier, p.shift)
        return np.clip(fp.wrap_int32(value + p.output_offset), lo, hi)

    def compute(self, x):
        p = self.params
        if p.quantized:
            return self.lookup(x)
        if p.input_type == "INT16":
            # std::abs on the promoted int, stored back into int16: abs(-32768) wraps to -32768.
            return fp.wrap_int16(np.abs(fp.as_int64(x)))
        return np.abs(x.astype(np.float32, copy=False))


RSQRT_SHIFT = 20  # kShift in RsqrtEvalQuantized: keeps the intermediate an integer
REVERSE_SHIFT = -1  # kReverseShift


@register("RSQRT")
class Rsqrt(_AbsRsqrt):
    """RSQRT. Quantized inputs below the input zero point make TFLM's Eval fail ("Rsqrt is only
    defined for positive values"): a constant input refuses the model at load, a computed one
    makes ``run`` raise InvokeError."""

    supported_types = "int8, int16 (quantized; int16 zero points 0), float32"
    notes = ("gemmlowp's inverse square root; a shift past 31 behaves as on x86 (scales near 1000 saturate, as in "
             "TFLM); an input below the zero point fails TFLM's Invoke: `InvokeError` at run, refused at load if "
             "constant; unquantized int16 refused (TFLM reads uninitialised OpData)")

    eval_types = ("FLOAT32", "INT8", "INT16")

    def real_multiplier(self, s_in, s_out):
        if self.numerics.scale_precision == "float32":
            # Older TFLM source: 1. / double(sqrtf(s_in) * s_out), the product in float32.
            product = np.float32(float_function("sqrt")(np.float32(s_in)) * np.float32(s_out))
            return 1.0 / float(product) if product != 0 else math.inf
        product = math.sqrt(s_in) * s_out  # the wheel: sqrt and product in double
        return 1.0 / product if product != 0 else math.inf

    def quantized(self, p: OpDataAbsRsqrt, x):
        """RsqrtEvalQuantized<T> for inputs at or above the zero point (others are refused in eval)."""
        lo, hi = type_range_by_name(p.input_type)
        value = fp.wrap_int32(fp.as_int64(x) - p.input_offset)
        valid = value > 0
        inv_sqrt, inv_shift = fp.get_inv_sqrt_quantized_multiplier_exp(np.where(valid, value, 2), REVERSE_SHIFT)
        nm = self.numerics
        data = multiply_by_quantized_multiplier(nm, np.ones_like(value), inv_sqrt, inv_shift + RSQRT_SHIFT)
        output = multiply_by_quantized_multiplier_x86(nm, data, p.multiplier, p.shift - RSQRT_SHIFT)
        result = np.clip(fp.wrap_int32(output + p.output_offset), lo, hi)
        # A zero difference is taken as the largest output; negative ones never get here.
        return np.where(value == 0, hi, np.where(valid, result, 0))

    def compute(self, x):
        p = self.params
        if p.quantized:
            below = x < p.input_offset
            if below.any():
                raise InvokeError(f"operator {self.op.index} (RSQRT): input value {int(x[below].flat[0])} is "
                                  f"below the input zero point {p.input_offset}; TFLM's Eval fails there "
                                  f"(\"Rsqrt is only defined for positive values\")")
            return self.lookup(x)
        x = x.astype(np.float32, copy=False)
        return FLOAT32_ONE / np.sqrt(x)





def multiply_by_quantized_multiplier_x86(numerics, x, multiplier: int, shift: int):
    """MultiplyByQuantizedMultiplier for any shift, as the wheel's x86-64 build computes it: RSQRT's
    second rescaling shifts by ``shift - 20``, which can pass -31, where RoundingDivideByPOT
    behaves as fixedpoint.x86_rounding_divide_by_pot says (read off the wheel's disassembly)."""
    if -int(shift) <= 31 or numerics.rounding != "double":
        return multiply_by_quantized_multiplier(numerics, x, multiplier, shift)
    return fp.x86_rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(x, multiplier), -int(shift))

# ------------------------------------------------------------------------------ ZEROS_LIKE

@register("ZEROS_LIKE")
class ZerosLike(_Unary):
    """ZEROS_LIKE writes zeros of the input's type (int64, int32, int8, float32) into the output."""

    supported_types = "int8, int32, int64, float32"
    notes = RUNTIME_SHAPE_RANK_NOTE

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(1, 1)
        inp, out = self.operands(ctx)
        require_eval_type(ctx, inp, ("INT64", "INT32", "INT8", "FLOAT32"))
        if out.type_name != inp.type_name:
            ctx.unsupported(f"output type {out.type_name}: TFLM's ZEROS_LIKE writes {inp.type_name} zeros "
                            f"into it (its Prepare sets the type only on a temporary copy)", out)
        same_element_count(ctx, inp, out)
        require_runtime_shape_rank(ctx, inp, out)
        self.params = UnaryParams(input_type=inp.type_name)

    def compute(self, x):
        return np.zeros((x.shape[0],) + tuple(self.out.shape), dtype=self.out.dtype)


# ------------------------------------------------------------------------------ ELU

@dataclass(frozen=True)
class EluOpData:
    """TFLM's ELU OpData: the int8 lookup table built in Prepare (indexed by the input byte)."""

    input_type: str  # INT8 or FLOAT32
    table: np.ndarray | None  # int8[256], entry uint8(x) is the output for input x (int8 only)


@register("ELU")
class Elu(_Unary):
    supported_types = "int8 (table built at prepare, `expf`), float32 (`expm1f`)"
    notes = ""

    eval_types = ("FLOAT32", "INT8")

    def prepare(self, ctx: PrepareContext):
        inp, out = self.generic_operands(ctx)
        require_runtime_shape_rank(ctx, inp, out)
        table = None
        if inp.type_name == "INT8":
            table = self.populate_lookup_table(inp, out)
            table.flags.writeable = False
        self.params = EluOpData(input_type=inp.type_name, table=table)

    @ieee_float_arithmetic
    def populate_lookup_table(self, inp, out) -> np.ndarray:
        """PopulateLookupTable<int8_t> with the transform x < 0 ? expf(x) - 1 : x, all in float32."""
        s_in, z_in = (inp.quantization.scale, inp.quantization.zero_point) if inp.quantization else (0.0, 0)
        s_out, z_out = (out.quantization.scale, out.quantization.zero_point) if out.quantization else (0.0, 0)
        inverse_scale = FLOAT32_ONE / np.float32(s_out)
        val = np.arange(-128, 128, dtype=np.int64)
        # (val - zero_point) is an int converted to float, then times the float32 scale.
        dequantized = np.float32(s_in) * fp.wrap_int32(val - z_in).astype(np.float32)
        transformed = dequantized.copy()
        negative = dequantized < np.float32(0.0)
        transformed[negative] = float_function("exp")(dequantized[negative]) - FLOAT32_ONE
        rescaled = fp.tflite_round(np.float32(transformed * inverse_scale))
        quantized = float_to_int32_x86(np.float32(rescaled + np.float32(z_out)))
        values = np.clip(quantized, -128, 127).astype(np.int8)
        table = np.empty(256, dtype=np.int8)
        table[val.astype(np.int8).view(np.uint8)] = values
        return table

    def compute(self, x):
        p = self.params
        if p.table is not None:
            return p.table[x.view(np.uint8)]
        x = x.astype(np.float32, copy=False)
        result = x.copy()
        negative = x < np.float32(0.0)
        result[negative] = float_function("expm1")(x[negative])
        return result

    def describe(self):
        return {"input_type": self.params.input_type}
