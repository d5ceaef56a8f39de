"""ARG_MAX and ARG_MIN: TFLM's arg_min_max.cc and reference/arg_min_max.h.

TFLM scans the axis keeping the first element, replacing it only when a later one compares
strictly greater (ARG_MAX) or less (ARG_MIN) with a plain C comparison (GreaterFn / LessFn), so
ties go to the first index, and a NaN never replaces anything nor is replaced.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import params_as_dict
from .parse_checks import check_parsed_options
from .registry import OpKernel, expect_types, register

ARG_INPUT_TYPES = ("FLOAT32", "INT8")


@dataclass(frozen=True)
class ArgMinMaxParams:
    """arg_min_max.cc has no Prepare and no OpData: what its Eval derives from the node."""
    kind: str                      # FLOAT32 or INT8: the input type (the output is INT32)
    is_arg_max: bool               # ARG_MAX (GreaterFn) or ARG_MIN (LessFn)
    axis: int                      # the constant axis, made non-negative


@register("ARG_MAX", "ARG_MIN")
class ArgMinMax(OpKernel):
    supported_types = "int8, float32 → int32"
    notes = ""

    def prepare(self, ctx):
        check_parsed_options(ctx)
        x = ctx.require_input(0, "input")
        axis_t = ctx.require_input(1, "axis")
        out = ctx.output(0)
        self.out_tensor = out
        is_max = ctx.op.op_name == "ARG_MAX"
        # TFLM has no Prepare for these ops; the type checks below fail its Invoke instead.
        if axis_t.type_name != "INT32":
            ctx.unsupported(f"axis of type {axis_t.type_name} (TFLM supports only int32)", axis_t)
        if out.type_name != "INT32":
            ctx.unsupported(f"output of type {out.type_name} (TFLM supports only int32)", out)
        expect_types(ctx, x, ARG_INPUT_TYPES, "input")
        if axis_t.data is None:
            ctx.unsupported("a non-constant axis tensor is not supported", axis_t)
        rank = len(x.shape)
        ctx.check(rank > 0, "input must have at least one dimension", x)
        axis = int(np.asarray(axis_t.data).reshape(-1)[0])
        if axis < 0:
            axis += rank
        ctx.check(0 <= axis < rank, f"axis {axis} is out of range for input rank {rank}", axis_t)
        expected = tuple(x.shape[:axis]) + tuple(x.shape[axis + 1:])
        ctx.check(out.size == int(np.prod(expected, dtype=np.int64)),
                  f"output shape {list(out.shape)} does not hold the input shape without axis {axis}", out)
        self.params = ArgMinMaxParams(kind=x.type_name, is_arg_max=is_max, axis=axis)

    def eval(self, inputs):
        p = self.params
        x = inputs[0]
        n = x.shape[0]
        axis = p.axis + 1
        if p.kind == "FLOAT32":
            # A NaN never wins a comparison: it is skipped unless it is the first element, which
            # then stays (every comparison against it is false).
            fill = -np.inf if p.is_arg_max else np.inf
            first_is_nan = np.isnan(np.take(x, 0, axis=axis))
            x = np.where(np.isnan(x), np.float32(fill), x)
        else:
            first_is_nan = None
        idx = np.argmax(x, axis=axis) if p.is_arg_max else np.argmin(x, axis=axis)
        if first_is_nan is not None:
            idx = np.where(first_is_nan, 0, idx)
        return [idx.astype(np.int32).reshape((n,) + tuple(self.out_tensor.shape))]

    def describe(self):
        return params_as_dict(self.params)
