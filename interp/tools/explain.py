"""The whole integer story of one output element: which inputs and weights, every rounding step.

``explain(it, op_index, coords, inputs)`` runs the model (keeping intermediates), then runs the
operator's reference kernel (``ops.reference``) on the same inputs, recording every intermediate
array, and tells the chosen element's story from those numbers: the taps it reads, the
accumulator, the bias, each rounding of the requantization, the clamp. It checks that the story
ends in the value the interpreter produced.

Stories are written for FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D (int8, 16x8), AVERAGE_POOL_2D,
MAX_POOL_2D, SOFTMAX (int8, int16), ADD, SUB, MUL, QUANTIZE, RELU, LEAKY_RELU, MEAN and SUM (int8,
int16), HARD_SWISH, LOGISTIC and TANH (int8); other operators get their prepared parameters and
the input values at the same position.

``numerics=`` (a ``Numerics`` variant, e.g. ``Numerics(rounding="single")``) tells the story the
variant computes for the same element, on the same op inputs, and sets it beside TFLM's value:
the one-element proof of a ``compare`` *why*.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ops import fixedpoint as fp
from ops import reference
from ops import registry as reg
from ops.reference import activations as reference_activations
from ops.reference import reduce as reference_reduce
from ops.reference import softmax_int16 as reference_softmax_int16
from ops.reference.elementwise import ArithmeticParams, RequantizeParams
from ops.registry import Numerics

from ..errors import InputError, where
from ..runtime.inputs import random_inputs

MAX_TAPS_SHOWN = 12

# The --numerics choices of `microref explain`, and the label each variant has in `compare`.
NUMERICS_CHOICES = {
    "tflm": Numerics(),
    "single": Numerics(rounding="single"),
    "float32-scales": Numerics(scale_precision="float32"),
    "single+float32-scales": Numerics(rounding="single", scale_precision="float32"),
}
NUMERICS_LABELS = {
    "tflm": "TFLM (the pinned wheel: double rounding, scales in double)",
    "single": "single rounding (TFLITE_SINGLE_ROUNDING)",
    "float32-scales": "float32 scale arithmetic (older TFLM builds)",
    "single+float32-scales": "single rounding + float32 scales",
}


def numerics_name(numerics: Numerics) -> str:
    """The --numerics name of a variant ("tflm" for the defaults)."""
    for name, n in NUMERICS_CHOICES.items():
        if n == numerics:
            return name
    raise ValueError(f"no --numerics name for {numerics}")


@dataclass
class Explanation:
    op_index: int
    op_name: str
    coords: tuple[int, ...]
    value: int | float              # what the story's numerics compute (TFLM's value by default)
    lines: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)  # named intermediate numbers, for tests and tools
    numerics: str = "tflm"          # the variant the story is told in
    tflm_value: int | float | None = None  # TFLM's value for the element (microref's default numerics)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _row(label: str, value, note: str = "") -> str:
    return f"  {label:44s} = {value}" + (f"   ({note})" if note else "")


def _exact(x: int, multiplier: int, shift: int) -> str:
    """x·M·2^(shift-31) as an exact decimal (enough digits to see a tie)."""
    v = Fraction(int(x) * int(multiplier)) * Fraction(2) ** (int(shift) - 31)
    return f"{float(v):.6f}" if v.denominator != 1 else str(v.numerator)


def _mbqm_story(e: Explanation, x: int, multiplier: int, shift: int, rounding: str, what: str = "acc",
                key: str = "") -> int:
    """MultiplyByQuantizedMultiplier(x, M, shift) of one value, each rounding written out."""
    x = int(x)
    e.lines.append(_row(f"exact {what}·M·2^(shift-31)", _exact(x, multiplier, shift),
                        "the real product both roundings approximate"))
    if rounding == "single":
        total = 31 - shift
        scaled = int(fp.multiply_by_quantized_multiplier_single_rounding(np.int64(x), multiplier, shift))
        e.lines.append(_row(f"({what}·M + 2^{total - 1}) >> {total}", scaled,
                            "single rounding: one rounding of the exact product, ties up"))
        e.values.setdefault(f"{key}scaled", scaled)
        return scaled
    left, right = max(shift, 0) & 31, max(-shift, 0)
    shifted = int(fp.wrap_int32(np.int64(x) << left))
    high = int(fp.saturating_rounding_doubling_high_mul(np.int64(shifted), multiplier))
    scaled = int(fp.rounding_divide_by_pot(np.int64(high), right))
    if left:
        e.lines.append(_row(f"{what} << {left} (int32 multiply, wraps)", shifted))
    e.lines += [
        _row("SaturatingRoundingDoublingHighMul(., M)", high, "round(x*M / 2^31), ties up"),
        _row(f"RoundingDivideByPOT(., {right})", scaled, "ties away from zero"),
    ]
    once = int(fp.multiply_by_quantized_multiplier_single_rounding(np.int64(x), multiplier, shift))
    if once != scaled:
        e.lines.append(f"  (rounding once, as TFLITE_SINGLE_ROUNDING builds do, gives {once}: SRDHM leaves "
                       f"{high}/2^{right} = {high / 2 ** right:g}, which RoundingDivideByPOT rounds a second time)")
    e.values.setdefault(f"{key}shifted", shifted)
    e.values.setdefault(f"{key}srdhm", high)
    e.values.setdefault(f"{key}scaled", scaled)
    return scaled


def _requant_story(e: Explanation, steps: dict, at: tuple, channel: int, q) -> int:
    """The requantization of one accumulator, every rounding written out and checked against the
    reference kernel's recorded steps."""
    value = {name: int(np.asarray(a)[at]) for name, a in steps.items() if isinstance(a, np.ndarray)}
    multiplier, shift = int(q.output_multiplier[channel]), int(q.output_shift[channel])
    real = multiplier * 2.0 ** (shift - 31)
    e.lines.append(f"requantize: multiplier M = {multiplier}, shift = {shift}  "
                   f"(real scale M*2^(shift-31) = {real:.9g})")
    if q.int64_accumulator:
        e.lines.append(_row("MultiplyByQuantizedMultiplier(acc, M, shift)", value["scaled"],
                            "int64 accumulator: M cut to 15 bits"))
        scaled = value["scaled"]
    else:
        scaled = _mbqm_story(e, value["accumulator"], multiplier, shift, q.rounding)
        if scaled != value["scaled"]:
            e.lines.append(f"!! the written-out rounding gives {scaled}, the reference kernel {value['scaled']}")
    e.lines += [
        _row(f"+ output zero point {q.output_offset}", value["with_offset"]),
        _row(f"clamp to [{q.activation_min}, {q.activation_max}]", value["output"]),
    ]
    e.values.update(shifted=e.values.get("shifted"), srdhm=e.values.get("srdhm"), rdbpot=value["scaled"],
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


def _input(it, op, i):
    ti = op.inputs[i] if i < len(op.inputs) else -1
    if ti < 0:
        return None
    return np.asarray(it.tensor(ti))


# ----------------------------------------------------------------------------- the stories

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
                   f"{p.padding_top}/{p.padding_left}; input zero point {-p.input_offset}; "
                   f"out-of-image taps are skipped")
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


