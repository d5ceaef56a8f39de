"""The command line under attack: every user mistake is exit 2 (usage), 4 (model) or 6 (inputs)
with one line on stderr — never exit 1 ("internal error, a bug"), a hang, or memory eaten.

Files that never end (/dev/zero), block (a FIFO with no writer), pretend to be huge (a sparse
file) or explode (a zip bomb, an .npy header claiming 2^40 values) are refused before they are
read; outputs are not overwritten without --force; names from the model reach the terminal
escaped; `compare` runs the other runtime in a child process and reports its refusal or crash
as a finding (exit 7).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from interp import verify
from interp.builder import ModelBuilder
from interp.tools import cli, other_runtimes

ROOT = Path(__file__).resolve().parents[1]
INT8 = str(ROOT / "golden" / "float_pair" / "int8.tflite")  # one input (1, 12, 12, 3) int8
FLOAT = str(ROOT / "golden" / "float_pair" / "float.tflite")
REPRO = ROOT.parent / "shared" / "repro"
MISTAKE_CODES = {cli.EXIT_USAGE, cli.EXIT_MODEL, cli.EXIT_INPUT}


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or read()."""
    def expired(signum, frame):
        raise TimeoutError(f"the command was still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(capsys, *argv, seconds: int = 60):
    with deadline(seconds):
        code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def mistake(capsys, code_wanted: int, *argv, fragment: str = "") -> str:
    """Run a mistaken command: the wanted exit code, one line on stderr, no internal error."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        code, _, err = run(capsys, *argv)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == code_wanted, (code, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "internal error" not in err and "Traceback" not in err, err
    assert fragment in err, (fragment, err)
    assert time.perf_counter() - start < 20 and peak < 64 << 20, (time.perf_counter() - start, peak)
    return err


# ------------------------------------------------------------------------------ model paths
@pytest.mark.parametrize("command", ["run", "info", "trace", "plan", "vectors"])
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_as_models_are_refused_without_reading(capsys, tmp_path, command, device):
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    extra = ["-o", tmp_path / "v"] if command == "vectors" else []
    mistake(capsys, cli.EXIT_MODEL, command, device, *extra, fragment="character device")


@pytest.mark.parametrize("command", ["run", "info", "compare"])
def test_a_fifo_with_no_writer_does_not_block(capsys, tmp_path, command):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    mistake(capsys, cli.EXIT_MODEL, command, fifo, fragment="FIFO")


def test_a_sparse_huge_file_is_refused_by_its_size(capsys, tmp_path):
    sparse = tmp_path / "sparse.tflite"
    with open(sparse, "wb") as f:
        f.truncate(2 << 30)  # 2 GiB of holes: nothing on disk, nothing may be read
    mistake(capsys, cli.EXIT_MODEL, "run", sparse, fragment="larger than")


def test_a_file_without_the_tflite_identifier_is_refused_after_eight_bytes(capsys, tmp_path):
    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:
        f.write(b"\0" * 8)
        f.truncate(512 << 20)  # under the budget, but not a model: only its header is read
    mistake(capsys, cli.EXIT_MODEL, "info", big, fragment="not a TFLite flatbuffer")


def test_directories_and_missing_models(capsys, tmp_path):
    mistake(capsys, cli.EXIT_MODEL, "run", tmp_path, fragment="directory")
    mistake(capsys, cli.EXIT_MODEL, "info", tmp_path / "missing.tflite", fragment="No such file")


def test_python_api_reads_models_as_safely(tmp_path):
    """The same checks guard Interpreter.from_file and load_model."""
    from interp import Interpreter, ModelError, load_model
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with deadline(20):
        for path in ("/dev/zero", fifo, tmp_path):
            if os.path.exists(path):
                with pytest.raises(ModelError, match="not a regular file"):
                    Interpreter.from_file(path)
        with verify.limits(max_memory_bytes=1000):
            with pytest.raises(ModelError, match="larger than the 1,000-byte limit"):
                load_model(INT8)


# ------------------------------------------------------------------------------ input files
def npy_header(shape, dtype=np.int8) -> bytes:
    """The bytes of an .npy header declaring ``shape`` (no data after it)."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """A directory of malformed input files, by kind."""
    tmp_path = tmp_path_factory.mktemp("bad_inputs")
    files = {}
    objects = np.empty((1, 12, 12, 3), dtype=object)
    objects[...] = 1
    files["pickled.npy"] = tmp_path / "pickled.npy"
    np.save(files["pickled.npy"], objects, allow_pickle=True)
    files["pickled.npz"] = tmp_path / "pickled.npz"
    np.savez(files["pickled.npz"], x=objects)
    files["huge_header.npy"] = tmp_path / "huge_header.npy"
    files["huge_header.npy"].write_bytes(npy_header((1 << 40,)) + b"\0" * 64)
    files["huge_header.npz"] = tmp_path / "huge_header.npz"
    with zipfile.ZipFile(files["huge_header.npz"], "w") as z:
        z.writestr("x.npy", npy_header((1 << 40,)) + b"\0" * 64)
    # A zip bomb: 64 MiB of zeros after a header declaring a shape the model takes.
    files["bomb.npz"] = tmp_path / "bomb.npz"
    with zipfile.ZipFile(files["bomb.npz"], "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as member:
            member.write(npy_header((1, 12, 12, 3)))
            for _ in range(64):
                member.write(bytes(1 << 20))
    assert files["bomb.npz"].stat().st_size < 1 << 20
    files["truncated.npy"] = tmp_path / "truncated.npy"
    files["truncated.npy"].write_bytes(npy_header((1, 12, 12, 3)) + b"\0" * 10)
    files["not_an_array.npy"] = tmp_path / "not_an_array.npy"
    files["not_an_array.npy"].write_bytes(b"hello, I am text\n" * 4)
    files["corrupt.npz"] = tmp_path / "corrupt.npz"
    files["corrupt.npz"].write_bytes(b"PK\x03\x04" + bytes(60))
    files["missing.npz"] = tmp_path / "missing.npz"
    files["missing.npy"] = tmp_path / "missing.npy"
    files["directory.npz"] = tmp_path / "directory.npz"
    files["directory.npz"].mkdir()
    files["directory.npy"] = tmp_path / "directory.npy"
    files["directory.npy"].mkdir()
    files["fifo.npy"] = tmp_path / "fifo.npy"
    os.mkfifo(files["fifo.npy"])
    return files


BAD_INPUTS = {
    "pickled.npy": "Python objects", "pickled.npz": "Python objects", "huge_header.npy": "1,099,511,627,776",
    "huge_header.npz": "1,099,511,627,776", "bomb.npz": "decompresses to", "truncated.npy": "cannot read",
    "not_an_array.npy": "cannot read", "corrupt.npz": "cannot read", "missing.npz": "No such file",
    "missing.npy": "No such file", "directory.npz": "directory", "directory.npy": "directory",
    "fifo.npy": "FIFO",
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["run", "trace", "explain", "vectors", "compare"])
def test_bad_input_files_are_input_errors(capsys, tmp_path, bad_inputs, kind, command):
    extra = {"explain": ["--op", "0", "--at", "0,0,0,0"], "vectors": ["-o", tmp_path / "v"]}.get(command, [])
    mistake(capsys, cli.EXIT_INPUT, command, INT8, "--input", bad_inputs[kind], *extra, fragment=BAD_INPUTS[kind])


@pytest.mark.parametrize("kind", ["pickled.npz", "missing.npz", "directory.npz", "bomb.npz", "huge_header.npz"])
def test_compare_float_data_files_are_input_errors(capsys, bad_inputs, kind):
    mistake(capsys, cli.EXIT_INPUT, "compare", INT8, "--float", FLOAT, "--data", bad_inputs[kind],
            fragment=BAD_INPUTS[kind])


def test_compare_data_without_float_is_a_usage_error(capsys, tmp_path):
    mistake(capsys, cli.EXIT_USAGE, "compare", INT8, "--data", tmp_path / "x.npz", fragment="--float")


def test_good_npz_and_npy_inputs_still_work(capsys, tmp_path):
    x = np.arange(432, dtype=np.int64).astype(np.int8).reshape(1, 12, 12, 3)
    np.save(tmp_path / "x.npy", x)
    np.savez_compressed(tmp_path / "x.npz", x=x)
    outs = []
    for path in ("x.npy", "x.npz"):
        code, out, _ = run(capsys, "run", INT8, "--input", tmp_path / path)
        assert code == 0
        outs.append(out)
    assert outs[0] == outs[1]
    mistake(capsys, cli.EXIT_INPUT, "run", INT8, "--input", tmp_path / "x.npz", tmp_path / "x.npy",
            fragment="one .npz")


# ------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("argv, fragment", [
    (["vectors", INT8, "-o", "{tmp}/v", "--count", "-5"], "--count"),
    (["vectors", INT8, "-o", "{tmp}/v", "--count", "0"], "--count"),
    (["vectors", INT8, "-o", "{tmp}/v", "--count", "1000000000"], "--count"),
    (["vectors", INT8, "-o", "{tmp}/v", "--count", "many"], "--count"),
    (["run", INT8, "--seed", "-1"], "--seed"),
    (["run", INT8, "--seed", "1.5"], "--seed"),
    (["trace", INT8, "--seed", "nan"], "--seed"),
    (["plan", INT8, "--budget", "lots"], "--budget"),
    (["plan", INT8, "--budget", "-1KiB"], "--budget"),
    (["plan", INT8, "--budget", "inf"], "--budget"),
    (["plan", INT8, "--flash-budget", "1e999"], "--flash-budget"),
    (["explain", INT8, "--op", "-1", "--at", "0"], "--op"),
    (["explain", INT8, "--op", "x", "--at", "0"], "--op"),
    (["run"], "model"),
    (["fly", INT8], "invalid choice"),
    (["compare", INT8, "--against", "tflite"], "invalid choice"),
    (["plan", INT8, "--optimize"], "--optimize needs -o"),
])
def test_argument_mistakes_are_one_line_usage_errors(capsys, tmp_path, argv, fragment):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    mistake(capsys, cli.EXIT_USAGE, *argv, fragment=fragment)


def test_parse_size_refuses_what_is_not_a_size():
    assert cli.parse_size("1.5KiB") == 1536
    for text in ("lots", "-1", "inf", "nan", "1e999", "", "KiB"):
        with pytest.raises(ValueError, match="is not a size"):
            cli.parse_size(text)


def test_vectors_count_beyond_the_memory_budget_is_refused_before_running(capsys, tmp_path):
    with verify.limits(max_memory_bytes=1 << 20):
        err = mistake(capsys, cli.EXIT_USAGE, "vectors", INT8, "-o", tmp_path / "v", "--count", "20000",
                      fragment="memory budget")
    assert "samples fit" in err and not (tmp_path / "v").exists()


# ------------------------------------------------------------------------------ outputs
def test_output_into_a_missing_directory_or_onto_a_directory(capsys, tmp_path):
    mistake(capsys, cli.EXIT_USAGE, "run", INT8, "--output", tmp_path / "nope" / "o.npz", fragment="does not exist")
    (tmp_path / "d.npz").mkdir()
    mistake(capsys, cli.EXIT_USAGE, "run", INT8, "--output", tmp_path / "d.npz", fragment="directory")
    mistake(capsys, cli.EXIT_USAGE, "trace", INT8, "--dump", tmp_path / "nope" / "t.npz", fragment="does not exist")
    mistake(capsys, cli.EXIT_USAGE, "plan", INT8, "--optimize", "-o", tmp_path / "nope" / "m.tflite",
            fragment="does not exist")
    mistake(capsys, cli.EXIT_USAGE, "plan", INT8, "--plot", tmp_path / "nope" / "p.png", fragment="does not exist")
    os.mkfifo(tmp_path / "fifo.npz")
    mistake(capsys, cli.EXIT_USAGE, "run", INT8, "--output", tmp_path / "fifo.npz", "--force", fragment="FIFO")


def test_vectors_onto_a_file_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    mistake(capsys, cli.EXIT_USAGE, "vectors", INT8, "-o", tmp_path / "file", fragment="not a directory")
    assert (tmp_path / "file").read_text() == "mine"


def test_outputs_are_not_overwritten_without_force(capsys, tmp_path):
    out = tmp_path / "o.npz"
    assert run(capsys, "run", INT8, "--output", out)[0] == 0
    first = out.read_bytes()
    mistake(capsys, cli.EXIT_USAGE, "run", INT8, "--seed", "5", "--output", out, fragment="--force")
    assert out.read_bytes() == first
    code, text, _ = run(capsys, "run", INT8, "--seed", "5", "--output", out, "--force")
    assert code == 0 and out.read_bytes() != first and f"wrote {out}" in text
    # trace --dump and vectors the same way.
    assert run(capsys, "trace", INT8, "--dump", tmp_path / "t.npz")[0] == 0
    mistake(capsys, cli.EXIT_USAGE, "trace", INT8, "--dump", tmp_path / "t.npz", fragment="--force")
    assert run(capsys, "vectors", INT8, "-o", tmp_path / "v")[0] == 0
    mistake(capsys, cli.EXIT_USAGE, "vectors", INT8, "-o", tmp_path / "v", fragment="--force")
    assert run(capsys, "vectors", INT8, "-o", tmp_path / "v", "--force")[0] == 0


def test_output_says_when_npz_is_appended(capsys, tmp_path):
    code, text, _ = run(capsys, "run", INT8, "--output", tmp_path / "out")
    assert code == 0 and (tmp_path / "out.npz").exists() and not (tmp_path / "out").exists()
    assert f"wrote {tmp_path / 'out.npz'} (.npz appended to '{tmp_path / 'out'}')" in text
    # The check for an existing file looks at the name written, not the one given.
    mistake(capsys, cli.EXIT_USAGE, "run", INT8, "--output", tmp_path / "out", fragment="out.npz' exists")


# ------------------------------------------------------------------------------ names from the model
def evil_model() -> bytes:
    """Tensor names and a description with a newline, ESC[2J (clear screen) and a right-to-left
    override, as in ../shared/repro/newline_name_error.tflite."""
    b = ModelBuilder(description="hostile\x1b[2J\nnext line")
    x = b.input("x\x1b]0;title\x07", [1, 4], "INT8", scale=0.05, zero_point=-3)
    t = b.tensor("evil\nname: \x1b[2Jfake\u202e", [1, 4], "INT8", scale=0.05, zero_point=-3)
    b.op("RELU", [x], [t])
    b.output(t)
    return b.build()


def test_info_and_trace_escape_control_characters_in_names(capsys, tmp_path):
    path = tmp_path / "evil.tflite"
    path.write_bytes(evil_model())
    for argv in (["info", path, "--tensors", "--ops"], ["trace", path], ["run", path]):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out, out
        assert "evil\\nname: \\x1b[2Jfake\\u202e" in out
        assert not any(line.startswith("name: ") for line in out.splitlines())


def test_error_messages_escape_control_characters_in_names(capsys, tmp_path):
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", scale=0.05, zero_point=-3)
    t = b.tensor("evil\nname: \x1b[2Jfake", [1, 4], "INT8", scale=0.05, zero_point=-3)
    b.op("RELU", [x], [b.tensor("t1", [1, 4], "INT8", scale=0.05, zero_point=-3)])
    # Reads its own output, which nothing wrote: undefined in TFLM, an UnsupportedOpError naming the tensor.
    b.op("RELU", [t], [t])
    b.output(t)
    path = tmp_path / "evil\x1b[2J.tflite"
    path.write_bytes(b.build())
    err = mistake(capsys, cli.EXIT_UNSUPPORTED, "run", path, fragment='"evil\\nname: \\x1b[2Jfake"')
    assert "\x1b" not in err
    code, out, _ = run(capsys, "info", path)
    assert "\x1b" not in out and "evil\\nname" in out


# ------------------------------------------------------------------------------ compare, in a child
@pytest.fixture
def fake_child(monkeypatch):
    """Replace the other runtime's child process by a given Python snippet."""
    def use(snippet: str, timeout: float | None = None):
        monkeypatch.setattr(other_runtimes, "_child_command", lambda runtime, work: [sys.executable, "-c", snippet])
        monkeypatch.setattr(other_runtimes, "_require_package", lambda runtime: None)
        if timeout is not None:
            monkeypatch.setattr(other_runtimes, "CHILD_TIMEOUT_S", timeout)
    return use


@pytest.mark.parametrize("snippet, fragment", [
    ("import os; print('Tensor index 7 out of range', flush=True); os.abort()", "killed by SIGABRT"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "killed by SIGSEGV"),
    ("import sys; sys.exit(3)", "exit code 3"),
])
def test_the_other_runtime_crashing_is_a_finding_not_our_death(capsys, fake_child, snippet, fragment):
    fake_child(snippet)
    code, out, err = run(capsys, "compare", INT8, "--against", "tflm")
    assert code == cli.EXIT_DIFFERS, err
    assert out.count("\n") == 1 and "TFLM crashed on this model" in out and fragment in out, out
    assert "a defect of TFLM" in out and "microref runs this model" in out
    if "SIGABRT" in fragment:
        assert "Tensor index 7 out of range" in out  # its last words say why
    code, out, _ = run(capsys, "compare", INT8, "--against", "tflm", "--json")
    assert code == cli.EXIT_DIFFERS and '"crashed"' in out


def test_the_other_runtime_hanging_is_a_finding(capsys, fake_child):
    fake_child("import time; time.sleep(60)", timeout=2)
    code, out, _ = run(capsys, "compare", INT8, "--against", "tflm")
    assert code == cli.EXIT_DIFFERS and "TFLM hung on this model" in out


def test_a_model_tflm_refuses_exits_cleanly(capsys):
    pytest.importorskip("tflite_micro")
    # An offline plan with a negative offset: TFLM refuses to allocate, microref runs the model.
    path = REPRO / "meta_offline_neg.tflite"
    if not path.exists():
        pytest.skip("../shared/repro is not present")
    code, out, err = run(capsys, "compare", path, "--against", "tflm")
    assert code == cli.EXIT_DIFFERS, err
    assert out.count("\n") == 1 and "TFLM refuses the model" in out and "microref runs this model" in out


def test_inputs_microref_refuses_are_refused_before_the_other_runtime_runs(capsys, tmp_path, fake_child):
    """INT32_MIN / -1 kills TFLM with SIGFPE; microref refuses those inputs first (exit 6)."""
    fake_child("raise SystemExit('the other runtime must not be started')")
    b = ModelBuilder()
    x1 = b.input("a", [3], "INT32")
    x2 = b.input("b", [3], "INT32")
    y = b.tensor("y", [3], "INT32")
    b.op("DIV", [x1, x2], [y])
    b.output(y)
    (tmp_path / "div.tflite").write_bytes(b.build())
    np.save(tmp_path / "a.npy", np.array([5, -5, -2 ** 31], np.int32))
    np.save(tmp_path / "b.npy", np.array([2, 3, -1], np.int32))
    mistake(capsys, cli.EXIT_INPUT, "compare", tmp_path / "div.tflite", "--input", tmp_path / "a.npy",
            tmp_path / "b.npy", fragment="INT32_MIN / -1")


def test_compare_against_tflm_still_compares(capsys):
    pytest.importorskip("tflite_micro")
    code, out, _ = run(capsys, "compare", INT8, "--against", "tflm")
    assert code == 0 and "outputs identical" in out
