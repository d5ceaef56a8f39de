"""TFLM's micro_speech end to end (examples/micro_speech.py): audio front end -> features ->
classifier, on microref, against TFLM's own test vectors and the tflite-micro wheel.

The models are the shared ones (../shared/models: audio_preprocessor_int8.tflite and
micro_speech_quantized.tflite, byte-identical to TFLM's examples/micro_speech/models); TFLM's test
clips come from a TFLM checkout ($TFLM_SRC, default /work/tflm-src). Tests skip, saying why, when
either is absent."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from diff_support import require_oracle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import micro_speech as ms  # noqa: E402

pytestmark = pytest.mark.skipif(not all(p.is_file() for p in ms.model_paths()),
                                reason=f"{ms.DEFAULT_MODELS} lacks {ms.PREPROCESSOR} / {ms.CLASSIFIER} "
                                       "(the shared models are not part of the project)")

# micro_speech_test.cc: NoFeatureTest and YesFeatureTest, the features of the 30 ms clips.
TFLM_NO_30MS = [126, 103, 124, 102, 124, 102, 123, 100, 118, 97, 118, 100, 118, 98, 121, 100, 121, 98, 117, 91,
                96, 74, 54, 87, 100, 87, 109, 92, 91, 80, 64, 55, 83, 74, 74, 78, 114, 95, 101, 81]
TFLM_YES_30MS = [124, 105, 126, 103, 125, 101, 123, 100, 116, 98, 115, 97, 113, 90, 91, 82, 104, 96, 117, 97,
                 121, 103, 126, 101, 125, 104, 126, 104, 125, 101, 116, 90, 81, 74, 80, 71, 83, 76, 82, 71]
# micro_speech_test.cc: NoTest, YesTest, SilenceTest, NoiseTest.
TFLM_LABELS = {"no_1000ms.wav": "no", "yes_1000ms.wav": "yes", "silence_1000ms.wav": "silence",
               "noise_1000ms.wav": "silence"}


@pytest.fixture(scope="module")
def pipeline():
    return ms.MicroSpeech()


def tflm_clip(name: str) -> np.ndarray:
    path = ms.tflm_testdata() / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (TFLM's micro_speech test clips; set TFLM_SRC to a TFLM checkout)")
    return ms.read_wav(path)


@pytest.mark.parametrize("name, expected", [("no_30ms.wav", TFLM_NO_30MS), ("yes_30ms.wav", TFLM_YES_30MS)])
def test_front_end_gives_tflms_own_test_features(pipeline, name, expected):
    features = pipeline.features(tflm_clip(name))
    assert features[0].tolist() == expected
    assert not features[1:].any()  # one 30 ms window: one row, the rest stays 0 as in GenerateFeatures


@pytest.mark.parametrize("name", sorted(TFLM_LABELS))
def test_clips_get_tflms_test_labels(pipeline, name):
    result = pipeline(tflm_clip(name))
    assert result.label == TFLM_LABELS[name], (result.label, result.probabilities)


def _clips():
    out = [(n, lambda n=n: tflm_clip(n)) for n in sorted(TFLM_LABELS)]
    out += [(f"synthesized_{s}", lambda s=s: ms.synthesized_clip(s)) for s in (0, 1)]
    # 0.6 s: 29 windows, the other 20 feature rows stay 0; 1.5 s: only the first 49 windows are used.
    out += [("short_0p6s", lambda: ms.synthesized_clip(2)[:9600]),
            ("long_1p5s", lambda: np.concatenate([ms.synthesized_clip(3), ms.synthesized_clip(4)[:8000]]))]
    return out


@pytest.mark.parametrize("name, clip", _clips(), ids=[n for n, _ in _clips()])
def test_pipeline_equals_the_wheel_bit_for_bit(pipeline, name, clip):
    require_oracle()
    audio = clip()
    ours, theirs = pipeline(audio), ms.TflmMicroSpeech()(audio)
    assert ours.features.dtype == theirs.features.dtype == np.int8
    assert np.array_equal(ours.features, theirs.features), int((ours.features != theirs.features).sum())
    assert np.array_equal(ours.scores, theirs.scores), (ours.scores, theirs.scores)
    assert ours.label == theirs.label
    assert len(ms.windows(audio)) == min(ms.FEATURE_COUNT, (len(audio) - ms.WINDOW) // ms.STRIDE + 1)


def test_the_script_compares_with_the_wheel(capsys):
    require_oracle()
    wav = ms.tflm_testdata() / "yes_1000ms.wav"
    args = [str(wav)] if wav.is_file() else []
    assert ms.main(args + ["--against-tflm"]) == 0
    out = capsys.readouterr().out
    assert "identical features and scores" in out and "DIFFERENT" not in out