def _explain_pool(e, it, op, k, coords, average: bool):
    p = k.params
    b, oy, ox, c = coords
    x = it.tensor(op.inputs[0])
    steps: dict = {}
    (reference.average_pool if average else reference.max_pool)(p, x[None], steps=steps)
    h, w = x.shape[1:3]
    taps = []
    for fy in range(p.filter_height):
        for fx in range(p.filter_width):
            iy, ix = oy * p.stride_height - p.padding_top + fy, ox * p.stride_width - p.padding_left + fx
            if 0 <= iy < h and 0 <= ix < w:
                taps.append((iy, ix, int(x[b, iy, ix, c])))
    e.lines.append(f"output ({b}, {oy}, {ox}, channel {c}); window {p.filter_height}x{p.filter_width} from "
                   f"(y={oy * p.stride_height - p.padding_top}, x={ox * p.stride_width - p.padding_left}), stride "
                   f"({p.stride_height}, {p.stride_width}); {len(taps)} taps inside the image (the others are "
                   f"skipped, not padded)")
    shown = ", ".join(f"[{iy},{ix}]={v}" for iy, ix, v in taps[:MAX_TAPS_SHOWN])
    more = len(taps) - MAX_TAPS_SHOWN
    e.lines.append(f"  taps: {shown}" + (f", … {more} more" if more > 0 else ""))
    at = tuple(coords)  # the reference pools over (samples·batches, H, W, C): one sample here
    if average:
        total, count = int(steps["sum"][at]), int(steps["count"][at])
        avg = int(steps["average"][at])
        rounded = total + count // 2 if total > 0 else total - count // 2
        e.lines += [
            _row("sum of the taps (int32)", total),
            _row("count", count),
            _row(f"sum {'+' if total > 0 else '-'} count/2", rounded, "rounds half away from zero"),
            _row(f"/ {count} (C division, truncates toward zero)", avg),
        ]
        e.values.update(sum=total, count=count, average=avg)
    else:
        best = int(steps["max"][at])
        e.lines.append(_row(f"max of the {len(taps)} taps", best))
        e.values.update(max=best)
    out = int(steps["output"][at])
    e.lines.append(_row(f"clamp to [{p.activation_min}, {p.activation_max}] (fused activation)", out))
    e.values["output"] = out
    return out


