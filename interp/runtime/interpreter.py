"""The Interpreter: prepare every operator once, then run inputs through the graph."""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import ops  # noqa: F401  (importing the package registers every kernel)
from ops import registry
from ops.control_flow import DEFAULT_MAX_WHILE_ITERATIONS
from ops.variables import ResourceTable

from ..errors import InputError, MicrorefError, ModelError, TensorLookupError, UnsupportedOpError, printable, where
from ..model import Model, Tensor, analyse, load_model
from ..model.graph import check_subgraph_calls, subgraph_calls
from .inputs import SampleInputs, gather_inputs, tensor_details
from .state import GraphCall, GraphInfo, PrepareContext, State
from .values import dequantize_tensor, value_dtype, variable_reset_value

# numpy's ufunc buffer (8192 elements by default) makes it stage operands through the buffer
# whenever an inner loop is shorter than the buffer and an operand broadcasts, as per-channel
# constants do over rows of a few hundred to a few thousand values; with a 512-element buffer
# those loops run in place (measured: 10-20% of a batched MobileNet-style model). Runs with
# fewer activation values than SMALL_RUN_ELEMENTS keep numpy's setting.
UFUNC_BUFFER_ELEMENTS = 512
SMALL_RUN_ELEMENTS = 1 << 14
# Samples per worker thread below which splitting a batch costs more than it saves.
MIN_SAMPLES_PER_THREAD = 4
MIN_THREAD_ELEMENTS = 1 << 16  # activation elements a worker thread should have at least
MAX_THREADS_PER_CORE = 4  # run_batch(threads=...) is capped at this many worker threads per core
# Read once: os.cpu_count() reads /sys on every call (15-50 µs, a percent of a batched call).
CORES = os.cpu_count() or 1



@contextlib.contextmanager
def _ufunc_buffer(elements: int):
    """numpy's ufunc buffer size for this thread (numpy keeps it per thread), restored after."""
    previous = np.getbufsize()
    if previous == elements:
        yield
        return
    np.setbufsize(elements)
    try:
        yield
    finally:
        np.setbufsize(previous)


KERNEL_MODES = ("fast", "reference")


def refuse_unrunnable(model: Model, subgraphs) -> None:
    """UnsupportedOpError listing every operator with no kernel or with one that always refuses."""
    found: dict[tuple[str, int], tuple[list[int], str]] = {}
    for s in sorted(subgraphs):
        for op in model.subgraphs[s].operators:
            cls = registry.kernel_class(op)
            why = "operator is not implemented" if cls is None else getattr(cls, "refused", "")
            if why:
                found.setdefault((op.display_name, op.version), ([], why))[0].append(op.index)
    if found:
        # Names come from the model: escaped, so that one cannot forge another line of the list.
        lines = [f"{printable(name)} (version {ver}) at operator{'s' if len(ops) > 1 else ''} "
                 f"{', '.join(map(str, ops))}: {why}"
                 for (name, ver), (ops, why) in found.items()]
        raise UnsupportedOpError("the model uses unsupported operators:\n  " + "\n  ".join(lines),
                                 [(name, ver, ops, why) for (name, ver), (ops, why) in found.items()])


class _PerThread:
    """An attribute whose value belongs to the thread that set it: what a call keeps for
    ``tensor()`` and ``state(before=True)`` is that call's, even while other threads run the
    same Interpreter. Other threads see the default until they make a call of their own."""

    def __init__(self, factory=None):
        self.factory = factory  # makes a thread's first value (None without one)

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return getattr(obj._calls, self.name)
        except AttributeError:
            value = self.factory() if self.factory else None
            setattr(obj._calls, self.name, value)
            return value

    def __set__(self, obj, value):
        setattr(obj._calls, self.name, value)


