"""The op registry: one kernel class per TFLite builtin operator, registered by name.

A kernel's constructor is TFLM's Prepare: it validates the operator the way TFLM does and does
every piece of parameter work once (multipliers and shifts, padding, activation clamps,
re-arranged weights). ``eval`` is then pure numpy on arrays.

Eval convention: every input array carries a leading *sample* axis in front of the tensor's own
shape: size N for activations (N samples evaluated together), size 1 for constant tensors.
Optional inputs the model omits arrive as None. ``eval`` returns one array per output, each of
shape ``(N,) + output.shape`` and of the output tensor's dtype.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from interp.errors import ModelError, UnsupportedOpError, where
from interp.model import Operator, Tensor


@dataclass(frozen=True)
class Numerics:
    """Arithmetic variants, for explaining other runtimes. The defaults are the pinned TFLM wheel.

    rounding: "double" (SRDHM then RDBPOT, TFLM's build) or "single" (TFLITE_SINGLE_ROUNDING).
    scale_precision: "double" (the wheel) or "float32" (older TFLM source computes the FC per-tensor
        product and the SUB/RELU/LEAKY_RELU/HARD_SWISH ratios in float32).
    """

    rounding: str = "double"
    scale_precision: str = "double"

    # The values each field takes (a typo must not silently run the default arithmetic).
    CHOICES = {"rounding": ("double", "single"), "scale_precision": ("double", "float32")}

    def __post_init__(self):
        for name, allowed in self.CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"Numerics({name}={value!r}): {name} must be one of "
                                 f"{', '.join(repr(a) for a in allowed)}")


DEFAULT_NUMERICS = Numerics()


class PrepareContext:
    """What a kernel's prepare step may look at: the operator, its tensors, and error helpers."""

    def __init__(self, op: Operator, tensors: list[Tensor], numerics: Numerics = DEFAULT_NUMERICS,
                 kernels: str = "fast"):
        self.op = op
        self.tensors = tensors
        self.numerics = numerics
        # "fast" (the default) or "reference": which of a kernel's two evals the interpreter runs.
        self.kernels = kernels

    @property
    def options(self) -> dict:
        return self.op.options

    def input(self, i: int) -> Tensor | None:
        """The i-th input tensor, or None when the model omits it (index -1 or past the end)."""
        if i >= len(self.op.inputs) or self.op.inputs[i] < 0:
            return None
        return self.tensors[self.op.inputs[i]]

    def inputs(self) -> list[Tensor | None]:
        return [self.input(i) for i in range(len(self.op.inputs))]

    def output(self, i: int = 0) -> Tensor:
        if i >= len(self.op.outputs):
            self.fail(f"needs at least {i + 1} output(s), has {len(self.op.outputs)}")
        return self.tensors[self.op.outputs[i]]

    def require_input(self, i: int, what: str = "") -> Tensor:
        t = self.input(i)
        if t is None:
            self.fail(f"input {i}{' (' + what + ')' if what else ''} is missing")
        return t

    def location(self, tensor: Tensor | None = None) -> str:
        return where(self.op.index, self.op.display_name, tensor)

    def fail(self, message: str, tensor: Tensor | None = None):
        """Reject the model as TFLM's Prepare would (a ModelError naming the operator)."""
        raise ModelError(f"{self.location(tensor)}: {message}")

    def check(self, condition: bool, message: str, tensor: Tensor | None = None):
        if not condition:
            self.fail(message, tensor)

    def check_io_counts(self, n_inputs, n_outputs: int | None = 1):
        """TF_LITE_ENSURE on NumInputs/NumOutputs: ``n_inputs`` is a count or a tuple of allowed ones;
        ``n_outputs`` None leaves the outputs unchecked."""
        allowed = n_inputs if isinstance(n_inputs, tuple) else (n_inputs,)
        have = len(self.op.inputs)
        self.check(have in allowed, f"takes {' or '.join(map(str, allowed))} inputs, has {have}")
        if n_outputs is not None:
            self.check(len(self.op.outputs) == n_outputs,
                       f"takes {n_outputs} output(s), has {len(self.op.outputs)}")

    def unsupported(self, message: str, tensor: Tensor | None = None):
        """A valid operator in a variant microref does not implement (reported with all others)."""
        raise UnsupportedOpError(f"{self.location(tensor)}: {message}",
                                 [(self.op.display_name, self.op.version, [self.op.index], message)])


class OpKernel:
    """Base class of every kernel. Subclasses implement ``prepare`` and ``eval``."""

    # Set by @register.
    op_name: str = ""

    # State across calls (issue 14). TFLM kernels keep state two ways, and so do these:
    # * variable tensors they overwrite in place (LSTM and SVDF state): ``writes_inputs`` lists
    #   their positions in op.inputs; eval returns their new values after its outputs, in that
    #   order, and the runtime keeps them across run() calls until Interpreter.reset();
    # * private persistent buffers (the signal library's Framer, Delay, OverlapAdd, PCAN, …):
    #   ``initial_state()`` returns them (see there).
    writes_inputs: tuple[int, ...] = ()

    def __init__(self, ctx: PrepareContext):
        self.op = ctx.op
        self.numerics = ctx.numerics
        # Bytes of each RequestScratchBufferInArena call TFLM's kernel makes, in call order.
        self.scratch_bytes: list[int] = []
        self.prepare(ctx)
        if ctx.kernels == "reference" and type(self).eval_reference is not OpKernel.eval_reference:
            self.eval = self.eval_reference

    def prepare(self, ctx: PrepareContext) -> None:
        raise NotImplementedError

    def eval(self, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        raise NotImplementedError

    def eval_reference(self, inputs: list[np.ndarray | None], *args, **kwargs) -> list[np.ndarray]:
        """The same outputs through the plain reference kernel (``ops.reference``), for kernels
        whose ``eval`` takes fast paths; a kernel without fast paths is its own reference. An
        interpreter made with ``kernels="reference"`` runs this instead of ``eval``."""
        return self.eval(inputs, *args, **kwargs)

    def initial_state(self) -> tuple[np.ndarray, ...] | None:
        """A stateful kernel's private state for one sample at reset, as a tuple of arrays; None
        (the default) for a stateless kernel. A stateful kernel is evaluated as
        ``eval(inputs, state)``, each state array given a leading sample axis like the inputs, and
        returns ``(outputs, new_state)``; the runtime keeps ``new_state`` for the next call."""
        return None

    def describe(self) -> dict:
        """Parameters worth showing a user debugging this op (multipliers, shifts, clamps…)."""
        return {}


REGISTRY: dict[str, type[OpKernel]] = {}


def kernel_class(op: Operator) -> type[OpKernel] | None:
    """The kernel registered for an operator: builtins by name, custom operators by their
    custom_code (e.g. "SignalWindow", "TFLite_Detection_PostProcess"), as TFLM's resolver finds them."""
    return REGISTRY.get(op.display_name if op.op_name == "CUSTOM" else op.op_name)


def register(*op_names: str) -> Callable[[type[OpKernel]], type[OpKernel]]:
    def decorate(cls):
        for name in op_names:
            if name in REGISTRY:
                raise RuntimeError(f"op {name} registered twice")
            REGISTRY[name] = cls
        cls.op_name = op_names[0]
        return cls
    return decorate


def expect_types(ctx: PrepareContext, tensor: Tensor, allowed: tuple[str, ...], role: str):
    if tensor.type_name not in allowed:
        ctx.unsupported(f"{role} of type {tensor.type_name} is not supported (supported: {', '.join(allowed)})",
                        tensor)


def output_like(inputs_shape_n: int, tensor: Tensor, values: np.ndarray) -> np.ndarray:
    """Give ``values`` the eval-convention shape (N,) + tensor.shape and the tensor's dtype."""
    return values.reshape((inputs_shape_n,) + tuple(tensor.shape)).astype(tensor.dtype, copy=False)