def _explain_softmax(e, it, op, k, coords):
    p = k.params
    x = it.tensor(op.inputs[0])
    steps: dict = {}
    reference.softmax_int8(p, x[None], steps=steps)
    at = (0,) + tuple(coords)
    row_at = at[:-1]
    row = x[tuple(coords[:-1])].astype(np.int64)
    v = {name: np.asarray(a) for name, a in steps.items()}
    e.lines.append(f"row {tuple(coords[:-1])} of {row.size} values, element {coords[-1]}: "
                   + ", ".join(str(int(r)) for r in row[:16]) + (", …" if row.size > 16 else ""))
    e.lines.append(f"input multiplier M = {p.input_multiplier}, left shift {p.input_left_shift}, diff_min "
                   f"{p.diff_min} (beta·input scale·2^26 as QuantizeMultiplierGreaterThanOne)")
    diff = int(v["diff"][at])
    e.lines += [
        _row("max_in_row", int(v["max_in_row"][row_at + (0,)])),
        _row("diff = input - max_in_row", diff),
    ]
    if diff < p.diff_min:
        e.lines.append(_row(f"diff < diff_min ({p.diff_min}): the exp is 0, output", int(v["output"][at])))
    else:
        exp = int(v["exp_in_0"][at])
        e.lines += [
            _row(f"SRDHM(diff << {p.input_left_shift}, M)", int(v["input_diff_rescaled"][at]), "Q5.26 scaled diff"),
            _row("exp_on_negative_values(.)", exp, f"Q0.31: {exp / 2 ** 31:.6f}"),
        ]
    terms = fp.rounding_divide_by_pot(v["exp_in_0"][row_at], reference.softmax.ACCUMULATION_INTEGER_BITS)
    e.lines.append("  row's exps >> 12 (Q12.19 terms): " + ", ".join(str(int(t)) for t in terms[:12])
                   + (", …" if terms.size > 12 else ""))
    total = int(v["sum_of_exps"][row_at + (0,)])
    e.lines += [
        _row("sum_of_exps", total, f"Q12.19: {total / 2 ** 19:.6f}"),
        _row("GetReciprocal: shifted_scale", int(v["shifted_scale"][row_at + (0,)])),
        _row("GetReciprocal: num_bits_over_unit", int(v["num_bits_over_unit"][row_at + (0,)])),
    ]
    if diff >= p.diff_min:
        exponent = int(v["exponent"][row_at + (0,)])
        unsat = int(v["unsat_output"][at])
        lowest = -32768 if p.output_bits == 16 else -128
        e.lines += [
            _row(f"RDBPOT(SRDHM(shifted_scale, exp), {exponent})", unsat,
                 f"num_bits_over_unit + 31 - {p.output_bits}"),
            _row(f"+ {lowest}, clamp to the output type", int(v["output"][at])),
        ]
        e.values.update(exp_in_0=int(v["exp_in_0"][at]), unsat_output=unsat)
    e.values.update(diff=diff, sum_of_exps=total, output=int(v["output"][at]))
    return int(v["output"][at])


def _explain_softmax_int16(e, it, op, k, coords):
    """int16 SOFTMAX (SoftmaxInt16): the exp and 1/(1+x) lookup tables, interpolated."""
    p = reference_softmax_int16.params_of(k)
    x = it.tensor(op.inputs[0])
    steps: dict = {}
    reference_softmax_int16.softmax_int16(p, x[None], steps=steps)
    at = (0,) + tuple(coords)
    row_at = at[:-1] + (0,)
    v = {name: np.asarray(a) for name, a in steps.items()}
    row = x[tuple(coords[:-1])].astype(np.int64)
    e.lines.append(f"row {tuple(coords[:-1])} of {row.size} values, element {coords[-1]}: "
                   + ", ".join(str(int(r)) for r in row[:16]) + (", …" if row.size > 16 else ""))
    e.lines.append(f"input multiplier M = {p.input_multiplier}, shift {p.input_left_shift} "
                   f"(beta·s_in / (10/65535): the exp table spans [-10, 0])")
    diff = int(v["input_diff"][at])
    e.lines += [_row("max_in_row", int(v["max_in_row"][row_at])),
                _row("input_diff = input - max_in_row", diff)]
    _mbqm_story(e, diff, p.input_multiplier, p.input_left_shift, "double", "diff")
    e.lines.append(_row("sym_scaled_diff = . + 32767 (int16 clamp)", int(v["sym_scaled_diff"][at])))

    def lookup(prefix, what, result):
        i, o, b, sl = (int(v[f"{prefix}_{n}"][at if prefix == "exp" else row_at])
                       for n in ("index", "offset", "base", "slope"))
        e.lines.append(_row(f"LUTLookup {what}: index 256 + (x >> 7), offset x & 127", f"{i}, {o}"))
        e.lines.append(_row(f"  lut[{i}] + ((slope {sl}·{o} + 64) >> 7)", result, f"base {b}"))

    exp = int(v["exp_result"][at])
    lookup("exp", "exp", exp)
    exps = v["exp_result"][at[:-1]]
    e.lines.append("  row's exp_results: " + ", ".join(str(int(t)) for t in exps[:12])
                   + (", …" if exps.size > 12 else ""))
    total, headroom = int(v["sum_of_exps"][row_at]), int(v["headroom_plus_one"][row_at])
    e.lines += [_row("sum_of_exps (int32)", total),
                _row("headroom_plus_one = CountLeadingZeros(sum)", headroom),
                _row(f"shifted_sum = ((sum << {headroom - 1}) + 2^13) >> 14", int(v["shifted_sum"][row_at])),
                _row("sym_shifted_sum = . - (2^15 + 2^16) (int16 clamp)", int(v["sym_shifted_sum"][row_at]))]
    recip = int(v["reciprocal_scale_Q015"][row_at])
    lookup("recip", "1/(1+x)", recip)
    right = int(v["right_shift"][row_at])
    out = int(v["output"][at])
    e.lines += [_row(f"(exp_result·{recip} + 2^{right - 1}) >> {right}", int(v["unsat_output"][at]),
                     f"right_shift = 31 - {headroom}"),
                _row("clamp to [0, 32767]", out)]
    e.values.update(input_diff=diff, exp_result=exp, sum_of_exps=total, headroom_plus_one=headroom,
                    reciprocal_scale_Q015=recip, right_shift=right, unsat_output=int(v["unsat_output"][at]),
                    output=out)
    return out


