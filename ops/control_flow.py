"""Control flow: TFLM's if.cc, while.cc and call_once.cc — operators that invoke other subgraphs.

Kernels here (and in ops/variables.py) need the graph around them, which an operator's tensors
alone do not give. The runtime hands it to them through two small interfaces, so that no kernel
imports the runtime (the layering: interp.runtime imports ops, never the reverse):

* at prepare, ``ctx.graph`` (a ``GraphInfo``): the subgraphs' input and output tensors (TFLM's
  MicroGraph), the resource-variable table (TFLM's MicroResourceVariables) and
  ``after_prepare(check)`` for checks that need every operator of every subgraph prepared;
* at eval, a kernel whose class sets ``uses_graph = True`` is called as
  ``eval(inputs, graph=...)`` (``eval(inputs, state, graph=...)`` when it is also stateful) with a
  ``GraphCall``: ``invoke(subgraph, inputs)`` runs a subgraph on the call's samples and returns
  its outputs; the resource variables of the call's samples are read and assigned through it.

Samples: a run_batch call evaluates N independent samples at once, and control flow may send
them different ways (an IF's condition, a WHILE's trip count differ per sample). ``invoke``
therefore takes ``samples``, the indices (into the current call's N) of the samples to run the
subgraph for; their state (variable tensors, resource variables, kernel state) is taken from and
written back to those samples only.

Copies between subgraphs are TFLM's memcpy of whole tensors (kernel_util.cc's
CopyOpInputsToSubgraphInputs and friends): it insists on equal byte counts and DCHECKs equal
types; shapes may differ. microref requires both (a type pun through a DCHECK is no contract a
model can rely on) and checks every copy at prepare, where TFLM would find a byte-count mismatch
only when the copy runs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from interp.errors import ModelError
from interp.model import Tensor

from .registry import OpKernel, PrepareContext, register
from .shape import with_samples

# A WHILE still looping after this many iterations of one call is reported as an error naming
# the operator (TFLM would loop for ever). Interpreter(..., max_while_iterations=...) changes it.
DEFAULT_MAX_WHILE_ITERATIONS = 100_000

# The operator table's row for IF, WHILE and CALL_ONCE.
CONTROL_FLOW_TYPES = "any types the branch/cond/body subgraphs take"
CONTROL_FLOW_NOTES = ("every subgraph prepared; per-sample branches and trip counts in `run_batch`; CALL_ONCE runs "
                      "once per interpreter (TFLM's `reset()` does not re-arm it); a WHILE still looping after "
                      '`max_while_iterations` (100,000) is an error. See "Streaming models"')


class GraphInfo(Protocol):
    """What a kernel's prepare may ask about the model's other subgraphs (``ctx.graph``)."""

    subgraph_index: int  # the subgraph of the operator being prepared
    num_subgraphs: int
    max_while_iterations: int

    def subgraph_inputs(self, index: int) -> list[Tensor]: ...

    def subgraph_outputs(self, index: int) -> list[Tensor]: ...

    def after_prepare(self, check: Callable[[], None]) -> None:
        """Run ``check`` once every operator of every subgraph is prepared (it may ctx.fail)."""

    resources: object  # the resource-variable table, see ops/variables.py (ResourceTable)


class GraphCall(Protocol):
    """What a kernel's eval may do with the graph (the ``graph=`` argument)."""

    n: int  # samples in this call

    def invoke(self, subgraph: int, inputs: Sequence[np.ndarray],
               samples: np.ndarray | None = None) -> list[np.ndarray]:
        """Run ``subgraph`` on ``inputs`` (each with a leading axis of len(samples), or N when
        samples is None); returns its outputs, each (len(samples),) + output shape."""

    def read_resource(self, ids: np.ndarray, tensor: Tensor) -> np.ndarray:
        """Per sample, the bytes of resource variable ids[k] in ``tensor``'s type and shape."""

    def assign_resource(self, ids: np.ndarray, value: np.ndarray, tensor: Tensor) -> None:
        """Per sample, copy ``value`` (the values of ``tensor``) into resource variable ids[k]."""


