"""BATCH_MATMUL: TFLM's batch_matmul.cc / batch_matmul_common.cc and reference/batch_matmul.h.

``out[..., a, c] = sum_k LHS[..., a, k] · RHS[..., k, c]`` with LHS read transposed when adj_x
and RHS when adj_y, and the batch dimensions (all but the last two, right-aligned to the larger
rank, at most 5) broadcast where one side has 1. TFLM transposes operands into persistent
buffers (the RHS when not adj_y, once if it is constant; the LHS when adj_x), swaps the roles of
LHS and RHS for its column-major GEMM and flattens batch dimensions where it can; none of that
changes a value, and none of it uses the arena's scratch space.

float32: the accumulator starts at 0.0f and adds the products for k = 0, 1, ... in float32.
int8: ``(rhs - z_rhs)·(lhs - z_lhs)`` summed in int32 (wrapping), MultiplyByQuantizedMultiplier,
plus the output zero point, clamped to int8. int16 (all zero points 0): summed in int64, and the
int64 MultiplyByQuantizedMultiplier (a 15-bit multiplier, ties rounded up).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import fixedpoint as fp
from .common import TYPE_RANGES
from .registry import OpKernel, PrepareContext, register

TYPES = ("FLOAT32", "INT8", "INT16")
# A float64 sum of integers is exact while every partial sum stays below 2^53 in magnitude.
FLOAT64_EXACT = 1 << 53


@dataclass(frozen=True)
class QuantizationOpDataBatchMatmul:
    output_multiplier: int  # QuantizeMultiplier(double(s_lhs) * double(s_rhs) / double(s_out))
    output_shift: int
    output_activation_min: int  # no fused activation: the output type's range
    output_activation_max: int
    lhs_zero_point: int
    rhs_zero_point: int
    output_zero_point: int


@dataclass(frozen=True)
class OpDataBatchMatmul:
    kind: str  # FLOAT32, INT8 or INT16 (both inputs and the output)
    adj_x: bool  # LHS is [..., K, A] (read transposed)
    adj_y: bool  # RHS is [..., C, K] (read transposed)
    lhs_shape: tuple[int, ...]  # extended to the output rank with leading 1s
    rhs_shape: tuple[int, ...]
    output_shape: tuple[int, ...]  # broadcast batch dims + (A, C), as ReshapeOutputTensor writes it
    accum_depth: int  # K
    accumulator_bound: int  # max |sum of K centred products| (integer kinds; 0 for float32)
    exact_float64_product: bool  # the accumulation may run as one float64 matmul (see accumulate)
    quantization: QuantizationOpDataBatchMatmul | None


@register("BATCH_MATMUL")
class BatchMatMul(OpKernel):
    supported_types = "int8, int16 (zero points 0), float32"
    notes = "ranks 2-5, broadcast batch dims, adj_x/adj_y, constant operands"

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(2, 1)
        lhs, rhs = ctx.require_input(0, "lhs"), ctx.require_input(1, "rhs")
        out = ctx.output(0)
        for t, role in ((lhs, "lhs"), (rhs, "rhs")):
            ctx.check(t.type_name in TYPES, f"{role} type {t.type_name} is not FLOAT32, INT8 or INT16", t)
        ctx.check(lhs.type_name == rhs.type_name,
                  f"lhs type {lhs.type_name} differs from rhs type {rhs.type_name} (no hybrid BATCH_MATMUL)")
        ctx.check(lhs.type_name == out.type_name, f"output type {out.type_name} differs from lhs type {lhs.type_name}")
        lhs_rank, rhs_rank = len(lhs.shape), len(rhs.shape)
        for t, role, rank in ((lhs, "lhs", lhs_rank), (rhs, "rhs", rhs_rank)):
            ctx.check(2 <= rank <= 5, f"{role} rank {rank} is not between 2 and 5", t)
        kind = lhs.type_name
        quantization = None
        if kind != "FLOAT32":
            quantization = self._prepare_quantization(ctx, kind, lhs, rhs, out)
        rank = max(lhs_rank, rhs_rank)
        ext_lhs = (1,) * (rank - lhs_rank) + tuple(int(d) for d in lhs.shape)
        ext_rhs = (1,) * (rank - rhs_rank) + tuple(int(d) for d in rhs.shape)
        batch = []
        for i in range(rank - 2):
            lhs_dim, rhs_dim = ext_lhs[i], ext_rhs[i]
            if lhs_dim != rhs_dim and lhs_dim != 1:
                ctx.check(rhs_dim == 1, f"batch dimension {i}: lhs {lhs_dim} and rhs {rhs_dim} do not broadcast")
            batch.append(rhs_dim if lhs_dim == 1 else lhs_dim)
        adj_x, adj_y = bool(ctx.options.get("adj_x", False)), bool(ctx.options.get("adj_y", False))
        accum_lhs = ext_lhs[-2] if adj_x else ext_lhs[-1]
        accum_rhs = ext_rhs[-1] if adj_y else ext_rhs[-2]
        ctx.check(accum_lhs == accum_rhs,
                  f"lhs depth {accum_lhs} differs from rhs depth {accum_rhs} (adj_x={adj_x}, adj_y={adj_y})")
        rows = ext_lhs[-1] if adj_x else ext_lhs[-2]
        cols = ext_rhs[-2] if adj_y else ext_rhs[-1]
        output_shape = tuple(batch) + (rows, cols)
        # ReshapeOutputTensor: the rank may not grow, the element count may not change.
        ctx.check(rank <= len(out.shape), f"output rank {len(out.shape)} is below the result rank {rank}", out)
        ctx.check(math.prod(output_shape) == out.size,
                  f"output has {out.size} elements, the product {list(output_shape)} has {math.prod(output_shape)} "
                  "(TFLM cannot resize tensors)", out)
        if tuple(out.shape) != output_shape:
            ctx.unsupported(f"output shape {list(out.shape)} differs from the {list(output_shape)} that TFLM's "
                            "Prepare writes into the output tensor", out)
        bound = 0
        if quantization is not None:
            lo, hi = TYPE_RANGES[kind]
            lhs_max = max(abs(lo - quantization.lhs_zero_point), abs(hi - quantization.lhs_zero_point))
            rhs_max = max(abs(lo - quantization.rhs_zero_point), abs(hi - quantization.rhs_zero_point))
            bound = accum_lhs * lhs_max * rhs_max
        self.params = OpDataBatchMatmul(kind, adj_x, adj_y, ext_lhs, ext_rhs, output_shape, accum_lhs, bound,
                                        quantization is not None and bound < FLOAT64_EXACT, quantization)
        self.out = out

    def _prepare_quantization(self, ctx, kind, lhs, rhs, out) -> QuantizationOpDataBatchMatmul:
        (s_lhs, z_lhs), (s_rhs, z_rhs), (s_out, z_out) = (
            (float(t.quantization.scale), int(t.quantization.zero_point)) if t.quantization is not None else (0.0, 0)
            for t in (lhs, rhs, out))
        # GetQuantizedConvolutionMultipler (no bias), in double as the wheel computes it.
        product = np.float64(s_lhs) * np.float64(s_rhs)
        ctx.check(bool(product >= 0), f"lhs scale * rhs scale = {float(product)!r} is negative "
                                      "(TF_LITE_ENSURE input_product_scale >= 0)")
        with np.errstate(all="ignore"):
            real = float(product / np.float64(s_out))
        ctx.check(math.isfinite(real), f"the multiplier {real!r} (output scale {s_out!r}) is not finite; "
                                       "QuantizeMultiplier has no defined result for it", out)
        multiplier, shift = fp.quantize_multiplier(real)
        if kind == "INT16":
            for z, role in ((z_lhs, "lhs"), (z_rhs, "rhs"), (z_out, "output")):
                ctx.check(z == 0, f"int16 BATCH_MATMUL needs a {role} zero point of 0, has {z}")
        lo, hi = TYPE_RANGES[kind]
        return QuantizationOpDataBatchMatmul(multiplier, shift, lo, hi, z_lhs, z_rhs, z_out)

    # ------------------------------------------------------------------ eval

    def operands(self, inputs):
        """The two inputs as (N, ..., A, K) and (N, ..., K, C) views (batch dims broadcastable)."""
        p = self.params
        lhs = inputs[0].reshape((inputs[0].shape[0],) + p.lhs_shape)
        rhs = inputs[1].reshape((inputs[1].shape[0],) + p.rhs_shape)
        if p.adj_x:
            lhs = np.swapaxes(lhs, -1, -2)
        if p.adj_y:
            rhs = np.swapaxes(rhs, -1, -2)
        return lhs, rhs

    def eval(self, inputs):
        p = self.params
        lhs, rhs = self.operands(inputs)
        n = max(lhs.shape[0], rhs.shape[0])
        if p.kind == "FLOAT32":
            with np.errstate(all="ignore"):
                y = float_reference_accumulate(lhs.astype(np.float32, copy=False), rhs.astype(np.float32, copy=False))
            return [y.reshape((n,) + p.output_shape)]
        q = p.quantization
        centred_lhs = lhs.astype(np.int64) - q.lhs_zero_point
        centred_rhs = rhs.astype(np.int64) - q.rhs_zero_point
        if p.exact_float64_product:
            acc = integer_fast_accumulate(centred_lhs, centred_rhs)
        else:
            acc = integer_reference_accumulate(centred_lhs, centred_rhs)
        if p.kind == "INT8":
            scaled = fp.multiply_by_quantized_multiplier(fp.wrap_int32(acc), q.output_multiplier, q.output_shift)
        else:
            scaled = fp.multiply_by_quantized_multiplier_int64(acc, q.output_multiplier, q.output_shift)
        y = np.minimum(np.maximum(fp.wrap_int32(scaled + q.output_zero_point), q.output_activation_min),
                       q.output_activation_max)
        return [y.astype(self.out.dtype).reshape((n,) + p.output_shape)]

    def describe(self):
        return asdict(self.params)


def float_reference_accumulate(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``total = 0.f; for k: total += lhs[..., a, k] * rhs[..., k, c]`` in float32, k in order,
    for every (batch, a, c) at once (a BLAS sgemm would sum in another order)."""
    shape = np.broadcast_shapes(lhs.shape[:-2], rhs.shape[:-2]) + (lhs.shape[-2], rhs.shape[-1])
    total = np.zeros(shape, np.float32)
    for k in range(lhs.shape[-1]):
        total = total + lhs[..., :, k:k + 1] * rhs[..., k:k + 1, :]
    return total


