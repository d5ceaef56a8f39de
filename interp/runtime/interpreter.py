"""The Interpreter: prepare every operator once, then run inputs through the graph."""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np

import ops  # noqa: F401  (importing the package registers every kernel)
from ops import registry

from ..errors import InputError, MicrorefError, ModelError, UnsupportedOpError, where
from ..model import Model, Tensor, analyse, load_model


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

_blas_configured = False
_batch_pool: ThreadPoolExecutor | None = None


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


def _configure_blas_once() -> None:
    """Set BLAS to one thread for this process, once, before microref's first run.

    microref's matrix products are cache-sized blocks, for which OpenBLAS's own threads only add
    synchronisation — and on a busy machine their spin-waiting has cost 100x here; batches are
    spread over cores by microref itself instead. Changing the thread count per call is not an
    option (OpenBLAS re-creates its threads each time), so it is set once, process-wide, with
    threadpoolctl. Set MICROREF_KEEP_BLAS_THREADS=1 to leave BLAS alone.
    """
    global _blas_configured
    if _blas_configured:
        return
    _blas_configured = True
    if os.environ.get("MICROREF_KEEP_BLAS_THREADS"):
        return
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or unable to inspect this process: keep going
        pass


def _pool(workers: int) -> ThreadPoolExecutor:
    global _batch_pool
    if _batch_pool is None or _batch_pool._max_workers < workers:
        _batch_pool = ThreadPoolExecutor(workers, thread_name_prefix="microref")
    return _batch_pool


