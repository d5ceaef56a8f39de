#!/usr/bin/env python3
"""TFLM's micro_speech, end to end on microref: one second of 16 kHz audio -> 49 x 40 int8
features (the audio front end, TFLM's signal library) -> "silence", "unknown", "yes" or "no".

    python examples/micro_speech.py [WAV ...] [--models DIR] [--against-tflm]

It does what TFLM's examples/micro_speech/micro_speech_test.cc does:

1. GenerateFeatures: one interpreter of ``audio_preprocessor_int8.tflite`` (Window, FftAutoScale,
   Rfft, Energy, FilterBank, FilterBankSquareRoot, FilterBankSpectralSubtraction, PCAN,
   FilterBankLog, ...) is fed 30 ms windows (480 samples) every 20 ms (320 samples), call after
   call: the noise estimates the front end keeps carry over from one window to the next. 49
   windows give 49 rows of 40 int8 features.
2. The 1960 features are copied as they are into ``micro_speech_quantized.tflite``'s int8 input
   (no requantization, as the C++ example copies them) and the 4 int8 scores are dequantized
   with the output's scale and zero point; the label is the largest.

Without WAV arguments it classifies TFLM's own test clips (yes/no/silence/noise, from a TFLM
checkout: $TFLM_SRC, default /work/tflm-src) or, without those, a synthesized clip.
``--against-tflm`` runs the same two models in the tflite-micro wheel and checks that every
feature and every score is bit for bit the same.
"""
from __future__ import annotations

import argparse
import os
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from interp import Interpreter  # noqa: E402

SAMPLE_RATE = 16000
WINDOW = 480          # kAudioSampleDurationCount: 30 ms
STRIDE = 320          # kAudioSampleStrideCount: 20 ms
FEATURE_COUNT = 49    # kFeatureCount
FEATURE_SIZE = 40     # kFeatureSize
LABELS = ("silence", "unknown", "yes", "no")  # kCategoryLabels

DEFAULT_MODELS = ROOT.parent / "shared" / "models"
PREPROCESSOR = "audio_preprocessor_int8.tflite"
CLASSIFIER = "micro_speech_quantized.tflite"
TFLM_TESTDATA = "tensorflow/lite/micro/examples/micro_speech/testdata"


def model_paths(models: Path = DEFAULT_MODELS) -> tuple[Path, Path]:
    return models / PREPROCESSOR, models / CLASSIFIER


