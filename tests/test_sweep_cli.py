"""Conformance sweeps (`microref compare DIR`, `microref vectors DIR`, interp.tools.sweep) and the
progress bar of every long-running command: the sweep's cases are `microref compare MODEL --seed S`
run against TFLM (the wheel) in a child process of each worker, the same JSON from this process
and from worker processes, a model microref refuses reported and not fatal, a difference found
(exit 7), TFLM crashing inside a worker reported as TFLM's crash, the vectors of a folder equal to
each model's own, and the bar on a pseudo-terminal only. The Ray engine's sweeps are in
tests/test_scale_ray.py (its local Ray)."""
import fcntl
import io
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.tools import cli, sweep
from interp.tools import compare as cmp
from interp.tools.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "golden" / "models"
PAIR = ROOT / "golden" / "float_pair"
SMALL = ("abs_1x16", "add_relu", "conv2d_k1x1_s1")  # three small golden models (ABS, ADD, CONV_2D)

needs_tflm = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tflite_micro") is None,
    reason="the oracle is the tflite-micro wheel (Linux x86-64): pip install 'tflite-micro==0.dev20261023182759'")


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def unsupported_model() -> bytes:
    """A model microref refuses (UnsupportedOpError): an op reads its own output, which nothing wrote."""
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", scale=0.05, zero_point=-3)
    t = b.tensor("t", [1, 4], "INT8", scale=0.05, zero_point=-3)
    b.op("RELU", [x], [b.tensor("t1", [1, 4], "INT8", scale=0.05, zero_point=-3)])
    b.op("RELU", [t], [t])
    b.output(t)
    return b.build()


@pytest.fixture
def models(tmp_path):
    """A folder: three golden models (one in a subfolder), one microref refuses, one that is no model."""
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    for name in SMALL[:2]:
        (folder / f"{name}.tflite").write_bytes((GOLDEN / f"{name}.tflite").read_bytes())
    (folder / "sub" / f"{SMALL[2]}.tflite").write_bytes((GOLDEN / f"{SMALL[2]}.tflite").read_bytes())
    (folder / "refused.tflite").write_bytes(unsupported_model())
    (folder / "zz_not_a_model.tflite").write_bytes(b"garbage, not a flatbuffer")
    (folder / "notes.txt").write_text("not a model: ignored")
    return folder


NAMES = ["abs_1x16.tflite", "add_relu.tflite", "refused.tflite", "sub/conv2d_k1x1_s1.tflite",
         "zz_not_a_model.tflite"]


def without_run(payload: dict) -> dict:
    payload = dict(payload)
    payload.pop("run")
    return payload


# ----------------------------------------------------------------------------- compare DIR

def test_find_models_is_recursive_sorted_and_only_tflite(models, tmp_path):
    assert sweep.find_models(models) == NAMES
    (tmp_path / "empty").mkdir()
    with pytest.raises(cli.InputError, match="no .tflite files under"):
        sweep.find_models(tmp_path / "empty")
    with pytest.raises(cli.InputError, match="is not a folder"):
        sweep.find_models(models / "abs_1x16.tflite")