class Interpreter:
    """Runs an int8 TFLite model with TFLM's reference-kernel arithmetic, bit for bit.

        it = Interpreter.from_file("model.tflite")
        outputs = it.run([x])            # or it.run({"input_name": x})
        batch_outputs = it.run_batch([X])  # X has a leading axis of samples
        it.tensor(it.output_details[0]["index"]), it.dequantized(...)   # after any run

    Parameters (of the constructor, ``from_file`` and ``from_bytes``):

    model
        An ``interp.Model`` (``interp.load_model(path_or_bytes)``); ``from_file(path)`` and
        ``from_bytes(data)`` load it for you. Every operator is prepared once, here, the way
        TFLM's Prepare does it: a model TFLM rejects raises ``ModelError``, operators (or
        variants) microref does not implement raise one ``UnsupportedOpError`` listing them all.
    numerics
        An ``ops.registry.Numerics`` selecting arithmetic variants, to reproduce other runtimes
        (``Numerics(rounding="single")`` is TFLITE_SINGLE_ROUNDING; ``scale_precision="float32"``
        older TFLM builds). Default: the pinned TFLM wheel's arithmetic.
    kernels
        ``"fast"`` (default) runs the kernels' vectorised paths; ``"reference"`` the plain loops
        of ``ops.reference``, which give the same bytes (tested) and are the ones to read.
    max_while_iterations
        A WHILE operator still looping after this many iterations within one call raises a
        ``ModelError`` naming it (TFLM would loop forever).

    Public attributes: ``model``, ``subgraph`` (subgraph 0), ``tensors`` (its tensors),
    ``kernels`` (its prepared kernels, one per operator), ``numerics``, ``kernel_mode``,
    ``input_details`` / ``output_details``, ``stateful``; ``plan`` (the arena plan TFLM makes)
    on ``interp.Interpreter``.
    """

    # What the calling thread's last call left for tensor(), dequantized() and state(before=True).
    _kept = _PerThread()  # every tensor of subgraph 0 (keep=True)
    _io = _PerThread()  # the model's inputs and outputs (any call)
    _kept_subgraphs = _PerThread(dict)  # other subgraphs' tensors (keep=True)
    _state_before = _PerThread()  # the state the call started from (keep=True)
    # The state each operator that reads state (stateful, calling subgraphs, overwriting variable
    # tensors) of subgraph 0 started from, by operator index (run(..., keep=True), for eval_operator).
    _op_states = _PerThread(dict)

    def __init__(self, model: Model, *, numerics=None, kernels: str = "fast",
                 max_while_iterations: int = DEFAULT_MAX_WHILE_ITERATIONS):
        self._calls = threading.local()
        self.model = model
        self.numerics = numerics or registry.DEFAULT_NUMERICS
        # "fast" runs the kernels' fast paths; "reference" the plain kernels of ops.reference, which
        # give the same bytes (tested) and are the ones to read or step through.
        if kernels not in KERNEL_MODES:
            raise ValueError(f"kernels must be one of {KERNEL_MODES}, not {kernels!r}")
        self.kernel_mode = kernels
        # A WHILE still looping after this many iterations in one call is an error naming it.
        self.max_while_iterations = int(max_while_iterations)
        sg = model.main
        self.subgraph = sg
        self.tensors = sg.tensors
        # Subgraphs run by IF / WHILE / CALL_ONCE: indices and recursion checked, each reachable
        # subgraph's data flow checked like subgraph 0's.
        self.reachable = check_subgraph_calls(model)
        # Operators microref can never run (no kernel, or one that always refuses: an NPU
        # command stream) are reported before the data flow is checked, which such models (Vela's
        # scratch tensors nothing writes) may not pass: the reason is the operator.
        refuse_unrunnable(model, self.reachable)
        self.graphs = {s: analyse(model.subgraphs[s]) for s in self.reachable}
        self.graph = self.graphs[0]
        self.resources = ResourceTable()
        # Every subgraph's kernels, prepared in TFLM's order (subgraph 0 first); ``kernels`` are
        # subgraph 0's.
        self.subgraph_kernels = self._prepare_all(registry)
        self.kernels = self.subgraph_kernels[0]
        self._callees = {s: self._reachable_from(s) for s in self.reachable}
        self._schedules: dict[int, list] = {}
        # run()'s input check, with its common case precomputed.
        self._sample_inputs = SampleInputs([self.tensors[i] for i in sg.inputs])
        # run()'s lean loop over subgraph 0 (see _build_plain_plan): None until the first run(),
        # False for a model it does not fit.
        self._plain_plan: list | bool | None = None
        self._activation_elements = sum(t.size for t in self.tensors if t.data is None)  # per sample
        self._kept: dict[int, np.ndarray] | None = None
        self._io: dict[int, np.ndarray] | None = None  # the last call's inputs and outputs
        self._kept_subgraphs: dict[int, dict[int, np.ndarray]] = {}
        self._state_before: State | None = None
        # State kept across run() calls, as TFLM keeps it across invoke() (see State): variable
        # tensors of every subgraph, stateful kernels' private buffers, resource variables.
        self._variables = {s: [t.index for t in model.subgraphs[s].tensors if t.is_variable and t.dtype is not None]
                           for s in self.reachable}
        self._stateful_ops = {(s, op.index): k for s in self.reachable
                              for op, k in zip(model.subgraphs[s].operators, self.subgraph_kernels[s])
                              if k is not None and k.initial_state() is not None}
        self._state = self._fresh_state(1)

    def _reachable_from(self, s: int) -> frozenset[int]:
        seen, todo = set(), [s]
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo.extend(t for op in self.model.subgraphs[g].operators for _, t in subgraph_calls(op))
        return frozenset(seen)

    @property
    def stateful(self) -> bool:
        """Whether outputs depend on earlier calls (variable tensors, stateful kernels, resource
        variables)."""
        return bool(any(self._variables.values()) or self._stateful_ops or self.resources.variables)

    def reset(self) -> None:
        """Forget every earlier call, as TFLM's MicroInterpreter::Reset(): variable tensors of every
        subgraph are set to their reset value (memset with an int8 tensor's zero point, else 0, as
        TFLM's ResetTensorData does), resource variables to their default value, stateful kernels
        to their initial state — except CALL_ONCE, whose TFLM kernel has no reset: its init
        subgraph does not run again after a reset."""
        fresh = self._fresh_state(1)
        for key, kernel in self._stateful_ops.items():
            if getattr(kernel, "survives_reset", False):
                fresh.kernels[key] = self._state.kernels[key]
        self._state = fresh

    def _fresh_state(self, n: int) -> State:
        """The state of a model just loaded, for n samples."""
        variables = {}
        for s, indices in self._variables.items():
            tensors = self.model.subgraphs[s].tensors
            for ti in indices:
                variables[(s, ti)] = np.broadcast_to(variable_reset_value(tensors[ti]),
                                                     (n,) + tuple(tensors[ti].shape)).copy()
        kernels = {key: tuple(np.broadcast_to(a, (n,) + a.shape).copy() for a in k.initial_state())
                   for key, k in self._stateful_ops.items()}
        resources = {i: np.broadcast_to(v.default_value(), (n, v.nbytes)).copy()
                     for i, v in enumerate(self.resources.variables) if v.allocated}
        return State(n, variables, kernels, resources)

    def state(self, *, before: bool = False) -> dict[str, dict[str, np.ndarray]]:
        """The state the next run() starts from, as ``{"variables": {name: value}, "resources":
        {name: value}}``: variable tensors by tensor name (``"k:name"`` for subgraph k > 0) and
        resource variables by shared_name (``"container/shared_name"`` when a container is named),
        each value one sample's, a resource variable's bytes shown in the type and shape of the
        tensor that allocated it. ``before=True``: the state the last run(..., keep=True) started
        from."""
        st = self._state
        if before:
            if self._state_before is None:
                raise KeyError("the state before a call is kept only by run(..., keep=True)")
            st = self._state_before
        variables: dict[str, np.ndarray] = {}
        for (s, ti), value in st.variables.items():
            t = self.model.subgraphs[s].tensors[ti]
            name = t.name if s == 0 else f"{s}:{t.name}"
            if name in variables:
                name = f"{name}#{ti}"
            variables[name] = value[0].copy()
        resources = {}
        for rid, raw in st.resources.items():
            v = self.resources.variables[rid]
            resources[v.name] = np.ascontiguousarray(raw[0]).view(v.dtype).reshape(v.shape).copy()
        return {"variables": variables, "resources": resources}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> Interpreter:
        """Load the ``.tflite`` file at ``path`` and prepare it. ``kwargs`` are the constructor's
        (``numerics``, ``kernels``, ``max_while_iterations``). A file that cannot be read or
        parsed raises ``ModelError``."""
        return cls(load_model(path), **kwargs)

    @classmethod
    def from_bytes(cls, data: bytes, **kwargs) -> Interpreter:
        """Load a model from the bytes of a ``.tflite`` file and prepare it. ``kwargs`` are the
        constructor's (``numerics``, ``kernels``, ``max_while_iterations``)."""
        return cls(load_model(data), **kwargs)

    def _prepare_all(self, reg):
        """Prepare every operator of every subgraph in TFLM's order (PrepareSubgraphs), then the
        checks kernels deferred until all are prepared. Unsupported operators are reported
        together."""
        kernels: list[list] = []
        unsupported: dict[tuple[str, int], dict] = {}
        deferred: list = []
        for sg in self.model.subgraphs:
            info = GraphInfo(self, sg.index, deferred)
            row = []
            for op in sg.operators:
                label = str(op.index) if sg.index == 0 else f"{op.index} of subgraph {sg.index}"
                cls = reg.kernel_class(op)
                if cls is None:
                    key = (op.display_name, op.version)
                    entry = unsupported.setdefault(key, {"ops": [], "labels": [], "why": "operator is not implemented"})
                    entry["ops"].append(op.index)
                    entry["labels"].append(label)
                    row.append(None)
                    continue
                try:
                    row.append(cls(PrepareContext(op, sg.tensors, self.numerics, info, self.kernel_mode)))
                except UnsupportedOpError as e:
                    for name, version, idx, why in e.unsupported:
                        entry = unsupported.setdefault((name, version), {"ops": [], "labels": [], "why": why})
                        entry["ops"].extend(idx)
                        entry["labels"].append(label)
                    row.append(None)
                except MicrorefError:
                    raise
                except (ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError, TypeError,
                        AttributeError) as e:
                    # A kernel's prepare tripped on inconsistent parameters the model should not have.
                    here = where(op.index, op.display_name)
                    raise ModelError(f"{here if sg.index == 0 else f'subgraph {sg.index}, {here}'}: invalid "
                                     f"operator parameters ({type(e).__name__}: {e})") from None
            kernels.append(row)
        if unsupported:
            # Each line escaped whole: a name in it cannot start a line of its own.
            lines = [printable(f"{name} (version {ver}) at operator{'s' if len(v['labels']) > 1 else ''} "
                               f"{', '.join(v['labels'])}: {v['why']}")
                     for (name, ver), v in unsupported.items()]
            raise UnsupportedOpError("the model uses unsupported operators:\n  " + "\n  ".join(lines),
                                     [(name, ver, v["ops"], v["why"]) for (name, ver), v in unsupported.items()])
        for check in deferred:
            check()
        return kernels

    # ------------------------------------------------------------------ details
    @property
    def input_details(self) -> list[dict[str, Any]]:
        """One dict per model input, in model order: ``name``, ``index`` (tensor index), ``shape``,
        ``dtype``, ``quantization`` (scale, zero point) and ``quantization_parameters``
        (``scales``, ``zero_points``, ``quantized_dimension``), as tf.lite's get_input_details()
        names them. ``interp.quantize(x, details)`` turns real values into this input's integers."""
        return [tensor_details(self.tensors[i]) for i in self.subgraph.inputs]

    @property
    def output_details(self) -> list[dict[str, Any]]:
        """One dict per model output (keys as ``input_details``); ``interp.dequantize(y, details)``
        turns an output's integers into real values as TFLM's DEQUANTIZE does."""
        return [tensor_details(self.tensors[i]) for i in self.subgraph.outputs]

    # ------------------------------------------------------------------ running
    def _gather_inputs(self, inputs, batched: bool) -> tuple[list[np.ndarray], int]:
        if not batched:
            return self._sample_inputs(inputs), 1
        return gather_inputs([self.tensors[i] for i in self.subgraph.inputs], inputs, batched)

    def _build_schedule(self, s: int):
        """Per operator of subgraph ``s``, once: where each input comes from, what each output must
        look like, which tensors die after it, and how its kernel is called — so the run loop does
        no lookups it can avoid."""
        sg = self.model.subgraphs[s]
        tensors = sg.tensors
        keep_alive = set(sg.outputs)
        last_use = self.graphs[s].last_use
        schedule = []
        for op, kernel in zip(sg.operators, self.subgraph_kernels[s]):
            sources = []  # (tensor index or None, constant array with a sample axis or None)
            for ti in op.inputs:
                if ti < 0:
                    sources.append((None, None))
                elif tensors[ti].data is not None and ti not in sg.inputs and not tensors[ti].is_variable:
                    sources.append((None, tensors[ti].data[None]))
                else:
                    sources.append((ti, None))
            outputs = [(ti, tuple(tensors[ti].shape), value_dtype(tensors[ti])) for ti in op.outputs]
            dying = [ti for ti in set(op.inputs) if ti >= 0 and last_use.get(ti) == op.index
                     and ti not in keep_alive and not tensors[ti].is_variable]
            key = (s, op.index)
            stateful = key in self._stateful_ops
            uses_graph = getattr(kernel, "uses_graph", False)
            location = where(op.index, op.display_name)
            schedule.append((op, kernel, sources, outputs, dying, key, stateful, uses_graph,
                             location if s == 0 else f"subgraph {s}, {location}"))
        return schedule

    def _build_plain_plan(self) -> list | bool:
        """Subgraph 0's schedule for run() without keep=True, when every operator is a plain
        function of its inputs (no state, no subgraph calls, no variable tensors): per operator,
        its kernel, its input list with the constants in place, the positions to fill from the
        values computed so far, each output's index, shape (one sample) and dtype, the tensors
        that die after it, and its location for errors. False when the model needs the general
        loop."""
        if self._variables[0]:
            return False
        plan = []
        for _op, kernel, sources, outputs, dying, _key, stateful, uses_graph, location in self._schedule(0):
            if stateful or uses_graph or kernel.writes_inputs:
                return False
            template = [const for _, const in sources]
            fill = tuple((position, ti) for position, (ti, _) in enumerate(sources) if ti is not None)
            checks = tuple((ti, (1,) + shape, dtype) for ti, shape, dtype in outputs)
            # Only computed values are ever in the loop's values (constants are in the template).
            dying = tuple(ti for ti in dying if any(ti == t for _, t in fill))
            plan.append((kernel, template, fill, checks, dying, location))
        return plan

    def _run_plain(self, plan: list, arrays: list[np.ndarray]) -> dict[int, np.ndarray]:
        """One sample through subgraph 0 on the plain plan: what _run_subgraph does for such a
        model with keep=False, without the branches it does not need."""
        env = dict(zip(self.subgraph.inputs, arrays))
        for kernel, template, fill, checks, dying, location in plan:
            ins = template.copy()
            for position, ti in fill:
                ins[position] = env[ti]
            for (ti, shape, dtype), value in zip(checks, kernel.eval(ins)):
                if value.shape != shape or value.dtype != dtype:
                    value = self._fix_output(location, self.tensors[ti], value, 1)
                env[ti] = value
            for ti in dying:
                env.pop(ti, None)
        return env

    def _schedule(self, s: int) -> list:
        schedule = self._schedules.get(s)
        if schedule is None:
            schedule = self._schedules[s] = self._build_schedule(s)
        return schedule

    def _execute(self, arrays: list[np.ndarray], n: int, keep: bool, state: State) -> dict[int, np.ndarray]:
        """Run subgraph 0 on ``arrays`` (n samples) from ``state``, which is updated in place to the
        state after the call."""
        if n * self._activation_elements < SMALL_RUN_ELEMENTS:
            # Tiny runs have no loops long enough to care, and the switch costs microseconds.
            return self._run_subgraph(0, arrays, n, state, keep)
        with _ufunc_buffer(UFUNC_BUFFER_ELEMENTS):
            return self._run_subgraph(0, arrays, n, state, keep)

    def _run_subgraph(self, s: int, arrays: list[np.ndarray], n: int, state: State,
                      keep: bool) -> dict[int, np.ndarray]:
        """One invocation of subgraph ``s`` (TFLM's InvokeSubgraph): its inputs are ``arrays``, its
        operators run in order; ``state`` (n samples) is read and updated."""
        schedule = self._schedule(s)
        sg = self.model.subgraphs[s]
        if len(arrays) != len(sg.inputs):
            # A control-flow kernel passing another number of values than the subgraph takes (a
            # CALL_ONCE init subgraph with inputs): TFLM would run it on memory nobody wrote.
            raise ModelError(f"subgraph {s} takes {len(sg.inputs)} input(s) but is invoked with {len(arrays)}: "
                             f"TFLM would read the others from arena memory nobody wrote")
        env: dict[int, np.ndarray] = {ti: state.variables[(s, ti)] for ti in self._variables[s]}
        env.update(zip(sg.inputs, arrays))
        record = keep and s == 0 and n == 1
        for op, kernel, sources, outputs, dying, key, stateful, uses_graph, location in schedule:
            ins = [env[ti] if ti is not None else const for ti, const in sources]
            if record and (stateful or uses_graph or kernel.writes_inputs):
                snapshot = state.copy()  # shallow: arrays are replaced, never written in place
                snapshot.variables.update({(0, ti): env[ti] for ti in self._variables[0]})
                self._op_states[op.index] = snapshot
            if uses_graph:
                call = GraphCall(self, state, n, keep, location)
                if stateful:
                    outs, state.kernels[key] = kernel.eval(ins, state.kernels[key], graph=call)
                else:
                    outs = kernel.eval(ins, graph=call)
            elif stateful:
                outs, state.kernels[key] = kernel.eval(ins, state.kernels[key])
            else:
                outs = kernel.eval(ins)
            if kernel.writes_inputs:
                # The new values of the variable tensors the kernel overwrites, after its outputs.
                for position, value in zip(kernel.writes_inputs, outs[len(outputs):]):
                    env[op.inputs[position]] = value
            for (ti, shape, dtype), value in zip(outputs, outs):
                if value.shape[1:] != shape or value.shape[0] != n or value.dtype != dtype:
                    value = self._fix_output(location, sg.tensors[ti], value, n)
                env[ti] = value
            if not keep:
                for ti in dying:
                    env.pop(ti, None)
        for ti in self._variables[s]:
            state.variables[(s, ti)] = env[ti]
        if keep and s != 0:
            self._kept_subgraphs[s] = {k: v[0] for k, v in env.items()}
        return env

    def _fix_output(self, location: str, t: Tensor, value: np.ndarray, n: int) -> np.ndarray:
        dtype = value_dtype(t)
        expected = (n,) + tuple(t.shape)
        if value.shape[0] == 1 and n > 1 and value.shape[1:] == expected[1:] and value.dtype == dtype:
            # An op whose inputs are all constants computes one sample; every sample has it.
            return np.broadcast_to(value, expected).copy()
        raise ModelError(f"{location}, {where(tensor=t)}: kernel produced "
                         f"{value.dtype}{value.shape}, tensor is {dtype}{expected}")

    def run(self, inputs, *, keep: bool = False) -> list[np.ndarray]:
        """Run one sample. Returns the outputs (model order) as arrays of the output shapes.

        ``inputs``: a list of arrays in model order, a dict by input name, or (one-input models)
        one array; each must have the input's exact shape and dtype (quantize real values with
        ``interp.quantize``), else ``InputError``.

        On a stateful model each call continues from the state the previous one left (see
        ``state()``), as consecutive TFLM invokes do, until ``reset()``.

        The model's inputs and outputs stay readable with ``tensor()`` and ``dequantized()``
        after any call; with keep=True every intermediate tensor is kept too, and the state before
        the call for ``state(before=True)``.
        """
        plan = self._plain_plan
        if plan is None:
            plan = self._plain_plan = self._build_plain_plan()
        if plan and not keep:
            return self._run_plain_call(plan, inputs)
        arrays, n = self._gather_inputs(inputs, batched=False)
        state = self._state.copy()
        if keep:
            self._kept_subgraphs = {}
            self._op_states = {}
            arrays = [a.copy() for a in arrays]  # kept tensors (views of inputs too) are not the caller's arrays
        env = self._execute(arrays, n, keep, state)
        self._state_before = self._state if keep else None
        self._state = state  # only a call that completed moves the state on
        self._kept = {k: v[0] for k, v in env.items()} if keep else None
        # Copies: the caller's own arrays, sharing memory with nothing (not the kept tensors, not
        # the inputs a passed-through or reshaped output would view, not the state, not each other).
        outputs = [np.array(self._output_value(0, env, ti, n)[0]) for ti in self.subgraph.outputs]
        self._io = self._io_values([a[0] for a in arrays], outputs)
        return outputs

    def _run_plain_call(self, plan: list, inputs) -> list[np.ndarray]:
        """run(inputs) on the plain plan: the same checks, values, copies and kept inputs and
        outputs as the general path; the state, which such a model does not have, is untouched."""
        arrays = self._sample_inputs(inputs)
        if self._activation_elements < SMALL_RUN_ELEMENTS:
            env = self._run_plain(plan, arrays)
        else:
            with _ufunc_buffer(UFUNC_BUFFER_ELEMENTS):
                env = self._run_plain(plan, arrays)
        # What tensor() gives after the call: copies of the inputs (the caller may change its
        # arrays) and of the outputs (the caller owns those it gets back, which are copies too:
        # sharing memory with nothing, as in run()).
        # (np.array, not ndarray.copy: one sample of a 0-d tensor is a numpy scalar, which np.array
        # makes a 0-d array.)
        io = {}
        for ti, a in zip(self.subgraph.inputs, arrays):
            io[ti] = np.array(a[0])
        outputs = []
        for ti in self.subgraph.outputs:
            value = env.get(ti)
            if value is None:
                value = self._output_value(0, env, ti, 1)
            out = np.array(value[0])
            outputs.append(out)
            io[ti] = np.array(out)
        calls = self._calls  # the per-thread attributes, set as run() sets them
        calls._kept = None
        calls._state_before = None
        calls._io = io
        return outputs

    def run_batch(self, inputs, *, keep: bool = False, threads: int | None = None,
                  chunk_size: int | None = None) -> list[np.ndarray]:
        """Run N samples at once: each input has a leading axis of N samples; so do the outputs.

        ``chunk_size``: run at most this many samples at a time, so that no more than one chunk of
        intermediate tensors is ever held (the outputs of all N are still returned; inputs may be
        memory-mapped, ``np.load(..., mmap_mode="r")``, and are read a chunk at a time). The bytes
        are the same as without it. Not with keep=True. ``tensor()`` then gives every sample's
        outputs, and the inputs as read-only views of the arrays given (not copies). See also
        ``run_iter``.

        The batch is split over ``threads`` worker threads (default: one per core when there are
        enough samples); numpy releases the GIL in the kernels, and every sample is independent,
        so the result is the same as one ``run`` per sample.

        On a stateful model (LSTM, SVDF, resource variables, the signal library's buffers) every
        sample is an independent stream of one call starting from the state of a newly loaded
        model — what TFLM's first invoke gives for that sample (the same as after reset(), except
        that a CALL_ONCE runs its init subgraph, which reset() does not re-arm) — and the state
        kept for run() is left as it is.

        Afterwards ``tensor()`` gives the inputs' and outputs' values with their sample axis (and,
        with keep=True, every intermediate tensor's).
        """
        if chunk_size is not None:
            from .streaming import run_batch_chunked
            return run_batch_chunked(self, inputs, chunk_size, keep=keep, threads=threads)
        arrays, n = self._gather_inputs(inputs, batched=True)
        if threads is None:
            # Threads pay off only when each one gets real work (tiny models: not at all).
            threads = min(CORES, n // MIN_SAMPLES_PER_THREAD,
                          n * self._activation_elements // MIN_THREAD_ELEMENTS)
        elif isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise InputError(f"threads must be a whole number >= 1, not {threads!r}")
        # More workers than samples or than MAX_THREADS_PER_CORE per core only add overhead.
        workers = max(1, min(int(threads), n, MAX_THREADS_PER_CORE * CORES))
        if workers > 1 and not keep:
            bounds = [n * k // workers for k in range(workers + 1)]
            parts = [[a[lo:hi] for a in arrays] for lo, hi in zip(bounds[:-1], bounds[1:])]

            def run_part(part):
                return self._execute(part, len(part[0]), False, self._fresh_state(len(part[0])))

            # A pool per call, shut down before returning: no threads outlive the call. The calling
            # thread runs the first part itself instead of waiting (one thread fewer to start:
            # ~0.1 ms of a 5 ms call of kws at batch 256 on 2 cores).
            with ThreadPoolExecutor(workers - 1, thread_name_prefix="microref") as pool:
                others = [pool.submit(run_part, part) for part in parts[1:]]
                envs = [run_part(parts[0])] + [f.result() for f in others]
            self._kept = None
            outputs = [np.concatenate([self._output_value(0, env, ti, len(part[0])) for env, part in zip(envs, parts)])
                       for ti in self.subgraph.outputs]
            self._io = self._io_values(arrays, outputs)
            return outputs
        if keep:
            self._kept_subgraphs = {}
            self._op_states = {}
            arrays = [a.copy() for a in arrays]  # as in run
        env = self._execute(arrays, n, keep, self._fresh_state(n))
        self._kept = dict(env) if keep else None
        outputs = [np.array(self._output_value(0, env, ti, n)) for ti in self.subgraph.outputs]  # copies, as in run
        self._io = self._io_values(arrays, outputs)
        return outputs

    def run_iter(self, batches, *, chunk_size: int | None = None, threads: int | None = None):
        """Run many samples a chunk at a time, yielding each chunk's outputs (a list in model order,
        each with a leading sample axis) as it is done: memory holds one chunk, however many samples.

        ``batches``: the inputs of one batch, as ``run_batch`` takes them (an array, a list of arrays
        in model order, a dict by input name, each with a leading axis of samples; memory-mapped
        arrays, ``np.load(..., mmap_mode="r")``, are read a chunk at a time) — cut into chunks of
        ``chunk_size`` samples, one yield per chunk; or any iterable of such batches (a list, a
        generator) — one yield per batch, a batch larger than ``chunk_size`` run a chunk at a time.

        ``chunk_size`` defaults to what fits about 64 MB of the model's activations
        (``interp.runtime.streaming.default_chunk_size``). The bytes are those of one ``run_batch``
        over all the samples; stateful models start every sample from a fresh state, as there.
        The inputs of one batch are checked (shape, dtype) before the iterator is returned; a
        generator's batches as they come (the error names the batch).
        """
        from .streaming import run_iter
        return run_iter(self, batches, chunk_size=chunk_size, threads=threads)

    def _io_values(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict[int, np.ndarray]:
        """The values ``tensor()`` gives after a call without keep=True: the model's inputs and
        outputs."""
        # Copies: the caller owns the arrays it passed and the ones it got back.
        io = {}
        for ti, v in zip(self.subgraph.inputs, inputs):
            io[ti] = np.array(v)
        for ti, v in zip(self.subgraph.outputs, outputs):
            io[ti] = np.array(v)
        return io

    def _output_value(self, s: int, env, ti: int, n: int) -> np.ndarray:
        if ti in env:
            return env[ti]
        # A graph output that is a constant (or an input passed straight through) has its data.
        t = self.model.subgraphs[s].tensors[ti]
        return np.broadcast_to(t.data, (n,) + tuple(t.shape)).copy()

    def eval_operator(self, op, inputs: list, kernel=None) -> list[np.ndarray]:
        """Operator ``op`` of the main subgraph evaluated alone on ``inputs`` (``op_inputs``'s
        convention), by its own kernel or by ``kernel`` (a numerics variant's, say). Whatever the
        operator reads besides its inputs (a stateful kernel's buffers, the variable tensors it
        overwrites such as LSTM and SVDF state, resource variables, the subgraphs IF, WHILE and
        CALL_ONCE run) is taken as it was when the operator started in the last
        ``run(..., keep=True)`` (the reset state when no single-sample call was kept), so that
        re-running one operator of a kept call gives that call's values. Nothing is stored."""
        kernel = self.kernels[op.index] if kernel is None else kernel
        entry = next(e for e in self._schedule(0) if e[0] is op)
        _, _, _, _, _, key, stateful, uses_graph, location = entry
        recorded = self._op_states.get(op.index) if self._kept is not None else None
        state = recorded.copy() if recorded is not None else self._fresh_state(1)
        if kernel.writes_inputs:
            # Afterwards these variable tensors hold the call's result; the operator read them as
            # they were before.
            inputs = list(inputs)
            for position in kernel.writes_inputs:
                inputs[position] = np.array(state.variables[(0, op.inputs[position])], copy=True)
        extra = {"graph": GraphCall(self, state, 1, False, location)} if uses_graph else {}
        if stateful:
            outputs, _ = kernel.eval(inputs, state.kernels[key], **extra)
        else:
            outputs = kernel.eval(inputs, **extra)
        return outputs[:len(op.outputs)]

    def op_inputs(self, op, value_of) -> list[np.ndarray | None]:
        """One sample's inputs for ``op`` in the kernels' eval convention (leading sample axis of 1):
        None for omitted inputs, constants from the model, everything else from ``value_of(index)``
        (which may raise KeyError for a tensor it does not have)."""
        ins = []
        for ti in op.inputs:
            if ti < 0:
                ins.append(None)
            elif self.tensors[ti].data is not None:
                ins.append(self.tensors[ti].data[None])
            else:
                ins.append(np.asarray(value_of(ti))[None])
        return ins

    # ------------------------------------------------------------------ intermediates
    def tensor_index(self, name_or_index: int | str, subgraph: int = 0) -> int:
        """The index of a tensor given by index or name in ``subgraph``; ``TensorLookupError`` (an
        InputError, and a KeyError) for an index outside 0..n-1, a name no tensor has, or a name
        several tensors share (ambiguous: the index says which)."""
        tensors = self._subgraph_tensors(subgraph)
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, (bool, np.bool_)):
            i = int(name_or_index)
            if not 0 <= i < len(tensors):
                raise TensorLookupError(f"no tensor {i}: the subgraph's tensors are 0..{len(tensors) - 1} "
                                        f"(negative indices do not count from the end)")
            return i
        if not isinstance(name_or_index, str):
            raise TensorLookupError(f"a tensor is named by a str or indexed by an int, not by "
                                    f"{type(name_or_index).__name__}")
        found = [t.index for t in tensors if t.name == name_or_index]
        if len(found) > 1:
            raise TensorLookupError(f"the name {name_or_index!r} is ambiguous: tensors {found} all have it; "
                                    f"pass the index instead")
        if not found:
            raise TensorLookupError(f"no tensor named {name_or_index!r}")
        return found[0]

    def _subgraph_tensors(self, subgraph: int) -> list[Tensor]:
        if isinstance(subgraph, (bool, np.bool_)) or not isinstance(subgraph, (int, np.integer)) \
                or not 0 <= subgraph < len(self.model.subgraphs):
            raise TensorLookupError(f"no subgraph {subgraph!r}; the model has {len(self.model.subgraphs)}")
        return self.model.subgraphs[subgraph].tensors

    def tensor(self, name_or_index: int | str, subgraph: int = 0) -> np.ndarray:
        """A tensor's raw (integer) value from the last call, by index or name: constants always;
        the model's inputs and outputs after any run() / run_batch(); every other tensor after
        run(..., keep=True) (else ``InputError`` saying so). A tensor of another subgraph
        (``subgraph=k``) has its value from that subgraph's last invocation during the call.
        Variable tensors hold their value after the call (``state()`` has both)."""
        i = self.tensor_index(name_or_index, subgraph)
        t = self._subgraph_tensors(subgraph)[i]
        if t.data is not None:
            return t.data
        label = f'tensor {i} "{t.name}"{f" of subgraph {subgraph}" if subgraph else ""}'
        if self._kept is None:
            if subgraph == 0 and self._io is not None and i in self._io:
                return self._io[i]
            if self._io is None:
                raise InputError(f"{label}: nothing has run yet; call run(inputs, keep=True) to keep every "
                                 f"tensor for tensor() and dequantized()")
            raise InputError(f"{label} was not kept: a plain run() keeps only the model's inputs and outputs; "
                             f"run(inputs, keep=True) (or run_batch(..., keep=True)) keeps every intermediate "
                             f"tensor for tensor() and dequantized()")
        kept = self._kept if subgraph == 0 else self._kept_subgraphs.get(subgraph, {})
        if i not in kept:
            raise InputError(f"{label} was not computed by the last call")
        return kept[i]

    def dequantized(self, name_or_index: int | str, subgraph: int = 0) -> np.ndarray:
        """A tensor's real values: scale * (q - zero_point), per channel where quantized so."""
        i = self.tensor_index(name_or_index, subgraph)
        return dequantize_tensor(self._subgraph_tensors(subgraph)[i], self.tensor(i, subgraph))