def _broadcast_element(k, value: np.ndarray, which: int, coords: tuple) -> tuple[tuple, int]:
    """The element of input ``which`` (0 or 1) that TFLM's loops pair with output ``coords``."""
    shapes = k.shapes
    if shapes.flat:
        flat = int(np.ravel_multi_index(coords, shapes.out_shape)) if coords else 0
        pos = np.unravel_index(flat, value.shape) if value.ndim else ()
        return tuple(int(c) for c in pos), int(value.reshape(-1)[flat])
    ext = shapes.a_shape if which == 0 else shapes.b_shape
    rank = len(ext)
    out_coords = (0,) * (rank - len(coords)) + tuple(coords)
    pos = tuple(0 if d == 1 else c for c, d in zip(out_coords, ext))
    own = pos[rank - value.ndim:] if value.ndim else ()
    return own, int(value.reshape(ext)[pos])


def _arithmetic_params(k) -> ArithmeticParams:
    """The ArithmeticParams the reference AddFunc / SubElementwise / MulElementwise read, from the
    kernel's prepared OpDataAdd / OpDataMul."""
    d = k.params
    rounding = k.numerics.rounding
    if k.op_name == "MUL":
        return ArithmeticParams(d.input1_offset, d.input2_offset, d.output_offset, d.output_multiplier,
                                d.output_shift, d.output_activation_min, d.output_activation_max, rounding=rounding)
    return ArithmeticParams(d.input1_offset, d.input2_offset, d.output_offset, d.output_multiplier,
                            d.output_shift, d.output_activation_min, d.output_activation_max, d.left_shift,
                            d.input1_multiplier, d.input1_shift, d.input2_multiplier, d.input2_shift,
                            rounding=rounding)


