"""The signal library's stateful stream kernels: SignalFramer (framer.cc), SignalStacker
(stacker.cc), SignalDelay (delay.cc) and SignalOverlapAdd (overlap_add.cc, src/overlap_add.cc).

Framer, Stacker and Delay keep their history in TFLM's CircularBuffer (signal/src/
circular_buffer.cc). Its read and write positions move the same way whatever the data, and as
long as none of its ASSERTs is violated (checked at prepare: a violation is a buffer overrun in
a release build) it behaves as a queue of the ``available`` most recent values; that queue is
the state kept here, oldest first, right-aligned in a fixed-size array.

Framer and Stacker leave their output untouched on a call whose output_valid flag is false: the
output then keeps the bytes of the previous call (0 before the first), which is what TFLM gives
when nothing else shares that arena region (see base). That previous output is part of the
state, and a reset clears it — as a fresh TFLM interpreter has it; TFLM's own Reset() keeps the
stale bytes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..registry import register
from .base import (
    TYPE_CODES,
    SignalKernel,
    flat,
    require_innermost,
    require_nonempty,
    require_rank,
    require_type,
    shaped,
    written_prefix,
)
from .options import FlexOptions

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
STREAM_NOTES = ("circular-buffer state persists across `run()` until `reset()`; when output_valid is false the output "
                "keeps the previous call's values, as TFLM leaves it")


def stream_input(x: np.ndarray, state: tuple) -> tuple[np.ndarray, int]:
    """The input with as many samples as the state (a constant input has one), and that count."""
    n = max(x.shape[0], state[0].shape[0])
    return np.broadcast_to(x, (n,) + x.shape[1:]), n


def _queue(state_buffer: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, int]:
    """The queued values (oldest first) of a right-aligned state buffer, and their count (the
    same for every sample: positions do not depend on data)."""
    n = int(count.reshape(-1)[0])
    assert np.all(count == n), "samples of one batch advanced differently"
    return state_buffer[..., state_buffer.shape[-1] - n:], n


def _right_aligned(values: np.ndarray, capacity: int) -> np.ndarray:
    buf = np.zeros(values.shape[:-1] + (capacity,), np.int16)
    if values.shape[-1]:
        buf[..., capacity - values.shape[-1]:] = values
    return buf


def _count(n: int, samples: int) -> np.ndarray:
    return np.full((samples, 1), n, np.int64)


# ---------------------------------------------------------------------------- SignalFramer

@dataclass(frozen=True)
class FramerParams:
    frame_size: int  # custom option element 0: samples per output frame
    frame_step: int  # custom option element 1: new samples per frame
    prefill: bool  # custom option element 2: start with frame_size - frame_step zeros queued
    outer_dims: int  # independent streams: input elements / innermost dimension
    n_frames: int  # frames per call: innermost dimension / frame_step
    capacity: int  # circular buffer capacity: frame_size rounded up to a multiple of frame_step
    output_size: int  # output elements (outer_dims * n_frames * frame_size of them written)


@register("SignalFramer")
class Framer(SignalKernel):
    """framer.cc: per stream, queue frame_step samples at a time and emit the oldest frame_size
    queued ones once that many are there, then drop frame_step; output_valid is false if any
    frame of the call was not ready (its output slot is then not written)."""

    supported_types = "int16"
    notes = STREAM_NOTES

    def prepare(self, ctx):
        o = FlexOptions(ctx)
        frame_size, frame_step, prefill = o.int32(0, "frame_size"), o.int32(1, "frame_step"), o.bool(2, "prefill")
        ctx.check_io_counts(1, 2)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        valid = ctx.output(1)
        require_rank(ctx, out, len(x.shape) + 1, "output (input rank + 1)")
        require_rank(ctx, valid, 0, "output_valid")
        require_type(ctx, x, "INT16", "input")
        require_type(ctx, out, "INT16", "output")
        require_type(ctx, valid, "BOOL", "output_valid")
        require_innermost(ctx, x)
        if frame_step <= 0:
            ctx.unsupported(f"frame_step = {frame_step}: TFLM divides by it / never advances")
        innermost = int(x.shape[-1])
        ctx.check(innermost >= frame_step, f"innermost dimension {innermost} < frame_step {frame_step} "
                  f"(innermost_dim >= frame_step)", x)
        ctx.check(innermost % frame_step == 0, f"innermost dimension {innermost} is not a multiple of "
                  f"frame_step {frame_step} (innermost_dim % frame_step == 0)", x)
        if frame_size <= 0:
            ctx.unsupported(f"frame_size = {frame_size}: TFLM's circular buffer has no room (overrun)")
        if prefill and frame_size < frame_step:
            ctx.unsupported(f"prefill with frame_size {frame_size} < frame_step {frame_step}: TFLM writes "
                            f"a negative count of zeros (a crash)")
        outer = x.size // innermost
        n_frames = innermost // frame_step
        if outer * n_frames * frame_size > out.size:
            ctx.unsupported(f"{outer * n_frames} frames of {frame_size} do not fit the {out.size}-value "
                            f"output: TFLM writes past it", out)
        capacity = (frame_size + frame_step - 1) // frame_step * frame_step
        self.out = out
        self.params = FramerParams(frame_size, frame_step, prefill, outer, n_frames, capacity, out.size)

    def initial_state(self):
        p = self.params
        queued = p.frame_size - p.frame_step if p.prefill else 0  # CircularBufferWriteZeros
        return (np.zeros((p.outer_dims, p.capacity), np.int16), np.array([queued], np.int64),
                np.zeros(p.output_size, np.int16))

    def eval(self, inputs, state):
        p = self.params
        x, n = stream_input(inputs[0], state)
        x = flat(x).reshape(n, p.outer_dims, p.n_frames, p.frame_step)
        queue, _ = _queue(state[0], state[1])
        y = state[2].copy().reshape(n, -1)
        frames = y[:, :p.outer_dims * p.n_frames * p.frame_size].reshape(n, p.outer_dims, p.n_frames, p.frame_size)
        valid = True
        for frame in range(p.n_frames):
            queue = np.concatenate([queue, x[:, :, frame]], axis=-1)  # CircularBufferWrite
            if queue.shape[-1] >= p.frame_size:
                frames[:, :, frame] = queue[..., :p.frame_size]  # CircularBufferGet
                queue = queue[..., p.frame_step:]  # CircularBufferDiscard
            else:
                valid = False
        y[:, :frames.size // n] = frames.reshape(n, -1)
        outputs = [shaped(y, self.out), np.full(n, valid, np.bool_)]
        return outputs, (_right_aligned(queue, p.capacity), _count(queue.shape[-1], n), y)


# ---------------------------------------------------------------------------- SignalStacker

@dataclass(frozen=True)
class StackerParams:
    num_channels: int  # custom option element 0: values taken from the input per call
    stacker_left_context: int  # element 1: earlier frames stacked before the current one
    stacker_right_context: int  # element 2: later frames stacked after it
    stacker_step: int  # element 3: frames dropped after each stacked output
    buffer_size: int  # num_channels * (left + right + 1): values per output
    output_size: int  # output elements (buffer_size of them written when valid)


@register("SignalStacker")
class Stacker(SignalKernel):
    """stacker.cc: queue num_channels input values per call (the first frame repeated
    left_context extra times), and once left + right + 1 frames are queued output them all and
    drop stacker_step frames."""

    supported_types = "int16"
    notes = STREAM_NOTES

    def prepare(self, ctx):
        o = FlexOptions(ctx)
        nc = o.int32(0, "num_channels")
        left, right = o.int32(1, "stacker_left_context"), o.int32(2, "stacker_right_context")
        step = o.int32(3, "stacker_step")
        ctx.check_io_counts(1, 2)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        valid = ctx.output(1)
        require_rank(ctx, x, 1, "input")
        require_rank(ctx, out, 1, "output")
        require_rank(ctx, valid, 0, "output_valid")
        require_type(ctx, x, "INT16", "input")
        require_type(ctx, out, "INT16", "output")
        require_type(ctx, valid, "BOOL", "output_valid")
        if nc <= 0 or left < 0 or right < 0 or not 1 <= step <= left + right + 1:
            ctx.unsupported(f"num_channels {nc}, contexts {left}/{right}, step {step}: TFLM's circular "
                            f"buffer ASSERTs fail (needs num_channels >= 1, contexts >= 0 and "
                            f"1 <= stacker_step <= left + right + 1; a release build overruns or "
                            f"corrupts its state)")
        buffer_size = nc * (left + right + 1)
        if x.size < nc:
            ctx.unsupported(f"TFLM reads num_channels = {nc} values from a {x.size}-value input", x)
        if out.size < buffer_size:
            ctx.unsupported(f"TFLM writes {buffer_size} stacked values into a {out.size}-value output", out)
        self.out = out
        self.params = StackerParams(nc, left, right, step, buffer_size, out.size)

    def initial_state(self):
        p = self.params
        return (np.zeros(p.buffer_size, np.int16), np.array([0], np.int64), np.array([False]),
                np.zeros(p.output_size, np.int16))

    def eval(self, inputs, state):
        p = self.params
        x, n = stream_input(inputs[0], state)
        queue, _ = _queue(state[0], state[1])
        frame = flat(x)[:, :p.num_channels]
        queue = np.concatenate([queue, frame], axis=-1)
        has_first = bool(state[2].reshape(-1)[0])
        if not has_first:
            # CircularBufferExtend: the newest num_channels values, left_context more times.
            queue = np.concatenate([queue] + [frame] * p.stacker_left_context, axis=-1)
        y = state[3].copy().reshape(n, -1)
        valid = queue.shape[-1] >= p.buffer_size
        if valid:
            y[:, :p.buffer_size] = queue[:, :p.buffer_size]
            queue = queue[:, p.num_channels * p.stacker_step:]
        outputs = [shaped(y, self.out), np.full(n, valid, np.bool_)]
        return outputs, (_right_aligned(queue, p.buffer_size), _count(queue.shape[-1], n),
                         np.ones((n, 1), np.bool_), y)


# ---------------------------------------------------------------------------- SignalDelay

@dataclass(frozen=True)
class DelayParams:
    delay_length: int  # custom option element 0: samples of delay per stream
    frame_size: int  # innermost input dimension: samples per stream per call
    outer_dims: int  # independent streams
    output_size: int  # output elements (the input's element count of them written)


@register("SignalDelay")
class Delay(SignalKernel):
    """delay.cc: each stream of frame_size samples comes out delay_length samples late (zeros
    first), through a circular buffer of frame_size + delay_length."""

    supported_types = "int16"
    notes = STREAM_NOTES

    def prepare(self, ctx):
        o = FlexOptions(ctx)
        delay = o.int32(0, "delay_length")
        ctx.check_io_counts(1, 1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        require_type(ctx, x, "INT16", "input")
        require_type(ctx, out, "INT16", "output")
        require_innermost(ctx, x)
        require_nonempty(ctx, x, "input")
        if delay < 0:
            ctx.unsupported(f"delay_length = {delay}: TFLM writes a negative count of zeros (a crash)")
        if out.size < x.size:
            ctx.unsupported(f"TFLM writes {x.size} delayed values into a {out.size}-value output", out)
        frame_size = int(x.shape[-1])
        self.out = out
        self.params = DelayParams(delay, frame_size, x.size // frame_size, out.size)

    def initial_state(self):
        p = self.params
        return (np.zeros((p.outer_dims, p.delay_length), np.int16),)  # CircularBufferWriteZeros

    def eval(self, inputs, state):
        p = self.params
        x, n = stream_input(inputs[0], state)
        x = flat(x).reshape(n, p.outer_dims, p.frame_size)
        queue = np.concatenate([state[0], x], axis=-1)  # delay_length queued + frame_size written
        return [written_prefix(queue[..., :p.frame_size].reshape(n, -1), self.out)], \
            (np.ascontiguousarray(queue[..., p.frame_size:]),)


# ---------------------------------------------------------------------------- SignalOverlapAdd

@dataclass(frozen=True)
class OverlapAddParams:
    type: str  # custom option 'T' (by name): INT16 or FLOAT32
    frame_step: int  # custom option element 1: output samples per frame
    frame_size: int  # innermost input dimension: samples per input frame
    n_frames: int  # second-innermost input dimension: frames per call
    outer_dims: int  # independent streams
    output_size: int  # output elements (outer_dims * n_frames * frame_step of them written)


@register("SignalOverlapAdd")
class OverlapAdd(SignalKernel):
    """overlap_add.cc: each frame is added into a frame_size accumulator (saturating for int16,
    float32 addition for float), whose first frame_step values are output and shifted out."""

    supported_types = "int16, float32"
    notes = STREAM_NOTES

    def prepare(self, ctx):
        o = FlexOptions(ctx)
        code = o.type_selector()
        if TYPE_CODES.get(code) not in ("INT16", "FLOAT32"):
            ctx.unsupported(f"custom option T = {code} is not INT16 or FLOAT32: TFLM's Init returns no "
                            f"parameters and its Prepare dereferences them (crash)")
        kind = TYPE_CODES[code]
        frame_step = o.int32(1, "frame_step")
        ctx.check_io_counts(1, 1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        require_rank(ctx, x, len(out.shape) + 1, "input (output rank + 1)")
        require_type(ctx, x, kind, "input")
        require_type(ctx, out, kind, "output")
        ctx.check(len(x.shape) >= 2, f"input has {len(x.shape)} dimensions, TFLM requires at least 2", x)
        require_nonempty(ctx, x, "input")
        frame_size, n_frames = int(x.shape[-1]), int(x.shape[-2])
        outer = x.size // (frame_size * n_frames)
        if not 0 <= frame_step <= frame_size:
            ctx.unsupported(f"frame_step = {frame_step} outside [0, frame_size {frame_size}]: TFLM copies a "
                            f"negative count (a crash) or reads past its accumulator")
        if outer * n_frames * frame_step > out.size:
            ctx.unsupported(f"{outer * n_frames} frames of {frame_step} output values overrun the "
                            f"{out.size}-value output", out)
        self.out = out
        self.params = OverlapAddParams(kind, frame_step, frame_size, n_frames, outer, out.size)

    def initial_state(self):
        p = self.params
        return (np.zeros((p.outer_dims, p.frame_size), self.out.dtype),)  # OverlapAddResetState

    def eval(self, inputs, state):
        p = self.params
        x, n = stream_input(inputs[0], state)
        x = flat(x).reshape(n, p.outer_dims, p.n_frames, p.frame_size)
        buffer = np.broadcast_to(state[0], (n, p.outer_dims, p.frame_size))
        written = np.zeros((n, p.outer_dims, p.n_frames, p.frame_step), self.out.dtype)
        for frame in range(p.n_frames):
            if p.type == "INT16":
                buffer = np.clip(buffer.astype(np.int32) + x[:, :, frame], INT16_MIN, INT16_MAX).astype(np.int16)
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    buffer = buffer + x[:, :, frame]  # float32 += float32
            written[:, :, frame] = buffer[..., :p.frame_step]
            buffer = np.concatenate([buffer[..., p.frame_step:],
                                     np.zeros(buffer.shape[:-1] + (p.frame_step,), buffer.dtype)], axis=-1)
        return [written_prefix(written.reshape(n, -1), self.out)], (np.ascontiguousarray(buffer),)
