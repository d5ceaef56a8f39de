"""PAD and PADV2: TFLM's pad_common.cc (PadPrepare), pad.cc (PadEval) and reference/pad.h.

No arithmetic: the output is the input surrounded by a fill value. TFLM's int8 fill without a
constant_values input is the *output* zero point; int16/int32/float fill with 0; PADV2's
constant_values element is copied raw (for int8 Prepare requires its scale and zero point to
equal the output's, so no rescaling is ever needed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import params_as_dict
from .registry import OpKernel, expect_types, register
from .shape import int32_view, require_constant

PAD_TYPES = ("FLOAT32", "INT8", "INT16", "INT32")
PAD_MAX_RANK = 5  # reference_ops::PadKernelMaxDimensionCount()


@dataclass(frozen=True)
class PadOpData:
    """pad.cc OpData: its PadParams (the paddings per dim) and the fill value Eval writes."""
    kind: str                      # FLOAT32, INT8, INT16 or INT32: input and output type
    left_padding: tuple[int, ...]  # elements before the input, per dim (negative: TFLM's loop shifts)
    right_padding: tuple[int, ...]  # elements after the input, per dim
    pad_value: np.ndarray          # 0-d, the output dtype: constant_values' element (raw), else int8's
                                   # output zero point, else 0; unused when fill_from_input
    fill_from_input: bool          # constant_values is computed by an earlier op: read at every Eval


@register("PAD", "PADV2")
class Pad(OpKernel):
    supported_types = "int8, int16, int32, float32"
    notes = ""

    def prepare(self, ctx):
        ctx.check_io_counts((2, 3))
        n_inputs = len(ctx.op.inputs)
        x = ctx.require_input(0, "input")
        paddings = ctx.require_input(1, "paddings")
        constant = ctx.input(2) if n_inputs == 3 else None
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        rank = len(x.shape)
        ctx.check(rank <= PAD_MAX_RANK, f"input rank {rank} exceeds the {PAD_MAX_RANK} TFLM's Pad supports")
        if constant is not None:
            ctx.check(constant.type_name == x.type_name,
                      f"constant_values type {constant.type_name} differs from input type {x.type_name}", constant)
            ctx.check(constant.size == 1,
                      f"constant_values has {constant.size} elements; it must be a scalar", constant)
        out_rank = len(out.shape)
        ctx.check(paddings.size == 2 * out_rank,
                  f"paddings has {paddings.size} values; the rank-{out_rank} output needs {2 * out_rank}", paddings)
        require_constant(ctx, paddings, "paddings")
        pads = int32_view(paddings)[: 2 * out_rank].astype(np.int64).reshape(out_rank, 2)
        ctx.check(out_rank <= rank, f"output rank {out_rank} exceeds input rank {rank}", out)
        for i in range(out_rank):
            expected = x.shape[i] + pads[i, 0] + pads[i, 1]
            ctx.check(out.shape[i] == expected,
                      f"output dim {i} is {out.shape[i]}, input dim + paddings is {expected}", out)
        ctx.check(out_rank == rank, f"output rank {out_rank} differs from input rank {rank}", out)

        expect_types(ctx, x, PAD_TYPES, "input")
        self.kind = x.type_name
        if self.kind == "INT8":
            oq = out.quantization
            out_zp = oq.zero_point if oq is not None else 0
            out_scale = oq.scale if oq is not None else 0.0
            if constant is None:
                ctx.check(-128 <= out_zp <= 127, f"output zero point {out_zp} is outside the int8 range", out)
            else:
                cq = constant.quantization
                c_zp = cq.zero_point if cq is not None else 0
                c_scale = cq.scale if cq is not None else 0.0
                ctx.check(c_zp == out_zp,
                          f"constant_values zero point {c_zp} differs from output zero point {out_zp}", constant)
                ctx.check(c_scale == out_scale,
                          f"constant_values scale {c_scale!r} differs from output scale {out_scale!r}", constant)
        # A constant_values tensor computed by an earlier op is read at every Eval.
        fill_from_input = constant is not None and constant.data is None
        if constant is not None and constant.data is not None:
            fill = np.asarray(constant.data).reshape(-1)[0]
        elif constant is not None:
            fill = 0
        elif self.kind == "INT8":
            fill = out.quantization.zero_point if out.quantization is not None else 0
        else:
            fill = 0
        pad_value = np.asarray(fill).astype(out.dtype)
        pad_value.flags.writeable = False
        self.params = PadOpData(kind=self.kind, left_padding=tuple(int(v) for v in pads[:, 0]),
                                right_padding=tuple(int(v) for v in pads[:, 1]), pad_value=pad_value,
                                fill_from_input=fill_from_input)
        # The fast path's plan. Negative paddings are legal for TFLM: its loop then copies the
        # input's leading elements in order into the interior, rather than cropping.
        self.has_negative = bool((pads < 0).any())
        if self.has_negative:
            grids = np.ix_(*[np.arange(d) for d in out.shape]) if out_rank else ()
            interior = np.ones(tuple(out.shape), dtype=bool)
            for d, g in enumerate(grids):
                interior &= (g >= pads[d, 0]) & (g < out.shape[d] - pads[d, 1])
            self.interior = interior.reshape(-1)
            # Per dim the interior is in + min(left, 0) + min(right, 0) <= in cells, so TFLM never
            # reads past the input.
            self.interior_count = int(self.interior.sum())

    def eval(self, inputs):
        p = self.params
        x = inputs[0]
        n = x.shape[0]
        out_shape = (n,) + tuple(self.out_tensor.shape)
        if p.fill_from_input:
            fill = inputs[2].reshape(inputs[2].shape[0], -1)[:, 0]
            n = max(n, fill.shape[0])
            out_shape = (n,) + tuple(self.out_tensor.shape)
            x = np.broadcast_to(x, (n,) + x.shape[1:])
            y = np.empty(out_shape, dtype=self.out_tensor.dtype)
            y[...] = fill.reshape((-1,) + (1,) * (y.ndim - 1))
        elif self.has_negative:
            y = np.full(out_shape, p.pad_value, dtype=self.out_tensor.dtype)
        else:
            # Only the border is filled: writing the interior twice would double the traffic.
            y = np.empty(out_shape, dtype=self.out_tensor.dtype)
            for d, (lo, hi) in enumerate(zip(p.left_padding, p.right_padding), start=1):
                before = (slice(None),) * d
                y[before + (slice(0, lo),)] = p.pad_value
                y[before + (slice(out_shape[d] - hi, out_shape[d]),)] = p.pad_value
        if self.has_negative:
            flat = y.reshape(n, -1)
            flat[:, self.interior] = x.reshape(n, -1)[:, : self.interior_count]
            return [y]
        interior = tuple(slice(lo, lo + size) for lo, size in zip(p.left_padding, x.shape[1:]))
        y[(slice(None),) + interior] = x
        return [y]

    def describe(self):
        return params_as_dict(self.params)