def _explain_arithmetic(e, it, op, k, coords):
    p = _arithmetic_params(k)
    (pos1, x1), (pos2, x2) = (_broadcast_element(k, _input(it, op, i), i, coords) for i in (0, 1))
    steps: dict = {}
    fn = {"ADD": reference.add, "SUB": reference.sub, "MUL": reference.mul}[op.op_name]
    out = int(fn(p, np.int64(x1), np.int64(x2), steps=steps))
    s = {name: int(a) for name, a in steps.items()}
    e.lines.append(f"input1{list(pos1)} = {x1}, input2{list(pos2)} = {x2}"
                   + ("" if k.shapes.flat else "  (broadcast: dims of size 1 repeat)"))
    e.lines += [_row(f"input1 + input1_offset ({p.input1_offset})", s["input1_val"]),
                _row(f"input2 + input2_offset ({p.input2_offset})", s["input2_val"])]
    if op.op_name == "MUL":
        e.lines.append(_row("product (int32)", s["product"]))
        e.lines.append(f"requantize: M = {p.output_multiplier}, shift = {p.output_shift} (s1·s2/s_out)")
        _mbqm_story(e, s["product"], p.output_multiplier, p.output_shift, p.rounding, "product")
    else:
        sign = "+" if op.op_name == "ADD" else "-"
        for i, (m, sh) in enumerate(((p.input1_multiplier, p.input1_shift), (p.input2_multiplier, p.input2_shift)), 1):
            e.lines.append(_row(f"input{i}_val << {p.left_shift}", s[f"shifted_input{i}_val"]))
            e.lines.append(f"  rescale input{i}: M = {m}, shift = {sh} (s{i} / (2·max(s1, s2)))")
            got = _mbqm_story(e, s[f"shifted_input{i}_val"], m, sh, p.rounding, f"x{i}", key=f"input{i}_")
            if got != s[f"scaled_input{i}_val"]:
                e.lines.append(f"!! written out {got}, reference kernel {s[f'scaled_input{i}_val']}")
        e.lines.append(_row(f"raw_{'sum' if sign == '+' else 'sub'} = scaled1 {sign} scaled2", s["raw"]))
        e.lines.append(f"requantize: M = {p.output_multiplier}, shift = {p.output_shift} "
                       f"(2·max(s1, s2) / (2^{p.left_shift}·s_out))")
        _mbqm_story(e, s["raw"], p.output_multiplier, p.output_shift, p.rounding, "raw")
    e.lines += [
        _row(f"+ output_offset {p.output_offset}", s["raw_output"]),
        _row(f"clamp to [{p.quantized_activation_min}, {p.quantized_activation_max}]", out),
    ]
    e.values.update({name: val for name, val in s.items()})
    return out


def _explain_requantize(e, it, op, k, coords):
    """QUANTIZE int -> int (reference_ops::Requantize) and quantized RELU (ReluQuantized)."""
    x = int(_input(it, op, 0)[tuple(coords)])
    rounding = k.numerics.rounding
    if op.op_name == "QUANTIZE":
        q = k.params  # OpDataQuantizeReference
        lo, hi = q.output_min, q.output_max
        p = RequantizeParams(q.input_zero_point, q.output_zero_point, q.requantize_output_multiplier,
                             q.requantize_output_shift, lo, hi, rounding)
        clamp_note = f"the output type's range [{lo}, {hi}]"
    else:
        r = k.params  # ReluOpData
        p = RequantizeParams(r.input_offset, r.output_offset, r.output_multiplier, r.output_shift,
                             r.quantized_activation_min, r.quantized_activation_max, rounding)
        clamp_note = f"[max(qmin, output zero point), qmax] = [{p.output_min}, {p.output_max}]"
    steps: dict = {}
    out = int(reference.requantize_elementwise(p, np.int64(x), steps=steps))
    s = {name: int(a) for name, a in steps.items()}
    e.lines += [f"input = {x}; multiplier M = {p.multiplier}, shift = {p.shift} (s_in / s_out)",
                _row(f"input - input zero point ({p.input_zero_point})", s["diff"])]
    _mbqm_story(e, s["diff"], p.multiplier, p.shift, rounding, "diff")
    e.lines += [_row(f"+ output zero point {p.output_zero_point}", s["raw_output"]),
                _row(f"clamp to {clamp_note}", out)]
    e.values.update(s)
    return out


def _explain_affine_quantize(e, it, op, k, coords):
    """QUANTIZE float32 -> int: roundf(x / scale) + zero point, clamped (reference_ops::AffineQuantize)."""
    x = np.float32(_input(it, op, 0)[tuple(coords)])
    q = k.params  # OpDataQuantizeReference
    scale = np.float32(q.output_scale)
    with np.errstate(all="ignore"):
        quotient = np.float32(x / scale)
    out = int(k.affine_quantize(np.asarray([x]))[0])
    e.lines += [_row("input (float32)", repr(float(x))),
                _row(f"/ scale {float(scale)!r} (float32 division)", repr(float(quotient))),
                _row("roundf (half away from zero)", int(fp.tflite_round(quotient))),
                _row(f"+ zero point {q.output_zero_point}, clamp to [{q.output_min}, {q.output_max}]", out)]
    e.values.update(quotient=float(quotient), output=out)
    return out


