"""The whole integer story of one output element: which inputs and weights, every rounding step.

``explain(it, op_index, coords, inputs)`` runs the model (keeping intermediates), then runs the
operator's reference kernel (``ops.reference``) on the same inputs, recording every intermediate
array, and tells the chosen element's story from those numbers: the taps it reads, the
accumulator, the bias, each rounding of the requantization, the clamp. It checks that the story
ends in the value the interpreter produced.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ops import reference

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


def _requant_story(e: Explanation, steps: dict, at: tuple, channel: int, q) -> int:
    """The requantization of one element, every number read from the reference kernel's steps."""
    value = {name: int(np.asarray(a)[at]) for name, a in steps.items() if isinstance(a, np.ndarray)}
    multiplier, shift = int(q.output_multiplier[channel]), int(q.output_shift[channel])
    real = multiplier * 2.0 ** (shift - 31)
    e.lines.append(f"requantize: multiplier M = {multiplier}, shift = {shift}  (real scale M*2^(shift-31) = {real:.9g})")
    if "shifted" in value:
        left, right = max(shift, 0), max(-shift, 0)
        e.lines += [
            _row(f"acc << {left} (int32 multiply, wraps)", value["shifted"]),
            _row("SaturatingRoundingDoublingHighMul(., M)", value["high"], "round(x*M / 2^31), ties up"),
            _row(f"RoundingDivideByPOT(., {right})", value["scaled"], "ties away from zero"),
        ]
    else:
        how = "int64 accumulator: M cut to 15 bits" if q.int64_accumulator else "single rounding"
        e.lines.append(_row("MultiplyByQuantizedMultiplier(acc, M, shift)", value["scaled"], how))
    e.lines += [
        _row(f"+ output zero point {q.output_offset}", value["with_offset"]),
        _row(f"clamp to [{q.activation_min}, {q.activation_max}]", value["output"]),
    ]
    e.values.update(shifted=value.get("shifted"), srdhm=value.get("high"), rdbpot=value["scaled"],
                    with_zero_point=value["with_offset"], output=value["output"], multiplier=multiplier, shift=shift)
    return value["output"]


def _taps_table(e: Explanation, taps: list[tuple[str, int, int, int, int]]):
    """taps: (label, raw input, input + offset, weight, product)."""
    e.lines.append(f"  {'tap':24s} {'x':>6s} {'x-zp':>6s} {'w':>6s} {'product':>9s}")
    for label, x, xo, w, p in taps[:MAX_TAPS_SHOWN]:
        e.lines.append(f"  {label:24s} {x:6d} {xo:6d} {w:6d} {p:9d}")
    if len(taps) > MAX_TAPS_SHOWN:
        e.lines.append(f"  … {len(taps) - MAX_TAPS_SHOWN} more taps")


def _accumulator_story(e: Explanation, steps: dict, at: tuple, bias, channel: int):
    total, acc = int(steps["sum_of_products"][at]), int(steps["accumulator"][at])
    e.lines.append(_row("accumulator Σ w·(x-zp)", total))
    b = int(bias.reshape(-1)[channel]) if bias is not None else 0
    e.lines.append(_row(f"+ bias[{channel}] ({b})", total + b))
    if acc != total + b:
        e.lines.append(_row("int32 overflow wraps it to", acc))
    e.values.update(accumulator=total, bias=b, acc_plus_bias=acc)


def _explain_fully_connected(e, it, op, k, coords):
    p = k.params
    x = it.tensor(op.inputs[0])
    w = np.asarray(it.tensors[op.inputs[1]].data)
    bias = it.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    steps: dict = {}
    reference.fully_connected(p, x[None], w, bias, steps=steps)
    row = int(np.ravel_multi_index(coords[:-1], it.tensors[op.outputs[0]].shape[:-1])) if len(coords) > 1 else 0
    o = coords[-1]
    xs = x.reshape(-1, p.accum_depth)[row].astype(np.int64)
    ws = w.reshape(-1, p.accum_depth)[o].astype(np.int64) + p.weights_offset
    taps = [(f"d={d}", int(xs[d]), int(xs[d] + p.input_offset), int(ws[d]), int((xs[d] + p.input_offset) * ws[d]))
            for d in range(p.accum_depth)]
    e.lines.append(f"input row {row} ({p.accum_depth} values), weights row {o}; input zero point "
                   f"{-p.input_offset}" + (f", weights zero point {-p.weights_offset}" if p.weights_offset else ""))
    _taps_table(e, taps)
    at = (0, row, o)
    _accumulator_story(e, steps, at, bias, o)
    return _requant_story(e, steps, at, o, p.requantize)


def _explain_conv(e, it, op, k, coords, depthwise: bool):
    p = k.params
    b, oy, ox, oc = coords
    x = it.tensor(op.inputs[0])
    w = np.asarray(it.tensors[op.inputs[1]].data)
    bias = it.tensors[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    steps: dict = {}
    (reference.depthwise_conv_2d if depthwise else reference.conv_2d)(p, x[None], w, bias, steps=steps)
    image = x[b].astype(np.int64)
    e.lines.append(f"output ({b}, {oy}, {ox}, channel {oc}); window origin (y={oy * p.stride_height - p.padding_top}, "
                   f"x={ox * p.stride_width - p.padding_left}), stride ({p.stride_height}, {p.stride_width}), "
                   f"dilation ({p.dilation_height_factor}, {p.dilation_width_factor}), padding top/left "
                   f"{p.padding_top}/{p.padding_left}; input zero point {-p.input_offset}; out-of-image taps are skipped")
    taps, skipped = [], 0
    filter_depth = w.shape[3]
    for fy in range(w.shape[1]):
        for fx in range(w.shape[2]):
            rows, cols, inside = reference.conv.tap_positions(p, fy, fx, image.shape[0], image.shape[1])
            if not inside[oy, ox]:
                skipped += 1
                continue
            iy, ix = int(rows[oy]), int(cols[ox])
            if depthwise:
                channels = [(oc // p.depth_multiplier, int(w[0, fy, fx, oc]))]
            else:
                group = oc // (w.shape[0] // (image.shape[2] // filter_depth))
                channels = [(group * filter_depth + c, int(w[oc, fy, fx, c])) for c in range(filter_depth)]
            for ic, wv in channels:
                xv = int(image[iy, ix, ic])
                taps.append((f"y={iy} x={ix} c={ic}", xv, xv + p.input_offset, wv, (xv + p.input_offset) * wv))
    if skipped:
        e.lines.append(f"({skipped} filter positions fall outside the image and contribute nothing)")
    _taps_table(e, taps)
    _accumulator_story(e, steps, coords, bias, oc)
    return _requant_story(e, steps, coords, oc, p.requantize)


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
    if op.op_name == "FULLY_CONNECTED" and kind in ("INT8", "INT16"):
        story = _explain_fully_connected(e, it, op, kernel, coords)
    elif op.op_name in ("CONV_2D", "DEPTHWISE_CONV_2D") and kind in ("INT8", "INT16"):
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
