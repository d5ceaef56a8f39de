"""The signal library's filter-bank kernels: SignalFilterBank (filter_bank.cc),
SignalFilterBankSquareRoot (filter_bank_square_root*.cc), SignalFilterBankLog
(filter_bank_log.cc), SignalFilterBankSpectralSubtraction (filter_bank_spectral_subtraction.cc,
which keeps a noise estimate across calls) and SignalPCAN (pcan.cc), with the arithmetic of
signal/src (filter_bank*.cc, square_root_*.cc, log.cc, pcan_argc_fixed.cc).

All of it is unsigned 32/64-bit integer arithmetic; numpy's uint64 wraps exactly as C's does."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..registry import register
from .arith import log32, msb32, sqrt64
from .base import SignalKernel, flat, require_rank, require_type, shaped, shift_count, written_prefix
from .framing import stream_input
from .options import FlexOptions

U64 = np.uint64
MASK32 = 0xFFFFFFFF
INT16_MAX = (1 << 15) - 1


# ---------------------------------------------------------------------------- SignalFilterBank

@dataclass(frozen=True)
class FilterBankParams:
    num_channels: int  # custom option element 0: channels (+1 accumulation slot, dropped)
    contributions: int  # (input bin, weight) products summed, over all channels
    output_size: int  # output elements: memcpy'd from work_area + 1


@register("SignalFilterBank")
class FilterBank(SignalKernel):
    """filter_bank.cc FilterbankAccumulateChannels: channel i sums weights[weight_start + j] *
    input[freq_start + j] over its width, plus the previous channel's 'unweights' sum, in uint64
    (the int16 weights sign-extended: a negative weight wraps modulo 2**64)."""

    supported_types = "uint32 in, uint64 out"
    notes = "integer only, as TFLM"

    def prepare(self, ctx):
        options = FlexOptions(ctx)
        num_channels = options.int32(0, "num_channels")
        ctx.check_io_counts(6, 1)
        roles = ["input", "weights", "unweights", "channel_frequency_starts", "channel_weight_starts",
                 "channel_widths"]
        tensors = [ctx.require_input(i, role) for i, role in enumerate(roles)]
        for t, role in zip(tensors, roles):
            require_rank(ctx, t, 1, role)
            require_type(ctx, t, "UINT32" if role == "input" else "INT16", role)
        out = ctx.output(0)
        require_rank(ctx, out, 1, "output")
        require_type(ctx, out, "UINT64", "output")
        x, weights, unweights, freq_starts, weight_starts, widths = tensors
        if num_channels < 0:
            ctx.unsupported(f"num_channels = {num_channels}: TFLM's work area cannot be allocated")
        if out.size > num_channels:
            ctx.unsupported(f"TFLM copies {out.size} channels out of a work area of {num_channels}: "
                            f"a read past it", out)
        for t in (freq_starts, weight_starts, widths):
            if t.data is None:
                ctx.unsupported("microref needs the channel layout tensors constant (TFLM indexes the "
                                "input and weights with them unchecked)", t)
            if t.size < num_channels + 1:
                ctx.unsupported(f"{t.size} entries for num_channels + 1 = {num_channels + 1} channels: "
                                f"TFLM reads past them", t)
        fs, ws, wd = (np.asarray(t.data, np.int64).reshape(-1) for t in (freq_starts, weight_starts, widths))
        input_index, weight_index, target = [], [], []
        for i in range(num_channels + 1):
            j = np.arange(max(int(wd[i]), 0))
            if j.size and (fs[i] < 0 or ws[i] < 0 or fs[i] + j[-1] >= x.size
                           or ws[i] + j[-1] >= min(weights.size, unweights.size)):
                ctx.unsupported(f"channel {i} reads input[{fs[i]}..{fs[i] + j[-1]}] and weights"
                                f"[{ws[i]}..{ws[i] + j[-1]}], outside the tensors")
            input_index.append(fs[i] + j)
            weight_index.append(ws[i] + j)
            target.append(np.full(j.size, i))
        self.input_index = np.concatenate(input_index).astype(np.int64)
        self.weight_index = np.concatenate(weight_index).astype(np.int64)
        target = np.concatenate(target).astype(np.int64)
        # output[k] (work_area[k + 1]) gets channel k + 1's weighted sums and channel k's unweighted.
        k = self.input_index.size
        self.weighted_to = np.zeros((k, out.size), np.uint64)
        self.unweighted_to = np.zeros((k, out.size), np.uint64)
        rows = np.arange(k)
        hit = (target >= 1) & (target - 1 < out.size)
        self.weighted_to[rows[hit], target[hit] - 1] = 1
        hit = target < out.size
        self.unweighted_to[rows[hit], target[hit]] = 1
        self.out = out
        self.params = FilterBankParams(num_channels, k, out.size)

    def eval(self, inputs):
        x = flat(inputs[0]).astype(np.uint64)[:, self.input_index]
        w = flat(inputs[1]).astype(np.int64).astype(np.uint64)[:, self.weight_index]
        u = flat(inputs[2]).astype(np.int64).astype(np.uint64)[:, self.weight_index]
        # uint64 products and sums wrap modulo 2**64, as the C accumulators do (order-free).
        y = (w * x) @ self.weighted_to + (u * x) @ self.unweighted_to
        return [shaped(y, self.out)]


# ---------------------------------------------------------------------------- SignalFilterBankSquareRoot

@dataclass(frozen=True)
class FilterBankSquareRootParams:
    num_channels: int  # input->dims->data[0]
    output_size: int  # output elements (the first num_channels are written)


@register("SignalFilterBankSquareRoot")
class FilterBankSquareRoot(SignalKernel):
    """filter_bank_square_root.cc FilterbankSqrt: output[i] = Sqrt64(input[i]) >> scale_bits,
    the shift read from the scalar int32 input at every call."""

    supported_types = "uint64 in, uint32 out"
    notes = "integer only, as TFLM; shift counts past 31 wrap as on x86"

    def prepare(self, ctx):
        ctx.check_io_counts(2, 1)
        x = ctx.require_input(0, "input")
        bits = ctx.require_input(1, "scale_bits")
        out = ctx.output(0)
        require_rank(ctx, x, 1, "input")
        require_rank(ctx, bits, 0, "scale_bits")
        require_rank(ctx, out, 1, "output")
        require_type(ctx, x, "UINT64", "input")
        require_type(ctx, bits, "INT32", "scale_bits")
        require_type(ctx, out, "UINT32", "output")
        if out.size < x.size:
            ctx.unsupported(f"TFLM writes {x.size} channels into a {out.size}-value output", out)
        self.out = out
        self.params = FilterBankSquareRootParams(x.size, out.size)

    def eval(self, inputs):
        p = self.params
        x = flat(inputs[0])
        # uint32 >> scale_bits, the count modulo 32 (see shift_count; measured for 1 to 40
        # channels and counts 32, 33, 40, -1).
        shift = (flat(inputs[1]).astype(np.int64) & 31).astype(np.uint64)
        root = sqrt64(x) >> shift  # one row per sample of whichever input has them (a constant has one)
        y = np.zeros((root.shape[0], p.output_size), np.uint32)
        y[:, :p.num_channels] = root.astype(np.uint32)
        return [shaped(y, self.out)]


# ---------------------------------------------------------------------------- SignalFilterBankLog

@dataclass(frozen=True)
class FilterBankLogParams:
    input_correction_bits: int  # custom option element 0, modulo 32: left shift before the log
    output_scale: int  # custom option element 1: multiplier of the natural log (uint32 in C)
    num_channels: int  # input->dims->data[0]
    output_size: int  # output elements (the first num_channels are written)


@register("SignalFilterBankLog")
class FilterBankLog(SignalKernel):
    """filter_bank_log.cc FilterbankLog: min(Log32(input << correction_bits, output_scale), 32767),
    and 0 where the shifted input is 0 or 1."""

    supported_types = "uint32 in, int16 out"
    notes = "integer only, as TFLM"

    def prepare(self, ctx):
        options = FlexOptions(ctx)
        correction = options.int32(0, "input_correction_bits")
        output_scale = options.int32(1, "output_scale")
        ctx.check_io_counts(1, 1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        require_rank(ctx, x, 1, "input")
        require_rank(ctx, out, 1, "output")
        require_type(ctx, x, "UINT32", "input")
        require_type(ctx, out, "INT16", "output")
        if out.size < x.size:
            ctx.unsupported(f"TFLM writes {x.size} channels into a {out.size}-value output", out)
        self.out = out
        self.params = FilterBankLogParams(shift_count(correction), output_scale, x.size, out.size)

    def eval(self, inputs):
        p = self.params
        scaled = (flat(inputs[0]).astype(np.int64) << p.input_correction_bits) & MASK32
        big = scaled > 1
        log_value = log32(np.where(big, scaled, 2), p.output_scale)
        return [written_prefix(np.where(big, np.minimum(log_value, INT16_MAX), 0), self.out)]


# ---------------------------------------------------------------------------- SignalFilterBankSpectralSubtraction

@dataclass(frozen=True)
class SpectralSubtractionParams:
    alternate_one_minus_smoothing: int  # element 0 (uint32 in C)
    alternate_smoothing: int  # element 1: smoothing of odd channels
    clamping: bool  # element 2: clamp the noise estimate to the signal
    min_signal_remaining: int  # element 3: floor, as a fraction of the input
    num_channels: int  # element 4
    one_minus_smoothing: int  # element 5
    smoothing: int  # element 6: smoothing of even channels
    smoothing_bits: int  # element 7, modulo 32: input scale-up (a uint32 left shift)
    spectral_subtraction_bits: int  # element 8, modulo 64: fixed-point bits of the coefficients
    output_size: int  # elements of the output (the first num_channels are written)
    noise_output_size: int  # elements of the noise-estimate output (memcpy'd from the state)


@register("SignalFilterBankSpectralSubtraction")
class FilterBankSpectralSubtraction(SignalKernel):
    """filter_bank_spectral_subtraction.cc: a per-channel noise estimate, smoothed over calls
    (the kernel's persistent state, zero at Prepare and Reset), subtracted from the input with
    a floor; the second output is a copy of the estimate after the call."""

    supported_types = "uint32"
    notes = "the noise estimate persists across `run()` until `reset()`"

    def prepare(self, ctx):
        o = FlexOptions(ctx)
        u32 = lambda v: v & MASK32  # noqa: E731 - the config fields are uint32_t
        values = dict(alternate_one_minus_smoothing=u32(o.int32(0, "alternate_one_minus_smoothing")),
                      alternate_smoothing=u32(o.int32(1, "alternate_smoothing")),
                      clamping=o.bool(2, "clamping"),
                      min_signal_remaining=u32(o.int32(3, "min_signal_remaining")),
                      num_channels=o.int32(4, "num_channels"),
                      one_minus_smoothing=u32(o.int32(5, "one_minus_smoothing")),
                      smoothing=u32(o.int32(6, "smoothing")),
                      smoothing_bits=u32(o.int32(7, "smoothing_bits")),
                      spectral_subtraction_bits=u32(o.int32(8, "spectral_subtraction_bits")))
        ctx.check_io_counts(1, 2)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        noise = ctx.output(1)
        for t, role in ((x, "input"), (out, "output"), (noise, "noise_estimate output")):
            require_rank(ctx, t, 1, role)
            require_type(ctx, t, "UINT32", role)
        nc = values["num_channels"]
        values["smoothing_bits"] = shift_count(values["smoothing_bits"])  # uint32 shifts
        values["spectral_subtraction_bits"] = shift_count(values["spectral_subtraction_bits"], 64)  # uint64
        if nc < 0:
            ctx.unsupported(f"num_channels = {nc}: TFLM's noise estimate cannot be allocated")
        if x.size < nc or out.size < nc:
            ctx.unsupported(f"num_channels = {nc} but the input has {x.size} and the output {out.size} "
                            f"values: TFLM reads or writes past them")
        if noise.size > nc:
            ctx.unsupported(f"TFLM copies {noise.size} noise estimates out of {nc}: a read past its state",
                            noise)
        self.out, self.noise = out, noise
        self.params = SpectralSubtractionParams(**values, output_size=out.size, noise_output_size=noise.size)
        channel = np.arange(nc)
        even = (channel & 1) == 0
        self.smoothing = np.where(even, values["smoothing"], values["alternate_smoothing"]).astype(np.uint64)
        self.one_minus = np.where(even, values["one_minus_smoothing"],
                                  values["alternate_one_minus_smoothing"]).astype(np.uint64)

    def initial_state(self):
        return (np.zeros(self.params.num_channels, np.uint32),)  # memset at Prepare and Reset

    def eval(self, inputs, state):
        p = self.params
        nc = p.num_channels
        x = flat(stream_input(inputs[0], state)[0])[:, :nc].astype(np.uint64)
        estimate = state[0].astype(np.uint64)
        sb, ssb = U64(p.smoothing_bits), U64(p.spectral_subtraction_bits)
        signal_scaled_up = (x << sb) & U64(MASK32)
        # uint64 products and their sum wrap modulo 2**64 as in C, then the uint32 store truncates.
        estimate = ((signal_scaled_up * self.smoothing + estimate * self.one_minus) >> ssb) & U64(MASK32)
        estimate_scaled_up = np.minimum(estimate, signal_scaled_up)
        if p.clamping:
            estimate = estimate_scaled_up
        floor = ((x * U64(p.min_signal_remaining)) >> ssb) & U64(MASK32)
        subtracted = ((signal_scaled_up - estimate_scaled_up) & U64(MASK32)) >> sb
        new_state = estimate.astype(np.uint32)
        noise_out = np.ascontiguousarray(new_state[:, :p.noise_output_size])
        return [written_prefix(np.maximum(subtracted, floor), self.out), shaped(noise_out, self.noise)], (new_state,)


# ---------------------------------------------------------------------------- SignalPCAN

PCAN_SNR_BITS = 12
PCAN_OUTPUT_BITS = 6
PCAN_LUT_READ = 4 * 32 - 6 + 3  # WideDynamicFunction reads lut[4 * interval - 6 + 2], interval <= 32


@dataclass(frozen=True)
class PcanParams:
    snr_shift: int  # custom option element 0, modulo 64: right shift of the uint64 input * gain
    num_channels: int  # input->dims->data[0]
    gain_lut_size: int  # entries of the gain look-up table


def wide_dynamic_function(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """WideDynamicFunction(x, lut) per element: the int16 gain for noise estimate x (uint32),
    interpolated in the segment of x's most significant bit. ``lut`` (N or 1, entries) int64."""
    x = x.astype(np.int64)
    rows = np.arange(x.shape[0])[:, None] if lut.shape[0] > 1 else np.zeros((1, 1), np.int64)
    interval = msb32(x)
    base = 4 * interval - 6
    small = x <= 2
    base = np.where(small, 0, base)
    frac = np.where(interval < 11, x << np.maximum(11 - interval, 0), x >> np.maximum(interval - 11, 0)) & 0x3FF
    c0, c1, c2 = lut[rows, base], lut[rows, base + 1], lut[rows, base + 2]
    result = (c2 * frac) >> 5  # int32 arithmetic shift
    result = result + c1 * 32  # (int32)((uint32)lut[1] << 5): |lut[1] * 32| < 2**20, no wrap
    result = result * frac  # |result| < 2**31 (at most 2096128 * 1023)
    result = (result + (1 << 14)) >> 15
    result = result + c0
    result = ((result + (1 << 15)) & 0xFFFF) - (1 << 15)  # (int16_t)
    return np.where(small, lut[rows, np.where(small, x, 0)], result)


def pcan_shrink(x: np.ndarray) -> np.ndarray:
    """PcanShrink (uint32)."""
    return np.where(x < (2 << PCAN_SNR_BITS),
                    (x * x) >> (2 + 2 * PCAN_SNR_BITS - PCAN_OUTPUT_BITS),
                    (x >> (PCAN_SNR_BITS - PCAN_OUTPUT_BITS)) - (1 << PCAN_OUTPUT_BITS))


@register("SignalPCAN")
class Pcan(SignalKernel):
    """pcan.cc ApplyPcanAutoGainControlFixed: per-channel energy normalisation by a gain looked
    up from the noise estimate (an input: PCAN keeps no state of its own), then PcanShrink."""

    supported_types = "uint32"
    notes = "integer only, as TFLM; keeps no state (its noise estimate is an input)"

    def prepare(self, ctx):
        options = FlexOptions(ctx)
        snr_shift = options.int32(0, "snr_shift")
        ctx.check_io_counts(3, 1)
        x = ctx.require_input(0, "input")
        noise = ctx.require_input(1, "noise_estimate")
        lut = ctx.require_input(2, "gain_lut")
        out = ctx.output(0)
        for t, role in ((x, "input"), (noise, "noise_estimate"), (lut, "gain_lut"), (out, "output")):
            require_rank(ctx, t, 1, role)
        require_type(ctx, x, "UINT32", "input")
        require_type(ctx, noise, "UINT32", "noise_estimate")
        require_type(ctx, lut, "INT16", "gain_lut")
        require_type(ctx, out, "UINT32", "output")
        if out.size != x.size:
            ctx.unsupported(f"TFLM copies the {out.size}-value output from the {x.size}-value input and "
                            f"rewrites {x.size} channels: past one of them", out)
        if noise.size < x.size:
            ctx.unsupported(f"TFLM reads {x.size} noise estimates from {noise.size}", noise)
        needed = PCAN_LUT_READ
        if noise.data is not None and x.size:
            v = np.asarray(noise.data, np.int64).reshape(-1)[:x.size]
            needed = int(np.where(v <= 2, v + 1, 4 * msb32(v) - 6 + 3).max())
        if lut.size < needed:
            ctx.unsupported(f"a gain LUT of {lut.size} entries: TFLM reads up to entry {needed - 1} for "
                            f"large noise estimates (past the table)", lut)
        self.out = out
        self.params = PcanParams(shift_count(snr_shift, 64), x.size, lut.size)

    def eval(self, inputs):
        p = self.params
        x = flat(inputs[0]).astype(np.uint64)
        noise = flat(inputs[1])[:, :p.num_channels]
        lut = flat(inputs[2]).astype(np.int64)
        gain = (wide_dynamic_function(noise, lut) & MASK32).astype(np.uint64)  # int16 -> uint32
        snr = ((x * gain) >> U64(p.snr_shift)) & U64(MASK32)  # product < 2**64
        return [shaped(pcan_shrink(snr.astype(np.int64)).astype(np.uint32), self.out)]
