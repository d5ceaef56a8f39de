"""The signal library's spectral kernels: SignalWindow (window.cc), SignalFftAutoScale
(fft_auto_scale_kernel.cc / fft_auto_scale_common.cc), SignalRfft (rfft.cc), SignalIrfft
(irfft.cc) and SignalEnergy (energy.cc), with the arithmetic of signal/src (window.cc,
fft_auto_scale.cc, max_abs.cc, rfft_*.cc, irfft_*.cc, energy.cc) and kissfft (kiss_fft.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..registry import register
from .arith import msb32
from .base import (
    FRONT_END_NOTES,
    TYPE_CODES,
    SignalKernel,
    flat,
    require_innermost,
    require_nonempty,
    require_rank,
    require_type,
    shaped,
    shift_count,
    written_prefix,
)
from .kiss_fft import KissFftr, UnsupportedLength
from .options import FlexOptions

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


# ---------------------------------------------------------------------------- SignalWindow

@dataclass(frozen=True)
class WindowParams:
    shift: int  # 'shift' (custom option element 0), modulo 32 (see shift_count): right shift of the products
    input_size: int  # the input's element count, walked in steps of weight_size
    weight_size: int  # weights->dims->data[0]: the window length
    output_size: int  # elements of the output tensor (written: input_size of them)


@register("SignalWindow")
class Window(SignalKernel):
    """window.cc: output = saturate_int16((input * window) >> shift), the window applied to each
    consecutive weight_size-long chunk of the flattened input."""

    supported_types = "int16"
    notes = FRONT_END_NOTES + "; shift counts past the type's width wrap as on x86 (the wheel)"

    def prepare(self, ctx):
        options = FlexOptions(ctx)
        shift = options.int32(0, "shift")
        ctx.check_io_counts(2, 1)
        x = ctx.require_input(0, "input")
        w = ctx.require_input(1, "weights")
        out = ctx.output(0)
        ctx.check(len(x.shape) >= 1, "input has no dimensions (NumDimensions(input) >= 1)", x)
        require_rank(ctx, w, 1, "weights")
        require_rank(ctx, out, len(x.shape), "output (rank of the input)")
        for t, role in ((x, "input"), (w, "weights"), (out, "output")):
            require_type(ctx, t, "INT16", role)
        if w.shape[0] <= 0:
            ctx.unsupported("an empty window makes TFLM's loop never advance", w)
        if x.size % w.shape[0]:
            ctx.unsupported(f"the input's {x.size} elements are not a multiple of the window length "
                            f"{w.shape[0]}: TFLM reads and writes past the tensors", x)
        if out.size < x.size:
            ctx.unsupported(f"the output has {out.size} elements for {x.size} windowed ones: TFLM "
                            f"writes past it", out)
        self.out = out
        self.params = WindowParams(shift_count(shift), x.size, int(w.shape[0]), out.size)

    def eval(self, inputs):
        p = self.params
        x = flat(inputs[0]).astype(np.int32).reshape(inputs[0].shape[0], -1, p.weight_size)
        w = inputs[1].reshape(inputs[1].shape[0], 1, p.weight_size).astype(np.int32)  # |x*w| <= 2**30
        raw = (x * w) >> p.shift
        return [written_prefix(np.clip(raw, INT16_MIN, INT16_MAX).reshape(x.shape[0], -1), self.out)]


# ---------------------------------------------------------------------------- SignalFftAutoScale

@dataclass(frozen=True)
class FftAutoScaleParams:
    size: int  # output->dims->data[0]: how many input values are scaled


def max_abs16(x: np.ndarray) -> np.ndarray:
    """MaxAbs16 (max_abs.cc, the non-Xtensa loop) per row of ``x`` (N, size), as the int16 it
    returns. The loop keeps ``max`` in an int16_t: -(-32768) stores as -32768, after which the
    running 'maximum' can go negative and then follows any later value — sequential, exactly."""
    x = x.astype(np.int64)
    is_min = x == INT16_MIN
    result = np.abs(x).max(axis=1, initial=0)  # rows without -32768: max stays >= 0 throughout
    rows = np.flatnonzero(is_min.any(axis=1))
    if rows.size:
        first = is_min[rows].argmax(axis=1)
        state = np.full(rows.size, INT16_MIN, np.int64)  # -(-32768) > any max: max = (int16)32768
        for j in range(int(first.min()) + 1, x.shape[1]):
            v = x[rows, j]
            after = j > first
            neg = -v
            neg = np.where(neg > INT16_MAX, INT16_MIN, neg)  # (int16_t)(-value)
            new = np.where(v > state, v, np.where(-v > state, neg, state))
            state = np.where(after, new, state)
        result[rows] = state
    return result


def fft_auto_scale_bits(max_abs: np.ndarray) -> np.ndarray:
    """16 - MostSignificantBit32(max) - 1 (the int16 max converted to uint32: a negative one has
    bit 31 set), clamped at 0."""
    msb = msb32(max_abs.astype(np.int64) & 0xFFFFFFFF)
    return np.maximum(16 - msb - 1, 0)


@register("SignalFftAutoScale")
class FftAutoScale(SignalKernel):
    """fft_auto_scale_kernel.cc: shift the input left by the headroom of its largest magnitude,
    output the shift."""

    supported_types = "int16"
    notes = FRONT_END_NOTES

    def prepare(self, ctx):
        ctx.check_io_counts(1, 2)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        scale_bit = ctx.output(1)
        require_rank(ctx, x, 1, "input")
        require_rank(ctx, out, 1, "output")
        require_rank(ctx, scale_bit, 0, "scale_bit output")
        require_type(ctx, x, "INT16", "input")
        require_type(ctx, out, "INT16", "output")
        require_type(ctx, scale_bit, "INT32", "scale_bit output")
        if out.shape[0] > x.shape[0]:
            ctx.unsupported(f"TFLM scales output->dims->data[0] = {out.shape[0]} values of a "
                            f"{x.shape[0]}-value input (reads past it)", out)
        self.params = FftAutoScaleParams(int(out.shape[0]))

    def eval(self, inputs):
        x = flat(inputs[0])[:, :self.params.size].astype(np.int64)
        bits = fft_auto_scale_bits(max_abs16(x))
        # input[i] * (1 << scale_bits) in int, stored into int16 (wraps when max was misread).
        y = (x << bits[:, None]).astype(np.int16)
        return [y, bits.astype(np.int32)]


# ---------------------------------------------------------------------------- SignalRfft / SignalIrfft

_KIND = {"INT16": "int16", "INT32": "int32", "FLOAT32": "float32"}
FFT_TYPES = "int16, int32, float32"
FFT_NOTES = ("kissfft v130 as TFLM builds and patches it (per-stage fixed-point scaling, int wraparound, float32 in "
             "C's order); lengths needing a radix other than 2–5 are refused (TFLM crashes on them)")


def _fft_type(ctx, options: FlexOptions) -> str:
    code = options.type_selector()
    if code not in TYPE_CODES:
        ctx.unsupported(f"custom option T = {code} is not INT16, INT32 or FLOAT32: TFLM's Init returns "
                        f"no parameters and its Prepare dereferences them (crash)")
    return TYPE_CODES[code]


def _make_fftr(ctx, fft_length: int, inverse: bool, type_name: str) -> KissFftr:
    if fft_length < 4 or fft_length % 2:
        ctx.unsupported(f"fft_length {fft_length}: kiss_fftr_alloc needs an even length of at least 4 "
                        f"(otherwise TFLM runs with no transform state: undefined behaviour or a crash)")
    try:
        return KissFftr(fft_length, inverse, _KIND[type_name])
    except UnsupportedLength as e:
        ctx.unsupported(f"fft_length {fft_length}: {e}")


def _prepare_fft(ctx, inverse: bool):
    """What rfft.cc's and irfft.cc's Init and Prepare share: the options (T, fft_length), one input and
    one output of type T and equal rank, and the kiss_fftr state. Returns (T, fft_length, input,
    output, the transform)."""
    options = FlexOptions(ctx)
    fft_type = _fft_type(ctx, options)
    fft_length = options.int32(1, "fft_length")
    ctx.check_io_counts(1, 1)
    x = ctx.require_input(0, "input")
    out = ctx.output(0)
    require_rank(ctx, out, len(x.shape), "output (rank of the input)")
    require_type(ctx, x, fft_type, "input")
    require_type(ctx, out, fft_type, "output")
    require_innermost(ctx, x)
    require_nonempty(ctx, x, "input")
    require_nonempty(ctx, out, "output")
    return fft_type, fft_length, x, out, _make_fftr(ctx, fft_length, inverse, fft_type)


@dataclass(frozen=True)
class RfftParams:
    fft_type: str  # custom option 'T' (by name): the kernel's element type
    fft_length: int  # custom option element 1 ('fft_length')
    input_length: int  # innermost input dimension: samples per row, zero-padded to fft_length
    input_size: int  # input elements, walked in rows of input_length
    output_length: int  # innermost output dimension / 2: complex values per output row
    rows: int  # transforms per call


@register("SignalRfft")
class Rfft(SignalKernel):
    """rfft.cc: per row of the input, zero-pad to fft_length and run kiss_fftr, writing
    fft_length/2 + 1 complex values (interleaved real, imaginary) at each output row."""

    supported_types = FFT_TYPES
    notes = FFT_NOTES

    def prepare(self, ctx):
        fft_type, fft_length, x, out, self.fftr = _prepare_fft(ctx, inverse=False)
        input_length = int(x.shape[-1])
        output_length = int(out.shape[-1]) // 2
        # In the wheel (not in later source), Prepare refuses rows longer than the transform.
        ctx.check(input_length <= fft_length, f"rows of {input_length} samples exceed fft_length {fft_length} "
                  f"(params->input_length <= params->fft_length)", x)
        rows = x.size // input_length
        end = (rows - 1) * output_length + fft_length // 2 + 1
        if 2 * end > out.size:
            ctx.unsupported(f"{rows} transforms of {fft_length // 2 + 1} complex values at a stride of "
                            f"{output_length} need {2 * end} output values, the output has {out.size}: "
                            f"TFLM writes past it", out)
        self.out = out
        self.params = RfftParams(fft_type, fft_length, input_length, x.size, output_length, rows)
        self.scratch_bytes.append(fft_length * out.dtype.itemsize)  # the zero-padded work area

    def eval(self, inputs):
        p = self.params
        fftr = self.fftr
        n = inputs[0].shape[0]
        x = flat(inputs[0]).reshape(n, p.rows, p.input_length)
        work = fftr.arith.zeros((n, p.rows, p.fft_length))
        work[..., :p.input_length] = x
        with np.errstate(over="ignore", invalid="ignore"):  # float inf/NaN propagate as in C
            re, im = fftr.forward(work)
        bins = p.fft_length // 2 + 1
        y = np.zeros((n, self.out.size), self.out.dtype)
        for r in range(p.rows):  # in row order: with a short output stride, later rows overwrite
            start = 2 * r * p.output_length
            y[:, start:start + 2 * bins:2] = re[:, r]
            y[:, start + 1:start + 2 * bins:2] = im[:, r]
        return [shaped(y, self.out)]


@dataclass(frozen=True)
class IrfftParams:
    fft_type: str  # custom option 'T' (by name)
    fft_length: int  # custom option element 1 ('fft_length')
    input_length: int  # innermost input dimension / 2: complex values per input row
    input_size: int  # input elements / 2: complex values in the input
    output_length: int  # innermost output dimension: stride of the output rows
    rows: int  # transforms per call


@register("SignalIrfft")
class Irfft(SignalKernel):
    """irfft.cc: per row, kiss_fftri of fft_length/2 + 1 complex values into fft_length real
    ones; the float kernel then divides by fft_length (the integer ones do not scale)."""

    supported_types = FFT_TYPES
    notes = FFT_NOTES

    def prepare(self, ctx):
        fft_type, fft_length, x, out, self.fftr = _prepare_fft(ctx, inverse=True)
        input_length = int(x.shape[-1]) // 2
        input_size = x.size // 2
        if input_length == 0:
            ctx.unsupported("rows of fewer than one complex value make TFLM's loop never advance", x)
        rows = -(-input_size // input_length)
        bins = fft_length // 2 + 1
        if 2 * ((rows - 1) * input_length + bins) > x.size:
            ctx.unsupported(f"{rows} transforms read {bins} complex values at a stride of {input_length}: "
                            f"past the {x.size}-value input", x)
        output_length = int(out.shape[-1])
        if (rows - 1) * output_length + fft_length > out.size:
            ctx.unsupported(f"{rows} transforms of {fft_length} values at a stride of {output_length} "
                            f"overrun the {out.size}-value output", out)
        self.out = out
        self.params = IrfftParams(fft_type, fft_length, input_length, input_size, output_length, rows)

    def eval(self, inputs):
        p = self.params
        fftr = self.fftr
        n = inputs[0].shape[0]
        x = fftr.arith.asarray(flat(inputs[0]))
        bins = p.fft_length // 2 + 1
        starts = 2 * p.input_length * np.arange(p.rows)
        cols = starts[:, None] + 2 * np.arange(bins)[None, :]
        with np.errstate(over="ignore", invalid="ignore"):  # float inf/NaN propagate as in C
            time = fftr.inverse_transform(x[:, cols], x[:, cols + 1])  # (n, rows, fft_length)
            if p.fft_type == "FLOAT32":
                time = time / np.float32(p.fft_length)  # output[i] /= fft_length, in float
        y = np.zeros((n, self.out.size), self.out.dtype)
        for r in range(p.rows):
            start = r * p.output_length
            y[:, start:start + p.fft_length] = time[:, r]
        return [shaped(y, self.out)]


# ---------------------------------------------------------------------------- SignalEnergy

@dataclass(frozen=True)
class EnergyParams:
    end_index: int  # custom option element 0 ('end_index'): one past the last bin computed
    start_index: int  # custom option element 1 ('start_index'): the first bin computed
    output_size: int  # output elements; those outside [start_index, end_index) are not written


@register("SignalEnergy")
class Energy(SignalKernel):
    """energy.cc SpectrumToEnergy: output[i] = re[i]**2 + im[i]**2 for start_index <= i < end_index
    (computed in int32, stored as uint32); the other outputs are left unwritten (see base)."""

    supported_types = "complex int16 (interleaved pairs) → uint32"
    notes = FRONT_END_NOTES + "; elements outside [start, end) are 0 (TFLM leaves arena bytes there)"

    def prepare(self, ctx):
        options = FlexOptions(ctx)
        end = options.int32(0, "end_index")
        start = options.int32(1, "start_index")
        ctx.check_io_counts(1, 1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        require_rank(ctx, x, 1, "input")
        require_rank(ctx, out, 1, "output")
        require_type(ctx, x, "INT16", "input")
        require_type(ctx, out, "UINT32", "output")
        if start < end and (start < 0 or 2 * end > x.size or end > out.size):
            ctx.unsupported(f"bins [{start}, {end}) reach outside the {x.size // 2}-bin input or the "
                            f"{out.size}-value output: TFLM reads or writes past them")
        self.out = out
        self.params = EnergyParams(end, start, out.size)

    def eval(self, inputs):
        p = self.params
        x = flat(inputs[0]).astype(np.int64)
        y = np.zeros((x.shape[0], p.output_size), np.uint32)
        if p.start_index < p.end_index:
            re = x[:, 2 * p.start_index:2 * p.end_index:2]
            im = x[:, 2 * p.start_index + 1:2 * p.end_index:2]
            # int32 sum: only (-32768)**2 * 2 = 2**31 overflows, and wraps to the same uint32 bits.
            y[:, p.start_index:p.end_index] = ((re * re + im * im) & 0xFFFFFFFF).astype(np.uint32)
        return [shaped(y, self.out)]
