"""CIRCULAR_BUFFER (a custom operator): TFLM's circular_buffer.cc and circular_buffer_common.cc.

The operator keeps the last ``num_slots`` inputs of a stream: every call shifts the output
buffer [B, num_slots, W, C] one slot towards the start (memmove) and copies the new input
[B, 1, W, C] into the last slot. The buffer is the output tensor itself, which TFLM keeps across
invokes; here it is the kernel's private state (``initial_state``), reset as TFLM resets it.

TFLM supports it in these cases, and so does microref:
* int8 input and output (the only type its Eval handles);
* an output that is a *variable* tensor. TFLM relies on that (its Reset comment: the variable
  tensor is reset to the zero point by ResetVariableTensors); an ordinary output lives in arena
  memory that starts with whatever the arena held and that the planner may give other tensors,
  so its contents across calls are not defined by the model: microref refuses it;
* a period of one call (``cycles_max`` = 1). With a longer period TFLM's Eval returns
  kTfLiteAbort on all but every cycles_max-th call, which ends the invoke: the operators after
  it do not run and their outputs keep whatever the arena held (the wheel shows other tensors'
  bytes there). microref's runtime has no early exit, so it refuses such a model.

``cycles_max`` is element 0 of the custom options' flexbuffer vector, read as a raw integer of the
vector's byte width (FlexbufferWrapper::ElementAsInt32: for a map, the value of the
alphabetically first key). Without options, or with cycles_max <= 0, TFLM guesses from the
output shape (circular_buffer_common.cc): 1 for 5, 13 or 25 slots; 1 for the fifth such buffer
prepared *in the process* with W = 2 and C = 96 (a static counter shared by every interpreter,
so that case depends on history and is refused); 2 otherwise.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from flatbuffers import flexbuffers

from .registry import OpKernel, PrepareContext, register

# The output shapes TFLM's heuristic gives a period of one (output dims[1]).
_ONE_CALL_SLOTS = (5, 13, 25)


@dataclass(frozen=True)
class CircularBufferParams:
    cycles_max: int   # OpDataCircularBuffer.cycles_max: calls per period (1: runs on every call)
    num_slots: int    # output dims[1]: inputs the buffer holds
    depth: int        # output dims[2] * dims[3]: values per slot
    reset_value: int  # the int8 the variable output is memset to at reset (its zero point's low byte)


def cycles_max_option(options: bytes) -> int | None:
    """CircularBufferInit: element 0 of the flexbuffer's root vector as a raw int32 (0 without
    options); None when TFLM would read it from outside the buffer (no vector, or an empty one)."""
    if not options:
        return 0
    try:
        root = flexbuffers.GetRoot(bytes(options))
        if root._type not in (flexbuffers.Type.VECTOR, flexbuffers.Type.MAP):
            return None  # AsVector() of anything else is the empty vector
        vector = root.AsVector
        if len(vector) == 0:
            return None
        width = vector._byte_width
        raw = bytes(vector._buf[0:width])
    except Exception:  # noqa: BLE001 - a malformed flexbuffer
        return None
    if len(raw) != width or width not in (1, 2, 4, 8):
        return None
    # ReadInt64(elem, byte_width) whatever the element's type, then static_cast<int32_t>.
    value = int.from_bytes(raw, "little", signed=True)
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


@register("CIRCULAR_BUFFER")
class CircularBuffer(OpKernel):
    supported_types = "int8"
    notes = ("custom op; the buffer persists across `run()` until `reset()` (reset to the zero point). Supported "
             "with a period of one call (`cycles_max` 1, or 5/13/25 slots) and a variable output tensor; a longer "
             "period (TFLM aborts the invoke, leaving later outputs as the arena held them) or an arena-backed "
             "output is refused")

    def prepare(self, ctx: PrepareContext):
        ctx.check(len(ctx.op.inputs) >= 1 and len(ctx.op.outputs) >= 1, "needs an input and an output")
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        # Prepare reads dims->data[0..3] of both tensors.
        for t, role in ((x, "input"), (out, "output")):
            if len(t.shape) != 4:
                ctx.unsupported(f"{role} must be 4-D, has shape {list(t.shape)}: TFLM reads its dims 0-3 (its result "
                                "is undefined)", t)
        ctx.check(x.shape[0] == out.shape[0], f"input dim 0 ({x.shape[0]}) differs from output dim 0 "
                                              f"({out.shape[0]})", out)
        ctx.check(x.shape[1] == 1, f"input dim 1 must be 1, is {x.shape[1]}", x)
        ctx.check(x.shape[2] == out.shape[2], f"input dim 2 ({x.shape[2]}) differs from output dim 2 "
                                              f"({out.shape[2]})", out)
        ctx.check(x.shape[3] == out.shape[3], f"input dim 3 ({x.shape[3]}) differs from output dim 3 "
                                              f"({out.shape[3]})", out)
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type "
                                                f"{out.type_name}", out)
        ctx.check(x.type_name == "INT8", f"only int8 is supported (TF_LITE_ENSURE_TYPES_EQ), input is "
                                         f"{x.type_name}", x)
        ctx.check(out.shape[1] >= 1, "the output has no slots", out)
        cycles_max = cycles_max_option(ctx.op.custom_options)
        if cycles_max is None:
            ctx.unsupported("the custom options are not a flexbuffer vector with an element 0: TFLM reads "
                            "cycles_max from outside the options")
        if cycles_max <= 0:
            if out.shape[1] in _ONE_CALL_SLOTS:
                cycles_max = 1
            elif out.shape[2] == 2 and out.shape[3] == 96:
                ctx.unsupported("no cycles_max option and an output of W=2, C=96: TFLM's period then depends "
                                "on how many circular buffers the process prepared before (a static counter)")
            else:
                cycles_max = 2
        if cycles_max != 1:
            ctx.unsupported(f"cycles_max {cycles_max}: TFLM ends the invoke (kTfLiteAbort) on {cycles_max - 1} "
                            f"of every {cycles_max} calls, leaving the later operators' outputs as the arena "
                            "held them; microref's runtime has no such early exit")
        if not out.is_variable:
            ctx.unsupported("the output is not a variable tensor: the buffer would live in arena memory whose "
                            "contents across calls the model does not define (TFLM keeps and resets it only "
                            "for a variable tensor)")
        zero_point = out.quantization.zero_point if out.quantization is not None else 0
        # ResetTensorData memsets the tensor with the zero point, converted to a byte.
        reset_value = int(np.array(zero_point & 0xFF, np.uint8).view(np.int8))
        self.out_shape = tuple(out.shape)
        self.params = CircularBufferParams(cycles_max=cycles_max, num_slots=out.shape[1],
                                           depth=out.shape[2] * out.shape[3], reset_value=reset_value)

    def describe(self):
        return dataclasses.asdict(self.params)

    def initial_state(self):
        return (np.full(self.out_shape, self.params.reset_value, np.int8),)

    def eval(self, inputs, state):
        p = self.params
        x = inputs[0]
        (buffer,) = state
        n = max(x.shape[0], buffer.shape[0])
        output = np.broadcast_to(buffer, (n,) + self.out_shape).reshape(n, -1).copy()
        used = p.num_slots * p.depth
        # EvalInt8: memmove(output, &output[depth], (num_slots - 1) * depth), then the input's first
        # depth values into the last slot. Only the first batch's slots move; the rest stay.
        output[:, :used - p.depth] = output[:, p.depth:used].copy()
        output[:, used - p.depth:used] = np.broadcast_to(x.reshape(x.shape[0], -1)[:, :p.depth], (n, p.depth))
        output = output.reshape((n,) + self.out_shape)
        return [output], (output,)
