"""microref vectors: what a kernel porter compiles on the device.

The C headers are compiled with the system C compiler (`-Wall -Wextra -Werror -std=c11
-pedantic`) and the compiled program prints every array and constant back, which must equal the
.npz byte for byte; the per-op files carry weights, bias and every prepared parameter; the key
names are those of `run --output`; `--input` takes N samples, and `--count` never silently
yields fewer vectors than asked.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter
from interp.tools import cli
from interp.tools import vectors as vec

MODELS = Path(__file__).resolve().parents[1] / "golden" / "models"
INT8 = Path(__file__).resolve().parents[1] / "golden" / "float_pair" / "int8.tflite"
CC = shutil.which("gcc") or shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (gcc or cc) on this machine")
C_FLAGS = ["-Wall", "-Wextra", "-Werror", "-std=c11", "-pedantic"]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def compile_and_print(tmp_path, headers: list[Path], arrays: dict[str, np.ndarray], scalars: list[str]) -> list[str]:
    """Compile a program including ``headers`` that prints each array (C name -> numpy array,
    for its element count and kind) and each scalar macro; returns its output lines."""
    body = []
    for name, a in arrays.items():
        fmt, cast = {"f": ('"%.9g\\n"', "(double)"), "b": ('"%d\\n"', "(int)")}.get(a.dtype.kind, ('"%lld\\n"',
                                                                                                   "(long long)"))
        count = max(a.size, 1)
        ctype = vec.C_TYPES[a.dtype.name]
        body.append(f'  {{ const void *p = &{name}; puts("{name}");'
                    f" for (long i = 0; i < {count}; i++) printf({fmt}, {cast}(({ctype} const *)p)[i]); }}")
    for macro in scalars:
        body.append(f'  printf("{macro} %.9g\\n", (double)({macro}));')
    src = tmp_path / "main.c"
    src.write_text("#include <stdio.h>\n" + "".join(f'#include "{h}"\n' for h in headers)
                   + "int main(void) {\n" + "\n".join(body) + "\n  return 0;\n}\n")
    exe = tmp_path / "main"
    done = subprocess.run([CC, *C_FLAGS, "-o", str(exe), str(src), "-lm"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()


def check_printed(lines: list[str], arrays: dict[str, np.ndarray]):
    i = 0
    for name, a in arrays.items():
        assert lines[i] == name
        printed = lines[i + 1:i + 1 + a.size]
        if a.dtype.kind == "f":
            assert np.array_equal(np.array([float(v) for v in printed], a.dtype), a.ravel(), equal_nan=True)
        else:
            assert [int(v) for v in printed] == [int(v) for v in a.ravel()]
        i += 1 + a.size
    return lines[i:]


@needs_cc
@pytest.mark.parametrize("model", ["net_mobile_block", "net_tiny_cnn_float_io", "add_same_shape_16x8",
                                   "conv2d_k3x3_s1_same_16x8"])
def test_headers_compile_cleanly_and_hold_the_npz_values(capsys, tmp_path, model):
    path = MODELS / f"{model}.tflite"
    code, out, _ = run(capsys, "vectors", path, "-o", tmp_path / "v", "--count", "3", "--per-op")
    assert code == 0
    z = np.load(tmp_path / "v" / f"{model}_vectors.npz")
    ident = vec.c_identifier(model)
    # Per-tensor scales and zero points are macros in C (checked below); the arrays are the tensors.
    arrays = {f"{ident}_{k}": z[k] for k in z.files if not k.endswith(("_scale", "_zero_point"))}
    it = Interpreter.from_file(path)
    macros = []
    for prefix, indices in (("INPUT", it.subgraph.inputs), ("OUTPUT", it.subgraph.outputs)):
        for k, ti in enumerate(indices):
            base = f"{ident.upper()}_{prefix}_{k}"
            macros += [f"{base}_RANK", f"{base}_SIZE"]
            if it.tensors[ti].quantization is not None:
                macros += [f"{base}_SCALE", f"{base}_ZERO_POINT"]
    macros.append(f"{ident.upper()}_NUM_VECTORS")
    headers = [tmp_path / "v" / f"{model}_vectors.h"] + sorted((tmp_path / "v" / f"{model}_ops").glob("*.h"))
    rest = check_printed(compile_and_print(tmp_path, headers, arrays, macros), arrays)
    printed = dict(line.split() for line in rest)
    for prefix, indices in (("INPUT", it.subgraph.inputs), ("OUTPUT", it.subgraph.outputs)):
        for k, ti in enumerate(indices):
            t, base = it.tensors[ti], f"{ident.upper()}_{prefix}_{k}"
            assert int(printed[f"{base}_RANK"]) == len(t.shape) and int(printed[f"{base}_SIZE"]) == t.size
            if t.quantization is not None:
                assert np.float32(float(printed[f"{base}_SCALE"])) == np.float32(t.quantization.scale)
                assert int(printed[f"{base}_ZERO_POINT"]) == t.quantization.zero_point
                assert z[f"{prefix.lower()}_{k}_scale"][0] == np.float32(t.quantization.scale)
    assert int(printed[f"{ident.upper()}_NUM_VECTORS"]) == 3
    # No line of any header is longer than what a person reads.
    for h in headers:
        assert max(len(line) for line in h.read_text().splitlines()) <= 140


@needs_cc
def test_special_values_compile_and_read_back(tmp_path):
    arrays = {"f": np.array([[np.inf, -np.inf], [np.nan, -0.0], [1e-45, 3.4028235e38]], np.float32),
              "i32": np.array([-(2 ** 31), 2 ** 31 - 1, 0], np.int32),
              "i64": np.array([-(2 ** 63), 2 ** 63 - 1], np.int64),
              "u8": np.array([0, 255], np.uint8), "b": np.array([True, False]),
              "scalar": np.array(7, np.int16), "wide": np.arange(-60, 60, dtype=np.int32).reshape(2, 3, 20) * 10 ** 7}
    header = tmp_path / "special.h"
    header.write_text(vec.c_header("t", "T_H", ["special values"], [(k, a, None, k) for k, a in arrays.items()]))
    text = header.read_text()
    assert "#include <math.h>" in text and "(-2147483647 - 1)" in text and "(-9223372036854775807LL - 1)" in text
    want = {f"t_{k}": a.reshape(-1) if a.ndim == 0 else a for k, a in arrays.items()}
    check_printed(compile_and_print(tmp_path, [header], want, []), want)


def test_multidimensional_arrays_get_braces_for_every_dimension():
    text = vec.c_array("x", np.arange(12, dtype=np.int8).reshape(2, 3, 2))
    assert text.startswith("static const int8_t x[2][3][2] = {")
    assert text.count("{") == 1 + 2 + 6 and text.count("}") == 9


def test_per_op_files_carry_weights_bias_and_every_parameter(capsys, tmp_path):
    path = MODELS / "net_mobile_block.tflite"
    assert run(capsys, "vectors", path, "-o", tmp_path, "--count", "2", "--per-op")[0] == 0
    it = Interpreter.from_file(path)
    conv = np.load(tmp_path / "net_mobile_block_ops" / "op000_CONV_2D.npz")
    op, k = it.subgraph.operators[0], it.kernels[0]
    assert np.array_equal(conv["input_1"], it.tensors[op.inputs[1]].data)   # weights, as stored
    assert np.array_equal(conv["input_2"], it.tensors[op.inputs[2]].data)   # bias
    assert np.array_equal(conv["input_1_scale"], it.tensors[op.inputs[1]].quantization.scales.astype(np.float32))
    assert conv["input_0"].shape == (2, 1, 6, 6, 4) and conv["output_0"].shape == (2, 1, 6, 6, 12)
    q = k.params.requantize
    assert np.array_equal(conv["param_requantize_output_multiplier"], q.output_multiplier)
    assert np.array_equal(conv["param_requantize_output_shift"], q.output_shift)
    for name in ("stride_height", "stride_width", "padding_top", "padding_left", "input_offset",
                 "requantize_output_offset", "requantize_activation_min", "requantize_activation_max"):
        assert int(conv[f"param_{name}"]) == int(np.ravel(getattr(k.params, name, None) if not name.startswith(
            "requantize_") else getattr(q, name[len("requantize_"):]))[0]), name
    header = (tmp_path / "net_mobile_block_ops" / "op000_CONV_2D.h").read_text()
    assert "param_requantize_output_multiplier[12]" in header and "_PARAM_STRIDE_WIDTH (1)" in header
    add = np.load(tmp_path / "net_mobile_block_ops" / "op003_ADD.npz")
    d = it.kernels[3].describe()
    for key in ("input1_multiplier", "input1_shift", "input2_multiplier", "input2_shift", "output_multiplier",
                "output_shift", "left_shift", "output_offset"):
        assert int(add[f"param_{key}"]) == d[key]
    # The per-op outputs chain: op 0's output is op 1's input.
    dw = np.load(tmp_path / "net_mobile_block_ops" / "op001_DEPTHWISE_CONV_2D.npz")
    assert np.array_equal(dw["input_0"], conv["output_0"])


def test_run_output_and_vectors_use_the_same_keys(capsys, tmp_path):
    path = MODELS / "net_two_inputs_three_outputs.tflite"
    assert run(capsys, "run", path, "--seed", "4", "--output", tmp_path / "run.npz")[0] == 0
    r = np.load(tmp_path / "run.npz")
    # The run's inputs, fed back as vectors --input (the .npz run wrote), give the same outputs.
    assert run(capsys, "vectors", path, "-o", tmp_path / "v", "--input", tmp_path / "run.npz")[0] == 0
    v = np.load(tmp_path / "v" / "net_two_inputs_three_outputs_vectors.npz")
    assert set(r.files) == set(v.files)
    assert {"input_0", "input_1", "output_0", "output_1", "output_2", "output_0_scale", "output_0_zero_point"} \
        <= set(r.files)
    for k in r.files:
        if k.endswith(("_scale", "_zero_point")):
            assert np.array_equal(r[k], v[k])
        else:
            assert v[k].shape == (1,) + r[k].shape and np.array_equal(v[k][0], r[k]), k


def test_input_with_n_samples_gives_n_vectors(capsys, tmp_path):
    it = Interpreter.from_file(INT8)
    xs = np.random.default_rng(3).integers(-128, 128, (5, 1, 12, 12, 3)).astype(np.int8)
    np.save(tmp_path / "x.npy", xs)
    code, out, _ = run(capsys, "vectors", INT8, "-o", tmp_path / "a", "--input", tmp_path / "x.npy")
    assert code == 0 and out.startswith(f"5 vectors: 5 samples from {tmp_path / 'x.npy'}")
    z = np.load(tmp_path / "a" / "int8_vectors.npz")
    assert z["input_0"].shape == (5, 1, 12, 12, 3)
    for s in range(5):
        assert np.array_equal(z["output_0"][s], it.run([xs[s]])[0])
    # N rows in place of a batch of one are N samples too.
    np.save(tmp_path / "rows.npy", xs[:, 0])
    code, out, _ = run(capsys, "vectors", INT8, "-o", tmp_path / "b", "--input", tmp_path / "rows.npy")
    assert code == 0 and np.array_equal(np.load(tmp_path / "b" / "int8_vectors.npz")["input_0"], xs)
    # --count takes the first N, and says so.
    code, out, _ = run(capsys, "vectors", INT8, "-o", tmp_path / "c", "--input", tmp_path / "x.npy", "--count", "2")
    assert code == 0 and "(the first 2 of 5)" in out.splitlines()[0]
    assert np.load(tmp_path / "c" / "int8_vectors.npz")["input_0"].shape[0] == 2


def test_count_beyond_the_file_is_an_error_not_one_vector(capsys, tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((1, 12, 12, 3), np.int8))
    code, out, err = run(capsys, "vectors", INT8, "-o", tmp_path / "v", "--input", tmp_path / "one.npy",
                         "--count", "4")
    assert code == cli.EXIT_INPUT and out == ""
    assert "--count 4, but the inputs given hold 1 sample" in err and err.count("\n") == 1
    assert not (tmp_path / "v" / "int8_vectors.npz").exists()


def test_flash_budget_warning(capsys, tmp_path):
    code, out, _ = run(capsys, "vectors", INT8, "-o", tmp_path / "a", "--count", "2")
    assert code == 0 and not any(line.startswith("warning") for line in out.splitlines())
    model_bytes = INT8.stat().st_size
    code, out, _ = run(capsys, "vectors", INT8, "-o", tmp_path / "b", "--count", "2", "--flash-budget", "4KiB")
    data = 2 * (12 * 12 * 3 + 10)
    assert code == 0
    warning = next(line for line in out.splitlines() if line.startswith("warning:"))
    assert f"take {data:,} bytes; with the model ({model_bytes:,} bytes) that is {data + model_bytes:,} bytes, " \
           f"over the flash budget of 4,096 bytes" in warning
    assert f"The arrays take {data:,} bytes of flash." in (tmp_path / "b" / "int8_vectors.h").read_text()


def test_header_float_literals_are_exact():
    values = np.array([0.1, 1 / 3, 3.4028235e38, 1e-45, -2.5], np.float32)
    text = vec.c_array("f", values)
    literals = [lit.strip() for lit in text.split("{", 1)[1].split("}", 1)[0].split(",")]
    assert all(lit.endswith("f") for lit in literals)
    assert np.array_equal(np.array([float(lit[:-1]) for lit in literals], np.float32), values)
    assert math.isfinite(float(literals[2][:-1]))