@needs_tflm
def test_sweep_report_and_json_the_same_from_this_process_and_from_workers(capsys, models):
    code, out, err = run(capsys, "compare", models, "--seeds", "2", "--workers", "1")
    assert code == cli.EXIT_OK, err  # refusals by microref are reported, not failures
    assert err == ""  # no bar: stderr is not a terminal
    assert "5 models × 2 (seeds 0..1) = 10 cases" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.endswith(".tflite") or ".tflite " in line}
    for name in ("abs_1x16.tflite", "add_relu.tflite", "sub/conv2d_k1x1_s1.tflite"):
        assert lines[name].split()[1:5] == ["2", "2", "0", "exact"], lines[name]
    assert "refused by microref: UnsupportedOpError" in lines["refused.tflite"]
    assert "refused by microref: ModelError" in lines["zz_not_a_model.tflite"]
    assert "models: 3 exact, 0 differ, 2 refused by microref, 0 refused by TFLM, 0 crashed TFLM; cases: 6 of 10 " \
           "exact" in out

    code, one, _ = run(capsys, "compare", models, "--seeds", "2", "--workers", "1", "--json")
    code2, two, _ = run(capsys, "compare", models, "--seeds", "2", "--workers", "2", "--json")
    assert code == code2 == cli.EXIT_OK
    a, b = json.loads(one), json.loads(two)
    assert a["run"]["workers"] == 1 and b["run"]["workers"] == 2 and a["run"]["engine"] == "local"
    assert without_run(a) == without_run(b)
    # The schema.
    assert set(a) == {"command", "folder", "against", "seeds", "run", "totals", "models", "cases"}
    assert a["seeds"] == [0, 1] and a["against"] == "tflm" and [m["model"] for m in a["models"]] == NAMES
    assert a["totals"] == {"models": 5, "cases": 10, "exact": 6, "differs": 0, "refused": 4, "other_refused": 0,
                           "other_crashed": 0, "error": 0,
                           "models_by_verdict": {"exact": 3, "differs": 0, "refused": 2, "other_refused": 0,
                                                 "other_crashed": 0, "error": 0}}
    refused = next(m for m in a["models"] if m["model"] == "refused.tflite")
    assert refused["verdict"] == "refused" and refused["refused_by_microref"]["cases"] == 2
    assert "UnsupportedOpError" in refused["refused_by_microref"]["message"]
    assert [(c["model"], c["seed"]) for c in a["cases"]] == [(n, s) for n in NAMES for s in (0, 1)]
    assert set(a["cases"][0]) == {"model", "seed", "status", "message", "differing", "size", "max_lsb",
                                  "first_divergent_op"}
    assert a["cases"][0]["size"] == 16 and a["cases"][0]["status"] == "exact"


@needs_tflm
def test_a_model_that_differs_is_found(capsys, models, monkeypatch):
    """ABS made to add one LSB (in this process: --workers 1): the sweep finds it, exit 7, with the
    seeds, the LSB and the first divergent op, and the command to see it whole."""
    it = Interpreter.from_file(models / "abs_1x16.tflite")
    kernel_class = type(it.kernels[0])
    original = kernel_class.eval

    def off_by_one(self, inputs, *a, **kw):
        outs = original(self, inputs, *a, **kw)
        return [np.where(o < 127, o + 1, o - 1).astype(o.dtype) for o in outs]
    monkeypatch.setattr(kernel_class, "eval", off_by_one)
    code, out, err = run(capsys, "compare", models, "--seeds", "2", "--workers", "1")
    assert code == cli.EXIT_DIFFERS, err
    row = next(line for line in out.splitlines() if line.startswith("abs_1x16.tflite"))
    assert row.split()[1:6] == ["2", "0", "2", "1", "DIFFERS:"], row
    assert "seeds 0, 1; first divergent op 0 ABS" in row
    assert f"the first difference in full: microref compare {models / 'abs_1x16.tflite'} --against tflm --seed 0" \
           in out
    code, out, _ = run(capsys, "compare", models, "--seeds", "2", "--workers", "1", "--json")
    m = json.loads(out)["models"][0]
    assert code == cli.EXIT_DIFFERS and m["verdict"] == "differs" and m["differing_seeds"] == [0, 1]
    assert m["max_lsb"] == 1 and m["first_divergent_op"] == {"index": 0, "op": "ABS", "reproduced_by": []}