def check_copy(ctx: PrepareContext, source: Tensor, target: Tensor, what: str) -> None:
    """A whole-tensor copy between an operator and a subgraph, as TFLM's memcpy does it: equal byte
    counts (TFLM: TF_LITE_ENSURE(bytes >= 0) at Invoke) and equal types (TFLM: DCHECK)."""
    ctx.check(source.nbytes == target.nbytes,
              f"{what}: copies {source.type_name}{list(source.shape)} ({source.nbytes} bytes) into "
              f"{target.type_name}{list(target.shape)} ({target.nbytes} bytes); TFLM's copy needs equal "
              f"byte counts (its Invoke fails)", source)
    ctx.check(source.type_name == target.type_name,
              f"{what}: copies a {source.type_name} tensor into a {target.type_name} tensor "
              f"(TFLM DCHECKs equal types and would reinterpret the bytes)", source)


def check_subgraph_index(ctx: PrepareContext, option: str, index: int) -> None:
    n = ctx.graph.num_subgraphs
    ctx.check(0 <= index < n, f"{option} {index} is not a subgraph (the model has {n}; "
                              f"TF_LITE_ENSURE(index < NumSubgraphs()))")


def copy_into(values: Sequence[np.ndarray], targets: Sequence[Tensor]) -> list[np.ndarray]:
    """TFLM's whole-tensor copies: the same bytes in the target's shape (types checked at prepare)."""
    return [v.reshape((v.shape[0],) + tuple(t.shape)) for v, t in zip(values, targets)]


def first_bool(a: np.ndarray) -> np.ndarray:
    """Per sample, the first element of a BOOL tensor, as TFLM reads ``data.b[0]``."""
    return a.reshape(a.shape[0], -1)[:, 0].astype(bool)


# ---------------------------------------------------------------------------- IF

@dataclass(frozen=True)
class IfParams:
    then_subgraph_index: int  # invoked for samples whose condition is true
    else_subgraph_index: int  # and for the others


@register("IF")
class If(OpKernel):
    """Input 0 is a one-element BOOL condition; inputs 1.. are copied into the inputs of the
    branch it selects, which runs; its outputs are copied into the operator's outputs."""

    supported_types = CONTROL_FLOW_TYPES
    notes = CONTROL_FLOW_NOTES

    uses_graph = True

    def prepare(self, ctx):
        o = ctx.options
        p = IfParams(int(o.get("then_subgraph_index", 0)), int(o.get("else_subgraph_index", 0)))
        ctx.check(len(ctx.op.inputs) > 0, "has no inputs (TF_LITE_ENSURE(node->inputs->size > 0))")
        cond = ctx.require_input(0, "condition")
        ctx.check(cond.type_name == "BOOL", f"condition is {cond.type_name}, not BOOL", cond)
        ctx.check(cond.size == 1, f"condition has {cond.size} elements, not 1", cond)
        check_subgraph_index(ctx, "then_subgraph_index", p.then_subgraph_index)
        check_subgraph_index(ctx, "else_subgraph_index", p.else_subgraph_index)
        args = ctx.inputs()[1:]
        ctx.check(all(a is not None for a in args), "an omitted input cannot be passed to a branch")
        outs = [ctx.output(i) for i in range(len(ctx.op.outputs))]
        g = ctx.graph
        # TFLM's Prepare checks the then branch's counts; the else branch's are checked by the
        # copies when it runs (and a branch without outputs leaves the operator's outputs as they
        # were: uninitialised arena memory), so both are checked here.
        for option, s in (("then_subgraph_index", p.then_subgraph_index),
                          ("else_subgraph_index", p.else_subgraph_index)):
            ins, res = g.subgraph_inputs(s), g.subgraph_outputs(s)
            ctx.check(len(ins) == len(args), f"passes {len(args)} inputs to subgraph {s} ({option}), "
                                             f"which takes {len(ins)}")
            ctx.check(len(res) == len(outs), f"has {len(outs)} outputs, subgraph {s} ({option}) "
                                             f"gives {len(res)}")
            for k, (a, t) in enumerate(zip(args, ins)):
                check_copy(ctx, a, t, f"input {k + 1} into subgraph {s} input {k}")
            for k, (t, out) in enumerate(zip(res, outs)):
                check_copy(ctx, t, out, f"subgraph {s} output {k} into output {k}")
        self.params = p
        self.branch_inputs = {s: g.subgraph_inputs(s) for s in (p.then_subgraph_index, p.else_subgraph_index)}
        self.outputs = outs

    def eval(self, inputs, graph):
        p = self.params
        n = graph.n
        cond = with_samples(first_bool(inputs[0]), n)
        args = [with_samples(a, n) for a in inputs[1:]]
        if cond.all() or not cond.any():
            s = p.then_subgraph_index if cond[0] else p.else_subgraph_index
            return copy_into(graph.invoke(s, copy_into(args, self.branch_inputs[s])), self.outputs)
        # The samples disagree: each branch runs for its own samples.
        results = [np.empty((n,) + tuple(t.shape), t.dtype) for t in self.outputs]
        for s, chosen in ((p.then_subgraph_index, cond), (p.else_subgraph_index, ~cond)):
            idx = np.flatnonzero(chosen)
            outs = graph.invoke(s, copy_into([a[idx] for a in args], self.branch_inputs[s]), samples=idx)
            for r, v in zip(results, copy_into(outs, self.outputs)):
                r[idx] = v
        return results

    def describe(self):
        from dataclasses import asdict
        return asdict(self.params)


