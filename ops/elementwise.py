"""Elementwise binary ops with broadcasting: ADD, SUB, MUL, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE.

TFLM reference kernels: add.cc / add_common.cc, sub.cc / sub_common.cc, mul.cc / mul_common.cc,
maximum_minimum.cc, squared_difference.cc; the math in reference/add.h, reference/sub.h,
reference/integer_ops/mul.h, reference/mul.h and reference/broadcast_loop.h.

Every kernel here computes one formula per output element from the two (broadcast) input
elements, so the broadcast and the non-broadcast loops of TFLM give the same values and
numpy broadcasting reproduces both. For int8 operands the formula is a function of just 256x256
input pairs: its tabulation turns eval into a table gather. The table is built lazily, on the
first call large enough to pay for it (or once small calls have spent what building it costs);
until then eval computes the formula directly. Loading and preparing a model (what every fuzzing
example pays) never builds it. Large calls (batched inference) with compiled kernels enabled
gather from the table in one compiled pass, and int16 ADD/SUB/MUL run their formula compiled
(ops/compiled/elementwise.py); ``eval_reference`` is ops.reference's plain formula.
"""
from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import numpy as np

from . import compiled
from . import fixedpoint as fp
from .common import TYPE_RANGES, activation_range_float, activation_range_quantized, clamp_float, type_range
from .compiled import elementwise as compiled_elementwise
from .params import params_as_dict
from .reference import elementwise as reference_elementwise
from .registry import OpKernel, PrepareContext, register

FLOAT32_MAX = np.float32(np.finfo(np.float32).max)
ACTIVATION_NONE, ACTIVATION_RELU, ACTIVATION_RELU_N1_TO_1, ACTIVATION_RELU6 = 0, 1, 2, 3


# ------------------------------------------------------------------------------ shared helpers

def ieee_float_arithmetic(method):
    """Let float32 arithmetic overflow to inf / NaN silently, as C does (no numpy warnings)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return method(*args, **kwargs)
    return wrapper


def multiply_by_quantized_multiplier(numerics, x, multiplier, shift):
    """MultiplyByQuantizedMultiplier in the build's rounding (double: the wheel; single: the flag)."""
    if numerics is not None and numerics.rounding == "single":
        return fp.wrap_int32(fp.multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift))
    return fp.multiply_by_quantized_multiplier(x, multiplier, shift)


def quantize_multiplier_smaller_than_one(ctx: PrepareContext, real: float, what: str) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp, whose TFLITE_CHECKs abort TFLM: 0 < m < 1 and shift <= 0."""
    ctx.check(0.0 < real < 1.0, f"{what} multiplier {real!r} must satisfy 0 < m < 1 "
                                f"(TFLITE_CHECK in QuantizeMultiplierSmallerThanOneExp)")
    multiplier, shift = fp.quantize_multiplier(real)
    ctx.check(shift <= 0, f"{what} multiplier {real!r} rounds up to 1.0 (TFLITE_CHECK_LE(shift, 0) in "
                          f"QuantizeMultiplierSmallerThanOneExp)")
    return multiplier, shift


def scale_and_zero_point(tensor) -> tuple[float, int]:
    """TfLiteTensor.params: the first scale and zero point, or (0, 0) for an unquantized tensor."""
    q = tensor.quantization
    if q is None:
        return 0.0, 0
    return q.scale, q.zero_point


def int32_activation_range(activation: int) -> tuple[int, int]:
    """CalculateActivationRange<int32_t>, used by the unquantized int32 SUB and MUL."""
    if activation == ACTIVATION_RELU:
        return 0, fp.INT32_MAX
    if activation == ACTIVATION_RELU6:
        return 0, 6
    if activation == ACTIVATION_RELU_N1_TO_1:
        return -1, 1
    return fp.INT32_MIN, fp.INT32_MAX


def integer_domain(type_name: str) -> np.ndarray | None:
    """Every value of a narrow integer type (int8/uint8/int16), for tabulating a kernel's formula."""
    if type_name in ("INT8", "UINT8", "INT16"):
        lo, hi = type_range_by_name(type_name)
        return np.arange(lo, hi + 1, dtype=np.int64)
    return None


def type_range_by_name(type_name: str) -> tuple[int, int]:
    return TYPE_RANGES[type_name]


