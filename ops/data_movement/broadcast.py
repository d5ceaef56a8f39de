"""BROADCAST_ARGS, BROADCAST_TO, FILL and SHAPE (TFLM's broadcast_args.cc, broadcast_to.cc, fill.cc,
shape.cc, with their reference_ops headers): shapes computed, and values broadcast to a shape.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..parse_checks import check_parsed_options
from ..registry import OpKernel, expect_types, register
from ..shape import ANY_COPYABLE, require_constant
from .common import (
    Refusal,
    at_load,
    at_run,
    constant_sample,
    parameter_groups,
    wrap_int32,
)

# BroadcastTo copies TfLiteTypeGetSize(type) bytes per element; int4 has no byte size (0).
BROADCAST_TO_TYPES = tuple(t for t in ANY_COPYABLE if t != "INT4")
BROADCAST_TO_MAX_RANK = 5  # kMaxDims
FILL_VALUE_TYPES = ("FLOAT32", "INT32", "INT8")  # FillEval switch
FILL_DIMS_TYPES = ("INT8", "INT16", "INT32", "INT64")  # EnsureEq switch


# ---------------------------------------------------------------------------- BROADCAST_ARGS

def broadcast_args(shape1: np.ndarray, shape2: np.ndarray, out_len: int) -> np.ndarray:
    """reference_ops::BroadcastArgs: shapes aligned at the end, missing dims read as 1; the values
    pass through C ``int`` (an int64 value keeps its low 32 bits). Mismatches abort (CHECK_EQ)."""
    s1, s2 = wrap_int32(shape1.reshape(-1)), wrap_int32(shape2.reshape(-1))
    out = np.empty(out_len, dtype=np.int64)
    for i in range(out_len):  # i counts from the end
        a = int(s1[s1.size - 1 - i]) if i < s1.size else 1
        b = int(s2[s2.size - 1 - i]) if i < s2.size else 1
        if a == 1:
            out[out_len - 1 - i] = b
        elif b == 1:
            out[out_len - 1 - i] = a
        else:
            if a != b:
                raise Refusal(f"shapes {s1.tolist()} and {s2.tolist()} do not broadcast ({a} vs {b}); "
                              "TFLM aborts (TFLITE_CHECK_EQ)", undefined=False)
            out[out_len - 1 - i] = a
    return out


@dataclass(frozen=True)
class BroadcastArgsParams:
    output: np.ndarray | None  # the result when both shapes are constant


@register("BROADCAST_ARGS")
class BroadcastArgs(OpKernel):
    """broadcast_args.cc BroadcastArgsPrepare; reference/broadcast_args.h."""

    supported_types = "int32, int64"
    notes = ("values pass through C `int`; shapes that do not broadcast abort TFLM: refused at load if constant, "
             "an `InvokeError` at run if computed")

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        s1, s2 = ctx.require_input(0, "shape1"), ctx.require_input(1, "shape2")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(s1.type_name in ("INT32", "INT64"), f"shape1 type {s1.type_name} is not INT32 or INT64", s1)
        ctx.check(s2.type_name == s1.type_name, f"shape2 type {s2.type_name} differs from shape1 {s1.type_name}", s2)
        ctx.check(out.type_name == s1.type_name, f"output type {out.type_name} differs from shape1 {s1.type_name}", out)
        for t, role in ((s1, "shape1"), (s2, "shape2"), (out, "output")):
            ctx.check(len(t.shape) == 1, f"{role} has rank {len(t.shape)}, must be 1", t)
        c1, c2 = constant_sample(s1), constant_sample(s2)
        value = None
        if c1 is not None and c2 is not None:
            value = at_load(ctx, None, broadcast_args, c1, c2, out.size).astype(out.dtype)
        self.params = BroadcastArgsParams(value)

    def eval(self, inputs):
        if self.params.output is not None:
            return [self.params.output[None]]
        s1, s2 = inputs
        n = max(s1.shape[0], s2.shape[0])
        y = np.empty((n, self.out_tensor.size), dtype=self.out_tensor.dtype)
        for samples, (a, b) in parameter_groups(n, [s1, s2]):
            y[samples] = at_run(self.location, broadcast_args, a, b, self.out_tensor.size)
        return [y]

    def describe(self):
        return {"output": None if self.params.output is None else self.params.output.tolist()}


# ---------------------------------------------------------------------------- BROADCAST_TO

@dataclass(frozen=True)
class BroadcastToParams:
    shape: tuple  # the (constant) shape input, as TFLM reads it (int64 values cast to int32)


@register("BROADCAST_TO")
class BroadcastTo(OpKernel):
    """broadcast_to.cc BroadcastToPrepare / ValidateOutputTensor; reference/broadcast_to.h
    (BroadcastTo<5>, numpy's broadcast once the shapes are validated)."""

    supported_types = "every type with a byte size (not int4)"
    notes = "constant int32/int64 shape"

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        x, shape_t = ctx.require_input(0, "input"), ctx.require_input(1, "shape")
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(len(x.shape) <= BROADCAST_TO_MAX_RANK, "BroadcastTo only supports 1-5D tensor.", x)
        ctx.check(shape_t.type_name in ("INT32", "INT64"), f"shape type {shape_t.type_name} is not INT32 or INT64",
                  shape_t)
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        ctx.check(x.type_name != "STRING", "string input")
        require_constant(ctx, shape_t, "shape")
        ctx.check(len(shape_t.shape) == 1, f"shape has rank {len(shape_t.shape)}, must be 1", shape_t)
        in_rank, out_rank = len(x.shape), len(out.shape)
        ctx.check(out_rank == shape_t.shape[0], "Output must match with the expected shape dimension.", out)
        ctx.check(in_rank <= out_rank, "Output shape must be broadcastable from input shape.", out)
        ctx.check(out_rank <= BROADCAST_TO_MAX_RANK, "BroadcastTo only supports 1-5D tensor.", out)
        values = wrap_int32(np.asarray(shape_t.data).reshape(-1))
        extend = out_rank - in_rank
        for i, d in enumerate(x.shape):
            ctx.check(d == 1 or d == values[extend + i], "Output shape must be broadcastable from input shape.", x)
        for i, d in enumerate(out.shape):
            ctx.check(d == values[i], f"output dim {i} is {d}, the shape input says {int(values[i])}", out)
        expect_types(ctx, x, BROADCAST_TO_TYPES, "input")
        self.params = BroadcastToParams(tuple(int(v) for v in values))

    def eval(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        shape = (n,) + tuple(self.out_tensor.shape)
        # Leading 1s for the missing dims, then numpy's broadcast (what BroadcastImpl's copies do).
        x = x.reshape((n,) + (1,) * (len(shape) - x.ndim) + x.shape[1:])
        return [np.ascontiguousarray(np.broadcast_to(x, shape))]

    def describe(self):
        return asdict(self.params)


# ---------------------------------------------------------------------------- FILL

@register("FILL")
class Fill(OpKernel):
    """fill.cc FillPrepare (EnsureEq) / FillEval; reference/fill.h."""

    supported_types = "int8, int32, float32 (int8/16/32/64 dims)"
    notes = "constant dims; the value is copied raw (no requantization)"

    def prepare(self, ctx):
        dims = ctx.require_input(0, "dims")
        value = ctx.require_input(1, "value")
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(len(value.shape) == 0, f"NumDimensions(value) is {len(value.shape)}, must be 0", value)
        ctx.check(value.type_name == out.type_name,
                  f"value type {value.type_name} differs from output type {out.type_name}", value)
        require_constant(ctx, dims, "dims")
        ctx.check(len(dims.shape) == 1, f"NumDimensions(dims) is {len(dims.shape)}, must be 1", dims)
        ctx.check(dims.shape[0] == len(out.shape),
                  f"dims has {dims.shape[0]} values for a rank-{len(out.shape)} output", dims)
        ctx.check(dims.type_name in FILL_DIMS_TYPES, f"cannot compare int array to tensor of type {dims.type_name}",
                  dims)
        values = [int(v) for v in np.asarray(dims.data).reshape(-1)]
        for i, (d, v) in enumerate(zip(out.shape, values)):
            ctx.check(d == v, f"output dim {i} is {d}, dims says {v}", dims)
        expect_types(ctx, value, FILL_VALUE_TYPES, "value")

    def eval(self, inputs):
        value = inputs[1]
        n = value.shape[0]
        shape = (n,) + tuple(self.out_tensor.shape)
        return [np.ascontiguousarray(np.broadcast_to(value.reshape((n,) + (1,) * (len(shape) - 1)), shape))]


# ---------------------------------------------------------------------------- SHAPE

@register("SHAPE")
class Shape(OpKernel):
    """shape.cc ShapePrepare / ShapeEval (ExtractShape writes rank int32 values)."""

    supported_types = "any input → int32"
    notes = ""

    def prepare(self, ctx):
        check_parsed_options(ctx)
        ctx.check_io_counts(1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        self.out_tensor = out
        expect_types(ctx, out, ("INT32",), "output")
        rank = len(x.shape)
        if out.size != rank:
            ctx.unsupported(f"output holds {out.size} values; TFLM writes the input's rank, {rank} "
                            f"({'past its end' if out.size < rank else 'leaving the rest unwritten'})", out)
        self.value = np.asarray(x.shape, dtype=np.int32).reshape(out.shape)

    def eval(self, inputs):
        return [self.value[None]]

    def describe(self):
        return {"shape": self.value.reshape(-1).tolist()}