# ---------------------------------------------------------------------------- WHILE

@dataclass(frozen=True)
class WhileParams:
    cond_subgraph_index: int  # takes the loop values, gives a BOOL (its first element decides)
    body_subgraph_index: int  # takes the loop values, gives the next ones
    max_iterations: int  # microref's guard against a loop that never ends (TFLM has none)


@register("WHILE")
class While(OpKernel):
    """The operator's inputs are the initial loop values and its outputs the final ones: TFLM
    copies the inputs to the outputs, then while cond(outputs) is true, outputs = body(outputs)."""

    supported_types = CONTROL_FLOW_TYPES
    notes = CONTROL_FLOW_NOTES

    uses_graph = True

    def prepare(self, ctx):
        o = ctx.options
        g = ctx.graph
        p = WhileParams(int(o.get("cond_subgraph_index", 0)), int(o.get("body_subgraph_index", 0)),
                        int(g.max_while_iterations))
        check_subgraph_index(ctx, "cond_subgraph_index", p.cond_subgraph_index)
        check_subgraph_index(ctx, "body_subgraph_index", p.body_subgraph_index)
        ins = ctx.inputs()
        ctx.check(all(t is not None for t in ins), "an omitted input cannot be a loop value")
        outs = [ctx.output(i) for i in range(len(ctx.op.outputs))]
        cond_in, cond_out = g.subgraph_inputs(p.cond_subgraph_index), g.subgraph_outputs(p.cond_subgraph_index)
        body_in, body_out = g.subgraph_inputs(p.body_subgraph_index), g.subgraph_outputs(p.body_subgraph_index)
        ctx.check(len(ins) == len(cond_in), f"has {len(ins)} inputs, cond subgraph {p.cond_subgraph_index} "
                                            f"takes {len(cond_in)}")
        ctx.check(len(ins) == len(body_in), f"has {len(ins)} inputs, body subgraph {p.body_subgraph_index} "
                                            f"takes {len(body_in)}")
        ctx.check(len(ins) == len(outs), f"has {len(ins)} inputs and {len(outs)} outputs (must be equal)")
        ctx.check(len(outs) == len(body_out), f"has {len(outs)} outputs, body subgraph "
                                              f"{p.body_subgraph_index} gives {len(body_out)}")
        # The cond subgraph's first output is read as data.b[0] (no check in TFLM).
        ctx.check(len(cond_out) >= 1, f"cond subgraph {p.cond_subgraph_index} has no output to read "
                                      f"the condition from")
        ctx.check(cond_out[0].type_name == "BOOL" and cond_out[0].size >= 1,
                  f"cond subgraph {p.cond_subgraph_index} output 0 is {cond_out[0].type_name}"
                  f"{list(cond_out[0].shape)}, TFLM reads it as a bool", cond_out[0])
        for k, (i, out) in enumerate(zip(ins, outs)):
            check_copy(ctx, i, out, f"input {k} into output {k}")
            check_copy(ctx, i, cond_in[k], f"input {k} into cond subgraph input {k}")
            check_copy(ctx, out, body_in[k], f"output {k} into body subgraph input {k}")
            check_copy(ctx, body_out[k], out, f"body subgraph output {k} into output {k}")
        self.params = p
        self.outputs, self.cond_inputs, self.body_inputs = outs, cond_in, body_in
        self.location = ctx.location()

    def eval(self, inputs, graph):
        p = self.params
        n = graph.n
        values = copy_into([with_samples(a, n) for a in inputs], self.outputs)
        running = np.arange(n)
        cond = first_bool(graph.invoke(p.cond_subgraph_index, copy_into(values, self.cond_inputs))[0])
        iterations = 0
        while True:
            running = running[cond]
            if running.size == 0:
                return values
            iterations += 1
            if iterations > p.max_iterations:
                raise ModelError(f"{self.location}: still looping after {p.max_iterations} iterations "
                                 f"(the limit is Interpreter(..., max_while_iterations=...)); TFLM would "
                                 f"loop for ever")
            whole = running.size == n
            sel = None if whole else running
            current = values if whole else [v[running] for v in values]
            nxt = copy_into(graph.invoke(p.body_subgraph_index, copy_into(current, self.body_inputs), sel),
                            self.outputs)
            if whole:
                values = nxt
            else:
                values = [v.copy() for v in values]
                for v, new in zip(values, nxt):
                    v[running] = new
            cond = first_bool(graph.invoke(p.cond_subgraph_index, copy_into(nxt, self.cond_inputs), sel)[0])

    def describe(self):
        from dataclasses import asdict
        return asdict(self.params)


