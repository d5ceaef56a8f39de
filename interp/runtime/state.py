"""What the runtime keeps across calls, and what it gives kernels that reach past their operator.

* ``State``: everything a call reads from earlier calls — variable tensors of every subgraph,
  stateful kernels' private buffers, resource variables — each with a leading axis of samples.
* ``PrepareContext`` / ``GraphInfo``: the prepare-time view of the other subgraphs and of the
  resource-variable table (ops/control_flow.py documents the interface kernels see).
* ``GraphCall``: the eval-time interface: invoke a subgraph for some samples, read and assign
  resource variables.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ops import registry

from ..errors import ModelError
from ..model import Operator, Tensor

if TYPE_CHECKING:  # pragma: no cover
    from .interpreter import Interpreter


@dataclass
class State:
    """The state of n independent samples. Arrays are replaced, never written in place, so a
    shallow ``copy()`` is a snapshot."""

    n: int
    variables: dict[tuple[int, int], np.ndarray]  # (subgraph, tensor) -> (n,) + shape
    kernels: dict[tuple[int, int], tuple[np.ndarray, ...]]  # (subgraph, operator) -> arrays (n, ...)
    resources: dict[int, np.ndarray]  # resource id -> (n, bytes) uint8

    def copy(self) -> State:
        return State(self.n, dict(self.variables), dict(self.kernels), dict(self.resources))

    def take(self, samples: np.ndarray, subgraphs: frozenset[int]) -> State:
        """The state of ``samples`` only, for a call of a subgraph that reaches ``subgraphs``."""
        return State(len(samples),
                     {k: _rows(v, samples, self.n) for k, v in self.variables.items() if k[0] in subgraphs},
                     {k: tuple(_rows(a, samples, self.n) for a in v)
                      for k, v in self.kernels.items() if k[0] in subgraphs},
                     {k: _rows(v, samples, self.n) for k, v in self.resources.items()})

    def put(self, samples: np.ndarray, part: State) -> None:
        """Write back what ``take(samples, ...)`` gave, after the call changed it."""
        for k, v in part.variables.items():
            self.variables[k] = _merge(self.variables[k], samples, v, self.n)
        for k, v in part.kernels.items():
            self.kernels[k] = tuple(_merge(a, samples, b, self.n) for a, b in zip(self.kernels[k], v))
        for k, v in part.resources.items():
            self.resources[k] = _merge(self.resources[k], samples, v, self.n)


def _rows(a: np.ndarray, samples: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(a, (n,) + a.shape[1:])[samples]


def _merge(full: np.ndarray, samples: np.ndarray, part: np.ndarray, n: int) -> np.ndarray:
    out = np.broadcast_to(full, (n,) + full.shape[1:]).copy()
    out[samples] = part
    return out


class PrepareContext(registry.PrepareContext):
    """The kernels' prepare context, with ``graph`` (a GraphInfo) and subgraph-aware locations."""

    def __init__(self, op: Operator, tensors: list[Tensor], numerics, graph: GraphInfo, kernels: str = "fast"):
        super().__init__(op, tensors, numerics, kernels)
        self.graph = graph

    def location(self, tensor: Tensor | None = None) -> str:
        here = super().location(tensor)
        return here if self.graph.subgraph_index == 0 else f"subgraph {self.graph.subgraph_index}, {here}"


class GraphInfo:
    """The prepare-time view of the model around an operator of subgraph ``subgraph_index``."""

    def __init__(self, interpreter: Interpreter, subgraph_index: int, deferred: list[Callable[[], None]]):
        self._model = interpreter.model
        self.subgraph_index = subgraph_index
        self.num_subgraphs = len(self._model.subgraphs)
        self.max_while_iterations = interpreter.max_while_iterations
        self.resources = interpreter.resources
        self._deferred = deferred

    def subgraph_inputs(self, index: int) -> list[Tensor]:
        sg = self._model.subgraphs[index]
        return [sg.tensors[i] for i in sg.inputs]

    def subgraph_outputs(self, index: int) -> list[Tensor]:
        sg = self._model.subgraphs[index]
        return [sg.tensors[i] for i in sg.outputs]

    def after_prepare(self, check: Callable[[], None]) -> None:
        self._deferred.append(check)


class GraphCall:
    """The eval-time interface of one operator's call: ``n`` samples of ``state``."""

    def __init__(self, interpreter: Interpreter, state: State, n: int, keep: bool, location: str):
        self._it = interpreter
        self._state = state
        self.n = n
        self._keep = keep
        self.location = location

    def invoke(self, subgraph: int, inputs: Sequence[np.ndarray],
               samples: np.ndarray | None = None) -> list[np.ndarray]:
        it = self._it
        sg = it.model.subgraphs[subgraph]
        if samples is None or len(samples) == self.n and np.array_equal(samples, np.arange(self.n)):
            m, env = self.n, it._run_subgraph(subgraph, list(inputs), self.n, self._state, self._keep)
        else:
            m = len(samples)
            part = self._state.take(samples, it._callees[subgraph])
            env = it._run_subgraph(subgraph, list(inputs), m, part, self._keep)
            self._state.put(samples, part)
        return [it._output_value(subgraph, env, ti, m) for ti in sg.outputs]

    def _variable(self, rid: int, tensor: Tensor, role: str):
        table = self._it.resources
        if not 0 <= rid < len(table.variables):
            raise ModelError(f"{self.location}: resource id {rid} does not exist (the model creates "
                             f"{len(table.variables)}; TFLM's Invoke fails)")
        v = table.variables[rid]
        if not v.allocated:
            raise ModelError(f'{self.location}: resource variable "{v.name}" was never allocated: TFLM allocates '
                             f"one only when an ASSIGN_VARIABLE is prepared with a handle known at prepare "
                             f"(its Invoke fails or reads nothing)")
        if (tensor.nbytes < v.nbytes) if role == "assign" else (tensor.nbytes != v.nbytes):
            raise ModelError(f'{self.location}: resource variable "{v.name}" holds {v.nbytes} bytes, the '
                             f"tensor has {tensor.nbytes}")
        return v

    def _ids(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids).astype(np.int64).reshape(-1)
        return ids if ids.size == self.n else np.broadcast_to(ids, (self.n,))

    def read_resource(self, ids: np.ndarray, tensor: Tensor) -> np.ndarray:
        ids = self._ids(ids)
        out = np.empty((self.n, tensor.nbytes), np.uint8)
        for rid in np.unique(ids):
            self._variable(int(rid), tensor, "read")
            rows = ids == rid
            out[rows] = np.broadcast_to(self._state.resources[int(rid)], (self.n, tensor.nbytes))[rows]
        return out.view(tensor.dtype).reshape((self.n,) + tuple(tensor.shape))

    def assign_resource(self, ids: np.ndarray, value: np.ndarray, tensor: Tensor) -> None:
        ids = self._ids(ids)
        raw = np.ascontiguousarray(np.broadcast_to(value, (self.n,) + value.shape[1:]))
        raw = raw.reshape(self.n, -1).view(np.uint8)
        for rid in np.unique(ids):
            v = self._variable(int(rid), tensor, "assign")
            rows = ids == rid
            current = np.broadcast_to(self._state.resources[int(rid)], (self.n, v.nbytes)).copy()
            # TFLM copies the variable's byte count from the start of the value.
            current[rows] = raw[rows, :v.nbytes]
            self._state.resources[int(rid)] = current
