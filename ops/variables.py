"""Resource variables: TFLM's var_handle.cc, read_variable.cc, assign_variable.cc and
micro_resource_variable.cc — the state converters emit for streaming models that keep their own
(``tf.Variable`` assigned inside the model).

How TFLM keeps them, and so microref (each point checked against the wheel):

* VAR_HANDLE's Prepare finds or creates a resource id for its (container, shared_name): ids are
  handed out in prepare order (subgraph 0's operators first, then subgraph 1's, ...); a handle
  without a container matches a variable of any container. Its output tensor holds the id.
* A variable gets its buffer when an ASSIGN_VARIABLE is *prepared* with a handle whose value is
  known then — the output of a VAR_HANDLE earlier in the same subgraph, or an INT32 constant
  holding an id; a handle passed in as a subgraph input is not known at prepare and allocates
  nothing. The first such ASSIGN_VARIABLE fixes the variable's size (its value tensor's bytes)
  and its default value: every byte set to the value tensor's zero point cast to int8, when the
  tensor is quantized (of whatever type: an INT16 variable with zero point 3 starts as 0x0303 =
  771), else 0.
* READ_VARIABLE copies the variable's bytes into its output; ASSIGN_VARIABLE copies its value in.
  A variable read before any assignment gives its default value. A variable no ASSIGN_VARIABLE
  allocates has no bytes: TFLM copies nothing and the READ_VARIABLE's output keeps whatever the
  arena held there — microref refuses such a model.
* State persists across invoke(); Reset() sets every allocated variable back to its default value
  (MicroResourceVariables::ResetAll). Ids and allocations are fixed at prepare and never reset.

The per-call values live in the runtime's state (one row of bytes per sample); the kernels reach
them through the ``graph`` argument of eval (see ops/control_flow.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from interp.model import Tensor

from .registry import OpKernel, PrepareContext, register

# The operator table's row for these kernels.
VARIABLE_TYPES = "any numeric type (the variable is bytes, as in TFLM)"
VARIABLE_NOTES = ("resource variables keyed by container/shared_name, persist across `run()` until `reset()`; "
                  "`state()` shows them")

HANDLE_TYPES = ("RESOURCE", "INT32")  # ASSIGN_VARIABLE accepts either (TF_LITE_ENSURE)


@dataclass
class ResourceVariable:
    """One entry of TFLM's MicroResourceVariables."""

    container: str | None
    shared_name: str | None
    allocated: bool = False
    nbytes: int = 0  # the first allocating value tensor's bytes (0 while unallocated)
    default_byte: int = 0  # memset value at allocation and at reset
    type_name: str = ""  # the allocating tensor's type and shape: how state() shows the bytes
    dtype: np.dtype | None = None
    shape: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """``shared_name``, or ``container/shared_name`` when a container is named."""
        shared = self.shared_name if self.shared_name is not None else "<no shared_name>"
        return f"{self.container}/{shared}" if self.container else shared

    def default_value(self) -> np.ndarray:
        return np.full(self.nbytes, self.default_byte, np.uint8)


class ResourceTable:
    """The resource variables of a model, as TFLM's Prepare steps leave them."""

    def __init__(self):
        self.variables: list[ResourceVariable] = []
        self._handles: dict[tuple[int, int], int] = {}  # (subgraph, tensor) -> id known at prepare

    def find_or_create(self, container: str | None, shared_name: str | None, fail: Callable[[str], None]) -> int:
        """MicroResourceVariables::CreateIdIfNoneFound (with FindId's strcmp semantics)."""
        null = "TFLM's FindId passes a missing (null) {} to strcmp"
        for i, v in enumerate(self.variables):
            # (container == nullptr || !strcmp(container, v.container)) && !strcmp(shared_name, v.shared_name)
            if container is not None:
                if v.container is None:
                    fail(null.format("container"))
                if container != v.container:
                    continue
            if shared_name is None or v.shared_name is None:
                fail(null.format("shared_name"))
            if shared_name == v.shared_name:
                return i
        self.variables.append(ResourceVariable(container, shared_name))
        return len(self.variables) - 1

    def bind(self, subgraph: int, tensor: int, resource_id: int) -> None:
        """VAR_HANDLE's Prepare points its output at the id."""
        self._handles[(subgraph, tensor)] = resource_id

    def id_at_prepare(self, subgraph: int, tensor: Tensor) -> int | None:
        """The id a handle tensor holds during Prepare: a VAR_HANDLE's output prepared earlier, or
        an INT32 constant's value; None when TFLM's ``data.i32`` is still null then."""
        if (subgraph, tensor.index) in self._handles:
            return self._handles[(subgraph, tensor.index)]
        if tensor.data is not None and tensor.type_name in HANDLE_TYPES and tensor.dtype is not None:
            return int(np.asarray(tensor.data).reshape(-1)[0])
        return None

    def allocate(self, resource_id: int, value: Tensor, fail: Callable[[str], None]) -> None:
        """MicroResourceVariables::Allocate: the first call sizes the buffer and sets its default."""
        if not 0 <= resource_id < len(self.variables):
            fail(f"resource id {resource_id} does not exist yet ({len(self.variables)} created so far; "
                 f"TFLM: 'Attempting to read non-existent resource variable')")
        v = self.variables[resource_id]
        if v.allocated:
            return
        q = value.quantization
        v.allocated = True
        v.nbytes = value.nbytes
        # TFLM: default_value = (int8_t)zero_point[0]; memset takes it modulo 256.
        v.default_byte = (int(q.zero_points[0]) & 0xFF) if q is not None and q.zero_points.size else 0
        v.type_name, v.dtype, v.shape = value.type_name, value.dtype, tuple(value.shape)


