"""Comparisons, binary logical ops and SELECT_V2, all with broadcasting.

TFLM reference kernels: comparisons.cc (EQUAL, NOT_EQUAL, GREATER, GREATER_EQUAL, LESS,
LESS_EQUAL), logical.cc / logical_common.cc (LOGICAL_AND, LOGICAL_OR), select.cc (SELECT_V2); the
math in reference/comparisons.h, binary_function.h, select.h and broadcast_loop.h.

Types (the pinned wheel): EQUAL and NOT_EQUAL compare bool, float32, int32, int64 and int8;
the ordered comparisons float32, int32, int64 and int8. GREATER's Eval also has an int16 case, but
ComparisonsPrepare fills the rescaling parameters only for int8, so int16 compares values
rescaled with uninitialised OpData (all zero in a fresh arena: every answer false): microref
refuses it as unsupported. int8 inputs are not compared raw: each is rescaled to a common
fixed-point scale first, ``MBQM((x - zp) * 2^8, M, shift)`` with M, shift from the input's own
scale (which must lie in (0, 1): TFLM aborts otherwise), and the rescaled values are compared.
LOGICAL_AND / LOGICAL_OR read bool tensors; SELECT_V2 selects float32, int8 or int16 values.

Every one of these kernels computes one output element from the (broadcast) input elements, so
TFLM's flat loop and its broadcast loop give the same values and numpy broadcasting reproduces
both.
"""
from __future__ import annotations

import operator
from dataclasses import asdict, dataclass

import numpy as np

from . import fixedpoint as fp
from .elementwise import BroadcastShapes, ieee_float_arithmetic, multiply_by_quantized_multiplier
from .registry import OpKernel, PrepareContext, register
from .unary import RUNTIME_SHAPE_RANK_NOTE, require_runtime_shape_rank

COMPARISON_LEFT_SHIFT = 8  # kLeftShift in ComparisonsPrepare

# The operator table's rows for the six comparisons.
EQUALITY_TYPES = "int8, int32, int64, float32, bool"  # EQUAL, NOT_EQUAL
ORDERED_TYPES = "int8, int32, int64, float32"  # GREATER, GREATER_EQUAL, LESS, LESS_EQUAL
COMPARISON_NOTES = ("broadcasting; int8 inputs rescaled to a common fixed-point scale before comparing (input scales "
                    "must be in (0, 1): TFLM aborts otherwise); " + RUNTIME_SHAPE_RANK_NOTE)


@dataclass(frozen=True)
class ComparisonParams:
    """TFLM's ComparisonParams (filled for int8 inputs only), and the type Eval dispatches on."""

    input_type: str  # TensorType name of input1 (Eval's switch)
    left_shift: int  # 8 for int8, unused otherwise
    input1_offset: int  # -zero_point of input1
    input1_multiplier: int  # QuantizeMultiplierSmallerThanOneExp(scale of input1)
    input1_shift: int
    input2_offset: int
    input2_multiplier: int
    input2_shift: int
    requires_broadcast: bool  # inputs of different shapes: TFLM's broadcast loop
    # int8: the rescaled value of every int8 input, per input (index x + 128); None otherwise.
    input1_scaled: np.ndarray | None = None
    input2_scaled: np.ndarray | None = None


def quantize_multiplier_smaller_than_one_exp(ctx: PrepareContext, scale: float, tensor, role: str):
    """QuantizeMultiplierSmallerThanOneExp(double(scale)): its TFLITE_CHECKs abort TFLM."""
    ctx.check(0.0 < scale < 1.0, f"int8 {role} scale {scale!r} must satisfy 0 < scale < 1 (TFLITE_CHECK in "
                                 f"QuantizeMultiplierSmallerThanOneExp; TFLM aborts)", tensor)
    multiplier, shift = fp.quantize_multiplier(scale)
    ctx.check(shift <= 0, f"int8 {role} scale {scale!r} rounds up to 1.0 (TFLITE_CHECK_LE(shift, 0) in "
                          f"QuantizeMultiplierSmallerThanOneExp; TFLM aborts)", tensor)
    return multiplier, shift


class _BinaryBool(OpKernel):
    """Two inputs lined up by broadcasting, one bool output."""

    def operands(self, ctx: PrepareContext):
        self.in1 = ctx.require_input(0, "input1")
        self.in2 = ctx.require_input(1, "input2")
        self.out = ctx.output(0)
        require_runtime_shape_rank(ctx, self.in1, self.in2, self.out)
        if self.out.type_name != "BOOL":
            ctx.unsupported(f"output type {self.out.type_name}: TFLM's {self.op_name} writes bool values into it "
                            f"without checking its type", self.out)
        if self.in2.type_name != self.in1.type_name:
            ctx.unsupported(f"input types differ ({self.in1.type_name}, {self.in2.type_name}): TFLM's "
                            f"{self.op_name} reads input2 as input1's type", self.in2)
        self.shapes = BroadcastShapes(ctx, self.in1, self.in2, self.out)


