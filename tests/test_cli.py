"""The microref command line: each command's output and exit code."""
import builtins
from pathlib import Path

import numpy as np
import pytest

from interp.runtime.inputs import random_inputs
from interp.tools import cli

ROOT = Path(__file__).resolve().parents[1]
INT8 = str(ROOT / "golden" / "float_pair" / "int8.tflite")
FLOAT = str(ROOT / "golden" / "float_pair" / "float.tflite")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_prints_raw_and_dequantized_outputs_and_saves_them(capsys, tmp_path):
    code, out, _ = run(capsys, "run", INT8, "--seed", "3", "--output", str(tmp_path / "o.npz"))
    assert code == 0
    assert "raw:" in out and "dequantized:" in out
    saved = np.load(tmp_path / "o.npz")
    assert saved["input_0"].shape == (1, 12, 12, 3)


def test_run_with_the_same_seed_is_reproducible(capsys):
    _, a, _ = run(capsys, "run", INT8, "--seed", "9")
    _, b, _ = run(capsys, "run", INT8, "--seed", "9")
    assert a == b


def test_run_accepts_npy_inputs_and_rejects_wrong_shapes(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 12, 12, 3), np.int8))
    assert run(capsys, "run", INT8, "--input", str(tmp_path / "x.npy"))[0] == 0
    np.save(tmp_path / "bad.npy", np.zeros((1, 12, 12), np.int8))
    code, _, err = run(capsys, "run", INT8, "--input", str(tmp_path / "bad.npy"))
    assert code == cli.EXIT_INPUT
    assert "InputError" in err and "(1, 12, 12, 3)" in err and err.count("\n") == 1


def test_info_lists_ops_support_and_io(capsys):
    code, out, _ = run(capsys, "info", INT8, "--tensors", "--ops")
    assert code == 0
    assert "CONV_2D" in out and "every operator is supported" in out
    assert "inputs:" in out and "tensors:" in out and "operator list:" in out


def test_missing_file_is_one_line_model_error(capsys, tmp_path):
    code, _, err = run(capsys, "run", str(tmp_path / "nope.tflite"))
    assert code == cli.EXIT_MODEL
    assert err.startswith("microref: ModelError:") and err.count("\n") == 1


def test_non_flatbuffer_is_a_model_error(capsys, tmp_path):
    p = tmp_path / "junk.tflite"
    p.write_bytes(b"this is not a model at all")
    code, _, err = run(capsys, "info", str(p))
    assert code == cli.EXIT_MODEL and "TFLite flatbuffer" in err


def test_trace_dumps_every_computed_tensor(capsys, tmp_path):
    code, out, _ = run(capsys, "trace", INT8, "--dump", str(tmp_path / "t.npz"))
    assert code == 0
    z = np.load(tmp_path / "t.npz")
    assert len(z.files) == 7  # the input and six op outputs
    assert "SOFTMAX" in out


def test_vectors_writes_npz_c_header_and_per_op_files(capsys, tmp_path):
    code, _, _ = run(capsys, "vectors", INT8, "-o", str(tmp_path), "--count", "3", "--per-op")
    assert code == 0
    z = np.load(tmp_path / "int8_vectors.npz")
    assert z["input_0"].shape == (3, 1, 12, 12, 3) and z["output_0"].shape == (3, 1, 10)
    header = (tmp_path / "int8_vectors.h").read_text()
    assert "static const int8_t int8_output_0[3][1][10]" in header
    assert len(list((tmp_path / "int8_ops").glob("op*.npz"))) == 6


def test_explain_cli_and_bad_coordinates(capsys):
    code, out, _ = run(capsys, "explain", INT8, "--op", "0", "--at", "0,1,2,3")
    assert code == 0 and "SaturatingRoundingDoublingHighMul" in out
    code, _, err = run(capsys, "explain", INT8, "--op", "0", "--at", "0,99,2,3")
    assert code == cli.EXIT_INPUT and "not inside the output shape" in err


def test_compare_against_tflm_exits_zero_when_identical(capsys):
    pytest.importorskip("tflite_micro")
    code, out, _ = run(capsys, "compare", INT8, "--against", "tflm")
    assert code == 0 and "outputs identical" in out


def test_compare_float_prints_the_per_layer_table(capsys):
    code, out, _ = run(capsys, "compare", INT8, "--float", FLOAT,
                       "--data", str(ROOT / "golden" / "float_pair" / "data.npz"))
    assert code == 0 and "SNR dB" in out and "layers losing the most" in out


def test_missing_optional_package_says_what_to_install(capsys, monkeypatch):
    real_import = builtins.__import__

    def no_litert(name, *a, **kw):
        if name.startswith("ai_edge_litert"):
            raise ImportError("no litert here")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    code, _, err = run(capsys, "compare", INT8, "--against", "litert")
    assert code == cli.EXIT_MISSING_PACKAGE
    assert "pip install" in err and "ai-edge-litert" in err


def test_parse_size_understands_binary_units():
    assert cli.parse_size("256KiB") == 262144
    assert cli.parse_size("1MiB") == 1 << 20
    assert cli.parse_size("256k") == 262144
    assert cli.parse_size("1,000") == 1000


def test_plan_verdict_exit_code_and_json(capsys):
    import json
    code, out, _ = run(capsys, "plan", INT8)
    assert code == 0 and "fits" in out
    code, out, _ = run(capsys, "plan", INT8, "--budget", "1KiB", "--json")
    assert code == cli.EXIT_OVER_BUDGET
    assert json.loads(out)["arena_bytes"] > 1024


def test_plan_optimize_writes_a_model_that_runs_identically(capsys, tmp_path):
    model = str(ROOT / "golden" / "models" / "net_mobile_block.tflite")
    out_path = tmp_path / "opt.tflite"
    code, out, _ = run(capsys, "plan", model, "--optimize", "-o", str(out_path))
    assert code == 0 and out_path.exists()
    from interp import Interpreter
    a, b = Interpreter.from_file(model), Interpreter.from_file(out_path)
    xs = random_inputs(a, np.random.default_rng(0))
    assert all(np.array_equal(x, y) for x, y in zip(a.run(xs), b.run(xs)))
    assert b.plan.arena_bytes <= a.plan.arena_bytes


def test_plan_says_how_to_need_less(capsys):
    model = str(ROOT / "golden" / "models" / "net_residual_block.tflite")
    code, out, _ = run(capsys, "plan", model)
    assert code == 0 and "How to need less:" in out and "operator order" in out


def test_debug_flag_works_before_or_after_the_command(capsys, tmp_path):
    bad = str(tmp_path / "missing.tflite")
    for argv in (["--debug", "run", bad], ["run", bad, "--debug"]):
        code, _, err = run(capsys, *argv)
        assert code == cli.EXIT_MODEL and "Traceback" in err
