"""Small int8 graphs against TFLM: chains of 2-7 operators with residual ADDs reaching back to
earlier tensors, constant operands, and extra outputs taken from the middle of the graph.

The single-op tests pin each kernel; these pin what lies between kernels — tensor lifetimes,
the arena plan microref executes in, operand order, several inputs and outputs.
"""
import numpy as np
from diff_support import (
    SAMPLES,
    check_model,
    dims,
    input_styles,
    note_case,
    quantized_values,
    random_inputs,
    record,
    run_examples,
    scales,
    seeds,
    zero_points,
)
from hypothesis import strategies as st

from interp.builder import ModelBuilder

# Operators that keep an NHWC shape, so that any of them can follow any other.
CHAIN_OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "RELU", "LOGISTIC", "MAX_POOL_2D", "AVERAGE_POOL_2D",
             "PAD_SLICE", "CONCAT_SPLIT"]
DIFF_OPS = set()  # no op of its own: every op here has its single-op test


@st.composite
def graph_cases(draw):
    steps = []
    for i in range(draw(st.integers(2, 7))):
        op = draw(st.sampled_from(CHAIN_OPS))
        step = dict(op=op, scale=draw(scales(-3, 0)), zero_point=draw(zero_points("INT8")))
        if op in ("ADD", "MUL"):
            # The other operand: an earlier tensor (a residual connection) or a constant.
            step["other"] = draw(st.sampled_from(["constant"] + list(range(i + 1))))
        steps.append(step)
    return dict(height=draw(dims(1, 7)), width=draw(dims(1, 7)), channels=draw(dims(1, 5)),
                input_scale=draw(scales(-3, 0)), input_zp=draw(zero_points("INT8")), steps=steps,
                second_input=draw(st.booleans()), extra_output=draw(st.sampled_from([None, 0, 1, 2])),
                seed=draw(seeds), style=draw(input_styles))


def build_graph(case: dict):
    rng = np.random.default_rng(case["seed"])
    shape = [1, case["height"], case["width"], case["channels"]]
    channels = case["channels"]
    b = ModelBuilder()
    inputs = []
    x = b.input("x", shape, "INT8", scale=case["input_scale"], zero_point=case["input_zp"])
    inputs.append(random_inputs(rng, shape, np.int8, SAMPLES, zero_point=case["input_zp"], style=case["style"]))
    tensors = [(x, case["input_scale"], case["input_zp"])]
    if case["second_input"]:
        # A second model input, used by a residual operand when one refers to tensor 0.
        x2 = b.input("x2", shape, "INT8", scale=case["input_scale"] * 2, zero_point=0)
        inputs.append(random_inputs(rng, shape, np.int8, SAMPLES, style=case["style"]))
        tensors[0] = (x2, case["input_scale"] * 2, 0)
        tensors.insert(0, (x, case["input_scale"], case["input_zp"]))
    for i, step in enumerate(case["steps"]):
        src, s_in, z_in = tensors[-1]
        op = step["op"]
        s_out, z_out = step["scale"], step["zero_point"]
        if op in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD_SLICE", "CONCAT_SPLIT"):
            s_out, z_out = s_in, z_in  # no requantization in these ops
        if op == "LOGISTIC":
            s_out, z_out = 1 / 256, -128
        y = b.tensor(f"t{i}", shape, "INT8", scale=s_out, zero_point=z_out)
        if op == "CONV_2D":
            w = b.constant(f"w{i}", quantized_values(rng, [channels, 3, 3, channels], "INT8"),
                           scale=[0.02] * channels, zero_point=0)
            bias = b.constant(f"b{i}", rng.integers(-500, 500, channels).astype(np.int32),
                              scale=[s_in * 0.02] * channels)
            b.op("CONV_2D", [src, w, bias], [y], padding="SAME", stride_h=1, stride_w=1, dilation_h_factor=1,
                 dilation_w_factor=1, fused_activation_function="RELU")
        elif op == "DEPTHWISE_CONV_2D":
            w = b.constant(f"w{i}", quantized_values(rng, [1, 3, 3, channels], "INT8"), scale=0.03, zero_point=0)
            b.op("DEPTHWISE_CONV_2D", [src, w], [y], padding="SAME", stride_h=1, stride_w=1,
                 dilation_h_factor=1, dilation_w_factor=1, depth_multiplier=1)
        elif op in ("ADD", "MUL"):
            if step["other"] == "constant":
                other = b.constant(f"c{i}", quantized_values(rng, [channels], "INT8"), scale=0.05, zero_point=1)
            else:
                other = tensors[min(step["other"], len(tensors) - 1)][0]
            b.op(op, [src, other], [y], fused_activation_function="NONE")
        elif op in ("RELU", "LOGISTIC"):
            b.op(op, [src], [y])
        elif op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            b.op(op, [src], [y], padding="SAME", stride_h=1, stride_w=1, filter_height=2, filter_width=3)
        elif op == "PAD_SLICE":
            padded_shape = [1, shape[1] + 2, shape[2] + 1, channels]
            padded = b.tensor(f"padded{i}", padded_shape, "INT8", scale=s_in, zero_point=z_in)
            b.op("PAD", [src, b.constant(f"p{i}", np.array([[0, 0], [1, 1], [0, 1], [0, 0]], np.int32))], [padded])
            b.op("STRIDED_SLICE", [padded, b.constant(f"begin{i}", np.array([0, 1, 0, 0], np.int32)),
                                   b.constant(f"end{i}", np.array([1, shape[1] + 1, shape[2], channels], np.int32)),
                                   b.constant(f"strides{i}", np.array([1, 1, 1, 1], np.int32))], [y])
        elif op == "CONCAT_SPLIT":
            both = b.tensor(f"both{i}", shape[:3] + [2 * channels], "INT8", scale=s_in, zero_point=z_in)
            b.op("CONCATENATION", [src, src], [both], axis=3)
            rest = b.tensor(f"rest{i}", shape, "INT8", scale=s_in, zero_point=z_in)
            b.op("SPLIT", [b.constant(f"axis{i}", np.array(3, np.int32)), both], [rest, y], num_splits=2)
        tensors.append((y, s_out, z_out))
    b.output(tensors[-1][0])
    if case["extra_output"] is not None and case["extra_output"] + 1 < len(tensors) - 1:
        b.output(tensors[case["extra_output"] + 1][0])
    return b.build(), inputs


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_graph(case)
    record(check_model(data, inputs, label="graph INT8"), "graph INT8")


def test_small_graphs_match_tflm():
    run_examples(graph_cases(), lambda case: run_case("graph", case))