@needs_tflm
def test_tflm_crashing_inside_a_worker_is_reported_as_tflm_crashing(capsys, models, tmp_path, monkeypatch):
    """A TFLM that aborts on every model (a fake tflite_micro package first on PYTHONPATH, which the
    worker processes and their TFLM children inherit): each worker survives its TFLM child."""
    fake = tmp_path / "fake" / "tflite_micro" / "python" / "tflite_micro"
    fake.mkdir(parents=True)
    for d in (fake.parent.parent, fake.parent, fake):
        (d / "__init__.py").write_text("")
    (fake / "runtime.py").write_text(
        "import os\n"
        "class InterpreterConfig:\n    kPreserveAllTensors = 1\n"
        "class Interpreter:\n"
        "    @staticmethod\n"
        "    def from_bytes(*args, **kwargs):\n"
        "        print('fake TFLM: tensor index out of range', flush=True)\n"
        "        os.abort()\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code, out, err = run(capsys, "compare", models, "--workers", "2", "--json")
    assert code == cli.EXIT_DIFFERS, err
    payload = json.loads(out)
    assert payload["run"]["workers"] == 2
    verdicts = {m["model"]: m["verdict"] for m in payload["models"]}
    assert verdicts == {"abs_1x16.tflite": "other_crashed", "add_relu.tflite": "other_crashed",
                        "refused.tflite": "refused", "sub/conv2d_k1x1_s1.tflite": "other_crashed",
                        "zz_not_a_model.tflite": "refused"}
    crashed = payload["models"][0]["crashed_other"]["message"]
    assert "TFLM crashed on this model (killed by SIGABRT)" in crashed and "tensor index out of range" in crashed


def fake_tflm_crashing_on(tmp_path, crash_inputs: list[np.ndarray], hang_inputs: list[np.ndarray] = ()) -> Path:
    """A tflite_micro package (to put first on PYTHONPATH) that is the real one, except that it
    aborts, after a last word, when given one of ``crash_inputs`` (and hangs on ``hang_inputs``):
    the real package's folders are on the fake packages' paths, and the fake runtime wraps the
    real runtime module."""
    import tflite_micro
    real = Path(tflite_micro.__file__).parent
    top = tmp_path / "fake_crash"
    fake = top / "tflite_micro" / "python" / "tflite_micro"
    fake.mkdir(parents=True)
    for here, there in ((fake.parent.parent, real), (fake.parent, real / "python"),
                        (fake, real / "python" / "tflite_micro")):
        (here / "__init__.py").write_text(f"__path__.append({str(there)!r})\n")
    real_runtime = real / "python" / "tflite_micro" / "runtime.py"
    def digests(arrays):
        return sorted(__import__("hashlib").sha256(np.asarray(x).tobytes()).hexdigest() for x in arrays)
    (fake / "runtime.py").write_text(
        "import hashlib, importlib.util, os, time\n"
        f"spec = importlib.util.spec_from_file_location('real_tflm_runtime', {str(real_runtime)!r})\n"
        "real = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(real)\n"
        "InterpreterConfig = real.InterpreterConfig\n"
        f"CRASH = {digests(crash_inputs)!r}\n"
        f"HANG = {digests(hang_inputs)!r}\n"
        "class Interpreter:\n"
        "    def __init__(self, inner):\n"
        "        self.inner = inner\n"
        "    @staticmethod\n"
        "    def from_bytes(*args, **kwargs):\n"
        "        return Interpreter(real.Interpreter.from_bytes(*args, **kwargs))\n"
        "    def set_input(self, x, i):\n"
        "        if hashlib.sha256(x.tobytes()).hexdigest() in CRASH:\n"
        "            print('fake TFLM: a poisoned input', flush=True)\n"
        "            os.abort()\n"
        "        if hashlib.sha256(x.tobytes()).hexdigest() in HANG:\n"
        "            print('fake TFLM: waiting forever', flush=True)\n"
        "            time.sleep(600)\n"
        "        self.inner.set_input(x, i)\n"
        "    def __getattr__(self, name):\n"
        "        return getattr(self.inner, name)\n")
    return top


def case_inputs(path: Path, seed: int) -> list[np.ndarray]:
    """The inputs of case (model, seed): those of `microref compare MODEL --seed S`."""
    from interp.runtime.inputs import random_inputs
    return random_inputs(Interpreter.from_file(path), np.random.default_rng(seed))


@needs_tflm
def test_tflm_crashing_mid_model_costs_that_case_only(capsys, models, tmp_path, monkeypatch):
    """One long-lived TFLM child runs case after case; TFLM aborting on seed 2 of one model (of
    seeds 0..4) is that case's crash, with the message a child of its own gives, and the seeds
    before and after it (and the next model) keep their exact results."""
    abs_model = models / "abs_1x16.tflite"
    top = fake_tflm_crashing_on(tmp_path, case_inputs(abs_model, 2))
    monkeypatch.setenv("PYTHONPATH", str(top) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code, out, err = run(capsys, "compare", models, "--seeds", "5", "--workers", "1", "--json")
    assert code == cli.EXIT_DIFFERS, err
    payload = json.loads(out)
    statuses = [(c["model"], c["seed"], c["status"]) for c in payload["cases"]][:10]
    assert statuses == [("abs_1x16.tflite", s, "other_crashed" if s == 2 else "exact") for s in range(5)] + \
        [("add_relu.tflite", s, "exact") for s in range(5)]
    crash = payload["cases"][2]["message"]
    assert crash == "TFLM crashed on this model (killed by SIGABRT); its last words: fake TFLM: a poisoned input"
    with pytest.raises(cmp.OtherRuntimeCrashed) as e:  # the same words from a child of its own
        cmp.run_other_runtime("tflm", abs_model.read_bytes(), case_inputs(abs_model, 2))
    assert str(e.value) == crash
    # The sweep's records are those of each case compared on its own (a child per case).
    options = sweep.CompareOptions()
    for m in ("abs_1x16.tflite", "add_relu.tflite"):
        task = sweep.ModelTask(m, (models / m).read_bytes(), (0, 1, 2, 3, 4))
        alone = [sweep.compare_case(options, task, s).to_json() for s in (1, 2, 3)]
        assert alone == [c for c in payload["cases"] if c["model"] == m][1:4]
    # The child: the crash in a child that had run cases before is asked again of a fresh one
    # (which crashes too), and the next seed starts a third.
    child = cmp.RuntimeChild("tflm")
    try:
        data = abs_model.read_bytes()
        for s in (0, 1):
            child.run(data, case_inputs(abs_model, s))
        assert (child.started, child.served) == (1, 2)
        with pytest.raises(cmp.OtherRuntimeCrashed, match="SIGABRT"):
            child.run(data, case_inputs(abs_model, 2))
        assert child.started == 2 and child.last_fresh
        assert child.run(data, case_inputs(abs_model, 3)).keys()
        assert (child.started, child.served) == (3, 1)
    finally:
        child.close()


@needs_tflm
def test_tflm_hanging_on_a_case_is_killed_and_the_next_case_runs(models, tmp_path, monkeypatch):
    abs_model = models / "abs_1x16.tflite"
    data = abs_model.read_bytes()
    top = fake_tflm_crashing_on(tmp_path, [], case_inputs(abs_model, 1))
    monkeypatch.setenv("PYTHONPATH", str(top) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = cmp.RuntimeChild("tflm")
    try:
        child.run(data, case_inputs(abs_model, 0))
        first = child._proc
        child.timeout = 3.0
        with pytest.raises(cmp.OtherRuntimeCrashed) as e:
            child.run(data, case_inputs(abs_model, 1))
        assert str(e.value) == ("TFLM hung on this model (no answer after 3 s); its last words: fake TFLM: "
                                "waiting forever")
        assert e.value.how == "hung for 3 s" and first.poll() is not None  # the hung child is gone
        child.timeout = 120.0
        assert child.run(data, case_inputs(abs_model, 2)).keys() and child.started == 3
    finally:
        child.close()


@needs_tflm
def test_a_multi_seed_sweep_is_the_per_case_compare_runs(capsys, models):
    """Every record of a sweep (one TFLM child for all its cases; its seeds shared out among two
    workers for a single model) equals the case compared with a TFLM child of its own, which is
    what `microref compare MODEL --seed S` runs."""
    result = sweep.sweep(models, seeds=3, workers=1)
    options = sweep.CompareOptions()
    for m in result.models:
        path = models / m.model
        task = sweep.ModelTask(m.model, path.read_bytes() if m.model != "zz_not_a_model.tflite" else None, (0, 1, 2))
        if task.data is None:
            continue
        assert [c.to_json() for c in m.cases] == [sweep.compare_case(options, task, s).to_json() for s in (0, 1, 2)]
    code, out, _ = run(capsys, "compare", models / "add_relu.tflite", "--seed", "2", "--json")
    single = json.loads(out)[0]
    case = result.models[1].cases[2]
    assert code == 0 and (case.model, case.seed, case.status) == ("add_relu.tflite", 2, "exact")
    assert case.size == sum(o["size"] for o in single["outputs"])
    one = sweep.sweep([models / "abs_1x16.tflite"], seeds=5, seed=3, workers=1)
    shared = sweep.sweep([models / "abs_1x16.tflite"], seeds=5, seed=3, workers=2)  # 4 tasks of seeds
    assert [c.seed for c in shared.cases] == [3, 4, 5, 6, 7]
    assert without_run(shared.to_json()) == without_run(one.to_json())


def test_seeds_are_shared_out_only_among_few_models():
    assert sweep._pieces(models=100, seeds=10, workers=2) == 1
    assert sweep._pieces(models=1, seeds=10, workers=2) == 4
    assert sweep._pieces(models=1, seeds=3, workers=2) == 3
    assert sweep._pieces(models=3, seeds=10, workers=2) == 2
    assert sweep._pieces(models=1, seeds=10, workers=1) == 1
    assert sweep._pieces(models=500, seeds=1000, workers=2) == 20  # at most MAX_SEEDS_PER_TASK (50) a task
    tasks = list(sweep._tasks("", ["a.tflite"], [0, 1, 2, 3, 4], pieces=2))
    assert [t.seeds for t in tasks] == [(0, 1, 2), (3, 4)]


def test_sweep_mistakes_are_one_line_before_any_work(capsys, models, tmp_path):
    (tmp_path / "empty").mkdir()
    for argv, code, message in [
        (["compare", models, "--float", PAIR / "float.tflite"], cli.EXIT_USAGE, "--float is for one model"),
        (["compare", models, "--against", "all"], cli.EXIT_USAGE, "one runtime at a time"),
        (["compare", models, "--address", "127.0.0.1:1"], cli.EXIT_USAGE, "--address is for --engine ray"),
        (["compare", GOLDEN / "abs_1x16.tflite", "--workers", "2"], cli.EXIT_USAGE, "--workers runs a sweep"),
        (["vectors", GOLDEN / "abs_1x16.tflite", "-o", tmp_path / "v", "--engine", "ray"], cli.EXIT_USAGE,
         "--engine runs a sweep"),
        (["vectors", models, "-o", tmp_path / "v", "--input", tmp_path / "x.npy"], cli.EXIT_USAGE,
         "--input is for one model"),
        (["compare", tmp_path / "empty"], cli.EXIT_INPUT, "no .tflite files under"),
        (["compare", models, "--seeds", "0"], cli.EXIT_USAGE, "expected a whole number"),
    ]:
        got, out, err = run(capsys, *argv)
        assert got == code and out == "", (argv, err)
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert not (tmp_path / "v").exists()


# ----------------------------------------------------------------------------- vectors DIR

def test_vectors_of_a_folder_are_each_models_own(capsys, models, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "vectors", models, "-o", out_dir, "--count", "3", "--seed", "4", "--workers", "1")
    assert code == cli.EXIT_OK, err
    assert "3 written, 2 refused by microref" in out
    for name in ("abs_1x16", "add_relu", "sub/conv2d_k1x1_s1"):
        base = name.split("/")[-1]
        single = tmp_path / "single" / base
        assert run(capsys, "vectors", GOLDEN / f"{base}.tflite", "-o", single, "--count", "3", "--seed", "4")[0] == 0
        mine = out_dir / name
        assert sorted(p.name for p in mine.iterdir()) == [f"{base}_vectors.h", f"{base}_vectors.npz"]
        assert (mine / f"{base}_vectors.h").read_bytes() == (single / f"{base}_vectors.h").read_bytes()
        with np.load(mine / f"{base}_vectors.npz") as a, np.load(single / f"{base}_vectors.npz") as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    # Files that exist are refused before any work; --force overwrites; workers give the same files.
    code, _, err = run(capsys, "vectors", models, "-o", out_dir, "--count", "3", "--seed", "4")
    assert code == cli.EXIT_USAGE and "exists (6 file(s) of the sweep do); pass --force" in err
    code, out, err = run(capsys, "vectors", models, "-o", tmp_path / "two", "--count", "3", "--seed", "4",
                         "--workers", "2", "--json")
    assert code == cli.EXIT_OK, err
    payload = json.loads(out)
    assert payload["run"]["workers"] == 2 and payload["totals"] == {"models": 5, "written": 3, "refused": 2, "error": 0}
    for m in payload["models"]:
        for path in m["written"]:
            twin = out_dir / Path(path).relative_to(tmp_path / "two")
            if path.endswith(".h"):
                assert Path(path).read_bytes() == twin.read_bytes()


# ----------------------------------------------------------------------------- progress

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_helper_has_one_home():
    from interp.tools import eval as eval_tool
    assert eval_tool.Progress is Progress


def _progress_output(argv: list[str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; (exit code, what the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    try:
        child = subprocess.Popen([sys.executable, "-m", "interp.tools.cli", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        received = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            received += data
        child.stdout.read()
        return child.wait(60), received.decode("utf-8", "replace")
    finally:
        os.close(master)


@needs_tflm
def test_sweep_progress_bar_on_a_pseudo_terminal_only(models):
    code, shown = _progress_output(["compare", str(models), "--workers", "1"])
    assert code == cli.EXIT_OK
    assert "compare" in shown and "5/5" in shown and "case" in shown, shown
    code, shown = _progress_output(["compare", str(models), "--workers", "1", "--quiet"])
    assert code == cli.EXIT_OK and shown == ""


def test_vectors_count_shows_the_run_and_the_header(monkeypatch, tmp_path, capsys):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, out, _ = run(capsys, "vectors", PAIR / "int8.tflite", "-o", tmp_path / "a", "--count", "120")
    assert code == 0
    shown = terminal.getvalue()
    assert "vectors: run" in shown and "120/120" in shown and "vectors: C header" in shown and "240/240" in shown
    # The chunked run (a bar shown) writes the same vectors as the run in one batch (--quiet).
    code, _, _ = run(capsys, "vectors", PAIR / "int8.tflite", "-o", tmp_path / "b", "--count", "120", "--quiet")
    assert code == 0
    assert (tmp_path / "a" / "int8_vectors.h").read_bytes() == (tmp_path / "b" / "int8_vectors.h").read_bytes()
    before = terminal.getvalue()
    run(capsys, "vectors", PAIR / "int8.tflite", "-o", tmp_path / "c", "--count", "120", "--quiet")
    assert terminal.getvalue() == before


def test_compare_float_over_many_samples_shows_progress_and_the_same_rows(monkeypatch, capsys):
    it, float_it = Interpreter.from_file(PAIR / "int8.tflite"), Interpreter.from_file(PAIR / "float.tflite")
    inputs = cmp.default_float_inputs(it, float_it, 60, 3)
    whole = cmp.compare_float_samples(it, float_it, inputs.samples)
    bar = Progress("compare --float", stream=_Terminal(), mininterval=0)
    chunked = cmp.compare_float_samples(it, float_it, inputs.samples, progress=bar)
    bar.close()
    assert "120/120" in bar.stream.getvalue()
    assert [vars(r) for r in chunked] == [vars(r) for r in whole]  # chunked: the same numbers, bit for bit
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, out, _ = run(capsys, "compare", PAIR / "int8.tflite", "--float", PAIR / "float.tflite", "--samples", "40")
    assert code == 0 and "compare --float" in terminal.getvalue() and "80/80" in terminal.getvalue()
    assert "\x1b" not in out and "\r" not in out  # the bar is on stderr only


def test_run_profile_counts_its_runs(monkeypatch, capsys):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, out, _ = run(capsys, "run", PAIR / "int8.tflite", "--profile", "--repeat", "7", "--batch", "4")
    assert code == 0 and "profile (CPU time" in out
    assert "profile" in terminal.getvalue() and "8/8" in terminal.getvalue()  # a warm-up and seven timed runs
