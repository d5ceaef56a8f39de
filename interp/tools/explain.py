"""The whole integer story of one output element: which inputs and weights, every rounding step.

``explain(it, op_index, coords, inputs)`` runs the model (keeping intermediates), then recomputes
the chosen element of the chosen operator's output by hand, step by step, with the same fixed-point
primitives the kernel uses, and checks that the story ends in the value the kernel produced.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ops import fixedpoint as fp

from ..errors import InputError, where
from ..runtime.inputs import random_inputs

MAX_TAPS_SHOWN = 12


@dataclass
class Explanation:
    op_index: int
    op_name: str
    coords: tuple[int, ...]
    value: int | float
    lines: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)  # named intermediate numbers, for tests and tools

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _row(label: str, value, note: str = "") -> str:
    return f"  {label:44s} = {value}" + (f"   ({note})" if note else "")


def _requant_story(e: Explanation, acc: int, multiplier: int, shift: int, zero_point: int,
                   act_min: int, act_max: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    shifted = int(fp.wrap_int32(acc << left))
    high = int(fp.saturating_rounding_doubling_high_mul(shifted, multiplier))
    scaled = int(fp.rounding_divide_by_pot(high, right))
    with_zp = scaled + zero_point
    out = min(max(with_zp, act_min), act_max)
    real = multiplier * 2.0 ** (shift - 31)
    e.lines += [
        f"requantize: multiplier M = {multiplier}, shift = {shift}  (real scale M*2^(shift-31) = {real:.9g})",
        _row(f"acc << {left} (int32 multiply, wraps)", shifted),
        _row("SaturatingRoundingDoublingHighMul(., M)", high, "round(x*M / 2^31), ties up"),
        _row(f"RoundingDivideByPOT(., {right})", scaled, "ties away from zero"),
        _row(f"+ output zero point {zero_point}", with_zp),
        _row(f"clamp to [{act_min}, {act_max}]", out),
    ]
    e.values.update(shifted=shifted, srdhm=high, rdbpot=scaled, with_zero_point=with_zp, output=out,
                    multiplier=multiplier, shift=shift)
    return out


def _taps_table(e: Explanation, taps: list[tuple[str, int, int, int, int]]):
    """taps: (label, raw input, input + offset, weight, product)."""
    e.lines.append(f"  {'tap':24s} {'x':>6s} {'x-zp':>6s} {'w':>6s} {'product':>9s}")
    for label, x, xo, w, p in taps[:MAX_TAPS_SHOWN]:
        e.lines.append(f"  {label:24s} {x:6d} {xo:6d} {w:6d} {p:9d}")
    if len(taps) > MAX_TAPS_SHOWN:
        e.lines.append(f"  … {len(taps) - MAX_TAPS_SHOWN} more taps")


def _explain_fully_connected(e, it, op, k, coords):
    x = it.tensor(op.inputs[0]).reshape(-1, k.accum_depth)
    row = int(np.ravel_multi_index(coords[:-1], it.tensors[op.outputs[0]].shape[:-1])) if len(coords) > 1 else 0
    o = coords[-1]
    weights = k.weights_t[:, o]
    xs = x[row].astype(np.int64)
    taps = [(f"d={d}", int(xs[d]), int(xs[d] + k.input_offset), int(weights[d]),
             int((xs[d] + k.input_offset) * weights[d])) for d in range(k.accum_depth)]
    e.lines.append(f"input row {row} ({k.accum_depth} values), weights row {o}; input zero point "
                   f"{-k.input_offset} (weights include their zero point offset, if any)")
    _taps_table(e, taps)
    return _finish_linear(e, k, sum(t[4] for t in taps), o)


def _finish_linear(e, k, acc, channel):
    e.lines.append(_row("accumulator Σ w·(x-zp)", acc))
    bias = int(k.bias[channel]) if k.bias is not None else 0
    total = acc + bias
    e.lines.append(_row(f"+ bias[{channel}] ({bias})", total))
    wrapped = int(fp.wrap_int32(total))
    if wrapped != total:
        e.lines.append(_row("int32 overflow wraps it to", wrapped))
    e.values.update(accumulator=acc, bias=bias, acc_plus_bias=wrapped)
    m = int(np.atleast_1d(k.multiplier)[channel if np.size(k.multiplier) > 1 else 0])
    s = int(np.atleast_1d(k.shift)[channel if np.size(k.shift) > 1 else 0])
    return _requant_story(e, wrapped, m, s, k.output_offset, k.act_min, k.act_max)


def _explain_conv(e, it, op, k, coords, depthwise: bool):
    b, oy, ox, oc = coords
    x = it.tensor(op.inputs[0])[b].astype(np.int64)
    w = np.asarray(it.tensors[op.inputs[1]].data, np.int64)
    (sh, sw), (dh, dw) = k.stride, k.dilation
    y0, x0 = oy * sh - k.pad_top, ox * sw - k.pad_left
    e.lines.append(f"output ({b}, {oy}, {ox}, channel {oc}); window origin (y={y0}, x={x0}), stride {k.stride}, "
                   f"dilation {k.dilation}, padding top/left {k.pad_top}/{k.pad_left}; input zero point "
                   f"{-k.input_offset}; out-of-image taps are skipped")
    taps, skipped = [], 0
    kh, kw = k.kernel_hw
    for ky in range(kh):
        for kx in range(kw):
            iy, ix = y0 + ky * dh, x0 + kx * dw
            if not (0 <= iy < x.shape[0] and 0 <= ix < x.shape[1]):
                skipped += 1
                continue
            if depthwise:
                ic = oc // k.depth_multiplier
                channels = [(ic, int(w[0, ky, kx, oc]))]
            else:
                g = oc // k.filters_per_group
                channels = [(g * k.filter_depth + c, int(w[oc, ky, kx, c])) for c in range(k.filter_depth)]
            for ic, wv in channels:
                xv = int(x[iy, ix, ic])
                taps.append((f"y={iy} x={ix} c={ic}", xv, xv + k.input_offset, wv, (xv + k.input_offset) * wv))
    if skipped:
        e.lines.append(f"({skipped} filter positions fall outside the image and contribute nothing)")
    _taps_table(e, taps)
    return _finish_linear(e, k, sum(t[4] for t in taps), oc)


def explain(it, op_index: int, coords, inputs=None) -> Explanation:
    """Recompute one output element of operator ``op_index`` step by step."""
    ops = it.subgraph.operators
    if not 0 <= op_index < len(ops):
        raise InputError(f"no operator {op_index}; the model has {len(ops)}")
    op = ops[op_index]
    kernel = it.kernels[op_index]
    out_t = it.tensors[op.outputs[0]]
    coords = tuple(int(c) for c in coords)
    if len(coords) != len(out_t.shape) or any(not 0 <= c < d for c, d in zip(coords, out_t.shape)):
        raise InputError(f"{where(op_index, op.display_name, out_t)}: coordinates {coords} are not inside the "
                         f"output shape {list(out_t.shape)}")
    if inputs is None:
        inputs = random_inputs(it, np.random.default_rng(0))
    it.run(inputs, keep=True)
    actual = it.tensor(op.outputs[0])[coords]
    e = Explanation(op_index, op.display_name, coords, actual.item())
    e.lines.append(f"{where(op_index, op.display_name, out_t)}, element {coords}")
    kind = getattr(kernel, "kind", None)
    if op.op_name == "FULLY_CONNECTED" and kind in ("INT8", "INT16") and not getattr(kernel, "int64_accumulator", False):
        story = _explain_fully_connected(e, it, op, kernel, coords)
    elif op.op_name in ("CONV_2D", "DEPTHWISE_CONV_2D") and kind in ("INT8", "INT16") \
            and not getattr(kernel, "int64_accumulator", False):
        story = _explain_conv(e, it, op, kernel, coords, depthwise=op.op_name == "DEPTHWISE_CONV_2D")
    else:
        story = None
        e.lines.append("step-by-step arithmetic is not written out for this operator; its prepared parameters:")
        for key, v in (kernel.describe() or {}).items():
            e.lines.append(f"  {key} = {v}")
        for i, ti in enumerate(op.inputs):
            if ti >= 0 and it.tensors[ti].shape == out_t.shape:
                e.lines.append(f"  input {i} at the same position = {it.tensor(ti)[coords]}")
    e.lines.append(f"output value = {actual.item()}")
    if story is not None:
        if story != actual.item():
            e.lines.append(f"!! the step-by-step result {story} differs from the kernel's {actual.item()}")
        e.values["matches_kernel"] = story == actual.item()
    return e