def integer_reference_accumulate(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The plain reference: the sum over k of the int64 products, k in order, exact in int64 (it
    wraps modulo 2^64 only where the C int32 accumulator would have wrapped long before; every
    use keeps the sum modulo 2^32 or is exact)."""
    shape = np.broadcast_shapes(lhs.shape[:-2], rhs.shape[:-2]) + (lhs.shape[-2], rhs.shape[-1])
    total = np.zeros(shape, np.int64)
    with np.errstate(over="ignore"):
        for k in range(lhs.shape[-1]):
            total = total + lhs[..., :, k:k + 1] * rhs[..., k:k + 1, :]
    return total


def integer_fast_accumulate(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """integer_reference_accumulate as one float64 matmul, when prepare proved it exact.

    Proof: every operand is an integer, |lhs| <= L and |rhs| <= R (the centred type ranges), so each
    product is an integer of magnitude <= L·R, and every partial sum a BLAS forms, in whatever order
    or blocking, is a sum of at most K such products: an integer of magnitude <= K·L·R. Prepare
    enables this path only when K·L·R < 2^53, where float64 represents every such integer exactly;
    so each multiplication and addition is exact and the float64 result is the exact integer sum,
    the value integer_reference_accumulate computes (pinned by a property test). The C int32
    accumulator of the int8 path wraps; the exact sum wrapped to int32 is the same value, since
    wrapping commutes with addition.
    """
    return np.matmul(lhs.astype(np.float64), rhs.astype(np.float64)).astype(np.int64)