def tflm_testdata() -> Path:
    return Path(os.environ.get("TFLM_SRC", "/work/tflm-src")) / TFLM_TESTDATA


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV file as int16 samples."""
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, SAMPLE_RATE):
            raise ValueError(f"{path}: need 16 kHz mono 16-bit PCM, got {w.getnchannels()} channel(s), "
                             f"{8 * w.getsampwidth()}-bit, {w.getframerate()} Hz")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)


def synthesized_clip(seed: int = 0) -> np.ndarray:
    """One second of speech-like int16 audio: drifting tones, a chirp and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = (3000 * np.sin(2 * np.pi * (440 + 200 * np.sin(2 * np.pi * 0.7 * t)) * t)
         + 1500 * np.sin(2 * np.pi * 1234 * t) + 900 * np.sin(2 * np.pi * (300 + 3000 * t) * t)
         + rng.normal(0, 300, t.size))
    x[t.size // 3:t.size // 2] *= 0.01
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def windows(audio: np.ndarray) -> list[np.ndarray]:
    """GenerateFeatures' windows: 480 samples every 320, while 480 remain, at most 49."""
    out = []
    start = 0
    while len(audio) - start >= WINDOW and len(out) < FEATURE_COUNT:
        out.append(audio[start:start + WINDOW])
        start += STRIDE
    return out


@dataclass
class Result:
    features: np.ndarray   # (49, 40) int8
    scores: np.ndarray     # (4,) int8, the classifier's raw output
    probabilities: np.ndarray  # (4,) float32, dequantized

    @property
    def label(self) -> str:
        return LABELS[int(np.argmax(self.probabilities))]


class MicroSpeech:
    """The pipeline on microref: a fresh front end per clip (as GenerateFeatures makes one), one
    classifier."""

    def __init__(self, models: Path = DEFAULT_MODELS):
        self.preprocessor_path, classifier_path = model_paths(models)
        self.classifier = Interpreter.from_file(classifier_path)
        out = self.classifier.output_details[0]
        self.scale, self.zero_point = out["quantization"]

    def features(self, audio: np.ndarray) -> np.ndarray:
        front_end = Interpreter.from_file(self.preprocessor_path)
        features = np.zeros((FEATURE_COUNT, FEATURE_SIZE), np.int8)
        for k, window in enumerate(windows(audio)):
            features[k] = front_end.run([window.reshape(1, WINDOW)])[0]
        return features

    def classify(self, features: np.ndarray) -> Result:
        scores = self.classifier.run([features.reshape(1, FEATURE_COUNT * FEATURE_SIZE)])[0].reshape(-1)
        probabilities = (np.float32(self.scale) * (scores.astype(np.float32) - np.float32(self.zero_point)))
        return Result(features, scores, probabilities.astype(np.float32))

    def __call__(self, audio: np.ndarray) -> Result:
        return self.classify(self.features(audio))


class TflmMicroSpeech(MicroSpeech):
    """The same pipeline in the tflite-micro wheel (TFLM's Python interpreter), for comparison."""

    def __init__(self, models: Path = DEFAULT_MODELS):
        from tflite_micro.python.tflite_micro import runtime
        self.runtime = runtime
        self.preprocessor_path, classifier_path = model_paths(models)
        self.classifier_model = classifier_path.read_bytes()
        self.scale, self.zero_point = Interpreter.from_file(classifier_path).output_details[0]["quantization"]

    def features(self, audio: np.ndarray) -> np.ndarray:
        front_end = self.runtime.Interpreter.from_bytes(self.preprocessor_path.read_bytes())
        features = np.zeros((FEATURE_COUNT, FEATURE_SIZE), np.int8)
        for k, window in enumerate(windows(audio)):
            front_end.set_input(window.reshape(1, WINDOW), 0)
            front_end.invoke()
            features[k] = front_end.get_output(0)
        return features

    def classify(self, features: np.ndarray) -> Result:
        classifier = self.runtime.Interpreter.from_bytes(self.classifier_model)
        classifier.set_input(features.reshape(1, FEATURE_COUNT * FEATURE_SIZE), 0)
        classifier.invoke()
        scores = np.array(classifier.get_output(0)).reshape(-1)
        probabilities = np.float32(self.scale) * (scores.astype(np.float32) - np.float32(self.zero_point))
        return Result(features, scores, probabilities.astype(np.float32))


def clips(paths: list[str]) -> list[tuple[str, np.ndarray]]:
    if paths:
        return [(Path(p).name, read_wav(p)) for p in paths]
    testdata = tflm_testdata()
    found = sorted(testdata.glob("*_1000ms.wav")) if testdata.is_dir() else []
    if found:
        return [(p.name, read_wav(p)) for p in found]
    return [("synthesized", synthesized_clip())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wav", nargs="*", help="16 kHz mono 16-bit WAV files (default: TFLM's test clips)")
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS,
                    help=f"directory with {PREPROCESSOR} and {CLASSIFIER} (default: {DEFAULT_MODELS})")
    ap.add_argument("--against-tflm", action="store_true",
                    help="run the same pipeline in the tflite-micro wheel and compare bit for bit")
    args = ap.parse_args(argv)
    missing = [p for p in model_paths(args.models) if not p.is_file()]
    if missing:
        print(f"missing model(s): {', '.join(map(str, missing))} (see --models)", file=sys.stderr)
        return 2
    ours = MicroSpeech(args.models)
    theirs = TflmMicroSpeech(args.models) if args.against_tflm else None
    differ = 0
    for name, audio in clips(args.wav):
        r = ours(audio)
        scores = " ".join(f"{label} {p:.3f}" for label, p in zip(LABELS, r.probabilities))
        line = f"{name:24s} -> {r.label:8s} ({scores})"
        if theirs is not None:
            t = theirs(audio)
            same = np.array_equal(r.features, t.features) and np.array_equal(r.scores, t.scores)
            differ += not same
            line += "   TFLM: " + ("identical features and scores" if same else
                                   f"DIFFERENT ({int((r.features != t.features).sum())} features, "
                                   f"scores {r.scores.tolist()} vs {t.scores.tolist()})")
        print(line)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