def _explain_leaky_relu(e, it, op, k, coords):
    """LEAKY_RELU int8/int16 (QuantizeLeakyRelu): one of two multipliers, picked by the sign of x - zp."""
    p = k.params  # LeakyReluOpData
    x = int(_input(it, op, 0)[tuple(coords)])
    rounding = k.numerics.rounding
    steps: dict = {}
    out = int(reference_activations.leaky_relu(p, np.int64(x), rounding, steps=steps))
    s = {name: int(a) for name, a in steps.items()}
    value = s["input_value"]
    e.lines += [f"input = {x}; alpha = {float(p.alpha)!r}; identity multiplier M = {p.output_multiplier_identity}, "
                f"shift = {p.output_shift_identity} (s_in / s_out); alpha multiplier M = {p.output_multiplier_alpha}, "
                f"shift = {p.output_shift_alpha} (s_in·alpha / s_out)",
                _row(f"input_value = input - input zero point ({p.input_zero_point})", value)]
    if value >= 0:
        e.lines.append("input_value >= 0: the identity multiplier")
        _mbqm_story(e, value, p.output_multiplier_identity, p.output_shift_identity, rounding, "x")
    else:
        negative = p.output_multiplier_alpha < 0
        e.lines.append("input_value < 0: the alpha multiplier"
                       + (" (|M|, negated after: alpha < 0)" if negative else ""))
        _mbqm_story(e, value, abs(p.output_multiplier_alpha), p.output_shift_alpha, rounding, "x")
        if negative:
            e.lines.append(_row("negated (alpha < 0)", s["scaled"]))
    lo, hi = reference_activations.TYPE_RANGES[p.kind]
    e.lines += [_row(f"+ output zero point {p.output_zero_point}", s["unclamped_output"]),
                _row(f"clamp to the output type's range [{lo}, {hi}]", out)]
    e.values.update(s)
    return out


def _explain_mean_or_sum(e, it, op, k, coords):
    """Quantized MEAN / SUM (QuantizedMeanOrSum): int32 sum, the zero-point term, one MBQM with
    1/count folded into the multiplier (MEAN), + output zero point, clamp."""
    p = k.params  # OpDataReduce
    x = _input(it, op, 0)
    out_shape = it.tensors[op.outputs[0]].shape
    flat = int(np.ravel_multi_index(coords, out_shape)) if coords else 0
    if p.empty_input or p.invalid_axis is not None:
        why = "the input has no elements" if p.empty_input else f"axis {p.invalid_axis} is out of range"
        e.lines.append(_row(f"{why}: TFLM leaves the zeroed output", 0))
        e.values["output"] = 0
        return 0
    where_from = k.reduced_last(np.arange(x.size).reshape(x.shape)[None])[0, flat]
    grouped = k.reduced_last(x[None])[0, flat]
    steps: dict = {}
    out = int(reference_reduce.mean_or_sum(p, grouped, steps=steps))
    s = {name: int(a) for name, a in steps.items()}
    taps = [(tuple(int(c) for c in np.unravel_index(int(i), x.shape)), int(v)) for i, v in zip(where_from, grouped)]
    shown = ", ".join(f"{list(pos)}={v}" for pos, v in taps[:MAX_TAPS_SHOWN])
    more = len(taps) - MAX_TAPS_SHOWN
    e.lines.append(f"reduces axes {list(p.axes)}: {p.count} input values" + (f", {shown}" if taps else "")
                   + (f", … {more} more" if more > 0 else ""))
    e.lines += [_row("sum of the raw inputs (int32, wrapping adds)", s["sum"]),
                _row(f"- input zero point·count ({p.input_zp}·{p.count})", s["shifted"], "the zero-point term")]
    if p.compute_sum:
        e.lines.append(f"requantize: M = {p.multiplier}, shift = {p.shift} (s_in / s_out)")
    else:
        e.lines.append(f"requantize: M = {p.multiplier}, shift = {p.shift}: 1/count folded into s_in / s_out "
                       f"(M = {p.base_multiplier}, shift {p.base_shift}) as ({p.base_multiplier} << "
                       f"{p.base_shift - p.shift}) // {p.count}, shift {p.base_shift} - {p.base_shift - p.shift}")
    got = _mbqm_story(e, s["shifted"], p.multiplier, p.shift, "double", "sum")
    if got != s["scaled"]:
        e.lines.append(f"!! written out {got}, reference kernel {s['scaled']}")
    e.lines += [_row(f"+ output zero point {p.output_zp}", s["with_zero_point"]),
                _row(f"clamp to the output type's range [{p.quantized_activation_min}, "
                     f"{p.quantized_activation_max}]", out)]
    e.values.update(s)
    return out


