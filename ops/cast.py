"""CAST: element type conversion (TFLM cast.cc).

The pinned wheel converts from int8, int16, int32, uint32, float32 and bool to int8, int16,
int32, uint32, float32 and bool; any other type fails at Invoke (microref refuses it at load).
What each conversion does was measured on the wheel, whose kernel is newer than the published
source (that one has no bool output and converts floats with a bare ``static_cast``):

* integer or bool to integer: two's-complement truncation (int16 200 -> int8 -56, int8 -1 ->
  uint32 4294967295), bool as 0 / 1;
* to float32: round to nearest even (int32 16777217 -> 16777216.0);
* float32 to integer: truncation toward zero, saturated to the target range, NaN -> 0
  (200.7 -> int8 127, -1.5 -> uint32 0, 3e9 -> int32 2147483647);
* to bool: value != 0 (NaN -> true, -0.0 -> false).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .parse_checks import check_parsed_options
from .registry import OpKernel, PrepareContext, register
from .unary import RUNTIME_SHAPE_RANK_NOTE, require_runtime_shape_rank

CAST_TYPES = ("INT8", "INT16", "INT32", "UINT32", "FLOAT32", "BOOL")
INTEGER_RANGES = {"INT8": (-128, 127), "INT16": (-(1 << 15), (1 << 15) - 1),
                  "INT32": (-(1 << 31), (1 << 31) - 1), "UINT32": (0, (1 << 32) - 1)}


@dataclass(frozen=True)
class CastParams:
    input_type: str  # the source TensorType (Eval's outer switch)
    output_type: str  # the target TensorType (copyToTensor's switch)


@register("CAST")
class Cast(OpKernel):
    supported_types = "int8, int16, int32, uint32, float32, bool → the same six"
    notes = ("the wheel's conversions: integers wrap, float → integer truncates and saturates (NaN → 0), → bool is "
             "≠ 0; " + RUNTIME_SHAPE_RANK_NOTE)

    def prepare(self, ctx: PrepareContext):
        check_parsed_options(ctx)
        ctx.check_io_counts(1, 1)
        inp = ctx.require_input(0, "input")
        out = self.out = ctx.output(0)
        for t, role in ((inp, "input"), (out, "output")):
            if t.type_name not in CAST_TYPES:
                ctx.unsupported(f"{role} type {t.type_name} is not supported by TFLM's CAST "
                                f"(it converts between {', '.join(CAST_TYPES)})", t)
        ctx.check(inp.size == out.size, f"input shape {list(inp.shape)} and output shape {list(out.shape)} differ "
                                        f"in size (Eval converts one output element per input element)", out)
        require_runtime_shape_rank(ctx, inp, out)
        self.params = CastParams(input_type=inp.type_name, output_type=out.type_name)

    def eval(self, inputs):
        x = inputs[0]
        y = cast_values(x, self.params.input_type, self.params.output_type)
        return [y.reshape((x.shape[0],) + tuple(self.out.shape))]

    def describe(self):
        return asdict(self.params)


def cast_values(x: np.ndarray, input_type: str, output_type: str) -> np.ndarray:
    """The wheel's CAST of one array from ``input_type`` to ``output_type`` (see the module doc)."""
    if output_type == "BOOL":
        return x != 0
    target = np.dtype(output_type.lower())
    if output_type == "FLOAT32":
        # Integers round to nearest even, as the C conversion does; float32 stays as it is.
        return x.astype(np.float32)
    if input_type == "FLOAT32":
        lo, hi = INTEGER_RANGES[output_type]
        # Every float32 is exact in float64, and so are the bounds: truncate, then saturate.
        v = np.trunc(x.astype(np.float64))
        v = np.where(np.isnan(v), 0.0, np.clip(v, float(lo), float(hi)))
        return v.astype(target)
    # Integer (or bool, 0 / 1) to integer: keep the low bits, as a two's-complement conversion does.
    return x.astype(np.int64).astype(target)