def _handle_checks(ctx: PrepareContext, handle: Tensor) -> None:
    ctx.check(handle.type_name in HANDLE_TYPES,
              f"resource handle is {handle.type_name}, not RESOURCE or INT32", handle)
    ctx.check(handle.size == 1, f"resource handle has {handle.size} elements, not 1", handle)


def check_variable_bytes(ctx: PrepareContext, table: ResourceTable, resource_id: int, tensor: Tensor,
                         role: str) -> None:
    """After every Prepare: the variable a handle known at prepare names must exist, be allocated
    and have the tensor's byte count (TFLM DCHECKs it; a mismatch copies past one of them)."""
    if not 0 <= resource_id < len(table.variables):
        ctx.fail(f"resource id {resource_id} does not exist (the model creates {len(table.variables)})")
    v = table.variables[resource_id]
    ctx.check(v.allocated, f'resource variable "{v.name}" is never assigned: no ASSIGN_VARIABLE allocates it, '
                           f"so TFLM's variable has no bytes and the {role} would see whatever the arena held")
    ctx.check(v.nbytes == tensor.nbytes, f'resource variable "{v.name}" holds {v.nbytes} bytes '
                                         f"({v.type_name}{list(v.shape)}), its {role} tensor has {tensor.nbytes} "
                                         f"({tensor.type_name}{list(tensor.shape)}); TFLM copies the variable's "
                                         f"byte count", tensor)


# ---------------------------------------------------------------------------- VAR_HANDLE

@dataclass(frozen=True)
class VarHandleParams:
    container: str | None  # None when the options leave it out (then it matches any container)
    shared_name: str | None
    resource_id: int  # the id found or created at prepare


@register("VAR_HANDLE")
class VarHandle(OpKernel):
    """Outputs the resource id of its (container, shared_name), found or created at prepare."""

    supported_types = VARIABLE_TYPES
    notes = VARIABLE_NOTES

    def prepare(self, ctx):
        table: ResourceTable = ctx.graph.resources
        container, shared = ctx.options.get("container"), ctx.options.get("shared_name")
        out = ctx.output(0)
        _handle_checks(ctx, out)
        rid = table.find_or_create(container, shared, ctx.fail)
        table.bind(ctx.graph.subgraph_index, out.index, rid)
        self.params = VarHandleParams(container, shared, rid)
        self.out_shape = tuple(out.shape)

    def eval(self, inputs):
        return [np.full((1,) + self.out_shape, self.params.resource_id, np.int32)]

    def describe(self):
        return asdict(self.params)


# ---------------------------------------------------------------------------- READ_VARIABLE

@dataclass(frozen=True)
class ReadVariableParams:
    resource_id: int | None  # known at prepare (a VAR_HANDLE in this subgraph), else None


@register("READ_VARIABLE")
class ReadVariable(OpKernel):
    """Copies the resource variable's bytes into its output."""

    supported_types = VARIABLE_TYPES
    notes = VARIABLE_NOTES

    uses_graph = True

    def prepare(self, ctx):
        ctx.check_io_counts(1, 1)  # TFLM: DCHECK
        handle = ctx.require_input(0, "resource handle")
        _handle_checks(ctx, handle)
        table: ResourceTable = ctx.graph.resources
        self.output_tensor = out = ctx.output(0)
        rid = table.id_at_prepare(ctx.graph.subgraph_index, handle)
        self.params = ReadVariableParams(rid)
        if rid is not None:
            ctx.graph.after_prepare(lambda: check_variable_bytes(ctx, table, rid, out, "READ_VARIABLE output"))

    def eval(self, inputs, graph):
        return [graph.read_resource(inputs[0].reshape(inputs[0].shape[0], -1)[:, 0], self.output_tensor)]

    def describe(self):
        return asdict(self.params)


# ---------------------------------------------------------------------------- ASSIGN_VARIABLE

@dataclass(frozen=True)
class AssignVariableParams:
    resource_id: int | None  # known at prepare (then this op allocated the variable), else None


@register("ASSIGN_VARIABLE")
class AssignVariable(OpKernel):
    """Copies its value (input 1) into the resource variable (input 0 is the handle)."""

    supported_types = VARIABLE_TYPES
    notes = VARIABLE_NOTES

    uses_graph = True

    def prepare(self, ctx):
        ctx.check_io_counts(2, 0)
        handle = ctx.require_input(0, "resource handle")
        value = ctx.require_input(1, "value")
        _handle_checks(ctx, handle)
        ctx.check(value.dtype is not None, f"value of type {value.type_name} cannot be held", value)
        table: ResourceTable = ctx.graph.resources
        rid = table.id_at_prepare(ctx.graph.subgraph_index, handle)
        if rid is not None:
            table.allocate(rid, value, ctx.fail)
            ctx.graph.after_prepare(lambda: check_variable_bytes(ctx, table, rid, value, "ASSIGN_VARIABLE value"))
        self.params = AssignVariableParams(rid)
        self.value_tensor = value

    def eval(self, inputs, graph):
        handle, value = inputs
        graph.assign_resource(handle.reshape(handle.shape[0], -1)[:, 0], value, self.value_tensor)
        return []

    def describe(self):
        return asdict(self.params)