def _explain_hard_swish(e, it, op, k, coords):
    """HARD_SWISH int8 (reference_ops::HardSwish): x·relu6(x+3)/6 in int16 fixed point."""
    p = k.params  # HardSwishParams
    x = int(_input(it, op, 0)[tuple(coords)])
    steps: dict = {}
    out = int(reference_activations.hard_swish(p, np.int64(x), steps=steps))
    s = {name: int(a) for name, a in steps.items()}
    r_exp, o_exp = p.reluish_multiplier_exponent, p.output_multiplier_exponent
    e.lines += [
        f"input = {x}; output multiplier {p.output_multiplier_fixedpoint_int16} (int16, exponent {o_exp}: "
        f"(s_in/128) / s_out), reluish multiplier {p.reluish_multiplier_fixedpoint_int16} (int16, exponent "
        f"{r_exp}: (s_in/128) / (3/32768))",
        _row(f"input_value = input - input zero point ({p.input_zero_point})", s["input_value"]),
        _row("input_value_on_hires_input_scale = · 2^7", s["input_value_on_hires_input_scale"]),
        _row("preshift output: SRDHM16(hires, output M)", s["input_value_on_preshift_output_scale"],
             "round(a·b / 2^15)"),
    ]
    if r_exp > 0:
        e.lines.append(_row(f"reluish: SaturatingLeftShift(hires, {r_exp - 1})", s["reluish_prescaled"]))
    e.lines.append(_row("reluish: SRDHM16(., reluish M)", s["reluish_srdhm"], "round(a·b / 2^15)"))
    if r_exp > 0:
        e.lines.append(_row("reluish: SaturatingLeftShift(., 1)", s["reluish_scaled"], "saturates at int16"))
    elif r_exp < 0:
        e.lines.append(_row(f"reluish: RoundingDivideByPOT(., {-r_exp})", s["reluish_scaled"]))
    e.lines += [
        _row("reluish_value = (. + 2^15) >> 1", s["reluish_value"],
             f"relu6(x+3)/6 in Q0.15: {s['reluish_value'] / 32768:.6f}"),
        _row("SaturatingDoublingHighMul(reluish, preshift)", s["preshift_output_value"], "a·b / 2^15, truncates"),
        _row(f"RoundingDivideByPOT(., {-o_exp}) + output zero point {p.output_zero_point}", s["output_value"]),
        _row("clamp to [-128, 127]", out),
    ]
    e.values.update(s)
    return out


def _explain_sigmoid_like(e, it, op, k, coords):
    """int8 LOGISTIC / TANH: the input rescaled to Q4.27, gemmlowp's fixed-point logistic/tanh
    (Q0.31), rounded to the fixed output scale (1/256 zp -128; 1/128 zp 0)."""
    p = k.params  # OpDataLogistic / OpDataTanh
    x = int(_input(it, op, 0)[tuple(coords)])
    rounding = k.numerics.rounding
    which = op.op_name
    steps: dict = {}
    out = int(reference_activations.sigmoid_like_int8(p, np.int64(x), which, rounding, steps=steps))
    s = {name: int(a) for name, a in steps.items()}
    diff = s["input"]
    e.lines += [f"input = {x}; input multiplier M = {p.input_multiplier}, left shift {p.input_left_shift} "
                f"(s_in·2^27: the input in Q4.27), input_range_radius {p.input_range_radius}",
                _row(f"input - input zero point ({p.input_zero_point})", diff)]
    if diff >= p.input_range_radius or diff <= -p.input_range_radius:
        side = ">= input_range_radius: saturates to" if diff >= p.input_range_radius else \
            "<= -input_range_radius: saturates to"
        e.lines.append(_row(f"{diff} {side}", out, "gemmlowp is not called"))
        e.values.update(s)
        return out
    e.lines.append(f"rescale to Q4.27: MultiplyByQuantizedMultiplier(diff, M, {p.input_left_shift})")
    _mbqm_story(e, diff, p.input_multiplier, p.input_left_shift, rounding, "diff")
    q4 = s["input_in_q4"]
    e.lines.append(_row("input_in_q4 (Q4.27)", q4, f"{q4 / 2 ** 27:.6f}"))
    fn, bits, zp = ("logistic", 8, -128) if which == "LOGISTIC" else ("tanh", 7, 0)
    e.lines += [
        _row(f"gemmlowp::{fn}(input_in_q4) (Q0.31)", s["output_in_q0"], f"{s['output_in_q0'] / 2 ** 31:.9f}"),
        _row(f"RoundingDivideByPOT(., {31 - bits})", s["output_rounded"], f"Q0.{bits}"),
        _row(f"{'- 128, ' if zp else ''}clamp to [-128, 127]", out),
    ]
    e.values.update(s)
    return out