class Interpreter:
    """Runs an int8 TFLite model with TFLM's reference-kernel arithmetic, bit for bit.

        it = Interpreter.from_file("model.tflite")
        outputs = it.run([x])            # or it.run({"input_name": x})
        batch_outputs = it.run_batch([X])  # X has a leading axis of samples
    """

    def __init__(self, model: Model, *, numerics=None):
        self.model = model
        self.numerics = numerics or registry.DEFAULT_NUMERICS
        sg = model.main
        if len(model.subgraphs) > 1:
            # Only control-flow ops reference other subgraphs; their kernels say so if present.
            pass
        self.subgraph = sg
        self.tensors = sg.tensors
        self.graph = analyse(sg)
        self.kernels = self._prepare_all(registry)
        self._schedule = None
        self._activation_elements = sum(t.size for t in self.tensors if t.data is None)  # per sample
        self._kept: dict[int, np.ndarray] | None = None
        # State kept across run() calls, as TFLM keeps it across invoke(): variable tensors
        # (tensor index -> value with a sample axis of 1) and stateful kernels' private buffers
        # (operator index -> tuple of arrays with a sample axis of 1). reset() restores both.
        self._variables = [t.index for t in self.tensors if t.is_variable and t.dtype is not None]
        self._stateful_ops = {op.index: k for op, k in zip(sg.operators, self.kernels)
                              if k is not None and k.initial_state() is not None}
        self.reset()

    @property
    def stateful(self) -> bool:
        """Whether outputs depend on earlier calls (variable tensors or stateful kernels)."""
        return bool(self._variables or self._stateful_ops)

    def reset(self) -> None:
        """Forget every earlier call, as TFLM's MicroInterpreter::Reset(): variable tensors are set
        to their reset value (memset with an int8 tensor's zero point, else 0, as TFLM's
        ResetTensorData does) and stateful kernels to their initial state."""
        self._state = self._initial_state(1)

    def _initial_state(self, n: int) -> tuple[dict[int, np.ndarray], dict[int, tuple]]:
        variables = {ti: np.broadcast_to(variable_reset_value(self.tensors[ti]),
                                         (n,) + tuple(self.tensors[ti].shape)).copy()
                     for ti in self._variables}
        kernels = {i: tuple(np.broadcast_to(a, (n,) + a.shape).copy() for a in k.initial_state())
                   for i, k in self._stateful_ops.items()}
        return variables, kernels

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> "Interpreter":
        return cls(load_model(path), **kwargs)

    @classmethod
    def from_bytes(cls, data: bytes, **kwargs) -> "Interpreter":
        return cls(load_model(data), **kwargs)

    def _prepare_all(self, reg):
        kernels = []
        unsupported: dict[tuple[str, int], dict] = {}
        for op in self.subgraph.operators:
            cls = reg.kernel_class(op)
            if cls is None:
                key = (op.display_name, op.version)
                unsupported.setdefault(key, {"ops": [], "why": "operator is not implemented"})["ops"].append(op.index)
                kernels.append(None)
                continue
            try:
                kernels.append(cls(reg.PrepareContext(op, self.tensors, self.numerics)))
            except UnsupportedOpError as e:
                for name, version, idx, why in e.unsupported:
                    unsupported.setdefault((name, version), {"ops": [], "why": why})["ops"].extend(idx)
                kernels.append(None)
            except MicrorefError:
                raise
            except (ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError, TypeError,
                    AttributeError) as e:
                # A kernel's prepare tripped on inconsistent parameters the model should not have.
                raise ModelError(f"{where(op.index, op.display_name)}: invalid operator parameters "
                                 f"({type(e).__name__}: {e})") from None
        if unsupported:
            lines = [f"{name} (version {ver}) at operator{'s' if len(v['ops']) > 1 else ''} "
                     f"{', '.join(map(str, v['ops']))}: {v['why']}"
                     for (name, ver), v in unsupported.items()]
            raise UnsupportedOpError("the model uses unsupported operators:\n  " + "\n  ".join(lines),
                                     [(name, ver, v["ops"], v["why"]) for (name, ver), v in unsupported.items()])
        return kernels

    # ------------------------------------------------------------------ details
    def _details(self, index: int) -> dict[str, Any]:
        t = self.tensors[index]
        q = t.quantization
        return {
            "name": t.name,
            "index": index,
            "shape": np.array(t.shape, dtype=np.int32),
            "dtype": t.dtype.type if t.dtype is not None else None,
            "quantization": (q.scale, q.zero_point) if q is not None else (0.0, 0),
            "quantization_parameters": {
                "scales": q.scales.copy() if q is not None else np.zeros(0, np.float32),
                "zero_points": q.zero_points.astype(np.int32) if q is not None else np.zeros(0, np.int32),
                "quantized_dimension": q.quantized_dimension if q is not None else 0,
            },
        }

    @property
    def input_details(self) -> list[dict[str, Any]]:
        return [self._details(i) for i in self.subgraph.inputs]

    @property
    def output_details(self) -> list[dict[str, Any]]:
        return [self._details(i) for i in self.subgraph.outputs]

    # ------------------------------------------------------------------ running
    def _gather_inputs(self, inputs, batched: bool) -> tuple[list[np.ndarray], int]:
        sg = self.subgraph
        names = [self.tensors[i].name for i in sg.inputs]
        if type(inputs) in (list, tuple):
            values = list(inputs)  # the common case; skips the slower ABC checks below
        elif isinstance(inputs, Mapping):
            if len(set(names)) != len(names):
                dupes = sorted({n for n in names if names.count(n) > 1})
                raise InputError(f"the model has several inputs named {dupes}; pass the inputs as a list")
            unknown = [k for k in inputs if k not in names]
            if unknown:
                raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {names}")
            missing = [n for n in names if n not in inputs]
            if missing:
                raise InputError(f"missing input(s) {missing}; the model's inputs are {names}")
            values = [inputs[n] for n in names]
        elif isinstance(inputs, np.ndarray) and len(sg.inputs) == 1:
            values = [inputs]
        else:
            if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
                raise InputError(f"inputs must be a list of arrays or a dict by input name, "
                                 f"not {type(inputs).__name__}")
            values = list(inputs)
        if len(values) != len(sg.inputs):
            raise InputError(f"the model takes {len(sg.inputs)} input(s) {names}, {len(values)} given")
        arrays, n = [], None
        for k, (ti, v) in enumerate(zip(sg.inputs, values)):
            t = self.tensors[ti]
            want = tuple(t.shape)
            label = f'input {k} "{t.name}"'
            if t.dtype is None:
                raise InputError(f"{label} is a {t.type_name} tensor, which microref cannot feed")
            try:
                a = np.asarray(v)
            except (ValueError, TypeError) as e:
                raise InputError(f"{label} is not an array ({e})") from None
            if a.dtype != t.dtype:
                raise InputError(f"{label} must be {t.dtype} ({t.type_name}), got {a.dtype}")
            if batched:
                if a.ndim != len(want) + 1 or tuple(a.shape[1:]) != want:
                    raise InputError(f"{label} must have shape (N, {', '.join(map(str, want))}) for "
                                     f"run_batch, got {tuple(a.shape)}")
                if a.shape[0] == 0:
                    raise InputError(f"{label} has no samples (run_batch needs N >= 1)")
                if n is None:
                    n = a.shape[0]
                elif a.shape[0] != n:
                    raise InputError(f"{label} has {a.shape[0]} samples, input 0 has {n}")
            else:
                if tuple(a.shape) != want:
                    raise InputError(f"{label} must have shape {want}, got {tuple(a.shape)}")
                a = a[None]
            if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
                raise InputError(f"{label} contains NaN or infinity")
            arrays.append(a)
        # A model without inputs runs once per call, batched or not.
        return arrays, (n if batched and n is not None else 1)

    def _build_schedule(self):
        """Per operator, once: where each input comes from, what each output must look like,
        and which tensors die after it — so the run loop does no lookups it can avoid."""
        sg = self.subgraph
        keep_alive = set(sg.outputs)
        last_use = self.graph.last_use
        schedule = []
        for op, kernel in zip(sg.operators, self.kernels):
            sources = []  # (tensor index or None, constant array with a sample axis or None)
            for ti in op.inputs:
                if ti < 0:
                    sources.append((None, None))
                elif self.tensors[ti].data is not None and ti not in sg.inputs and not self.tensors[ti].is_variable:
                    sources.append((None, self.tensors[ti].data[None]))
                else:
                    sources.append((ti, None))
            outputs = [(ti, tuple(self.tensors[ti].shape), self.tensors[ti].dtype) for ti in op.outputs]
            dying = [ti for ti in set(op.inputs) if ti >= 0 and last_use.get(ti) == op.index
                     and ti not in keep_alive and not self.tensors[ti].is_variable]
            schedule.append((op, kernel, sources, outputs, dying))
        return schedule

    def _execute(self, arrays: list[np.ndarray], n: int, keep: bool, state) -> dict[int, np.ndarray]:
        """Run the graph on ``arrays`` (n samples) from ``state`` (variables, kernel states), which
        is updated in place to the state after the call."""
        if n * self._activation_elements < SMALL_RUN_ELEMENTS:
            # Tiny runs have no loops long enough to care, and the switch costs microseconds.
            return self._execute_ops(arrays, n, keep, state)
        with _ufunc_buffer(UFUNC_BUFFER_ELEMENTS):
            return self._execute_ops(arrays, n, keep, state)

    def _execute_ops(self, arrays: list[np.ndarray], n: int, keep: bool, state) -> dict[int, np.ndarray]:
        if self._schedule is None:
            self._schedule = self._build_schedule()
        variables, kernel_states = state
        env: dict[int, np.ndarray] = dict(variables)
        env.update(zip(self.subgraph.inputs, arrays))
        for op, kernel, sources, outputs, dying in self._schedule:
            ins = [env[ti] if ti is not None else const for ti, const in sources]
            if op.index in kernel_states:
                outs, kernel_states[op.index] = kernel.eval(ins, kernel_states[op.index])
            else:
                outs = kernel.eval(ins)
            if kernel.writes_inputs:
                # The new values of the variable tensors the kernel overwrites, after its outputs.
                for position, value in zip(kernel.writes_inputs, outs[len(outputs):]):
                    env[op.inputs[position]] = value
            for (ti, shape, dtype), value in zip(outputs, outs):
                if value.shape[1:] != shape or value.shape[0] != n or value.dtype != dtype:
                    value = self._fix_output(op, ti, value, n)
                env[ti] = value
            if not keep:
                for ti in dying:
                    env.pop(ti, None)
        for ti in variables:
            variables[ti] = env[ti]
        return env

    def _fix_output(self, op, ti: int, value: np.ndarray, n: int) -> np.ndarray:
        t = self.tensors[ti]
        expected = (n,) + tuple(t.shape)
        if value.shape[0] == 1 and n > 1 and value.shape[1:] == expected[1:] and value.dtype == t.dtype:
            # An op whose inputs are all constants computes one sample; every sample has it.
            return np.broadcast_to(value, expected).copy()
        raise ModelError(f"{where(op.index, op.display_name, t)}: kernel produced "
                         f"{value.dtype}{value.shape}, tensor is {t.dtype}{expected}")

    def run(self, inputs, *, keep: bool = False) -> list[np.ndarray]:
        """Run one sample. Returns the outputs (model order) as arrays of the output shapes.

        With keep=True every intermediate tensor is kept for ``tensor()`` and ``dequantized()``.
        """
        arrays, n = self._gather_inputs(inputs, batched=False)
        _configure_blas_once()
        env = self._execute(arrays, n, keep, self._state)
        self._kept = {k: v[0] for k, v in env.items()} if keep else None
        return [self._output_value(env, ti, n)[0] for ti in self.subgraph.outputs]

    def run_batch(self, inputs, *, keep: bool = False, threads: int | None = None) -> list[np.ndarray]:
        """Run N samples at once: each input has a leading axis of N samples; so do the outputs.

        The batch is split over ``threads`` worker threads (default: one per core when there are
        enough samples); numpy releases the GIL in the kernels, and every sample is independent,
        so the result is the same as one ``run`` per sample.

        On a stateful model (LSTM, SVDF, resource variables, the signal library's buffers) every
        sample is an independent stream of one call starting from the reset state — what TFLM
        gives for that sample right after reset() — and the state kept for run() is left as it is.
        """
        arrays, n = self._gather_inputs(inputs, batched=True)
        if threads is None:
            # Threads pay off only when each one gets real work (tiny models: not at all).
            threads = min(os.cpu_count() or 1, n // MIN_SAMPLES_PER_THREAD,
                          n * self._activation_elements // MIN_THREAD_ELEMENTS)
        workers = threads
        workers = max(1, min(workers, n))
        _configure_blas_once()
        if workers > 1 and not keep:
            bounds = np.linspace(0, n, workers + 1).astype(int)
            parts = [[a[lo:hi] for a in arrays] for lo, hi in zip(bounds[:-1], bounds[1:])]
            envs = list(_pool(workers).map(
                lambda part: self._execute(part, len(part[0]), False, self._initial_state(len(part[0]))), parts))
            self._kept = None
            return [np.concatenate([self._output_value(env, ti, len(part[0])) for env, part in zip(envs, parts)])
                    for ti in self.subgraph.outputs]
        env = self._execute(arrays, n, keep, self._initial_state(n))
        self._kept = dict(env) if keep else None
        return [self._output_value(env, ti, n) for ti in self.subgraph.outputs]

    def _output_value(self, env, ti: int, n: int) -> np.ndarray:
        if ti in env:
            return env[ti]
        # A graph output that is a constant (or an input passed straight through) has its data.
        t = self.tensors[ti]
        return np.broadcast_to(t.data, (n,) + tuple(t.shape)).copy()

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
    def tensor_index(self, name_or_index: int | str) -> int:
        if isinstance(name_or_index, (int, np.integer)):
            i = int(name_or_index)
            if not 0 <= i < len(self.tensors):
                raise KeyError(f"no tensor {i}; the model has {len(self.tensors)}")
            return i
        for t in self.tensors:
            if t.name == name_or_index:
                return t.index
        raise KeyError(f"no tensor named {name_or_index!r}")

    def tensor(self, name_or_index: int | str) -> np.ndarray:
        """A tensor's raw (integer) value from the last run(keep=True); constants always."""
        i = self.tensor_index(name_or_index)
        t = self.tensors[i]
        if t.data is not None:
            return t.data
        if self._kept is None:
            raise KeyError("intermediate tensors are kept only after run(..., keep=True)")
        if i not in self._kept:
            raise KeyError(f'tensor {i} "{t.name}" was not computed')
        return self._kept[i]

    def dequantized(self, name_or_index: int | str) -> np.ndarray:
        """A tensor's real values: scale * (q - zero_point), per channel where quantized so."""
        i = self.tensor_index(name_or_index)
        return dequantize_tensor(self.tensors[i], self.tensor(i))


def variable_reset_value(t: Tensor) -> np.ndarray:
    """A variable tensor's value after TFLM's ResetTensorData: every byte set to an int8 tensor's
    zero point (memset takes it modulo 256), else to 0."""
    q = t.quantization
    byte = int(q.zero_points[0]) & 0xFF if t.type_name == "INT8" and q is not None and q.zero_points.size else 0
    return np.full(t.nbytes, byte, np.uint8).view(t.dtype).reshape(t.shape)


def dequantize_tensor(t: Tensor, q: np.ndarray) -> np.ndarray:
    if t.quantization is None or t.dtype is None or t.dtype.kind == "f":
        return np.asarray(q, dtype=np.float64)
    qz = t.quantization
    q64 = np.asarray(q, dtype=np.float64)
    if qz.per_channel:
        shape = [1] * q64.ndim
        dim = qz.quantized_dimension
        if dim >= len(t.shape):
            # A 1-D bias keeps its filter's quantized dimension; its only axis is the channel axis.
            dim = len(t.shape) - 1
        axis = dim + (q64.ndim - len(t.shape))
        shape[axis] = -1
        return qz.scales.astype(np.float64).reshape(shape) * (q64 - qz.zero_points.reshape(shape))
    return qz.scale * (q64 - qz.zero_point)
