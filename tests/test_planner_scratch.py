"""Each operator's scratch requests: microref's prepared kernels, TFLM's rules for operators
without a kernel, and an honest "unknown" (never a refusal) for what neither covers."""
from __future__ import annotations

import json

import numpy as np
import pytest
from planner_support import Q, needs_tflm, shared_model, tflm_allocations

from interp.builder import ModelBuilder
from interp.model import load_model
from interp.planner import (
    POINTER_BYTES,
    UnknownScratch,
    format_plan,
    model_scratch_requests,
    operator_scratch,
    plan_arena,
    plan_to_json,
    reference_scratch_requests,
)
from interp.tools import cli


def mirror_pad_model(shape=(1, 5, 5, 2)) -> bytes:
    b = ModelBuilder()
    x = b.input("x", list(shape), "INT8", **Q)
    pads = b.constant("pads", np.array([[0, 0], [1, 1], [2, 2], [0, 0]], np.int32))
    y = b.tensor("y", [shape[0], shape[1] + 2, shape[2] + 4, shape[3]], "INT8", **Q)
    b.op("MIRROR_PAD", [x, pads], [y], mode="REFLECT")
    b.output(y)
    return b.build()


def add_n_model(n_inputs=3, dtype="INT8") -> bytes:
    b = ModelBuilder()
    quant = Q if dtype == "INT8" else {}
    xs = [b.input(f"x{i}", [1, 40], dtype, **quant) for i in range(n_inputs)]
    y = b.tensor("y", [1, 40], dtype, **quant)
    b.op("ADD_N", xs, [y])
    b.output(y)
    return b.build()


def custom_op_model(code: str) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [1, 64], "INT8", **Q)
    y = b.tensor("y", [1, 64], "INT8", **Q)
    z = b.tensor("z", [1, 64], "INT8", **Q)
    b.op("CUSTOM", [x], [y], custom_code=code)
    b.op("ADD", [y, x], [z])
    b.output(z)
    return b.build()


# ---------------------------------------------------------------------- the rules
def test_reference_rule_for_mean_on_mobilenet():
    model = load_model(shared_model("mobilenet_v2_quantized_1x3x224x224"))
    reqs = reference_scratch_requests(model)
    mean = next(op for op in model.main.operators if op.op_name == "MEAN")
    out = model.main.tensors[mean.outputs[0]]
    x = model.main.tensors[mean.inputs[0]]
    axis = model.main.tensors[mean.inputs[1]]
    assert [(r.op, r.nbytes) for r in reqs] == [(mean.index, 4 * out.size), (mean.index, 4 * len(x.shape)),
                                                 (mean.index, 4 * axis.size)]
    # The prepared kernel (microref implements MEAN) asks for the same.
    requests, unknown = model_scratch_requests(model)
    assert requests == reqs and unknown == []


def test_rules_derived_from_tflm_kernels():
    # The rules serve operators without a microref kernel (whether one exists changes over time;
    # reference_scratch_requests applies the rules alone).
    def rule(data):
        return [r.nbytes for r in reference_scratch_requests(load_model(data))]

    assert rule(mirror_pad_model()) == [16, 16]  # two int[rank] arrays
    assert rule(add_n_model(3)) == [3 * POINTER_BYTES]  # one pointer per input
    assert rule(add_n_model(3, "FLOAT32")) == [3 * POINTER_BYTES]
    assert rule(custom_op_model("ethos-u")) == [16, 2 * POINTER_BYTES]  # uint64 + size_t per operand
    model = load_model(custom_op_model("SignalWindow"))
    assert operator_scratch(model, 0, model.main.operators[0]) == []  # TFLM's kernel asks for none


@needs_tflm
@pytest.mark.parametrize("make", [mirror_pad_model, add_n_model], ids=["MIRROR_PAD", "ADD_N"])
def test_rules_match_tflm(make):
    data = make()
    plan = plan_arena(load_model(data))
    assert plan.exact and any(b.kind == "scratch" for b in plan.buffers)
    head, _, _ = tflm_allocations(data)
    assert plan.arena_bytes == head
    # Without the scratch the head would be smaller: the rule is what makes it match.
    assert plan_arena(load_model(data), scratch={}).arena_bytes < head


@needs_tflm
def test_svdf_and_rfft_rules_size_shared_models_like_tflm():
    # keyword_scrambled: SVDF (no microref kernel) requests its int32 scratch at the peak.
    for name, peak_op in (("keyword_scrambled", "SVDF"), ("audio_preprocessor_int8", "SignalRfft")):
        data = shared_model(name).read_bytes()
        plan = plan_arena(load_model(data))
        assert plan.exact
        step = next(s for s in plan.timeline if s.time == plan.peak_time)
        assert step.op_name == peak_op and any(label.startswith("scratch:") for label in step.live)
        assert plan.arena_bytes == tflm_allocations(data)[0]


# ---------------------------------------------------------------------- unknown scratch
def test_an_operator_without_kernel_or_rule_is_reported_not_refused():
    model = load_model(custom_op_model("MyVendorOp"))
    requests, unknown = model_scratch_requests(model)
    assert requests == [] and len(unknown) == 1
    u = unknown[0]
    assert isinstance(u, UnknownScratch) and (u.subgraph, u.op, u.op_name) == (0, 0, "MyVendorOp")
    plan = plan_arena(model)
    assert not plan.exact and plan.unknown_scratch == unknown
    assert plan.arena_bytes == 192  # x, y, z: 64 bytes each, all live at scope 2
    assert any("scratch sizes unknown for MyVendorOp" in n and "lower bound" in n for n in plan.notes)
    text = format_plan(plan)
    assert "AT LEAST" in text and ">=192" in text and "Unknown scratch: operator 0 (MyVendorOp)" in text
    js = json.loads(json.dumps(plan_to_json(plan)))
    assert js["exact"] is False and js["head_is_lower_bound"] is True
    assert js["unknown_scratch"] == [{"subgraph": 0, "op": 0, "op_name": "MyVendorOp",
                                      "reason": u.reason}]
    # (Every kernel TFLM registers now has a microref kernel, whose prepare gives the scratch.)
    # A custom operator TFLM knows to request none is exact.
    assert plan_arena(load_model(custom_op_model("SignalWindow"))).exact


def test_cli_plans_a_model_microref_cannot_run(tmp_path, capsys):
    path = tmp_path / "vendor.tflite"
    path.write_bytes(custom_op_model("MyVendorOp"))
    assert cli.main(["plan", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "AT LEAST" in out and "Unknown scratch" in out and "unless the unknown buffers" in out
    assert cli.main(["plan", str(path), "--json"]) == cli.EXIT_OK
    js = json.loads(capsys.readouterr().out)
    assert js["head_is_lower_bound"] and js["unknown_scratch"][0]["op_name"] == "MyVendorOp"
