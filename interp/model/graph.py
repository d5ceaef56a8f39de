"""Graph-level checks and facts: execution order, producers, consumers, last uses."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError, where
from .parse import Model, Operator, Subgraph


@dataclass
class GraphInfo:
    producer: dict[int, int]  # tensor index -> operator index that writes it
    consumers: dict[int, list[int]]  # tensor index -> operator indices that read it
    last_use: dict[int, int]  # activation tensor index -> last operator index that reads it


def analyse(sg: Subgraph) -> GraphInfo:
    """Check that TFLM's in-order execution of ``sg`` is well defined and record the data flow.

    TFLM runs operators in stored order, so every tensor an operator reads must be a graph input,
    a constant, or the output of an earlier operator; and no tensor may be written twice.
    """
    tensors = sg.tensors
    available = set(sg.inputs)
    available.update(t.index for t in tensors if t.is_constant or t.is_variable)
    producer: dict[int, int] = {}
    consumers: dict[int, list[int]] = {}
    last_use: dict[int, int] = {}
    for op in sg.operators:
        for t in op.inputs:
            if t < 0:
                continue
            if t not in available:
                later = next((o.index for o in sg.operators[op.index + 1:] if t in o.outputs), None)
                if t in op.outputs:
                    why = "it is this operator's own output"
                elif later is not None:
                    why = f"it is produced later, by operator {later}"
                elif tensors[t].data_outside_flatbuffer:
                    why = ("its buffer keeps the data outside the flatbuffer (Buffer.offset/size), which the "
                           "pinned TFLM does not read: TFLM would run the operator on uninitialised arena "
                           "memory in its place")
                else:
                    why = "no operator produces it and it is neither a graph input nor a constant"
                raise ModelError(f"{where(op.index, op.display_name, tensors[t])}: reads a tensor "
                                 f"before it has a value ({why})")
            consumers.setdefault(t, []).append(op.index)
            last_use[t] = op.index
        for t in op.outputs:
            shape = tensors[t].shape
            # TFLM's CheckDynamicTensors: an output dim <= 0 is a dynamic tensor, except the legacy
            # scalar shape [0].
            if any(d <= 0 for d in shape) and shape != (0,):
                raise ModelError(f"{where(op.index, op.display_name, tensors[t])}: output shape {list(shape)} "
                                 "has a zero dimension; TFLM rejects it as a dynamic tensor")
            if t in producer:
                raise ModelError(f"{where(op.index, op.display_name, tensors[t])}: tensor is already "
                                 f"written by operator {producer[t]}")
            if tensors[t].is_constant:
                raise ModelError(f"{where(op.index, op.display_name, tensors[t])}: writes a constant tensor")
            if t in sg.inputs:
                raise ModelError(f"{where(op.index, op.display_name, tensors[t])}: writes a graph input")
            producer[t] = op.index
            available.add(t)
    for t in sg.inputs:
        if any(d <= 0 for d in tensors[t].shape) and tensors[t].shape != (0,) and t in consumers:
            raise ModelError(f'graph input tensor {t} "{tensors[t].name}" has shape {list(tensors[t].shape)} with '
                             "a zero dimension; the operators reading it would read outside it")
    for t in sg.outputs:
        if t not in available:
            raise ModelError(f'graph output tensor {t} "{tensors[t].name}" is never produced')
    return GraphInfo(producer, consumers, last_use)


# Operators that invoke other subgraphs, and the options naming them (TFLM's AllocationInfoBuilder
# follows the same three when it plans the subgraphs' lifetimes).
SUBGRAPH_OPTIONS = {
    "IF": ("then_subgraph_index", "else_subgraph_index"),
    "WHILE": ("cond_subgraph_index", "body_subgraph_index"),
    "CALL_ONCE": ("init_subgraph_index",),
}


def subgraph_calls(op: Operator) -> list[tuple[str, int]]:
    """(option name, subgraph index) for every subgraph ``op`` invokes; [] for other operators.
    An absent options table reads as index 0, as TFLM's zero-initialised params do."""
    return [(name, int(op.options.get(name, 0))) for name in SUBGRAPH_OPTIONS.get(op.op_name, ())]


def check_subgraph_calls(model: Model) -> list[int]:
    """The subgraphs reachable from subgraph 0 through IF, WHILE and CALL_ONCE, in the order TFLM's
    planner first visits them (depth first, operators in order).

    Refused, each naming the operator: an index outside the model (TFLM's Prepare checks
    ``index < NumSubgraphs()`` only, so a negative one would make its planner read outside the
    subgraph vector) and a cycle of calls (TFLM's planner recurses into every called subgraph
    without a guard and overflows its stack; its interpreter would recurse for ever).
    """
    n = len(model.subgraphs)
    order: list[int] = []
    done: set[int] = set()

    def visit(s: int, path: list[tuple[int, Operator]]):
        order.append(s)
        for op in model.subgraphs[s].operators:
            for option, target in subgraph_calls(op):
                here = f"subgraph {s}, {where(op.index, op.display_name)}"
                if not 0 <= target < n:
                    raise ModelError(f"{here}: {option} {target} is not a subgraph (the model has {n})")
                on_path = [p for p, _ in path] + [s]
                if target in on_path:
                    chain = " -> ".join(map(str, on_path[on_path.index(target):] + [target]))
                    raise ModelError(f"{here}: {option} {target} calls a subgraph that is already running "
                                     f"(recursion {chain}); TFLM's planner and interpreter would recurse "
                                     f"without end")
                if target not in done:
                    visit(target, path + [(s, op)])
        done.add(s)

    visit(0, [])
    return order
