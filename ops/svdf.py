"""SVDF: TFLM's kernel (svdf.cc, svdf_common.cc), a rank-``rank`` singular value decomposition
filter with a memory of ``memory_size`` steps.

One call, for each batch b:

    shift every filter's memory one step left (the oldest activation drops out);
    state[b, f, M-1] = Σ_c weights_feature[f, c] · x[b, c]          (feature matmul, F filters)
    scratch[b, f]    = Σ_m weights_time[f, m] · state[b, f, m]        (time matmul)
    y[b, u]          = bias[u] + Σ_{j<rank} scratch[b, u·rank + j]    (reduce over the rank)

then the fused activation (float) or a rescale to int8 (integer: TFLM applies no activation
there, only the int8 range). The state (input 4, [batch, memory_size · num_filters], laid out
filter by filter, memory innermost) is a variable tensor the kernel overwrites: eval returns its
new value after the output (``writes_inputs``).

Variants (Eval switches on the weights' types, Prepare checks the rest):
* float32 throughout (``"float"``);
* int8 input and feature weights, int16 time weights and state, int32 bias, int8 output
  (``"int8x16"``, what the converter writes);
* the same with int8 time weights and state (``"int8x8"``);
* int8 time weights with an int16 state (``"int8x8_in_int16_state"``): Prepare accepts the
  mixture and Eval, templated on the time weights' type, reads and writes the first
  batch · num_filters · memory_size *bytes* of the int16 state buffer as int8 values. Defined
  behaviour, and reproduced here on a byte view of the state. The reverse mixture (int16 time
  weights, int8 state) reads and writes twice the state buffer's bytes: undefined, refused as
  unsupported.

Integer arithmetic is int32 in C. The products and sums of the time matmul and the reduction
can exceed it when zero points and values are extreme (signed overflow, undefined in C); x86,
where the oracle runs, wraps, and the result modulo 2^32 does not depend on the order of the
additions, so microref sums exactly in int64 and wraps once (checked against the wheel on the
extreme inputs of tests/test_diff_svdf.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import fixedpoint as fp
from .c_semantics import float_function, float_sequential_sum_of_products
from .common import ACTIVATION_NAMES, real_multiplier
from .elementwise import ieee_float_arithmetic, multiply_by_quantized_multiplier, scale_and_zero_point
from .registry import OpKernel, PrepareContext, register

# Input positions (svdf_common.cc).
INPUT, WEIGHTS_FEATURE, WEIGHTS_TIME, BIAS, ACTIVATION_STATE = 0, 1, 2, 3, 4

# TfLiteFusedActivation values ConvertActivation can produce (any other schema value is NONE).
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6, ACT_TANH, ACT_SIGN_BIT = 0, 1, 2, 3, 4, 5

# (weights_time type, activation state type) of the int8 input -> variant, and the type T of
# EvalIntegerSvdfReference<T> (the time weights').
INTEGER_VARIANTS = {
    ("INT16", "INT16"): "int8x16",
    ("INT8", "INT8"): "int8x8",
    ("INT8", "INT16"): "int8x8_in_int16_state",
}
STATE_RANGE = {"INT16": (-32768, 32767), "INT8": (-128, 127)}


@dataclass(frozen=True)
class OpDataSvdf:
    """TFLM's OpDataSvdf plus the sizes and options Eval reads from the tensors and params."""

    variant: str  # "float", "int8x16", "int8x8" or "int8x8_in_int16_state" (see the module doc)
    rank: int  # params->rank
    batch_size: int  # input dims[0]
    input_size: int  # input dims[1]
    num_filters: int  # weights_feature dims[0]
    num_units: int  # num_filters / rank
    memory_size: int  # weights_time dims[1]
    activation: int  # TfLiteFusedActivation; applied on the float path only
    # Integer path only (0 on the float path):
    effective_scale_1_a: int  # input · feature weights / state: multiplier of the feature matmul
    effective_scale_1_b: int  # ... and its shift
    effective_scale_2_a: int  # state · time weights / output: multiplier of the rescale
    effective_scale_2_b: int  # ... and its shift
    input_zero_point: int
    output_zero_point: int
    activation_state_zero_point: int  # subtracted in the time matmul, added to every new state value