class BroadcastShapes:
    """How TFLM lines two inputs up with the output (ProcessBroadcastShapes / BroadcastBinaryOpSimple).

    Equal shapes (after right-aligning ranks) run the flat elementwise loop; anything else runs the
    numpy-style broadcast loop over the output tensor's shape. Both compute the same per-element
    values, so eval only reshapes the operands so that numpy broadcasting lines them up the same way.
    """

    def __init__(self, ctx: PrepareContext, a, b, out):
        rank = max(len(a.shape), len(b.shape), len(out.shape))
        ext = lambda s: (1,) * (rank - len(s)) + tuple(s)  # noqa: E731
        self.a_shape, self.b_shape, out_ext = ext(a.shape), ext(b.shape), ext(out.shape)
        self.out_shape = tuple(out.shape)
        # Shapes equal after right-aligning: TFLM runs the flat loop (also for (8,) against (1, 8)).
        self.flat = self.a_shape == self.b_shape
        if self.flat:
            ctx.check(a.size == out.size,
                      f"input shapes {list(a.shape)} and output shape {list(out.shape)} differ in size")
            return
        try:
            broadcast = np.broadcast_shapes(self.a_shape, self.b_shape)
        except ValueError:
            ctx.fail(f"input shapes {list(a.shape)} and {list(b.shape)} do not broadcast")
        ctx.check(tuple(broadcast) == out_ext,
                  f"input shapes {list(a.shape)} and {list(b.shape)} broadcast to {list(broadcast)}, "
                  f"but the output shape is {list(out.shape)}")

    def operands(self, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two eval arrays (leading sample axis) reshaped so that numpy broadcasting is TFLM's."""
        if self.flat:
            return x1.reshape(x1.shape[0], -1), x2.reshape(x2.shape[0], -1)
        return x1.reshape((x1.shape[0],) + self.a_shape), x2.reshape((x2.shape[0],) + self.b_shape)

    def result(self, y: np.ndarray, dtype) -> np.ndarray:
        return y.reshape((y.shape[0],) + self.out_shape).astype(dtype, copy=False)


class BinaryKernel(OpKernel):
    """Common prepare for two-input, one-output elementwise kernels."""

    def prepare_operands(self, ctx: PrepareContext):
        self.in1 = ctx.require_input(0, "input1")
        self.in2 = ctx.require_input(1, "input2")
        self.out = ctx.output(0)
        self.shapes = BroadcastShapes(ctx, self.in1, self.in2, self.out)
        self.activation = ctx.options.get("fused_activation_function", ACTIVATION_NONE)

    def require_same_types(self, ctx: PrepareContext, reference_type: str, why: str):
        for t, role in ((self.in1, "input1"), (self.in2, "input2"), (self.out, "output")):
            ctx.check(t.type_name == reference_type,
                      f"{role} is {t.type_name} but {why} {reference_type}", t)

    # int8 kernels: the fast path's plan, not a parameter: the quantized formula (computed from
    # self.params) for every pair of int8 inputs, flattened in byte order (row x1 & 0xFF, column
    # x2 & 0xFF). Built on demand (``table``); ``tabulate_int8`` at prepare only says it may be.
    tabulated = False  # set by tabulate_int8: the kernel's int8 formula may be tabulated
    _table: np.ndarray | None = None  # the built table, published whole (see _build_table)
    _direct_spent = 0  # cost (in element-equivalents) of the direct evaluations so far

    def tabulate_int8(self):
        """Let eval tabulate ``self.quantized`` for all 256x256 int8 input pairs when that pays
        (``int8_values``); nothing is computed here, at prepare."""
        self.tabulated = True

    @property
    def table(self) -> np.ndarray | None:
        """The 256x256 table of an int8 kernel, built on first use (None for other kernels)."""
        if not self.tabulated:
            return None
        table = self._table
        return table if table is not None else self._build_table()

    def _build_table(self) -> np.ndarray:
        """Evaluate ``self.quantized`` once for all 256x256 int8 input pairs.

        In byte order, a pair's two bytes side by side are its 16-bit index: eval is a few passes
        over 1- and 2-byte arrays and one take, not the formula (nor a 2-D fancy index through
        two intp copies, 9 ns against ~1.5 ns per element).

        Threads calling eval at once may all get here: the first builds the table under the lock,
        the others wait and take it; it is published (assigned) only when complete and read-only,
        so a thread that reads ``_table`` without the lock sees None or the finished table.
        """
        with _TABLE_LOCK:
            if self._table is not None:
                return self._table
            values = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.int64)
            table = np.empty((256, 256), self.out.dtype)
            # 32 rows at a time: the formula's int64 temporaries (64 KB) then come from the heap, where
            # 256 rows (512 KB each) would be fresh mmaps whose page faults cost more than the
            # arithmetic. Each entry depends on its pair only.
            for start in range(0, 256, 32):
                table[start:start + 32] = self.quantized(values[start:start + 32, None], values[None, :])
            table = table.reshape(-1)
            table.flags.writeable = False
            self._table = table
            return table

    def lookup(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The tabulated formula for int8 operands (numpy broadcasting of the two)."""
        table = self._table
        if table is None:
            table = self._build_table()
        index = x1.view(np.uint8).astype(np.uint16)
        index <<= 8
        return table.take(np.bitwise_or(index, x2.view(np.uint8)))

    def int8_values(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The int8 formula on two (broadcast) operands: a gather from the table when it is built or
        this call is large enough to pay for building it, else the formula itself (the values the
        table holds: it is the formula's tabulation, and tests force both ways).

        The choice is a ski rental: direct calls add their cost (a fixed part and one unit per
        element) until the next one would bring the total past what building the table costs;
        that call builds it. A kernel called often therefore pays at most about twice the build,
        and one called a few times on small operands (a fuzzing example) never builds it."""
        n = n_of(x1, x2)
        if self._table is None:
            cost = DIRECT_CALL_COST + n
            if self._direct_spent + cost < TABLE_BUILD_COST:
                # (An unlocked += may lose another thread's count: the build only comes later.)
                self._direct_spent += cost
                return self.quantized(x1, x2)
        if self.compiled_elements < n and compiled.enabled():
            y = self.compiled_formula(x1, x2)
            if y is None:
                y = self.compiled_gather(x1, x2)
            if y is not None:
                return y
        return self.lookup(x1, x2)

    # int8 ADD / SUB / MUL: the formula in vector registers (compiled_elementwise.add_int8),
    # ~0.25-0.35 ns per value against the table gather's ~0.5 (the 64 KB table does not fit L1).
    # None: on hosts with AVX-512 (where it was measured); True / False: forced (tests).
    INT8_FORMULA: bool | None = None
    _int8_plan = None  # compiled_elementwise.AddInt8Plan, False when it does not apply; None: not yet made

    def compiled_formula(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray | None:
        use = self.INT8_FORMULA
        if use is False or (use is None and not compiled_elementwise.vector_host()):
            return None
        if x1.shape == x2.shape and x1.size >= compiled_elementwise.ADD_INT8_LANES and x1.flags.c_contiguous \
                and x2.flags.c_contiguous:  # one flat run (residual adds): the short call
            plan = self._int8_plan if self._int8_plan is not None else self._plan_int8()
            if plan is False:
                return None
            out = np.empty(x1.shape, np.int8)
            compiled_elementwise.add_int8_flat(plan, x1.reshape(-1), x2.reshape(-1), out.reshape(-1))
            return out
        lay = compiled_elementwise.layout(x1, x2)
        if lay is None:
            return None
        shape, dims, s1, s2 = lay
        if s1[3] != 1 or s2[3] != 1 or dims[3] < compiled_elementwise.ADD_INT8_LANES:
            return None  # a broadcast or short innermost row: the gather
        plan = self._int8_plan if self._int8_plan is not None else self._plan_int8()
        if plan is False:
            return None
        out = np.empty(shape, np.int8)
        compiled_elementwise.add_int8(plan, x1.reshape(-1), np.array(s1, np.int64), x2.reshape(-1),
                                      np.array(s2, np.int64), np.array(dims, np.int64), out.reshape(-1))
        return out

    def int8_formula_plan(self):
        """The compiled formula's plan (ADD / SUB / MUL override it), None where it does not apply."""
        return None

    def _plan_int8(self):
        """``int8_formula_plan`` (the default double rounding only), confirmed on all 65,536 input
        pairs against the table (so the kernel as compiled here, with this layer's constants, is
        checked whole); False where it does not apply."""
        plan = False
        if self.numerics is None or self.numerics.rounding == "double":
            plan = self.int8_formula_plan() or False
        if plan is not False:
            pairs = np.arange(1 << 16, dtype=np.uint16)
            x1, x2 = (pairs >> 8).astype(np.uint8).view(np.int8), (pairs & 0xFF).astype(np.uint8).view(np.int8)
            out = np.empty(1 << 16, np.int8)
            compiled_elementwise.add_int8_flat(plan, x1, x2, out)  # (the same rows as add_int8's)
            if out.tobytes() != self.table.tobytes():
                plan = False
        self._int8_plan = plan
        return plan

    # Calls on more values than these take the compiled kernels of ops/compiled/elementwise.py when
    # they are enabled (ops.compiled): the int8 table gather in one pass, 0.48 ns per value against
    # numpy's 0.97 (0.3–0.5 M values; 0.7 against 1.1 broadcast), and the int16 formula, ~1–2 ns
    # against 30. A compiled call costs ~12 µs of Python and dispatch (numpy's int8 lookup ~10),
    # so an int8 call pays from ~8 K values, an int16 one from a few hundred; and the first compiled
    # call in a process imports numba, which tiny models never should. Tests force both ways by
    # setting them to -1 or beyond any size.
    compiled_elements = 1 << 13
    compiled_elements_int16 = 1 << 10
    # int16 ADD/SUB/MUL: the compiled formula's parameters (``compiled_elementwise.int16_plan``),
    # set at prepare when its bounds hold and the numerics are the default double rounding.
    _int16_plan: tuple | None = None

    def compiled_gather(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray | None:
        """``lookup`` in one compiled pass (the same table, the same index: exact whatever the
        numerics); None when the operands' layout needs the numpy path."""
        lay = compiled_elementwise.layout(x1, x2)
        if lay is None:
            return None
        table = self.table
        shape, dims, s1, s2 = lay
        out = np.empty(shape, table.dtype)
        compiled_elementwise.gather(x1.reshape(-1).view(np.uint8), np.array(s1, np.int64),
                                    x2.reshape(-1).view(np.uint8), np.array(s2, np.int64),
                                    np.array(dims, np.int64), table, out.reshape(-1))
        return out

    def int16_values(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The int16 formula: compiled for large calls (``compiled_elements_int16``) when planned, else
        ``quantized`` in numpy."""
        if self._int16_plan is not None and self.compiled_elements_int16 < n_of(x1, x2) and compiled.enabled():
            lay = compiled_elementwise.layout(x1, x2)
            if lay is not None:
                shape, dims, s1, s2 = lay
                out = np.empty(shape, np.int16)
                self.compiled_int16(x1.reshape(-1), np.array(s1, np.int64), x2.reshape(-1),
                                    np.array(s2, np.int64), np.array(dims, np.int64), out.reshape(-1))
                return out
        return self.quantized(x1, x2)

    def plan_int16(self, *args) -> None:
        """Record ``compiled_elementwise.int16_plan(*args)`` for an int16 kernel with the default
        double rounding (the compiled formula implements only that; the table of int8 kernels
        needs no plan)."""
        if self.numerics is None or self.numerics.rounding == "double":
            self._int16_plan = compiled_elementwise.int16_plan(*args)

    def compiled_int16(self, x1, s1, x2, s2, dims, out) -> None:
        raise NotImplementedError  # overridden by the kernels that plan int16


def n_of(x1: np.ndarray, x2: np.ndarray) -> int:
    """The number of values two numpy-broadcast operands produce."""
    return math.prod(np.broadcast_shapes(x1.shape, x2.shape))


# Building the int8 table and evaluating the formula directly, in element-equivalents of the direct
# formula (measured on a one-op int8 ADD: the direct formula ~0.04 us per element plus ~55 us per
# call; the 65536-entry table, built 32 rows at a time, ~0.8 ms).
DIRECT_CALL_COST = 1 << 11
TABLE_BUILD_COST = 1 << 15
_TABLE_LOCK = threading.Lock()


def reference_arithmetic_params(numerics, p) -> reference_elementwise.ArithmeticParams:
    """The ArithmeticParams ops.reference's ADD/SUB/MUL read, from an OpDataAdd or OpDataMul."""
    return reference_elementwise.ArithmeticParams(
        input1_offset=p.input1_offset, input2_offset=p.input2_offset, output_offset=p.output_offset,
        output_multiplier=p.output_multiplier, output_shift=p.output_shift,
        quantized_activation_min=p.output_activation_min, quantized_activation_max=p.output_activation_max,
        left_shift=getattr(p, "left_shift", 0), input1_multiplier=getattr(p, "input1_multiplier", 0),
        input1_shift=getattr(p, "input1_shift", 0), input2_multiplier=getattr(p, "input2_multiplier", 0),
        input2_shift=getattr(p, "input2_shift", 0),
        rounding="single" if numerics is not None and numerics.rounding == "single" else "double")


# ------------------------------------------------------------------------------ prepared parameters

@dataclass(frozen=True)
class OpDataAdd:
    """add.h OpDataAdd (SUB: sub.h OpDataSub, the same fields), as CalculateOpDataAdd/Sub leave it.
    The quantized fields are 0 for float32 and int32, which read only the activation clamp."""
    kind: str                      # FLOAT32, INT32, INT8 or INT16: every operand's type
    requires_broadcast: bool       # !HaveSameShapes: the broadcast loop (same values per element)
    activation: int                # the fused activation function code (TfLiteFusedActivation)
    left_shift: int = 0            # 20 for int8, 15 for int16: both inputs shifted up by it first
    input1_offset: int = 0         # -input1 zero point
    input1_multiplier: int = 0     # QuantizeMultiplierSmallerThanOneExp(s1 / (2·max(s1, s2)))
    input1_shift: int = 0          # its exponent (<= 0)
    input2_offset: int = 0         # -input2 zero point
    input2_multiplier: int = 0     # QuantizeMultiplierSmallerThanOneExp(s2 / (2·max(s1, s2)))
    input2_shift: int = 0
    output_offset: int = 0         # the output zero point, added after the output rescale
    output_multiplier: int = 0     # QuantizeMultiplierSmallerThanOneExp(2·max(s1, s2) / (2^left_shift·s_out))
    output_shift: int = 0
    output_activation_min: int = 0  # the integer clamp: quantized activation range (int8/int16);
    output_activation_max: int = 0  # int32: SUB's CalculateActivationRange<int32_t>, ADD's full int32 range
    output_activation_min_f32: float = 0.0  # float32: CalculateActivationRange<float>
    output_activation_max_f32: float = 0.0


@dataclass(frozen=True)
class OpDataMul:
    """mul.h OpDataMul, as CalculateOpDataMul leaves it; the zero points held as the offsets
    ArithmeticParams gives the reference MulElementwise (input offsets negated). Quantized fields
    are 0 for float32 and int32."""
    kind: str                      # FLOAT32, INT32, INT8 or INT16: every operand's type
    requires_broadcast: bool       # !HaveSameShapes: the broadcast loop (same values per element)
    activation: int                # the fused activation function code
    input1_offset: int = 0         # -input1 zero point
    input2_offset: int = 0         # -input2 zero point
    output_offset: int = 0         # the output zero point, added after the rescale
    output_multiplier: int = 0     # QuantizeMultiplier(s1·s2 / s_out)
    output_shift: int = 0          # its exponent (either sign)
    output_activation_min: int = 0  # int8/int16: the quantized activation range; int32:
    output_activation_max: int = 0  # CalculateActivationRange<int32_t>
    output_activation_min_f32: float = 0.0  # float32: CalculateActivationRange<float>
    output_activation_max_f32: float = 0.0


@dataclass(frozen=True)
class OpDataMaximumMinimum:
    """maximum_minimum.cc has no Prepare and no OpData: only the type and the loop it picks."""
    kind: str                      # FLOAT32, INT8, INT16, INT32 or INT64: every operand's type
    requires_broadcast: bool       # !HaveSameShapes: the broadcast loop (same values per element)


@dataclass(frozen=True)
class OpDataSquaredDifference:
    """squared_difference.cc OpData: requires_broadcast and the ArithmeticParams PrepareQuantized
    fills (0 for float32 and int32, which have no parameters)."""
    kind: str                      # FLOAT32, INT32, INT8 or INT16: every operand's type
    requires_broadcast: bool       # !HaveSameShapes: the broadcast loop (same values per element)
    left_shift: int = 0            # 7 for int8, 0 for int16
    input1_offset: int = 0         # -input1 zero point
    input1_multiplier: int = 0     # QuantizeMultiplierSmallerThanOneExp(s1 / (2·max(s1, s2)))
    input1_shift: int = 0
    input2_offset: int = 0         # -input2 zero point
    input2_multiplier: int = 0     # QuantizeMultiplierSmallerThanOneExp(s2 / (2·max(s1, s2)))
    input2_shift: int = 0
    output_offset: int = 0         # the output zero point
    output_multiplier: int = 0     # QuantizeMultiplier((2·max(s1, s2))^2 / float32(2^(2L)·s_out))
    output_shift: int = 0
    quantized_activation_min: int = 0  # the output type's range (no fused activation)
    quantized_activation_max: int = 0


# ------------------------------------------------------------------------------ ADD and SUB

class _AddSub(BinaryKernel):
    """ADD and SUB: both inputs rescaled to a common 2^-L-finer scale, summed, rescaled to the output.

    The sign of the second operand is the only difference between them (reference/add.h,
    reference/sub.h). SUB's float32-scale variant (older TFLM, notes §0.2) is selected by
    ``numerics.scale_precision``; ADD always computes its ratios in double.
    """

    sign = +1
    float32_scales_variant = False

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx)
        self.kind = self.out.type_name
        if self.kind not in ("FLOAT32", "INT32", "INT8", "INT16"):
            ctx.unsupported(f"output of type {self.kind} is not supported by TFLM's {self.op_name}", self.out)
        self.require_same_types(ctx, self.kind, f"TFLM's {self.op_name} reads every operand as the output type")
        common = dict(kind=self.kind, requires_broadcast=not self.shapes.flat, activation=self.activation)
        if self.kind == "FLOAT32":
            float_min, float_max = activation_range_float(self.activation)
            self.params = OpDataAdd(**common, output_activation_min_f32=float_min, output_activation_max_f32=float_max)
            return
        if self.kind == "INT32":
            unquantized = "(TF_LITE_ENSURE_EQ quantization.type, kTfLiteNoQuantization)"
            for t, role in ((self.in1, "input1"), (self.in2, "input2")):
                ctx.check(t.quantization is None,
                          f"int32 {self.op_name} requires an unquantized {role} {unquantized}", t)
            if self.op_name == "SUB":
                ctx.check(self.out.quantization is None, f"int32 SUB requires an unquantized output {unquantized}",
                          self.out)
                int_min, int_max = int32_activation_range(self.activation)
            else:
                # ADD's int32 path ignores the fused activation entirely.
                int_min, int_max = fp.INT32_MIN, fp.INT32_MAX
            self.params = OpDataAdd(**common, output_activation_min=int_min, output_activation_max=int_max)
            return
        self.prepare_quantized(ctx, common)

    def prepare_quantized(self, ctx: PrepareContext, common: dict):
        ctx.check(self.out.quantization is not None,
                  f"quantized {self.op_name} needs a quantized output (TFLITE_CHECK_NE quantization.type)",
                  self.out)
        s1, z1 = scale_and_zero_point(self.in1)
        s2, z2 = scale_and_zero_point(self.in2)
        so, zo = scale_and_zero_point(self.out)
        left_shift = 15 if self.kind == "INT16" else 20
        if self.float32_scales_variant and self.numerics.scale_precision == "float32":
            twice_max = np.float32(2) * np.float32(max(np.float32(s1), np.float32(s2)))
            real1 = float(np.float32(np.float32(s1) / twice_max))
            real2 = float(np.float32(np.float32(s2) / twice_max))
            shifted_output_scale = np.float32(np.float32(1 << left_shift) * np.float32(so))
            real_out = float(np.float32(twice_max / shifted_output_scale))
        else:
            twice_max = 2.0 * max(s1, s2)
            real1 = s1 / twice_max if twice_max else 0.0
            real2 = s2 / twice_max if twice_max else 0.0
            real_out = twice_max / ((1 << left_shift) * so) if so else float("inf")
        m1, shift1 = quantize_multiplier_smaller_than_one(ctx, real1, "input1")
        m2, shift2 = quantize_multiplier_smaller_than_one(ctx, real2, "input2")
        m_out, shift_out = quantize_multiplier_smaller_than_one(ctx, real_out, "output")
        act_min, act_max = activation_range_quantized(self.activation, self.out, ctx)
        self.params = OpDataAdd(**common, left_shift=left_shift,
                                input1_offset=-z1, input1_multiplier=m1, input1_shift=shift1,
                                input2_offset=-z2, input2_multiplier=m2, input2_shift=shift2,
                                output_offset=zo, output_multiplier=m_out, output_shift=shift_out,
                                output_activation_min=act_min, output_activation_max=act_max)
        if self.kind == "INT8":
            self.tabulate_int8()
        else:
            self.plan_int16(left_shift, ((m1, shift1), (m2, shift2), (m_out, shift_out)),
                            -z1, -z2, zo, act_min, act_max)

    def int8_formula_plan(self):
        p = self.params
        return compiled_elementwise.add_int8_plan(
            self.sign, p.left_shift, (p.input1_offset, p.input1_multiplier, p.input1_shift),
            (p.input2_offset, p.input2_multiplier, p.input2_shift), p.output_offset, p.output_multiplier,
            p.output_shift, p.output_activation_min, p.output_activation_max)

    def compiled_int16(self, x1, s1, x2, s2, dims, out) -> None:
        p = self.params
        m1, l1, r1, m2, l2, r2, mo, lo, ro = self._int16_plan
        compiled_elementwise.add_int16(x1, s1, x2, s2, dims, self.sign, p.left_shift, p.input1_offset, m1, l1, r1,
                                       p.input2_offset, m2, l2, r2, p.output_offset, mo, lo, ro,
                                       p.output_activation_min, p.output_activation_max, out)

    def quantized(self, x1, x2):
        """AddElementwise / SubElementwise for one pair of (broadcast) integer arrays."""
        nm, p = self.numerics, self.params
        shifted1 = fp.wrap_int32((np.asarray(x1, np.int64) + p.input1_offset) << p.left_shift)
        shifted2 = fp.wrap_int32((np.asarray(x2, np.int64) + p.input2_offset) << p.left_shift)
        scaled1 = multiply_by_quantized_multiplier(nm, shifted1, p.input1_multiplier, p.input1_shift)
        scaled2 = multiply_by_quantized_multiplier(nm, shifted2, p.input2_multiplier, p.input2_shift)
        raw = fp.wrap_int32(scaled1 + self.sign * scaled2)
        out = multiply_by_quantized_multiplier(nm, raw, p.output_multiplier, p.output_shift) + p.output_offset
        return np.clip(fp.wrap_int32(out), p.output_activation_min, p.output_activation_max)

    @ieee_float_arithmetic
    def eval(self, inputs):
        p = self.params
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        if p.kind == "FLOAT32":
            y = x1 + x2 if self.sign > 0 else x1 - x2
            y = clamp_float(y.astype(np.float32, copy=False), p.output_activation_min_f32,
                            p.output_activation_max_f32)
        elif p.kind == "INT32":
            y = fp.wrap_int32(x1.astype(np.int64) + self.sign * x2.astype(np.int64))
            y = np.clip(y, p.output_activation_min, p.output_activation_max)
        elif self.tabulated:
            y = self.int8_values(x1, x2)
        else:
            y = self.int16_values(x1, x2)
        return [self.shapes.result(y, self.out.dtype)]

    def eval_reference(self, inputs):
        """int8/int16: AddFunc / SubElementwise as ops.reference writes them (no table, no
        compiled kernel); float32 and int32 have no fast path."""
        p = self.params
        if p.kind not in ("INT8", "INT16"):
            return type(self).eval(self, inputs)  # self.eval is this method in reference mode
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        function = reference_elementwise.add if self.sign > 0 else reference_elementwise.sub
        y = function(reference_arithmetic_params(self.numerics, p), x1, x2)
        return [self.shapes.result(y, self.out.dtype)]

    def describe(self):
        return params_as_dict(self.params)


@register("ADD")
class Add(_AddSub):
    supported_types = "int8, int16, int32, float32"
    notes = "broadcasting, fused activations"

    sign = +1


@register("SUB")
class Sub(_AddSub):
    supported_types = "int8, int16, int32, float32"
    notes = "broadcasting, fused activations"

    sign = -1
    float32_scales_variant = True


# ------------------------------------------------------------------------------ MUL

@register("MUL")
class Mul(BinaryKernel):
    """MUL: (x1 - z1)·(x2 - z2) requantized with one multiplier s1·s2/s_out (integer_ops/mul.h)."""

    supported_types = "int8, int16, int32, float32"
    notes = "broadcasting, fused activations"

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx)
        ctx.check(self.in1.type_name == self.in2.type_name,
                  f"input types differ: {self.in1.type_name} and {self.in2.type_name} "
                  f"(TF_LITE_ENSURE_TYPES_EQ input1->type, input2->type)")
        self.kind = self.in1.type_name
        if self.kind not in ("FLOAT32", "INT32", "INT8", "INT16"):
            ctx.unsupported(f"input of type {self.kind} is not supported by TFLM's MUL", self.in1)
        self.require_same_types(ctx, self.kind, "TFLM's MUL writes the output as the input type")
        common = dict(kind=self.kind, requires_broadcast=not self.shapes.flat, activation=self.activation)
        if self.kind == "FLOAT32":
            float_min, float_max = activation_range_float(self.activation)
            self.params = OpDataMul(**common, output_activation_min_f32=float_min, output_activation_max_f32=float_max)
            return
        if self.kind == "INT32":
            int_min, int_max = int32_activation_range(self.activation)
            self.params = OpDataMul(**common, output_activation_min=int_min, output_activation_max=int_max)
            return
        s1, z1 = scale_and_zero_point(self.in1)
        s2, z2 = scale_and_zero_point(self.in2)
        so, zo = scale_and_zero_point(self.out)
        act_min, act_max = activation_range_quantized(self.activation, self.out, ctx)
        real = s1 * s2 / so if so else float("inf")
        multiplier, shift = fp.quantize_multiplier(real)
        if self.kind == "INT16":
            ctx.check(z1 == 0, f"int16 MUL requires input1 zero_point == 0, has {z1} "
                               f"(TF_LITE_ENSURE_EQ input1_zero_point, 0)", self.in1)
            ctx.check(z2 == 0, f"int16 MUL requires input2 zero_point == 0, has {z2} "
                               f"(TF_LITE_ENSURE_EQ input2_zero_point, 0)", self.in2)
            ctx.check(zo == 0, f"int16 MUL requires output zero_point == 0, has {zo} "
                               f"(TF_LITE_ENSURE_EQ output_zero_point, 0)", self.out)
        self.params = OpDataMul(**common, input1_offset=-z1, input2_offset=-z2, output_offset=zo,
                                output_multiplier=multiplier, output_shift=shift,
                                output_activation_min=act_min, output_activation_max=act_max)
        if self.kind == "INT8":
            self.tabulate_int8()
        else:
            self.plan_int16(0, ((multiplier, shift),), -z1, -z2, zo, act_min, act_max)

    def int8_formula_plan(self):
        p = self.params
        return compiled_elementwise.mul_int8_plan(p.input1_offset, p.input2_offset, p.output_offset,
                                                  p.output_multiplier, p.output_shift, p.output_activation_min,
                                                  p.output_activation_max)

    def compiled_int16(self, x1, s1, x2, s2, dims, out) -> None:
        p = self.params
        mo, lo, ro = self._int16_plan
        compiled_elementwise.mul_int16(x1, s1, x2, s2, dims, p.input1_offset, p.input2_offset, p.output_offset,
                                       mo, lo, ro, p.output_activation_min, p.output_activation_max, out)

    def quantized(self, x1, x2):
        p = self.params
        product = fp.wrap_int32((np.asarray(x1, np.int64) + p.input1_offset)
                                * (np.asarray(x2, np.int64) + p.input2_offset))
        scaled = multiply_by_quantized_multiplier(self.numerics, product, p.output_multiplier, p.output_shift)
        return np.clip(fp.wrap_int32(scaled + p.output_offset), p.output_activation_min, p.output_activation_max)

    @ieee_float_arithmetic
    def eval(self, inputs):
        p = self.params
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        if p.kind == "FLOAT32":
            y = clamp_float((x1 * x2).astype(np.float32, copy=False), p.output_activation_min_f32,
                            p.output_activation_max_f32)
        elif p.kind == "INT32":
            y = np.clip(fp.wrap_int32(x1.astype(np.int64) * x2.astype(np.int64)), p.output_activation_min,
                        p.output_activation_max)
        elif self.tabulated:
            y = self.int8_values(x1, x2)
        else:
            y = self.int16_values(x1, x2)
        return [self.shapes.result(y, self.out.dtype)]

    def eval_reference(self, inputs):
        """int8/int16: MulElementwise as ops.reference writes it (no table, no compiled kernel);
        float32 and int32 have no fast path."""
        p = self.params
        if p.kind not in ("INT8", "INT16"):
            return type(self).eval(self, inputs)  # self.eval is this method in reference mode
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        y = reference_elementwise.mul(reference_arithmetic_params(self.numerics, p), x1, x2)
        return [self.shapes.result(y, self.out.dtype)]

    def describe(self):
        return params_as_dict(self.params)


# ------------------------------------------------------------------------------ MAXIMUM / MINIMUM

class _MaximumMinimum(BinaryKernel):
    """MAXIMUM / MINIMUM compare the raw stored values: TFLM has no Prepare and never looks at the
    quantization, so inputs with different scales are compared as plain integers."""

    take_first_if_greater = True

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx)
        kind = self.out.type_name
        if kind not in ("FLOAT32", "INT8", "INT16", "INT32", "INT64"):
            ctx.unsupported(f"output of type {kind} is not supported by TFLM's {self.op_name}", self.out)
        self.require_same_types(ctx, kind, f"TFLM's {self.op_name} reads every operand as the output type")
        self.params = OpDataMaximumMinimum(kind=kind, requires_broadcast=not self.shapes.flat)

    def describe(self):
        return params_as_dict(self.params)

    @ieee_float_arithmetic
    def eval(self, inputs):
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        # MaximumOp is `a > b ? a : b`, MinimumOp `a < b ? a : b` (which input wins a NaN tie matters).
        pick_first = x1 > x2 if self.take_first_if_greater else x1 < x2
        return [self.shapes.result(np.where(pick_first, x1, x2), self.out.dtype)]


@register("MAXIMUM")
class Maximum(_MaximumMinimum):
    supported_types = "int8, int16, int32, int64, float32"
    notes = "broadcasting"

    take_first_if_greater = True


@register("MINIMUM")
class Minimum(_MaximumMinimum):
    supported_types = "int8, int16, int32, int64, float32"
    notes = "broadcasting"

    take_first_if_greater = False


# ------------------------------------------------------------------------------ SQUARED_DIFFERENCE

@register("SQUARED_DIFFERENCE")
class SquaredDifference(BinaryKernel):
    """SQUARED_DIFFERENCE (squared_difference.cc): ADD-style input rescaling with L = 7 (int8) or
    0 (int16), the difference squared in int32, then one QuantizeMultiplier rescale to the output."""

    supported_types = "int8, int16, int32, float32"
    notes = "broadcasting"

    def prepare(self, ctx: PrepareContext):
        self.prepare_operands(ctx)
        ctx.check(self.in1.type_name == self.in2.type_name,
                  f"input types differ: {self.in1.type_name} and {self.in2.type_name} "
                  f"(TF_LITE_ENSURE_TYPES_EQ input1->type, input2->type)")
        self.kind = self.in1.type_name
        if self.kind not in ("FLOAT32", "INT32", "INT8", "INT16"):
            ctx.unsupported(f"type {self.kind} is not supported by TFLM's SQUARED_DIFFERENCE", self.in1)
        # Prepare sets output->type = input2->type; a model disagreeing would be read in the wrong type.
        self.require_same_types(ctx, self.kind, "TFLM's SQUARED_DIFFERENCE gives the output the input type")
        common = dict(kind=self.kind, requires_broadcast=not self.shapes.flat)
        if self.kind in ("FLOAT32", "INT32"):
            self.params = OpDataSquaredDifference(**common)
            return
        s1, z1 = scale_and_zero_point(self.in1)
        s2, z2 = scale_and_zero_point(self.in2)
        so, zo = scale_and_zero_point(self.out)
        if self.kind == "INT8":
            for z, role in ((z1, "input1"), (z2, "input2"), (zo, "output")):
                ctx.check(-128 <= z <= 127, f"{role} zero_point {z} is outside int8 (TF_LITE_ENSURE)")
            left_shift = 7
        else:
            for z, role in ((z1, "input1"), (z2, "input2"), (zo, "output")):
                ctx.check(z == 0, f"int16 SQUARED_DIFFERENCE requires {role} zero_point == 0, has {z} "
                                  f"(TF_LITE_ENSURE)")
            left_shift = 0
        twice_max = 2.0 * max(s1, s2)
        m1, shift1 = quantize_multiplier_smaller_than_one(ctx, s1 / twice_max if twice_max else 0.0, "input1")
        m2, shift2 = quantize_multiplier_smaller_than_one(ctx, s2 / twice_max if twice_max else 0.0, "input2")
        # (1 << 2L) * output_scale is a float32 product in C; a power of two times a float is exact.
        denominator = float(np.float32(np.float32(1 << (2 * left_shift)) * np.float32(so)))
        real_out = twice_max * twice_max / denominator if denominator else float("inf")
        m_out, shift_out = fp.quantize_multiplier(real_out)
        act_min, act_max = type_range(self.out)
        self.params = OpDataSquaredDifference(**common, left_shift=left_shift,
                                              input1_offset=-z1, input1_multiplier=m1, input1_shift=shift1,
                                              input2_offset=-z2, input2_multiplier=m2, input2_shift=shift2,
                                              output_offset=zo, output_multiplier=m_out, output_shift=shift_out,
                                              quantized_activation_min=act_min, quantized_activation_max=act_max)
        if self.kind == "INT8":
            self.tabulate_int8()

    def quantized(self, x1, x2):
        nm, p = self.numerics, self.params
        shifted1 = fp.wrap_int32((np.asarray(x1, np.int64) + p.input1_offset) << p.left_shift)
        shifted2 = fp.wrap_int32((np.asarray(x2, np.int64) + p.input2_offset) << p.left_shift)
        scaled1 = multiply_by_quantized_multiplier(nm, shifted1, p.input1_multiplier, p.input1_shift)
        scaled2 = multiply_by_quantized_multiplier(nm, shifted2, p.input2_multiplier, p.input2_shift)
        diff = fp.wrap_int32(scaled1 - scaled2)
        squared = fp.wrap_int32(diff * diff)
        out = fp.wrap_int32(multiply_by_quantized_multiplier(nm, squared, p.output_multiplier, p.output_shift)
                            + p.output_offset)
        return np.clip(out, p.quantized_activation_min, p.quantized_activation_max)

    @ieee_float_arithmetic
    def eval(self, inputs):
        x1, x2 = self.shapes.operands(inputs[0], inputs[1])
        if self.params.kind == "FLOAT32":
            d = (x1 - x2).astype(np.float32, copy=False)
            y = d * d
        elif self.params.kind == "INT32":
            d = fp.wrap_int32(x1.astype(np.int64) - x2.astype(np.int64))
            y = fp.wrap_int32(d * d)
        elif self.tabulated:
            y = self.int8_values(x1, x2)
        else:
            y = self.quantized(x1, x2)
        return [self.shapes.result(y, self.out.dtype)]

    def describe(self):
        return params_as_dict(self.params)
