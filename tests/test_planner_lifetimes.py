"""Lifetimes and what is planned, as TFLM's AllocationInfoBuilder decides (single subgraph; the
multi-subgraph rules are in test_planner_subgraphs.py)."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from planner_support import Q, needs_tflm, tflm_allocations, tflm_refusal, two_branch_model

from interp.builder import ModelBuilder
from interp.errors import ModelError
from interp.model import load_model
from interp.planner import (
    OFFLINE_METADATA,
    ScratchRequest,
    mark_lifetimes,
    plan_arena,
    read_offline_offsets,
    subgraph_offsets,
    write_model_metadata,
)


def test_lifetimes_follow_tflm_scopes():
    plan = plan_arena(load_model(two_branch_model()))
    # Input from scope 0 until its last reader (op 1 at scope 2); op i runs at scope i + 1;
    # the graph output lives to the end (scope 5).
    assert plan.lifetimes[0] == (0, 2)
    assert plan.lifetimes[2] == (1, 3)
    assert plan.lifetimes[6] == (2, 4)
    assert plan.lifetimes[4] == (3, 5)
    assert plan.lifetimes[9] == (5, 5)
    assert set(plan.offsets) == {0, 2, 4, 6, 8, 9}  # constants are not planned
    assert plan.lower_bound == 16 + 1024 + 1024
    assert plan.peak_op == 1
    # A graph output made early stays live until the last scope.
    plan = plan_arena(load_model(two_branch_model(outputs=("out", "a"))))
    assert plan.lifetimes[2] == (1, 5)


def test_mark_lifetimes_in_another_operator_order():
    model = load_model(two_branch_model())
    life = mark_lifetimes(model, [ScratchRequest(0, 2, 64)], order=[0, 2, 1, 3, 4])
    # Branch a runs to its end first: a is made at scope 1 and read at scope 2 (op 2).
    assert (life.tensor_first[2], life.tensor_last[2]) == (1, 2)
    assert (life.scratch_first[0], life.scratch_last[0]) == (2, 2)  # op 2 now runs at scope 2
    assert life.scope_owner[2] == (0, 2) and life.final_scope == 5
    assert subgraph_offsets(model) == [0]


def test_scratch_buffers_live_during_their_operator_only():
    model = load_model(two_branch_model())
    plan = plan_arena(model, scratch=[[], [100, 4], [], [], []])
    s0 = next(b for b in plan.buffers if b.key == "scratch:0")
    assert (s0.first, s0.last, s0.op, s0.nbytes, s0.size) == (2, 2, 1, 100, 112)
    assert plan.lifetimes["scratch:1"] == (2, 2)
    assert plan.lower_bound == 16 + 1024 + 1024 + 112 + 16
    # The same requests given as ScratchRequest records or as a mapping.
    assert plan_arena(model, scratch=[ScratchRequest(0, 1, 100), ScratchRequest(0, 1, 4)]).offsets \
        == plan.offsets
    assert plan_arena(model, scratch={1: [100, 4]}).offsets == plan.offsets
    with pytest.raises(ValueError, match="per-operator"):
        plan_arena(model, scratch=[[1]])


def test_plan_arena_takes_scratch_from_the_interpreters_kernels():
    model = load_model(two_branch_model())
    fake = SimpleNamespace(model=model, kernels=[SimpleNamespace(scratch_bytes=[]) for _ in range(4)]
                           + [SimpleNamespace(scratch_bytes=[4000])])
    plan = plan_arena(fake)
    assert plan.lifetimes["scratch:0"] == (5, 5)
    assert plan.arena_bytes >= 4000


def test_planned_set_and_16_byte_rounding():
    extra = [{"name": "unused", "shape": [3, 7]},  # never touched: planned with lifetime [-1, -1]
             {"name": "state", "shape": [1, 40], "variable": True},  # variables go to the tail
             {"name": "empty", "shape": [0, 5]}]  # zero bytes: not planned
    plan = plan_arena(load_model(two_branch_model(extra_tensors=extra)))
    unused = next(b for b in plan.buffers if b.tensor == 10)
    assert (unused.nbytes, unused.size, unused.first, unused.last) == (21, 32, -1, -1)
    assert 11 not in plan.offsets and 12 not in plan.offsets
    assert all(b.size % 16 == 0 and b.size - b.nbytes < 16 for b in plan.buffers)
    assert plan.tail_estimate["variable_tensors"] == 48


@needs_tflm
def test_head_matches_tflm_on_synthetic_models_in_several_orders():
    for order in [(0, 1, 2, 3, 4), (0, 2, 1, 3, 4), (1, 3, 0, 2, 4)]:
        data = two_branch_model(order)
        head, _, _ = tflm_allocations(data)
        assert plan_arena(load_model(data)).arena_bytes == head, order
    # A never-used activation tensor is planned too (lifetime [-1, -1]); make it the largest.
    data = two_branch_model(extra_tensors=[{"name": "unused", "shape": [1, 3000]}])
    head, _, _ = tflm_allocations(data)
    assert head == plan_arena(load_model(data)).arena_bytes == 3008
    # A variable is not in the head, however large.
    data = two_branch_model(extra_tensors=[{"name": "state", "shape": [1, 5000], "variable": True}])
    assert tflm_allocations(data)[0] == plan_arena(load_model(data)).arena_bytes < 5000


def _with_intermediate(shape) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [1, 16], "INT8", **Q)
    y = b.input("y", [1, 16], "INT8", **Q)
    z = b.tensor("z", [1, 16], "INT8", **Q)
    tmp = b.tensor("tmp", shape, "INT8", **Q)
    b.op("ADD", [x, y], [z], intermediates=[tmp])
    b.output(z)
    return b.build()


def test_nonempty_intermediate_tensors_are_rejected_like_tflm():
    with pytest.raises(ModelError, match="intermediate"):
        plan_arena(load_model(_with_intermediate([1, 4])))
    plan_arena(load_model(_with_intermediate([0])))  # an empty one is fine


@needs_tflm
def test_tflm_rejects_the_nonempty_intermediate_too():
    assert "intermediate" in (tflm_refusal(_with_intermediate([1, 4])) or "")
    assert tflm_refusal(_with_intermediate([0])) is None


def test_offline_metadata_with_the_wrong_tensor_count_is_rejected():
    bad = write_model_metadata(two_branch_model(), OFFLINE_METADATA, struct.pack("<4i", 1, 0, 1, 0))
    with pytest.raises(ModelError, match="gives 1 offsets"):
        plan_arena(load_model(bad))
    short = write_model_metadata(two_branch_model(), OFFLINE_METADATA, struct.pack("<2i", 1, 0))
    with pytest.raises(ModelError, match="at least 12"):
        read_offline_offsets(load_model(short))


def test_operator_dependencies_with_a_tensor_written_twice():
    """t is written by op 0, read by op 1, written again by op 2 and read by op 3: op 2 must wait
    for op 1's read (and op 0's write), op 3 reads op 2's value — no reorder may change a read."""
    from interp.builder import ModelBuilder
    from interp.model import load_model
    from interp.planner import operator_dependencies
    q = dict(scale=0.1, zero_point=0)
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", **q)
    t = b.tensor("t", [1, 4], "INT8", **q)
    u = b.tensor("u", [1, 4], "INT8", **q)
    v = b.tensor("v", [1, 4], "INT8", **q)
    b.op("RELU", [x], [t])
    b.op("RELU", [t], [u])
    b.op("RELU6", [x], [t])
    b.op("ADD", [t, u], [v])
    b.output(v)
    deps = operator_dependencies(load_model(b.build()))
    assert deps[1] == {0}
    assert deps[2] == {0, 1}
    assert deps[3] == {1, 2}
