"""Whole signal-processing graphs against TFLM, call after call: TFLM's micro_speech audio front
end (/work/shared/models/audio_preprocessor_int8.tflite: Window, FftAutoScale, Rfft, Energy,
FilterBank, FilterBankSquareRoot, FilterBankSpectralSubtraction, PCAN, FilterBankLog and
builtins around them), and a front end built here that chains every signal operator, so that
the state the kernels keep and hand each other is exercised without the shared models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_diff_signal import check_signal

from interp.builder import ModelBuilder

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"
AUDIO_PREPROCESSOR = MODELS / "audio_preprocessor_int8.tflite"
RATE = 16000


def audio(rng, samples: int, *, loud: float = 3000.0) -> np.ndarray:
    """Speech-like int16 audio: two drifting tones, a chirp, noise, and a silent stretch."""
    t = np.arange(samples) / RATE
    x = (loud * np.sin(2 * np.pi * (440 + 200 * np.sin(2 * np.pi * 0.7 * t)) * t)
         + 0.5 * loud * np.sin(2 * np.pi * 1234 * t)
         + 0.3 * loud * np.sin(2 * np.pi * (300 + 3000 * t) * t)
         + rng.normal(0, loud / 10, samples))
    x[samples // 3:samples // 2] *= 0.01
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def frames_of(signal: np.ndarray, size: int, hop: int, count: int) -> list[np.ndarray]:
    return [signal[k * hop:k * hop + size] for k in range(count)]


# ---------------------------------------------------------------------------------- micro_speech

def _audio_preprocessor() -> bytes:
    if not AUDIO_PREPROCESSOR.exists():
        pytest.skip(f"{AUDIO_PREPROCESSOR} is absent (the shared models are not checked out)")
    return AUDIO_PREPROCESSOR.read_bytes()


@pytest.mark.parametrize("kind", ["audio", "loud_audio", "full_range", "extremes"])
def test_audio_preprocessor_matches_tflm_call_after_call(kind):
    data = _audio_preprocessor()
    rng = np.random.default_rng(["audio", "loud_audio", "full_range", "extremes"].index(kind))
    calls = 24
    if kind == "audio":  # 30 ms windows every 20 ms, as micro_speech feeds it
        frames = frames_of(audio(rng, 320 * calls + 480), 480, 320, calls)
    elif kind == "loud_audio":  # clipping, so FftAutoScale has no headroom to add
        frames = frames_of(audio(rng, 320 * calls + 480, loud=40000.0), 480, 320, calls)
    elif kind == "full_range":
        frames = [rng.integers(-32768, 32768, 480).astype(np.int16) for _ in range(calls)]
    else:  # -32768 makes MaxAbs16 misread the maximum; silence makes every energy 0
        frames = [rng.choice(np.array([-32768, -1, 0, 1, 32767], np.int16), 480) for _ in range(calls)]
        frames[3][:] = 0
    outcome = check_signal(data, [[f[None]] for f in frames], label="audio_preprocessor", stateful=True)
    assert outcome.compared, outcome.message


# ---------------------------------------------------------------------------------- every signal op

FFT = 512
HOP = 160
WINDOW = 480
CHANNELS = 16


def front_end_model() -> bytes:
    """Framer -> Window -> FftAutoScale -> Rfft -> Energy -> FilterBank -> FilterBankSquareRoot ->
    FilterBankSpectralSubtraction -> PCAN -> FilterBankLog -> Stacker, and Rfft -> Irfft ->
    OverlapAdd -> Delay: every output TFLM writes on every call."""
    from flatbuffers import flexbuffers

    b = ModelBuilder()

    def op(code, ins, outs, **options):
        b.op("CUSTOM", ins, outs, custom_code=code, custom_options=flexbuffers.Dumps(options))

    x = b.input("hop", [HOP], "INT16")
    framed = b.tensor("framed", [1, WINDOW], "INT16")
    framed_valid = b.tensor("framed_valid", [], "BOOL")
    op("SignalFramer", [x], [framed, framed_valid], frame_size=WINDOW, frame_step=HOP, prefill=True)
    n = np.arange(WINDOW)
    hann = b.constant("hann", np.round(4096 * (0.5 - 0.5 * np.cos(2 * np.pi * n / WINDOW))).astype(np.int16))
    windowed = b.tensor("windowed", [1, WINDOW], "INT16")
    op("SignalWindow", [framed, hann], [windowed], shift=12)
    flat = b.tensor("flat", [WINDOW], "INT16")
    b.op("RESHAPE", [windowed, b.constant("flat_shape", np.array([WINDOW], np.int32))], [flat])
    scaled = b.tensor("scaled", [WINDOW], "INT16")
    scale_bits = b.tensor("scale_bits", [], "INT32")
    op("SignalFftAutoScale", [flat], [scaled, scale_bits])
    spectrum = b.tensor("spectrum", [FFT + 2], "INT16")
    op("SignalRfft", [scaled], [spectrum], T=7, fft_length=FFT)
    energy = b.tensor("energy", [FFT // 2 + 1], "UINT32")
    op("SignalEnergy", [spectrum], [energy], start_index=0, end_index=FFT // 2 + 1)
    # Triangular channels of 14 bins each, 14 bins apart: weights ramp down, unweights up.
    width = 14
    ramp = np.round(4096 * (1 - np.arange(width) / width)).astype(np.int16)
    layout = [b.constant("weights", np.tile(ramp, CHANNELS + 1)),
              b.constant("unweights", np.tile(4096 - ramp, CHANNELS + 1).astype(np.int16)),
              b.constant("freq_starts", (4 + width * np.arange(CHANNELS + 1)).astype(np.int16)),
              b.constant("weight_starts", (width * np.arange(CHANNELS + 1)).astype(np.int16)),
              b.constant("widths", np.full(CHANNELS + 1, width, np.int16))]
    banks = b.tensor("banks", [CHANNELS], "UINT64")
    op("SignalFilterBank", [energy] + layout, [banks], num_channels=CHANNELS)
    roots = b.tensor("roots", [CHANNELS], "UINT32")
    b.op("CUSTOM", [banks, scale_bits], [roots], custom_code="SignalFilterBankSquareRoot")
    cleaned = b.tensor("cleaned", [CHANNELS], "UINT32")
    noise = b.tensor("noise", [CHANNELS], "UINT32")
    op("SignalFilterBankSpectralSubtraction", [roots], [cleaned, noise], alternate_one_minus_smoothing=15401,
       alternate_smoothing=983, clamping=False, min_signal_remaining=819, num_channels=CHANNELS,
       one_minus_smoothing=15975, smoothing=409, smoothing_bits=10, spectral_subtraction_bits=14)
    lut = np.clip(32767 - np.cumsum(np.full(125, 250)), 0, 32767).astype(np.int16)
    gained = b.tensor("gained", [CHANNELS], "UINT32")
    op("SignalPCAN", [cleaned, noise, b.constant("gain_lut", lut)], [gained], snr_shift=6)
    logs = b.tensor("logs", [CHANNELS], "INT16")
    op("SignalFilterBankLog", [gained], [logs], input_correction_bits=3, output_scale=64)
    stacked = b.tensor("stacked", [CHANNELS * 3], "INT16")
    stacked_valid = b.tensor("stacked_valid", [], "BOOL")
    op("SignalStacker", [logs], [stacked, stacked_valid], num_channels=CHANNELS, stacker_left_context=2,
       stacker_right_context=0, stacker_step=1)
    resynthesised = b.tensor("resynthesised", [FFT], "INT16")
    op("SignalIrfft", [spectrum], [resynthesised], T=7, fft_length=FFT)
    frames = b.tensor("frames", [1, FFT], "INT16")
    b.op("RESHAPE", [resynthesised, b.constant("frames_shape", np.array([1, FFT], np.int32))], [frames])
    added = b.tensor("added", [HOP], "INT16")
    op("SignalOverlapAdd", [frames], [added], T=7, frame_step=HOP)
    delayed = b.tensor("delayed", [HOP], "INT16")
    op("SignalDelay", [added], [delayed], delay_length=40)
    b.output(stacked, stacked_valid, framed_valid, logs, noise, delayed)
    return b.build()


@pytest.mark.parametrize("kind", ["audio", "full_range"])
def test_front_end_of_every_signal_op_matches_tflm_call_after_call(kind):
    rng = np.random.default_rng(11 if kind == "audio" else 12)
    calls = 24
    if kind == "audio":
        hops = frames_of(audio(rng, HOP * calls), HOP, HOP, calls)
    else:
        hops = [rng.integers(-32768, 32768, HOP).astype(np.int16) for _ in range(calls)]
    outcome = check_signal(front_end_model(), [[h] for h in hops], label="signal front end", stateful=True)
    assert outcome.compared, outcome.message


def test_front_end_arena_plan_is_tflms():
    # Rfft's scratch request (fft_length * sizeof(T)) is the only one the signal kernels make.
    import os
    import re
    import tempfile

    from interp import Interpreter
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro (the oracle) is not installed")
    data = front_end_model()
    ref = runtime.Interpreter.from_bytes(data, arena_size=16 << 20)
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            ref.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        head = re.search(rb"Arena allocation head (\d+) bytes", tmp.read())
    assert head is not None
    assert Interpreter.from_bytes(data).plan.arena_bytes == int(head.group(1))
