"""The microref pytest plugin (interp/tools/pytest_plugin.py): its example suite passes, the
deliberately broken kernel gets the documented failure report, --microref-numerics switches the
whole suite, and the helpers behave on their own."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from interp.tools import pytest_plugin
from interp.tools.pytest_plugin import ModelCase, assert_bit_exact, parametrize_models, parse_numerics

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
ROOT = Path(__file__).resolve().parents[1]


def run_pytest(*args, env_extra=None, cwd=ROOT):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_the_plugin_is_registered_through_its_entry_point():
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11")}
    assert "interp.tools.pytest_plugin" in names, "pip install -e . registers the pytest11 entry point"


def test_the_example_suite_passes():
    out = run_pytest(EXAMPLE)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "passed" in out.stdout


def test_a_broken_kernel_gets_the_documented_failure_report():
    out = run_pytest(EXAMPLE, "-k", "matches_microref", env_extra={"MICROREF_EXAMPLE_ROUNDING": "single"})
    assert out.returncode == 1, out.stdout[-3000:]
    text = out.stdout
    for expected in ("microref bit-exactness: ", " elements differ (max 1 LSB)",
                     'tensor 3 "y" INT8[1, 8, 8, 4], produced by operator 0 (CONV_2D)',
                     "first differing elements (actual vs microref, difference in LSB):",
                     "microref's arithmetic for (", "SaturatingRoundingDoublingHighMul", "RoundingDivideByPOT",
                     "output value = "):
        assert expected in text, f"{expected!r} missing from the report:\n{text[-4000:]}"
    # The report is the test's failure, not a traceback into the plugin.
    assert "pytest_plugin.py" not in text


def test_microref_numerics_runs_the_suite_under_a_variant():
    broken = {"MICROREF_EXAMPLE_ROUNDING": "single"}
    out = run_pytest(EXAMPLE, "--microref-numerics", "rounding=single", env_extra=broken)
    assert out.returncode == 0, out.stdout[-3000:]
    out = run_pytest(EXAMPLE, "--microref-numerics", "rounding=single")  # the correct kernel now differs
    assert out.returncode == 1 and "microref bit-exactness" in out.stdout


def test_a_bogus_numerics_option_is_a_usage_error():
    out = run_pytest(EXAMPLE, "--microref-numerics", "rounding=bogus")
    assert out.returncode == 4
    assert "rounding must be one of 'double', 'single'" in out.stderr + out.stdout


def test_tflm_oracle_skips_with_a_reason_without_the_wheel(tmp_path):
    (tmp_path / "conftest.py").write_text("import sys\nsys.modules['tflite_micro'] = None\n")
    (tmp_path / "test_uses_oracle.py").write_text("def test_x(tflm_oracle):\n    assert False\n")
    out = run_pytest("-rs", tmp_path, cwd=tmp_path)
    assert out.returncode == 0 and "1 skipped" in out.stdout, out.stdout
    assert "tflite-micro (TFLM's Python wheel, the oracle) is not installed" in out.stdout


# ----------------------------------------------------------------------------- helpers, in process

def test_assert_bit_exact_passes_on_equal_arrays_and_reports_differences():
    a = np.arange(24, dtype=np.int8).reshape(2, 3, 4)
    assert_bit_exact(a.copy(), a)
    b = a.copy()
    b[1, 2, 3] += 3
    b[0, 0, 1] -= 1
    with pytest.raises(pytest.fail.Exception) as e:
        assert_bit_exact(b, a)
    text = str(e.value)
    assert "2 of 24 elements differ (max 3 LSB)" in text
    assert "(0, 0, 1): 0 vs 1 (1 LSB)" in text and "(1, 2, 3): 26 vs 23 (3 LSB)" in text


def test_assert_bit_exact_refuses_other_dtypes_and_shapes():
    a = np.zeros((2, 2), np.int8)
    with pytest.raises(pytest.fail.Exception, match="dtype int32 differs"):
        assert_bit_exact(a.astype(np.int32), a)
    with pytest.raises(pytest.fail.Exception, match="shape"):
        assert_bit_exact(a[:1], a)


def test_assert_bit_exact_counts_float_differences_in_ulps():
    a = np.array([1.0, -2.0, 0.0], np.float32)
    b = a.copy()
    b[0] = np.nextafter(np.float32(1.0), np.float32(2.0))
    b[2] = -0.0  # a different bit pattern
    with pytest.raises(pytest.fail.Exception) as e:
        assert_bit_exact(b, a)
    assert "2 of 3 elements differ (max 1 ULP)" in str(e.value)
    nan = np.array([np.nan], np.float32)
    assert_bit_exact(nan.copy(), nan)


def test_assert_bit_exact_against_a_model_names_the_tensor_and_operator():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from conv_models import conv_model
    finally:
        sys.path.remove(str(EXAMPLE))
    data = conv_model((1, 5, 5, 2), 3, 3, 1, "SAME", False)
    import interp

    it = interp.Interpreter.from_bytes(data)
    x = np.random.default_rng(0).integers(-128, 128, (1, 5, 5, 2)).astype(np.int8)
    want = it.run([x])[0]
    assert_bit_exact(want, data, inputs=[x])
    wrong = want.copy()
    wrong[0, 2, 2, 1] ^= 1
    with pytest.raises(pytest.fail.Exception) as e:
        assert_bit_exact(wrong, data, inputs=x)
    text = str(e.value)
    assert 'tensor 3 "y" INT8[1, 5, 5, 3], produced by operator 0 (CONV_2D)' in text
    assert "microref's arithmetic for (0, 2, 2, 1)" in text and "accumulator" in text
    with pytest.raises(TypeError, match="inputs"):
        assert_bit_exact(want, data)


def test_parse_numerics():
    from ops.registry import DEFAULT_NUMERICS, Numerics

    assert parse_numerics(None) == DEFAULT_NUMERICS
    assert parse_numerics("rounding=single") == Numerics(rounding="single")
    assert parse_numerics("single") == Numerics(rounding="single")
    assert parse_numerics("rounding=single, scale_precision=float32") == Numerics("single", "float32")
    for bad in ("rounding=bogus", "nonsense", "color=red"):
        with pytest.raises(ValueError):
            parse_numerics(bad)


def test_parametrize_models_gives_every_model_and_seed(tmp_path):
    for name in ("b.tflite", "a.tflite", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    mark = parametrize_models(tmp_path, seeds=2)
    assert mark.args[0] == "model_case"
    cases = mark.args[1]
    assert [str(c) for c in cases] == ["a.tflite-seed0", "a.tflite-seed1", "b.tflite-seed0", "b.tflite-seed1"]
    assert parametrize_models(tmp_path / "absent").args[1] == []
    assert isinstance(cases[0], ModelCase)


def test_model_case_inputs_are_seeded():
    import interp

    sys.path.insert(0, str(EXAMPLE))
    try:
        from conv_models import conv_model
    finally:
        sys.path.remove(str(EXAMPLE))
    it = interp.Interpreter.from_bytes(conv_model((1, 4, 4, 1), 1, 1, 1, "VALID", False))
    one, two = ModelCase(Path("m"), 1), ModelCase(Path("m"), 2)
    assert np.array_equal(one.inputs(it)[0], ModelCase(Path("m"), 1).inputs(it)[0])
    assert not np.array_equal(one.inputs(it)[0], two.inputs(it)[0])
    assert pytest_plugin.MAX_COORDINATES_SHOWN == 5
