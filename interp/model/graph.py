"""Graph-level checks and facts: execution order, producers, consumers, last uses."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError, where
from .parse import Subgraph


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