def _story(e, it, op, kernel, coords):
    """The story for this operator, or None when none is written for it."""
    kind = getattr(kernel, "kind", None)
    name = op.op_name
    if name == "FULLY_CONNECTED" and kind in ("INT8", "INT16"):
        return _explain_fully_connected(e, it, op, kernel, coords)
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and kind in ("INT8", "INT16"):
        return _explain_conv(e, it, op, kernel, coords, depthwise=name == "DEPTHWISE_CONV_2D")
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and kind in ("INT8", "INT16"):
        return _explain_pool(e, it, op, kernel, coords, average=name == "AVERAGE_POOL_2D")
    if name == "SOFTMAX" and kind in (("INT8", "INT8"), ("INT8", "INT16")):
        return _explain_softmax(e, it, op, kernel, coords)
    if name == "SOFTMAX" and kind == ("INT16", "INT16"):
        return _explain_softmax_int16(e, it, op, kernel, coords)
    if name in ("ADD", "SUB", "MUL") and kind in ("INT8", "INT16"):
        return _explain_arithmetic(e, it, op, kernel, coords)
    if name == "QUANTIZE" and kind in ("INT8", "INT16", "UINT8"):
        return _explain_requantize(e, it, op, kernel, coords)
    if name == "QUANTIZE" and kind == "FLOAT32":
        return _explain_affine_quantize(e, it, op, kernel, coords)
    if name == "RELU" and kind in ("INT8", "INT16"):
        return _explain_requantize(e, it, op, kernel, coords)
    if name == "LEAKY_RELU" and kind in ("INT8", "INT16"):
        return _explain_leaky_relu(e, it, op, kernel, coords)
    if name in ("LOGISTIC", "TANH") and kind == "INT8":
        return _explain_sigmoid_like(e, it, op, kernel, coords)
    if name == "HARD_SWISH" and kind == "INT8":
        return _explain_hard_swish(e, it, op, kernel, coords)
    if name in ("MEAN", "SUM") and kind in ("INT8", "INT16"):
        return _explain_mean_or_sum(e, it, op, kernel, coords)
    return None


def _variant_kernel(it, op, numerics: Numerics):
    cls = reg.kernel_class(op)
    return cls(reg.PrepareContext(op, it.tensors, numerics))


def explain(it, op_index: int, coords, inputs=None, numerics: Numerics | str | None = None) -> Explanation:
    """Recompute one output element of operator ``op_index`` step by step.

    ``numerics``: a ``Numerics`` variant or its --numerics name ("single", "float32-scales",
    "single+float32-scales"; "tflm" or None for TFLM's own arithmetic). The story is then the
    variant's on the same op inputs, and ends with the variant's value beside TFLM's."""
    ops = it.subgraph.operators
    if not 0 <= op_index < len(ops):
        raise InputError(f"no operator {op_index}; the model has {len(ops)}")
    if isinstance(numerics, str):
        if numerics not in NUMERICS_CHOICES:
            raise InputError(f"--numerics takes one of {', '.join(NUMERICS_CHOICES)}; got {numerics!r}")
        numerics = NUMERICS_CHOICES[numerics]
    numerics = numerics or Numerics()
    op = ops[op_index]
    out_t = it.tensors[op.outputs[0]]
    coords = tuple(int(c) for c in coords)
    if len(coords) != len(out_t.shape) or any(not 0 <= c < d for c, d in zip(coords, out_t.shape)):
        raise InputError(f"{where(op_index, op.display_name, out_t)}: coordinates {coords} are not inside the "
                         f"output shape {list(out_t.shape)}")
    if inputs is None:
        inputs = random_inputs(it, np.random.default_rng(0))
    it.run(inputs, keep=True)
    actual = it.tensor(op.outputs[0])[coords].item()  # microref's value: TFLM's, with the default numerics
    variant = numerics != it.numerics
    kernel = _variant_kernel(it, op, numerics) if variant else it.kernels[op_index]
    if variant:
        # What the variant's kernel gives for the element, on the same op inputs.
        ins = it.op_inputs(op, it.tensor)
        value = np.asarray(it.eval_operator(op, ins, kernel)[0])[0][coords].item()
    else:
        value = actual
    name = numerics_name(numerics)
    e = Explanation(op_index, op.display_name, coords, value, numerics=name, tflm_value=actual)
    e.lines.append(f"{where(op_index, op.display_name, out_t)}, element {coords}"
                   + (f"; arithmetic of {NUMERICS_LABELS[name]}" if variant else ""))
    story = _story(e, it, op, kernel, coords)
    if story is None:
        e.lines.append("step-by-step arithmetic is not written out for this operator; its prepared parameters:")
        for key, v in (kernel.describe() or {}).items():
            e.lines.append(f"  {key} = {v}")
        for i, ti in enumerate(op.inputs):
            if ti >= 0 and it.tensors[ti].shape == out_t.shape:
                e.lines.append(f"  input {i} at the same position = {it.tensor(ti)[coords]}")
    if variant:
        same = value == actual
        delta = "" if same or not isinstance(value, int) else f" ({value - actual:+d} LSB)"
        e.lines.append(f"{NUMERICS_LABELS[name]} computes {value}; TFLM computes {actual}"
                       + (" — the same value here" if same else f" — they differ{delta}"))
        if numerics.scale_precision != it.numerics.scale_precision and story is not None:
            e.lines.append("(float32 scale arithmetic changes the prepared multipliers above, not the roundings)")
    else:
        e.lines.append(f"output value = {actual}")
    if story is not None:
        if story != value:
            e.lines.append(f"!! the step-by-step result {story} differs from the kernel's {value}")
        e.values["matches_kernel"] = story == value
    return e