# ------------------------------------------------------------------------------ comparisons

class _Comparison(_BinaryBool):
    compare = None  # the C comparison, as a numpy ufunc
    eval_types: tuple[str, ...] = ("FLOAT32", "INT32", "INT64", "INT8")

    def prepare(self, ctx: PrepareContext):
        self.operands(ctx)
        kind = self.in1.type_name
        if kind == "INT16" and self.op_name == "GREATER":
            ctx.unsupported("int16 GREATER: TFLM's ComparisonsPrepare sets the rescaling parameters only for int8, "
                            "so its int16 Eval compares values scaled by uninitialised OpData", self.in1)
        if kind not in self.eval_types:
            ctx.unsupported(f"input type {kind} is not supported by TFLM's {self.op_name} "
                            f"(its Eval handles {', '.join(self.eval_types)})", self.in1)
        params = dict(input_type=kind, left_shift=0, input1_offset=0, input1_multiplier=0, input1_shift=0,
                      input2_offset=0, input2_multiplier=0, input2_shift=0, requires_broadcast=not self.shapes.flat)
        if kind == "INT8":
            scaled = []
            for i, (t, role) in enumerate(((self.in1, "input1"), (self.in2, "input2")), start=1):
                scale, zero_point = (t.quantization.scale, t.quantization.zero_point) if t.quantization else (0.0, 0)
                multiplier, shift = quantize_multiplier_smaller_than_one_exp(ctx, scale, t, role)
                params.update({f"input{i}_offset": -zero_point, f"input{i}_multiplier": multiplier,
                               f"input{i}_shift": shift})
                scaled.append(self.rescale(np.arange(-128, 128), -zero_point, multiplier, shift))
            params.update(left_shift=COMPARISON_LEFT_SHIFT, input1_scaled=scaled[0], input2_scaled=scaled[1])
        self.params = ComparisonParams(**params)

    def rescale(self, x, offset: int, multiplier: int, shift: int) -> np.ndarray:
        """The rescaled input of ComparisonWithScaling: MBQM((offset + x) * 2^left_shift, M, shift)."""
        shifted = fp.wrap_int32(fp.wrap_int32(fp.as_int64(x) + offset) * (1 << COMPARISON_LEFT_SHIFT))
        table = np.asarray(multiply_by_quantized_multiplier(self.numerics, shifted, multiplier, shift), np.int64)
        table.flags.writeable = False
        return table

    @ieee_float_arithmetic
    def eval(self, inputs):
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        p = self.params
        if p.input1_scaled is not None:
            x1 = p.input1_scaled[x1.astype(np.intp) + 128]
            x2 = p.input2_scaled[x2.astype(np.intp) + 128]
        return [self.shapes.result(type(self).compare(x1, x2), np.bool_)]

    def describe(self):
        d = asdict(self.params)
        d.pop("input1_scaled")
        d.pop("input2_scaled")
        return d


@register("EQUAL")
class Equal(_Comparison):
    supported_types = EQUALITY_TYPES
    notes = COMPARISON_NOTES

    compare = operator.eq
    eval_types = ("BOOL", "FLOAT32", "INT32", "INT64", "INT8")


@register("NOT_EQUAL")
class NotEqual(_Comparison):
    supported_types = EQUALITY_TYPES
    notes = COMPARISON_NOTES

    compare = operator.ne
    eval_types = ("BOOL", "FLOAT32", "INT32", "INT64", "INT8")


@register("GREATER")
class Greater(_Comparison):
    supported_types = ORDERED_TYPES
    notes = COMPARISON_NOTES + "; int16 refused (its Eval compares with parameters TFLM never sets)"

    compare = operator.gt


@register("GREATER_EQUAL")
class GreaterEqual(_Comparison):
    supported_types = ORDERED_TYPES
    notes = COMPARISON_NOTES

    compare = operator.ge


@register("LESS")
class Less(_Comparison):
    supported_types = ORDERED_TYPES
    notes = COMPARISON_NOTES

    compare = operator.lt


@register("LESS_EQUAL")
class LessEqual(_Comparison):
    supported_types = ORDERED_TYPES
    notes = COMPARISON_NOTES

    compare = operator.le


# ------------------------------------------------------------------------------ LOGICAL_AND / OR

@dataclass(frozen=True)
class LogicalParams:
    requires_broadcast: bool  # inputs of different shapes: BroadcastBinaryFunction4DSlow


class _Logical(_BinaryBool):
    """LOGICAL_AND / LOGICAL_OR have no Prepare; LogicalImpl reads both inputs as bool."""

    combine = None

    def prepare(self, ctx: PrepareContext):
        self.operands(ctx)
        if self.in1.type_name != "BOOL":
            ctx.unsupported(f"input type {self.in1.type_name}: TFLM's {self.op_name} reads its bytes as bool "
                            f"(only bool inputs are defined)", self.in1)
        self.params = LogicalParams(requires_broadcast=not self.shapes.flat)

    def eval(self, inputs):
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        return [self.shapes.result(type(self).combine(x1, x2), np.bool_)]

    def describe(self):
        return asdict(self.params)