def c_remainder(a: int, b: int) -> int:
    """a % b as C computes it for ints (the sign of the dividend)."""
    return int(math.fmod(a, b))


def c_quotient(a: int, b: int) -> int:
    """a / b as C computes it for ints (truncated toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def activation_val_float(activation: int, a: np.ndarray) -> np.ndarray:
    """tflite::ops::micro::ActivationValFloat, element by element on float32 values.

    TfLiteMax/TfLiteMin are std::fmax/std::fmin in the wheel's build: a NaN argument loses, so
    RELU maps NaN to 0, RELU_N1_TO_1 to 1 and RELU6 to 6 (fmin(NaN, hi) is hi); TANH is libm's
    tanhf; SIGN_BIT is std::signbit as 0.0 or 1.0."""
    f32 = np.float32
    a = np.asarray(a, f32)

    def fmax(lo, v):
        return np.where(np.isnan(v) | (v < lo), lo, v).astype(f32)

    def fmin(v, hi):
        return np.where(np.isnan(v) | (v > hi), hi, v).astype(f32)

    if activation == ACT_NONE:
        return a
    if activation == ACT_RELU:
        return fmax(f32(0.0), a)
    if activation == ACT_RELU_N1_TO_1:
        return fmax(f32(-1.0), fmin(a, f32(1.0)))
    if activation == ACT_RELU6:
        return fmax(f32(0.0), fmin(a, f32(6.0)))
    if activation == ACT_TANH:
        return float_function("tanh")(a)
    if activation == ACT_SIGN_BIT:
        return np.signbit(a).astype(f32)
    raise AssertionError(f"activation {activation} is not one ConvertActivation produces")


@register("SVDF")
class Svdf(OpKernel):
    supported_types = ("int8 input and feature weights with int16 time weights and state (the converter's), int8 "
                       "time weights and state, int8 time weights over an int16 state; float32")
    notes = ("any rank, memory size and batch; the activation state persists across `run()` calls until `reset()`. "
             "The integer path applies no fused activation (as TFLM); a missing bias and rank 0 are refused (TFLM "
             "crashes on them); int16 time weights with an int8 state are refused (TFLM overruns the state buffer)")

    writes_inputs = (ACTIVATION_STATE,)

    def prepare(self, ctx: PrepareContext):
        # PrepareSvdf. The tensors first (AllocateTempInputTensor returns nullptr for an omitted one).
        ctx.check(len(ctx.op.inputs) == 5, f"takes 5 inputs, has {len(ctx.op.inputs)} "
                                           f"(TF_LITE_ENSURE_EQ node->inputs->size 5)")
        x = ctx.require_input(INPUT, "input")
        wf = ctx.require_input(WEIGHTS_FEATURE, "weights_feature")
        wt = ctx.require_input(WEIGHTS_TIME, "weights_time")
        bias = ctx.input(BIAS)
        state = ctx.require_input(ACTIVATION_STATE, "activation_state")
        ctx.check(len(ctx.op.outputs) == 1, f"takes 1 output, has {len(ctx.op.outputs)}")
        out = ctx.output(0)

        rank = int(ctx.options.get("rank", 0))
        activation = int(ctx.options.get("fused_activation_function", 0))
        if activation not in ACTIVATION_NAMES:
            activation = ACT_NONE  # ConvertActivation's default
        # Prepare reads dims[1] of the input and dims[0] of the feature weights before checking ranks.
        ctx.check(len(x.shape) == 2, f"input must have rank 2 [batch, input_size], has shape {list(x.shape)}", x)
        ctx.check(len(wf.shape) >= 1, "weights_feature has rank 0", wf)
        ctx.check(len(wt.shape) >= 2, f"weights_time must have rank 2, has shape {list(wt.shape)}", wt)
        ctx.check(rank != 0, "rank is 0: TFLM computes num_filters % rank (a division by zero; the "
                             "process dies)")
        batch_size, input_size = int(x.shape[0]), int(x.shape[1])
        num_filters = int(wf.shape[0])
        ctx.check(c_remainder(num_filters, rank) == 0,
                  f"num_filters {num_filters} is not a multiple of rank {rank} (TF_LITE_ENSURE_EQ "
                  f"num_filters % rank, 0)", wf)
        num_units = c_quotient(num_filters, rank)
        memory_size = int(wt.shape[1])
        ctx.check(x.type_name in ("FLOAT32", "INT8"), f"input type {x.type_name} is not float32 or int8", x)
        ctx.check(len(out.shape) == 2 and int(out.shape[0]) == batch_size and int(out.shape[1]) == num_units,
                  f"output shape {list(out.shape)} is not [batch {batch_size}, num_units {num_units}]", out)
        ctx.check(len(wf.shape) == 2 and int(wf.shape[1]) == input_size,
                  f"weights_feature shape {list(wf.shape)} is not [num_filters, input_size {input_size}]", wf)
        ctx.check(len(wt.shape) == 2 and int(wt.shape[0]) == num_filters,
                  f"weights_time shape {list(wt.shape)} is not [num_filters {num_filters}, memory_size]", wt)
        if bias is not None:
            if len(bias.shape) == 0:
                ctx.unsupported("bias of rank 0: TFLM compares its dims[0] with num_units, past the "
                                "shape (undefined)", bias)
            ctx.check(int(bias.shape[0]) == num_units,
                      f"bias dims[0] {bias.shape[0]} is not num_units {num_units}", bias)
        ctx.check(len(state.shape) == 2 and int(state.shape[0]) == batch_size
                  and int(state.shape[1]) == memory_size * num_filters,
                  f"activation state shape {list(state.shape)} is not [batch {batch_size}, memory_size "
                  f"{memory_size} x num_filters {num_filters}]", state)
        ctx.check(state.is_variable, "the activation state (input 4) must be a variable tensor", state)
        if batch_size * num_filters * memory_size == 0:
            # The shift loop runs from state + 1 until it meets state + 0: past the buffer.
            ctx.unsupported(f"an empty activation state (batch {batch_size}, filters {num_filters}, memory "
                            f"{memory_size}): TFLM's state shift runs past the buffer (undefined)", state)
        if rank < 0:
            # Only num_filters 0 gets here (the output's dims[1] equals num_filters / rank).
            ctx.unsupported(f"negative rank {rank} with no filters", wf)
        if bias is None:
            # The int8 Prepare reads bias->params.scale and the float Eval bias->data: both through
            # a null pointer (TODO(#1751) in TFLM); the process dies.
            ctx.fail("the bias (input 3) is missing: TFLM dereferences it anyway (the process dies)")

        zeros = dict(effective_scale_1_a=0, effective_scale_1_b=0, effective_scale_2_a=0, effective_scale_2_b=0,
                     input_zero_point=0, output_zero_point=0, activation_state_zero_point=0)
        sizes = dict(rank=rank, batch_size=batch_size, input_size=input_size, num_filters=num_filters,
                     num_units=num_units, memory_size=memory_size, activation=activation)
        if x.type_name == "INT8":
            ctx.check(wf.type_name == "INT8", f"weights_feature type {wf.type_name} is not int8", wf)
            ctx.check(wt.type_name in ("INT16", "INT8"), f"weights_time type {wt.type_name} is not int16 or int8", wt)
            ctx.check(state.type_name in ("INT16", "INT8"),
                      f"activation state type {state.type_name} is not int16 or int8", state)
            ctx.check(bias.type_name == "INT32", f"bias type {bias.type_name} is not int32", bias)
            ctx.check(out.type_name == "INT8", f"output type {out.type_name} is not int8", out)
            variant = INTEGER_VARIANTS.get((wt.type_name, state.type_name))
            if variant is None:
                ctx.unsupported("int16 time weights with an int8 activation state: TFLM's Eval reads and "
                                "writes the state as int16, twice its buffer (undefined)", state)
            s_in, zp_in = scale_and_zero_point(x)
            s_wf, _ = scale_and_zero_point(wf)
            s_wt, _ = scale_and_zero_point(wt)
            s_state, zp_state = scale_and_zero_point(state)
            s_out, zp_out = scale_and_zero_point(out)
            s_bias, _ = scale_and_zero_point(bias)
            # The wheel computes both ratios in double from the float32 scales (the newer TFLM source
            # multiplies and divides in float, then widens: Numerics(scale_precision="float32")).
            # Measured: test_diff_svdf.py::test_effective_scales_are_double_products_of_the_scales.
            effective_1 = real_multiplier(self.numerics, s_in, s_wf, divisor=s_state)
            effective_2 = real_multiplier(self.numerics, s_state, s_wt, divisor=s_out)
            # Also in double in the wheel (test_bias_scale_check_uses_the_double_product).
            product = real_multiplier(self.numerics, s_state, s_wt, divisor=1.0)
            ctx.check(abs(s_bias - product) < 1e-5,
                      f"bias scale {s_bias:g} is not activation state scale x time weights scale {product:g} "
                      f"(TF_LITE_ENSURE |difference| < 1e-5)", bias)
            multipliers = []
            for what, m in (("input x feature weights / state", effective_1),
                            ("state x time weights / output", effective_2)):
                try:
                    multipliers.append(fp.quantize_multiplier(m))
                except ValueError:
                    ctx.unsupported(f"the {what} scale {m} is not finite: TFLM's QuantizeMultiplier of it "
                                    f"is undefined")
            (m1, s1), (m2, s2) = multipliers
            self.params = OpDataSvdf(variant=variant, **sizes, effective_scale_1_a=m1, effective_scale_1_b=s1,
                                     effective_scale_2_a=m2, effective_scale_2_b=s2, input_zero_point=zp_in,
                                     output_zero_point=zp_out, activation_state_zero_point=zp_state)
            # scratch_tensor (int32 per filter) then scratch_output_tensor (int32 per unit).
            self.scratch_bytes.extend([batch_size * num_filters * 4, batch_size * num_units * 4])
        else:
            for t, what in ((wf, "weights_feature"), (wt, "weights_time"), (state, "activation state"),
                            (bias, "bias"), (out, "output")):
                ctx.check(t.type_name == "FLOAT32", f"{what} type {t.type_name} is not float32 (the input is)", t)
            self.params = OpDataSvdf(variant="float", **sizes, **zeros)
            self.scratch_bytes.append(batch_size * num_filters * 4)
        self.state_tensor = state
        self.output_tensor = out

    def describe(self) -> dict:
        return asdict(self.params)

    # ---------------------------------------------------------------- Eval
    def eval(self, inputs):
        x, wf, wt, bias, state = inputs
        n = max(a.shape[0] for a in inputs)
        p = self.params
        b, f, m = p.batch_size, p.num_filters, p.memory_size
        # The state as (N, B, F, M) values of the type Eval reads it as.
        raw = np.ascontiguousarray(np.broadcast_to(state, (n,) + state.shape[1:]))
        if p.variant == "int8x8_in_int16_state":
            values = raw.reshape(n, -1).view(np.int8)[:, : b * f * m]
        else:
            values = raw.reshape(n, -1)
        values = values.reshape(n, b, f, m)
        x = np.broadcast_to(x, (n,) + x.shape[1:])
        wf, wt, bias = wf[0] if wf.shape[0] == 1 else wf, wt[0] if wt.shape[0] == 1 else wt, bias
        if p.variant == "float":
            y, new_values = self._eval_float(x, wf, wt, bias, values)
        else:
            y, new_values = self._eval_integer(x, wf, wt, bias, values)
        if p.variant == "int8x8_in_int16_state":
            new_raw = raw.reshape(n, -1).copy()
            new_raw.view(np.int8)[:, : b * f * m] = new_values.reshape(n, -1)
            new_state = new_raw
        else:
            new_state = new_values.astype(self.state_tensor.dtype)
        return [y.reshape((n,) + tuple(self.output_tensor.shape)).astype(self.output_tensor.dtype, copy=False),
                new_state.reshape((n,) + tuple(self.state_tensor.shape))]

    @staticmethod
    def _shifted(values: np.ndarray, newest: np.ndarray) -> np.ndarray:
        """'Left shift the activation_state' by one element over the whole buffer, then the feature
        matmul writes every filter's last memory slot: per filter, the memory moves one step older
        and ``newest`` (N, B, F) becomes its last entry."""
        return np.concatenate([values[..., 1:], newest[..., None].astype(values.dtype)], axis=-1)

    def _eval_integer(self, x, wf, wt, bias, values):
        p = self.params
        n = x.shape[0]
        t_lo, t_hi = (-128, 127) if values.dtype == np.int8 else (-32768, 32767)
        # Feature matmul: dot_prod = Σ_c w[r, c] · (x[b, c] - input_zero_point), int32.
        w = np.asarray(wf, np.int64)
        xi = x.astype(np.int64) - p.input_zero_point
        if w.ndim == 2:
            dot = xi @ w.T  # (N, B, F)
        else:
            dot = np.einsum("nbc,nfc->nbf", xi, w)
        dot = multiply_by_quantized_multiplier(self.numerics, fp.wrap_int32(dot), p.effective_scale_1_a,
                                               p.effective_scale_1_b)
        dot = np.minimum(np.maximum(dot, t_lo), t_hi)
        # *result_in_batch = zero_point + dot_prod, stored as T (wraps when the zero point pushes it out).
        newest = dot + p.activation_state_zero_point
        newest = (newest.astype(np.int64) - t_lo) % (t_hi - t_lo + 1) + t_lo
        values = self._shifted(values, newest)
        # Time matmul: scratch[b, f] = Σ_m wt[f, m] · (state[b, f, m] - zero_point), int32 (wrapping).
        diff = values.astype(np.int64) - p.activation_state_zero_point
        wt64 = np.asarray(wt, np.int64)
        scratch = np.einsum("nbfm,fm->nbf", diff, wt64) if wt64.ndim == 2 else np.einsum("nbfm,nfm->nbf", diff, wt64)
        # Bias, then the sum over the rank of each unit's filters.
        bias64 = np.asarray(bias, np.int64).reshape(bias.shape[0], -1)[:, : p.num_units]
        acc = bias64[:, None, :] + scratch.reshape(n, p.batch_size, p.num_units, p.rank).sum(axis=-1)
        # Rescale to int8 (no activation on the integer path).
        y = multiply_by_quantized_multiplier(self.numerics, fp.wrap_int32(acc), p.effective_scale_2_a,
                                             p.effective_scale_2_b)
        y = np.minimum(np.maximum(fp.wrap_int32(y + p.output_zero_point), -128), 127)
        return y.astype(np.int8), values

    @ieee_float_arithmetic
    def _eval_float(self, x, wf, wt, bias, values):
        p = self.params
        n = x.shape[0]
        f32 = np.float32
        w = np.asarray(wf, f32)
        rows = x.reshape(n * p.batch_size, p.input_size).astype(f32, copy=False)
        if w.ndim == 2:
            dot = float_sequential_sum_of_products(rows, w).reshape(n, p.batch_size, p.num_filters)
        else:
            dot = np.stack([float_sequential_sum_of_products(x[i].astype(f32), w[i]) for i in range(n)])
        values = self._shifted(values, dot)
        # scratch[b, f] = Σ_m wt[f, m] · state[b, f, m], from 0.0f in order m = 0, 1, ...
        wt32 = np.asarray(wt, f32)
        if wt32.ndim == 3:  # non-constant time weights, one set per sample
            wt32 = wt32[:, None]
        scratch = np.zeros(values.shape[:-1], f32)
        for j in range(p.memory_size):
            scratch = (scratch + wt32[..., j] * values[..., j]).astype(f32)
        # output = bias, then += each of the unit's rank filters in order.
        per_unit = scratch.reshape(n, p.batch_size, p.num_units, p.rank)
        bias32 = np.asarray(bias, f32).reshape(bias.shape[0], -1)[:, : p.num_units]
        y = np.broadcast_to(bias32[:, None, :], (n, p.batch_size, p.num_units)).astype(f32)
        for j in range(p.rank):
            y = (y + per_unit[..., j]).astype(f32)
        return activation_val_float(p.activation, y), values
