"""DIV, FLOOR_DIV, FLOOR_MOD, ADD_N, CUMSUM and REDUCE_ALL: TFLM's div.cc, floor_div.cc,
floor_mod.cc, add_n.cc, cumsum.cc and reduce.cc (REDUCE_ALL), with the math of reference/div.h,
floor_div.h, floor_mod.h, add_n.h, cumsum.h and reduce.h.

Two things the wheel does that the source does not say:

* The int8 DIV multiplier is ``double(s1) / (double(s2) * double(s_out))`` (the source divides in
  float32 first; the wheel's DivPrepare divides doubles).
* The quantized paths call ``MultiplyByQuantizedMultiplierSmallerThanOneExp``, which in the
  double-rounding build is ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, M), -shift)``
  with no left shift at all. DIV hands it shifts of either sign and right shifts beyond 31, and a
  zero divisor reaches GetReciprocal; the wheel (x86-64) then computes what the machine
  instructions give: a 64-bit ``1ll << e`` and a 32-bit ``x >> e`` whose counts the CPU masks to
  6 and 5 bits. ``fp.x86_rounding_divide_by_pot`` reproduces that, so a zero divisor or an extreme
  scale gives TFLM's value (pinned on every int8 pair by the tests), not an error.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from interp.errors import InvokeError, where

from . import fixedpoint as fp
from .common import activation_range_float, activation_range_quantized, clamp_float
from .elementwise import BinaryKernel, BroadcastShapes, ieee_float_arithmetic, int32_activation_range
from .reduce import _Reduce
from .registry import OpKernel, PrepareContext, register

# sizeof(T*) on the host TFLM runs on: ADD_N requests one pointer per input as arena scratch. The
# pinned wheel is an x86-64 build (8); a 32-bit MCU build requests 4.
HOST_POINTER_BYTES = 8


# ------------------------------------------------------------------------------ fixed point

# ------------------------------------------------------------------------------ DIV

@dataclass(frozen=True)
class OpDataDiv:
    """div.cc OpDataDiv (the int8 fields) plus the activation clamp of the other types."""

    kind: str  # FLOAT32, INT32 or INT8 (input and output type)
    broadcast: bool  # ProcessBroadcastShapes: BroadcastDivSlow instead of the flat Div
    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    output_multiplier: int  # QuantizeMultiplier(double(s1) / (double(s2) * double(s_out)))
    output_shift: int
    output_activation_min: float  # int8: the quantized clamp; int32/float32: CalculateActivationRange
    output_activation_max: float


@register("DIV")
class Div(BinaryKernel):
    """DIV (div.cc): float32 and int32 divide and clamp; int8 divides with a fixed-point reciprocal.

    int32: the wheel's Eval refuses a divisor tensor holding a 0 ("Division by 0"), as FLOOR_DIV's
    does; float32 divides by zero as IEEE does (the NONE clamp then gives +-FLT_MAX); int8 does not
    check (GetReciprocal(0) then yields what x86 computes).

    int8 (DivElementwise): with v1 = x1 - z1 and v2 = x2 - z2 (both negated when v2 < 0), the
    quotient is v1 · GetReciprocal(v2) with v1 first shifted left by its headroom, then one
    SmallerThanOneExp rescale by the output multiplier and the remaining shift.
    """

    supported_types = "int8, int32, float32"
    notes = ("broadcasting, fused activations; int8 reproduces TFLM on every input pair, a zero divisor included "
             "(x86's value of its undefined shifts); an int32 zero divisor is an `InputError`, as it fails TFLM's "
             "Invoke")

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx)
        in1, in2, out = self.in1, self.in2, self.out
        ctx.check(in1.type_name == in2.type_name,
                  f"input types differ: {in1.type_name} and {in2.type_name} (TF_LITE_ENSURE_TYPES_EQ)")
        ctx.check(in1.type_name == out.type_name,
                  f"input type {in1.type_name} differs from output type {out.type_name} (TF_LITE_ENSURE_TYPES_EQ)")
        kind = out.type_name
        if kind not in ("FLOAT32", "INT32", "INT8"):
            ctx.unsupported(f"TFLM's DIV supports FLOAT32, INT32 and quantized INT8, not {kind} (its Eval fails)")
        m, shift, zps = 0, 0, (0, 0, 0)
        if kind == "FLOAT32":
            lo, hi = activation_range_float(self.activation)
        elif kind == "INT32":
            for t, role in ((in1, "input1"), (in2, "input2")):
                ctx.check(t.quantization is None, f"int32 DIV needs an unquantized {role} "
                                                  "(TF_LITE_ENSURE_EQ quantization.type, kTfLiteNoQuantization)", t)
            lo, hi = int32_activation_range(self.activation)
        else:
            (s1, z1), (s2, z2), (so, zo) = (_scale_zero_point(t) for t in (in1, in2, out))
            lo, hi = activation_range_quantized(self.activation, out, ctx)
            with np.errstate(all="ignore"):
                real = float(np.float64(s1) / (np.float64(s2) * np.float64(so)))
            ctx.check(math.isfinite(real), f"the DIV multiplier s1 / (s2 * s_out) = {real!r} is not finite "
                                           "(QuantizeMultiplier has no defined result)")
            m, shift = fp.quantize_multiplier(real)
            zps = (z1, z2, zo)
        self.params = OpDataDiv(kind, not self.shapes.flat, *zps, m, shift, lo, hi)
        if kind == "INT8":
            self.tabulate_int8()

    def quantized(self, x1, x2):
        """DivElementwise on int8 raw values (any broadcastable int64 arrays)."""
        p = self.params
        # int32 arithmetic, wrapping (zero points outside int8 are legal in the flatbuffer).
        v1 = fp.wrap_int32(np.asarray(x1, np.int64) - p.input1_zero_point)
        v2 = fp.wrap_int32(np.asarray(x2, np.int64) - p.input2_zero_point)
        v1, v2 = np.broadcast_arrays(v1, v2)
        flip = v2 < 0
        v1 = np.where(flip, fp.wrap_int32(-v1), v1)
        v2 = np.where(flip, fp.wrap_int32(-v2), v2)
        # GetReciprocal(v2, 31): (uint32(v2) << clz) - 2^31, the shift count masked to 5 bits
        # (clz(0) = 32 shifts by 0, so v2 = 0 gives INT32_MIN).
        headroom_plus_one = fp.count_leading_zeros32(v2)
        recip_shift = 31 - headroom_plus_one
        shifted_minus_one = fp.wrap_int32(((v2 << (headroom_plus_one & 31)) & 0xFFFFFFFF) - (1 << 31))
        inverse = fp.one_over_one_plus_x_for_x_in_0_1(shifted_minus_one)
        headroom = fp.count_leading_sign_bits(v1)
        # MultiplyByQuantizedMultiplierGreaterThanOne: SRDHM(v1 * (1 << headroom), inverse), wrapping.
        unscaled = fp.saturating_rounding_doubling_high_mul(fp.wrap_int32(v1 << headroom), inverse)
        total_shift = p.output_shift - recip_shift - headroom
        result = p.output_zero_point + fp.multiply_by_quantized_multiplier_smaller_than_one_exp(
            unscaled, p.output_multiplier, total_shift)
        return np.minimum(np.maximum(fp.wrap_int32(result), p.output_activation_min), p.output_activation_max)

    @ieee_float_arithmetic
    def eval(self, inputs):
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        p = self.params
        if p.kind == "INT8":
            # The formula for calls that have not yet paid for the 256x256 table, then the table
            # (BinaryKernel.int8_values' ski rental): a one-op model run a few times never builds it.
            y = self.int8_values(x1, x2)
        elif p.kind == "FLOAT32":
            y = clamp_float(np.divide(x1, x2, dtype=np.float32), p.output_activation_min, p.output_activation_max)
        else:
            if (inputs[1] == 0).any():
                raise InvokeError(f"{where(self.op.index, self.op.display_name)}: the divisor contains 0; "
                                 "TFLM's int32 DIV fails Invoke ('Division by 0')")
            a, b = np.broadcast_arrays(x1.astype(np.int64), x2.astype(np.int64))
            if ((a == fp.INT32_MIN) & (b == -1)).any():
                raise InvokeError(f"{where(self.op.index, self.op.display_name)}: INT32_MIN / -1 overflows int32; "
                                 "C leaves it undefined (TFLM's x86 build dies of SIGFPE)")
            y = np.clip(fp.truncating_divide(a, b), p.output_activation_min, p.output_activation_max)
        return [self.shapes.result(y, self.out.dtype)]

    def describe(self):
        return asdict(self.params)


def _scale_zero_point(tensor) -> tuple[float, int]:
    """TfLiteTensor.params: (scale, zero point), (0.0, 0) when the tensor is not quantized."""
    q = tensor.quantization
    return (float(q.scale), int(q.zero_point)) if q is not None else (0.0, 0)


# ------------------------------------------------------------------------------ FLOOR_DIV, FLOOR_MOD

@dataclass(frozen=True)
class FloorParams:
    broadcast: bool  # !HaveSameShapes: BroadcastBinaryFunction4DSlow instead of BinaryFunction


class _FloorBinary(OpKernel):
    """FLOOR_DIV and FLOOR_MOD share Prepare: two inputs, one output, all of one type; only
    float32 evaluates (any other type fails at Eval)."""

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(2, 1)
        in1, in2 = ctx.require_input(0, "input1"), ctx.require_input(1, "input2")
        out = ctx.output(0)
        ctx.check(in1.type_name == in2.type_name,
                  f"input types differ: {in1.type_name} and {in2.type_name} (TF_LITE_ENSURE_TYPES_EQ)")
        ctx.check(in1.type_name == out.type_name,
                  f"input type {in1.type_name} differs from output type {out.type_name} (TF_LITE_ENSURE_TYPES_EQ)")
        if in1.type_name != "FLOAT32":
            ctx.unsupported(f"TFLM's {self.op_name} evaluates FLOAT32 only, not {in1.type_name} (its Eval fails)")
        self.out = out
        self.shapes = BroadcastShapes(ctx, in1, in2, out)
        self.params = FloorParams(broadcast=tuple(in1.shape) != tuple(in2.shape))

    def describe(self):
        return asdict(self.params)


@register("FLOOR_DIV")
class FloorDiv(_FloorBinary):
    """reference_ops::FloorDiv<float>: float(std::floor(double(a) / double(b))). Eval refuses a
    divisor tensor holding any zero (-0.0 too) before computing anything."""

    supported_types = "float32 (the only type TFLM's Eval takes)"
    notes = 'broadcasting; a zero divisor is an `InputError` (TFLM: "Division by 0")'

    @ieee_float_arithmetic
    def eval(self, inputs):
        if (inputs[1] == 0).any():
            raise InvokeError(f"{where(self.op.index, self.op.display_name)}: the divisor contains 0; "
                             "TFLM's FLOOR_DIV fails Invoke ('Division by 0')")
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        quotient = np.floor(x1.astype(np.float64) / x2.astype(np.float64))
        return [self.shapes.result(quotient.astype(np.float32), np.float32)]


@register("FLOOR_MOD")
class FloorMod(_FloorBinary):
    """reference_ops::FloorMod<float>: m = fmodf(a, b) (exact); m + b when m != 0 and the signs of
    m and b differ (a float32 addition)."""

    supported_types = "float32 (the only type TFLM's Eval takes)"
    notes = "broadcasting; a zero divisor gives NaN"

    @ieee_float_arithmetic
    def eval(self, inputs):
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        trunc_mod = np.fmod(x1, x2, dtype=np.float32)
        adjust = (trunc_mod != 0) & ((x2 < 0) != (trunc_mod < 0))
        y = np.where(adjust, np.add(trunc_mod, x2, dtype=np.float32), trunc_mod)
        return [self.shapes.result(y, np.float32)]


# ------------------------------------------------------------------------------ ADD_N and CUMSUM

@dataclass(frozen=True)
class RescaleSumParams:
    """The OpData of add_n.cc and cumsum.cc (int8): inputs rescaled to 2^-20-finer units, summed in
    int32, the sum rescaled to the output."""

    input_offset: int  # -input zero point
    output_offset: int  # output zero point
    left_shift: int  # kAddNIntegerShift / kCumSumIntegerShift = 20
    input_multiplier: int  # QuantizeMultiplierSmallerThanOneExp(s / 2s) = (2^30, 0)
    input_shift: int
    output_multiplier: int  # QuantizeMultiplierSmallerThanOneExp(2s / (2^20 s_out))
    output_shift: int
    output_activation_min: int  # kTfLiteActNone on int8: the type range
    output_activation_max: int


def prepare_rescaled_sum(ctx: PrepareContext, x, out) -> RescaleSumParams:
    """The int8 parameter work of ADD_N and CUMSUM (identical in both kernels)."""
    (s, z), (so, zo) = _scale_zero_point(x), _scale_zero_point(out)
    left_shift = 20
    twice_max_input_scale = 2.0 * s
    with np.errstate(all="ignore"):
        real_input = float(np.float64(s) / np.float64(twice_max_input_scale))
        real_output = float(np.float64(twice_max_input_scale) / (np.float64(1 << left_shift) * np.float64(so)))
    multipliers = []
    for real, what in ((real_input, "input"), (real_output, "output")):
        ctx.check(0.0 < real < 1.0, f"{what} multiplier {real!r} must satisfy 0 < m < 1 "
                                    "(TFLITE_CHECK in QuantizeMultiplierSmallerThanOneExp aborts TFLM)")
        m, shift = fp.quantize_multiplier(real)
        ctx.check(shift <= 0, f"{what} multiplier {real!r} rounds up to 1.0 (TFLITE_CHECK_LE(shift, 0) in "
                              "QuantizeMultiplierSmallerThanOneExp aborts TFLM)")
        multipliers += [m, shift]
    lo, hi = activation_range_quantized(0, out, ctx)
    return RescaleSumParams(-z, zo, left_shift, *multipliers, lo, hi)


def rescale_input(p: RescaleSumParams, raw):
    """MultiplyByQuantizedMultiplierSmallerThanOneExp((raw + input_offset) * 2^left_shift, ...)."""
    shifted = fp.wrap_int32((fp.as_int64(raw) + p.input_offset) << p.left_shift)
    return fp.multiply_by_quantized_multiplier_smaller_than_one_exp(shifted, p.input_multiplier, p.input_shift)


def rescale_output(p: RescaleSumParams, acc):
    raw = fp.multiply_by_quantized_multiplier_smaller_than_one_exp(acc, p.output_multiplier, p.output_shift)
    return np.minimum(np.maximum(fp.wrap_int32(raw + p.output_offset), p.output_activation_min),
                      p.output_activation_max)


@dataclass(frozen=True)
class AddNParams:
    kind: str  # FLOAT32 or INT8
    num_inputs: int
    size: int  # the output's flat size: the kernel sums that many leading elements of every input
    quantized: RescaleSumParams | None


@register("ADD_N")
class AddN(OpKernel):
    """ADD_N (add_n.cc, reference/add_n.h).

    float32: ``x = 0.f; x += in_j[i]`` over the inputs in order. int8: the accumulator starts at
    the rescaled *input offset* (the source says "x = 0" but assigns -zero_point), each input is
    rescaled and added in int32, and the sum is rescaled to the output.
    """

    supported_types = "int8, float32"
    notes = "2+ inputs; the int8 sum starts from the rescaled input offset, as TFLM's does"

    def prepare(self, ctx: PrepareContext):
        count = len(ctx.op.inputs)
        ctx.check(count >= 2, f"takes at least 2 inputs, has {count} (TF_LITE_ENSURE num_inputs >= 2)")
        ctx.check(len(ctx.op.outputs) == 1, f"takes 1 output, has {len(ctx.op.outputs)}")
        first = ctx.require_input(0, "input 0")
        out = ctx.output(0)
        ctx.check(out.type_name == first.type_name,
                  f"output type {out.type_name} differs from input type {first.type_name} (TF_LITE_ENSURE_TYPES_EQ)")
        for i in range(1, count):
            t = ctx.require_input(i, f"input {i}")
            ctx.check(tuple(t.shape) == tuple(first.shape),
                      f"input {i} has shape {list(t.shape)}, input 0 {list(first.shape)} (HaveSameShapes)", t)
            ctx.check(t.type_name == first.type_name,
                      f"input {i} is {t.type_name}, input 0 {first.type_name} (TF_LITE_ENSURE_TYPES_EQ)", t)
            if first.type_name == "INT8":
                (s0, z0), (s, z) = _scale_zero_point(first), _scale_zero_point(t)
                ctx.check(z == z0, f"input {i} zero point {z} differs from input 0's {z0}", t)
                ctx.check(np.float32(s) == np.float32(s0), f"input {i} scale {s!r} differs from input 0's {s0!r}", t)
        ctx.check(first.type_name in ("FLOAT32", "INT8"),
                  f"ADD_N only supports FLOAT32 and INT8, got {first.type_name}", first)
        # The kernel loops over the output's elements and reads every input at the same index.
        ctx.check(out.size <= first.size, f"output has {out.size} elements, the inputs only {first.size} "
                                          "(the kernel would read past them)", out)
        quantized = prepare_rescaled_sum(ctx, first, out) if first.type_name == "INT8" else None
        self.params = AddNParams(first.type_name, count, out.size, quantized)
        self.out = out
        # One pointer per input, gathered into an arena scratch buffer at every Eval.
        self.scratch_bytes.append(HOST_POINTER_BYTES * count)

    @ieee_float_arithmetic
    def eval(self, inputs):
        p = self.params
        n = max(x.shape[0] for x in inputs)
        flat = [x.reshape(x.shape[0], -1)[:, :p.size] for x in inputs]
        if p.kind == "FLOAT32":
            total = np.zeros((n, p.size), np.float32)
            for x in flat:
                total = total + x
        else:
            q = p.quantized
            total = rescale_input(q, np.zeros((1, 1), np.int64))  # x = input1_offset
            for x in flat:
                total = fp.wrap_int32(total + rescale_input(q, x))
            total = rescale_output(q, np.broadcast_to(total, (n, p.size)))
        return [total.astype(self.out.dtype).reshape((n,) + tuple(self.out.shape))]

    def describe(self):
        return asdict(self.params)


@dataclass(frozen=True)
class CumSumParams:
    kind: str  # FLOAT32 or INT8
    axis: int  # resolved (non-negative) axis
    exclusive: bool
    reverse: bool
    quantized: RescaleSumParams | None


@register("CUMSUM")
class CumSum(OpKernel):
    """CUMSUM (cumsum.cc, reference/cumsum.h): a running sum along one axis, from its end when
    ``reverse``; ``exclusive`` writes the sum before adding the element.

    float32: ``T accumulator = 0`` then ``accumulator + x`` in axis order (float32). int8: as ADD_N,
    the int32 accumulator starts at the rescaled input offset.
    """

    supported_types = "int8, float32"
    notes = "any axis, exclusive, reverse; int8 sums start from the rescaled input offset, as TFLM's do"

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(2, 1)
        x = ctx.require_input(0, "input")
        axis_t = ctx.require_input(1, "axis")
        out = ctx.output(0)
        ctx.check(x.type_name in ("FLOAT32", "INT8"),
                  f"input type {x.type_name} is not FLOAT32 or INT8 (TF_LITE_ENSURE)", x)
        ctx.check(axis_t.type_name == "INT32", f"axis type {axis_t.type_name} is not INT32", axis_t)
        ctx.check(axis_t.size == 1, f"axis has {axis_t.size} elements, needs 1 (NumElements(axis) == 1)", axis_t)
        ctx.check(len(x.shape) >= 1, "input must have rank >= 1", x)
        ctx.check(out.type_name == x.type_name, f"output type {out.type_name} differs from input type {x.type_name}")
        ctx.check(tuple(out.shape) == tuple(x.shape),
                  f"output shape {list(out.shape)} differs from input shape {list(x.shape)} (HaveSameShapes)", out)
        quantized = prepare_rescaled_sum(ctx, x, out) if x.type_name == "INT8" else None
        if axis_t.data is None:
            ctx.unsupported("a non-constant axis tensor is not supported", axis_t)
        axis = int(np.asarray(axis_t.data).reshape(-1)[0])
        resolved = axis + len(x.shape) if axis < 0 else axis
        # Checked at Eval in TFLM ("CUMSUM Invalid axis"): the model can never run.
        ctx.check(0 <= resolved < len(x.shape), f"axis {axis} is out of range for input rank {len(x.shape)} "
                                                "(CUMSUM Invalid axis)", axis_t)
        self.params = CumSumParams(x.type_name, resolved, bool(ctx.options.get("exclusive", False)),
                                   bool(ctx.options.get("reverse", False)), quantized)
        self.out = out

    @ieee_float_arithmetic
    def eval(self, inputs):
        p = self.params
        x = inputs[0]
        axis = p.axis + 1  # behind the sample axis
        if p.reverse:
            x = np.flip(x, axis=axis)
        if p.kind == "FLOAT32":
            # The C accumulator starts at +0.0: the first sum is 0.0f + x[0] (-0.0 becomes +0.0).
            terms = x.astype(np.float32, copy=True)
            first = [slice(None)] * terms.ndim
            first[axis] = slice(0, 1)
            terms[tuple(first)] += np.float32(0.0)
            running = np.cumsum(terms, axis=axis, dtype=np.float32)  # add.accumulate: left to right
            initial = np.float32(0.0)
        else:
            q = p.quantized
            start = rescale_input(q, 0)  # accumulator = input1_offset, rescaled
            running = fp.wrap_int32(start + np.cumsum(rescale_input(q, x), axis=axis))
            initial = start
        if p.exclusive:
            shifted = np.empty_like(running)
            lead = [slice(None)] * running.ndim
            lead[axis] = slice(0, 1)
            rest = [slice(None)] * running.ndim
            rest[axis] = slice(1, None)
            before = [slice(None)] * running.ndim
            before[axis] = slice(0, -1)
            shifted[tuple(lead)] = initial
            shifted[tuple(rest)] = running[tuple(before)]
            running = shifted
        y = running if p.kind == "FLOAT32" else rescale_output(p.quantized, running)
        if p.reverse:
            y = np.flip(y, axis=axis)
        return [np.ascontiguousarray(y).astype(self.out.dtype, copy=False)]

    def describe(self):
        return asdict(self.params)


# ------------------------------------------------------------------------------ REDUCE_ALL

@register("REDUCE_ALL")
class ReduceAll(_Reduce):
    """REDUCE_ALL (reduce.cc PrepareAll / EvalAllHelper): reference_ops::ReduceGeneric<bool> with
    ``in && current`` from true; an empty input gives all true."""

    supported_types = "bool"
    notes = "any axes, keep_dims"

    def prepare(self, ctx: PrepareContext):
        x, axis_t, out = self.prepare_axes(ctx)
        ctx.check(x.type_name == "BOOL", f"input type {x.type_name} is not BOOL (TF_LITE_ENSURE_TYPES_EQ)", x)
        # Checked at Eval in TFLM: the model can never run.
        ctx.check(out.type_name == x.type_name, f"output type {out.type_name} differs from input type {x.type_name}")
        ctx.check(self.invalid_axis is None,
                  f"axis {self.invalid_axis} is out of range for input rank {len(x.shape)}", axis_t)
        self.scratch_bytes += [4 * len(x.shape), 4 * axis_t.size]

    def eval(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        if self.empty_input:
            return self.finish(np.ones((n, self.out_tensor.size), np.bool_), n)
        return self.finish(self.reduced_last(x.astype(np.bool_, copy=False)).all(axis=-1), n)

    def describe(self):
        return {"axes": self.axes, "keep_dims": self.keep_dims, "count": self.count}
