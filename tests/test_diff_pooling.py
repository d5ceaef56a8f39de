"""AVERAGE_POOL_2D and MAX_POOL_2D against TFLM: windows from 1x1 (0x0 for MAX_POOL_2D) to larger
than the input, strides from 0 to 4, both paddings, int8 / int16 / float32, every fused
activation, and (rarely) input and output quantization that differ, which TFLM's Prepare refuses."""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    activations,
    check_model,
    dims,
    input_styles,
    note_case,
    random_inputs,
    record,
    run_examples,
    scales,
    seeds,
    window_output_size,
    zero_points,
)
from hypothesis import strategies as st

from interp import Interpreter, UnsupportedOpError
from interp.builder import ModelBuilder

OPS_AND_KINDS = [(op, kind) for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D") for kind in ("INT8", "INT16", "FLOAT32")]
DIFF_OPS = {op for op, _ in OPS_AND_KINDS}  # the ops this module tests (see test_diff_regressions.py)


# Windows up to larger than the input; rarely a stride of 0 (TFLM accepts it: every output
# reads the same window) and, for MAX_POOL_2D, an empty window (TFLM outputs the type's lowest
# value, clamped). An empty AVERAGE_POOL_2D window leaves TFLM's output unwritten, so it is not drawn.
strides = st.sampled_from([1] * 6 + [2] * 3 + [3, 4, 0])


@st.composite
def pool_cases(draw, op: str, kind: str):
    filter_sizes = st.one_of(dims(1, 7), st.just(0)) if op == "MAX_POOL_2D" and draw(st.integers(0, 11)) == 0 \
        else dims(1, 7)
    case = dict(op=op, kind=kind, batch=draw(st.integers(1, 2)), height=draw(dims(1, 11)),
                width=draw(dims(1, 11)), channels=draw(dims(1, 6)),
                filter_h=draw(filter_sizes), filter_w=draw(filter_sizes),
                stride_h=draw(strides), stride_w=draw(strides),
                padding=draw(st.sampled_from(["SAME", "VALID"])), activation=draw(activations),
                seed=draw(seeds), style=draw(input_styles))
    if case["padding"] == "VALID" and (case["filter_h"] > case["height"] or case["filter_w"] > case["width"]):
        # A VALID window larger than the input has no output position; the model would be shapeless.
        case["padding"] = "SAME"
    if kind != "FLOAT32":
        case["scale"] = draw(scales())
        case["zero_point"] = draw(zero_points("INT8")) if kind == "INT8" else draw(st.sampled_from([0] * 8 + [5]))
        # Rarely, an output quantization differing from the input's (TFLM refuses it).
        case["output_scale_factor"] = draw(st.sampled_from([1.0] * 12 + [1.5]))
        case["output_zp_offset"] = draw(st.sampled_from([0] * 12 + [1]))
    return case


def build_pool(case: dict):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    oh = window_output_size(case["padding"], case["height"], case["filter_h"], case["stride_h"])
    ow = window_output_size(case["padding"], case["width"], case["filter_w"], case["stride_w"])
    in_shape = [case["batch"], case["height"], case["width"], case["channels"]]
    out_shape = [case["batch"], oh, ow, case["channels"]]
    q_in = q_out = {}
    if kind != "FLOAT32":
        q_in = dict(scale=case["scale"], zero_point=case["zero_point"])
        q_out = dict(scale=case["scale"] * case["output_scale_factor"],
                     zero_point=case["zero_point"] + case["output_zp_offset"])
    b = ModelBuilder()
    x = b.input("x", in_shape, kind, **q_in)
    y = b.tensor("y", out_shape, kind, **q_out)
    b.op(case["op"], [x], [y], padding=case["padding"], stride_h=case["stride_h"], stride_w=case["stride_w"],
         filter_height=case["filter_h"], filter_width=case["filter_w"],
         fused_activation_function=case["activation"])
    b.output(y)
    xs = random_inputs(rng, in_shape, np.dtype(kind.lower()), SAMPLES, zero_point=case.get("zero_point", 0),
                       style=case["style"])
    return b.build(), [xs]


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_pool(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_pooling_matches_tflm(op, kind):
    run_examples(pool_cases(op, kind), lambda case: run_case(op, case))


# Outputs of at least 1024 values take the one-pass-per-tap path; the hypothesis shapes above are
# smaller and take the window reduction.
LARGE_POOLS = [dict(op=op, kind=kind, batch=2, height=30, width=30, channels=8, filter_h=fh, filter_w=fw,
                    stride_h=s, stride_w=s, padding=padding, activation=activation, seed=3, style="uniform",
                    scale=0.1, zero_point=-5 if kind == "INT8" else 0, output_scale_factor=1.0, output_zp_offset=0)
               for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D") for kind in ("INT8", "INT16")
               for fh, fw, s, padding, activation in ((3, 3, 2, "SAME", "NONE"), (2, 3, 1, "VALID", "RELU6"))]


@pytest.mark.parametrize("case", LARGE_POOLS, ids=[f"{c['op']}-{c['kind']}-{c['padding']}" for c in LARGE_POOLS])
def test_large_pooling_matches_tflm(case):
    run_case(case["op"], case)


def _huge_filter_case(op, filter_w):
    return dict(op=op, kind="INT8", batch=1, height=5, width=5, channels=3, filter_h=3, filter_w=filter_w,
                stride_h=1, stride_w=1, padding="SAME", activation="NONE", seed=1, style="uniform", scale=0.1,
                zero_point=-5, output_scale_factor=1.0, output_zp_offset=0)


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("filter_w", [131075, 1545696258])
def test_huge_filters_are_trimmed_to_the_image_and_pad_as_int16(op, filter_w):
    """Any int32 is a valid filter size, and TFLM visits only in-image taps. Found by the mutation
    fuzzer: a 1545696258-wide filter made microref allocate an 11.5 GiB tap mask. The SAME
    padding of such a filter does not fit PoolParams' int16_t either: 65537 wraps to 1 (windows
    still inside), 772848128 to -17920 (no window reaches the image)."""
    case = _huge_filter_case(op, filter_w)
    if op == "AVERAGE_POOL_2D" and filter_w == 1545696258:
        # TFLM's average returns early on an empty window and leaves its output unwritten.
        data, _ = build_pool(case)
        with pytest.raises(UnsupportedOpError, match="entirely outside"):
            Interpreter.from_bytes(data)
        return
    run_case(op, case)