# ---------------------------------------------------------------------------- CALL_ONCE

@dataclass(frozen=True)
class CallOnceParams:
    init_subgraph_index: int  # invoked on the first call, never again


@register("CALL_ONCE")
class CallOnce(OpKernel):
    """Invokes its init subgraph (no inputs or outputs; it typically assigns resource variables)
    on the interpreter's first call only. TFLM's ``has_run`` flag is set at Prepare and has no
    reset function: Interpreter.reset() does not re-arm it (checked against the wheel), so after
    a reset the variables the init subgraph had assigned keep their reset values."""

    supported_types = CONTROL_FLOW_TYPES
    notes = CONTROL_FLOW_NOTES

    uses_graph = True
    survives_reset = True  # the runtime keeps this kernel's state across reset()

    def prepare(self, ctx):
        self.params = CallOnceParams(int(ctx.options.get("init_subgraph_index", 0)))
        ctx.check_io_counts(0, 0)
        check_subgraph_index(ctx, "init_subgraph_index", self.params.init_subgraph_index)
        if ctx.graph.subgraph_inputs(self.params.init_subgraph_index):
            # TFLM invokes it without setting any input: they hold whatever the arena held.
            ctx.unsupported(f"init subgraph {self.params.init_subgraph_index} takes inputs, which TFLM never sets "
                            "(it would read uninitialised arena memory)")

    def initial_state(self):
        return (np.array(False),)  # has_run

    def eval(self, inputs, state, graph):
        (has_run,) = state
        todo = np.flatnonzero(~with_samples(has_run, graph.n))
        if todo.size:
            graph.invoke(self.params.init_subgraph_index, [], None if todo.size == graph.n else todo)
        return [], (np.ones(graph.n, bool),)

    def describe(self):
        from dataclasses import asdict
        return asdict(self.params)