@register("LOGICAL_AND")
class LogicalAnd(_Logical):
    supported_types = "bool"
    notes = "broadcasting; " + RUNTIME_SHAPE_RANK_NOTE

    combine = np.logical_and


@register("LOGICAL_OR")
class LogicalOr(_Logical):
    supported_types = "bool"
    notes = "broadcasting; " + RUNTIME_SHAPE_RANK_NOTE

    combine = np.logical_or


# ------------------------------------------------------------------------------ SELECT_V2

@dataclass(frozen=True)
class SelectParams:
    """select.cc's OpData, and the extended shapes the broadcast loop lines the operands up in."""

    requires_broadcast: bool  # not all of condition, x, y of one shape (and not all one element)
    # Each operand's shape right-aligned to the output's rank (broadcast path), else None.
    condition_shape: tuple[int, ...] | None
    x_shape: tuple[int, ...] | None
    y_shape: tuple[int, ...] | None


@register("SELECT_V2")
class SelectV2(OpKernel):
    supported_types = "int8, int16, float32 (bool condition)"
    notes = "condition, x and y broadcast; quantization ignored, as in TFLM; " + RUNTIME_SHAPE_RANK_NOTE

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(3, 1)
        cond, x, y = (ctx.require_input(i, role) for i, role in enumerate(("condition", "x", "y")))
        out = self.out = ctx.output(0)
        require_runtime_shape_rank(ctx, cond, x, y, out)
        ctx.check(cond.type_name == "BOOL", f"condition type {cond.type_name} is not BOOL "
                                            f"(TF_LITE_ENSURE_TYPES_EQ input_condition->type, kTfLiteBool)", cond)
        ctx.check(x.type_name == y.type_name, f"x type {x.type_name} differs from y type {y.type_name} "
                                              f"(TF_LITE_ENSURE_TYPES_EQ input_x->type, input_y->type)", y)
        if x.type_name not in ("FLOAT32", "INT8", "INT16"):
            ctx.unsupported(f"type {x.type_name} is not supported by TFLM's SELECT_V2 (its Eval handles "
                            f"FLOAT32, INT8, INT16)", x)
        if out.type_name != x.type_name:
            ctx.unsupported(f"output type {out.type_name}: TFLM's SELECT_V2 writes {x.type_name} values into it "
                            f"(its Prepare sets the type only on a temporary copy)", out)
        mixed_scalar = cond.size == 1 and x.size == 1 and y.size == 1 and out.size == 1
        same_shape = tuple(cond.shape) == tuple(x.shape) == tuple(y.shape)
        if same_shape or mixed_scalar:
            ctx.check(out.size == x.size, f"output shape {list(out.shape)} and input shape {list(x.shape)} differ "
                                          f"in size (Select writes one output element per input element)", out)
            self.params = SelectParams(requires_broadcast=False, condition_shape=None, x_shape=None, y_shape=None)
            return
        rank = max(len(cond.shape), len(x.shape), len(y.shape))
        ctx.check(rank == len(out.shape), f"output rank {len(out.shape)} differs from the broadcast rank {rank} "
                                          f"(TF_LITE_ENSURE_EQ out_dims, output_shape->size)", out)
        ext = lambda s: (1,) * (rank - len(s)) + tuple(s)  # noqa: E731
        shapes = [ext(cond.shape), ext(x.shape), ext(y.shape)]
        for i in range(rank):
            d = [s[i] for s in shapes]
            max_value = 0 if min(d) == 0 else max(d)
            ctx.check(all(v in (1, max_value) for v in d),
                      f"shapes {list(cond.shape)}, {list(x.shape)}, {list(y.shape)} are not broadcastable "
                      f"(CheckBroadcastShape: \"Given shapes are not broadcastable.\")")
            ctx.check(out.shape[i] == max_value,
                      f"output dimension {i} is {out.shape[i]}, the broadcast gives {max_value} "
                      f"(TF_LITE_ENSURE_EQ output_shape->data[i], max_value)", out)
        self.params = SelectParams(requires_broadcast=True, condition_shape=shapes[0], x_shape=shapes[1],
                                   y_shape=shapes[2])

    def eval(self, inputs):
        cond, x, y = inputs
        p = self.params
        if p.requires_broadcast:
            cond = cond.reshape((cond.shape[0],) + p.condition_shape)
            x = x.reshape((x.shape[0],) + p.x_shape)
            y = y.reshape((y.shape[0],) + p.y_shape)
        else:
            cond, x, y = (a.reshape(a.shape[0], -1) for a in (cond, x, y))
        result = np.where(cond, x, y)
        return [result.reshape((result.shape[0],) + tuple(self.out.shape)).astype(self.out.dtype, copy=False)]

    def describe(self):
        return asdict(self.params)
