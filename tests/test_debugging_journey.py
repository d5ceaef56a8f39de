"""The debugging journey (issue 18): compare's coordinates and ready-to-run explain command, the
final-output line (top-1, LSB histogram), grouped *why*, the aligned table, compare --float's
inputs, samples and warnings, the int8/float mix-up, run's word on random inputs, plan's usage
errors. CLI output is parsed, not just searched.

The "other runtime" is faked where possible by microref itself under single rounding (what a
TFLITE_SINGLE_ROUNDING build computes), so these tests need neither TFLM nor LiteRT; the ones
against the real LiteRT skip without it.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter
from interp.runtime.inputs import random_inputs
from interp.tools import cli
from interp.tools import compare as cmp
from interp.tools.explain import explain
from ops.registry import Numerics

ROOT = Path(__file__).resolve().parents[1]
MOBILE = ROOT / "golden" / "models" / "net_mobile_block.tflite"  # converted by TFLiteConverter; LiteRT differs
PAIR = ROOT / "golden" / "float_pair"
INT8, FLOAT = str(PAIR / "int8.tflite"), str(PAIR / "float.tflite")


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def single_rounding_runtime(monkeypatch):
    """Every runtime compare asks for is microref under single rounding (a TFLITE_SINGLE_ROUNDING build)."""
    def fake(runtime, model_bytes, inputs, timeout=None):
        other = Interpreter.from_bytes(model_bytes, numerics=Numerics(rounding="single"))
        other.run(inputs, keep=True)
        return dict(other._kept)
    monkeypatch.setattr(cmp, "run_other_runtime", fake)


def seeded(path, seed=0):
    it = Interpreter.from_file(path)
    return it, random_inputs(it, np.random.default_rng(seed))


# ----------------------------------------------------------------------------- coordinates

def test_coordinates_of_every_differing_element_are_exact(single_rounding_runtime):
    it, xs = seeded(MOBILE)
    c = cmp.compare_runtime(it, MOBILE.read_bytes(), xs, "litert")
    other = Interpreter.from_file(MOBILE, numerics=Numerics(rounding="single"))
    other.run(xs, keep=True)
    it.run(xs, keep=True)
    checked = 0
    for o in c.ops:
        for d in o.chained:
            mine, theirs = it.tensor(d.tensor), other.tensor(d.tensor)
            want = [tuple(int(i) for i in p) for p in np.argwhere(mine != theirs)]
            assert d.coords() == want  # all of them, in C order
            assert [int(mine[p]) for p in want] == d.mine.tolist()
            assert [int(theirs[p]) for p in want] == d.theirs.tolist()
            assert sum(d.histogram.values()) == d.differing
            checked += d.differing
    assert checked > 0


def test_json_lists_all_coordinates_and_the_explain_command(capsys, single_rounding_runtime):
    code, out, _ = run(capsys, "compare", MOBILE, "--against", "litert", "--seed", "0", "--json")
    assert code == cli.EXIT_DIFFERS
    report = json.loads(out)[0]
    it, xs = seeded(MOBILE)
    other = Interpreter.from_file(MOBILE, numerics=Numerics(rounding="single"))
    other.run(xs, keep=True)
    it.run(xs, keep=True)
    for op in report["ops"]:
        for d in op["chained"]:
            want = np.argwhere(it.tensor(d["tensor"]) != other.tensor(d["tensor"])).tolist()
            assert d["coordinates"] == want and d["differing"] == len(want)
    first = report["first_divergent_op"]
    words = shlex.split(first["explain_command"])
    assert words[:3] == ["microref", "explain", str(MOBILE)] and "--seed" in words
    assert first["explain_commands_by_variant"]["single rounding (TFLITE_SINGLE_ROUNDING)"].endswith(
        "--numerics single")


def test_the_printed_explain_command_runs_and_shows_both_values(capsys, single_rounding_runtime):
    """compare prints `microref explain ... --op N --at ...` for the first differing element; run
    as printed it tells TFLM's value, and with --numerics single the other runtime's."""
    code, out, _ = run(capsys, "compare", MOBILE, "--against", "litert", "--seed", "3")
    assert code == cli.EXIT_DIFFERS
    first = re.search(r"first differing element: \(([\d, ]+)\): microref (-?\d+), LiteRT (-?\d+)", out)
    assert first, out
    mine, theirs = int(first.group(2)), int(first.group(3))
    commands = re.findall(r"^  (?:its arithmetic, step by step|the same under single rounding):\s+(microref .*)$",
                          out, re.M)
    assert len(commands) == 2
    plain, single = (shlex.split(c)[2:] for c in commands)  # drop "microref explain"... keep the model
    assert single == plain + ["--numerics", "single"]
    assert plain[plain.index("--at") + 1] == first.group(1).replace(" ", "")
    code, text, _ = run(capsys, "explain", *plain)
    assert code == 0 and text.strip().endswith(f"output value = {mine}")
    code, text, _ = run(capsys, "explain", *single)
    assert code == 0
    assert f"computes {theirs}; TFLM computes {mine} — they differ ({theirs - mine:+d} LSB)" in text


def test_text_lists_the_first_coordinates_per_op_with_both_values(capsys, single_rounding_runtime):
    _, out, _ = run(capsys, "compare", MOBILE, "--against", "litert")
    section = out.split("where they differ", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in section.splitlines()[1:] if line.startswith("  op ")]
    assert rows
    for line in rows:
        pairs = re.findall(r"\(([\d, ]+)\) (-?\d+)/(-?\d+)", line)
        assert 1 <= len(pairs) <= cmp.COORDS_SHOWN
        assert all(a != b for _, a, b in pairs)


# ----------------------------------------------------------------------------- the final outputs

def test_output_line_has_histogram_and_top1(capsys, single_rounding_runtime):
    it, xs = seeded(MOBILE)
    c = cmp.compare_runtime(it, MOBILE.read_bytes(), xs, "litert")
    s = c.outputs[0]
    other = Interpreter.from_file(MOBILE, numerics=Numerics(rounding="single"))
    theirs = other.run(xs)[0]
    mine = it.run(xs)[0]
    diff = np.abs(mine.astype(int) - theirs.astype(int))
    assert s.diff.histogram == {int(k): int((diff == k).sum()) for k in np.unique(diff[diff > 0])}
    rows_m, rows_t = mine.reshape(-1, mine.shape[-1]), theirs.reshape(-1, mine.shape[-1])
    assert s.top1_rows == rows_m.shape[0]
    assert s.top1_agree == int((rows_m.argmax(1) == rows_t.argmax(1)).sum())
    line = cmp.format_runtime_comparison(c).splitlines()[1]
    assert line.startswith('output 0 "Identity" [1, 3, 3, 4]: ')
    if s.diff.differing:
        assert f"{s.diff.differing}/36 differ" in line and "|difference| histogram: 1 LSB ×" in line
    assert "top-1 (argmax of the last axis)" in line


def test_top1_disagreement_is_named():
    t = type("T", (), {"index": 0, "name": "probs", "shape": (2, 4)})()
    mine = np.array([[0, 9, 1, 2], [5, 1, 1, 1]], np.int8)
    theirs = np.array([[0, 9, 1, 2], [5, 1, 7, 1]], np.int8)
    rows, agree, first = cmp._top1(mine, theirs)
    assert (rows, agree, first) == (2, 1, {"row": 1, "microref": 0, "other": 2})
    c = cmp.RuntimeComparison("tflm", [], False, [cmp.OutputSummary(0, "probs", cmp._diff(t, mine, theirs), rows,
                                                                     agree, first)])
    line = cmp.format_runtime_comparison(c).splitlines()[1]
    assert "1/8 differ, max 6 LSB; |difference| histogram: 6 LSB ×1" in line
    assert "top-1 (argmax of the last axis) DIFFERS in 1/2 rows (row 1: microref class 0, TFLM class 2)" in line


# ----------------------------------------------------------------------------- why, grouped

def _op(index, name, reproduced, differs=True):
    t = type("T", (), {"index": index, "name": f"t{index}", "shape": (4,)})()
    d = cmp._diff(t, np.array([0, 1, 2, 3], np.int8), np.array([0, 1, 2, 4 if differs else 3], np.int8))
    why = [{"variant": v, "differing": 0 if v in reproduced else 3, "reproduces": v in reproduced}
           for v, _ in cmp.NUMERICS_VARIANTS]
    return cmp.OpComparison(index, name, [d], [d], why=why)


def test_why_groups_identical_findings_and_says_each_variant_alone_reproduces():
    single = cmp.NUMERICS_VARIANTS[0][0]
    both = (single, cmp.NUMERICS_VARIANTS[2][0])
    ops = [_op(i, "CONV_2D", both) for i in range(0, 9)] + [_op(9, "DEPTHWISE_CONV_2D", both),
                                                            _op(10, "CONV_2D", both)]
    ops += [_op(11, "FULLY_CONNECTED", (single,)), _op(12, "SOFTMAX", ())]
    text = cmp.format_runtime_comparison(cmp.RuntimeComparison("litert", ops, False))
    why = text.split("and why:\n", 1)[1].splitlines()
    assert len(why) == 3  # 13 ops, three distinct findings
    assert why[0].startswith("  ops 0–10 (10 × CONV_2D, 1 × DEPTHWISE_CONV_2D): reproduced exactly by each of 2 "
                             "variants on its own")
    assert f"(1) {both[0]} | (2) {both[1]}" in why[0]
    assert why[1] == f"  op 11 (1 × FULLY_CONNECTED): reproduced exactly by {single}"
    assert why[2].startswith("  op 12 (1 × SOFTMAX): no numerics variant reproduces it")
    groups = cmp.runtime_comparison_to_json(cmp.RuntimeComparison("litert", ops, False))["why_groups"]
    assert [g["ops"] for g in groups] == [list(range(11)), [11], [12]]


def test_ranges_of_op_indices():
    assert cmp._ranges([0, 1, 2, 5, 7, 8]) == "0–2, 5, 7–8"
    assert cmp._ranges([4]) == "4"


def test_table_columns_stay_aligned_with_long_cells():
    t = type("T", (), {"index": 0, "name": "x", "shape": (1_000_000,)})()
    a = np.zeros(1_000_000, np.int32)
    b = a.copy()
    b[::2] = 123456
    long = cmp._diff(t, a, b)
    short = cmp._diff(t, a[:10], a[:10])
    ops = [cmp.OpComparison(0, "CONV_2D", [short], [short]),
           cmp.OpComparison(1, "TFLite_Detection_PostProcess", [long], [short]),
           cmp.OpComparison(123, "ADD", [long], None)]
    lines = cmp.format_runtime_comparison(cmp.RuntimeComparison("tflm", ops, False)).splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("op "))
    table = lines[start:start + 4]
    header = table[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [m.end() for m in re.finditer(r"\S+", header)]
    for row in table[1:]:
        body = row.split("  <-")[0]
        assert len(body) == len(header), table
        assert body[ends[0] - 1] != " "                                    # op index: right-aligned
        assert body[starts[1] - 1] == " " and body[starts[1]] != " "       # operator: left-aligned
        for e in ends[2:]:                                                 # chained, isolated: right-aligned
            assert body[e - 1] != " " and (e == len(body) or body[e] == " "), table
    assert "500000/1000000 differ, max 123456 LSB" in table[2]


# ----------------------------------------------------------------------------- compare --float

def test_float_inputs_default_to_the_quantized_range_and_say_so(capsys):
    q, f = Interpreter.from_file(INT8), Interpreter.from_file(FLOAT)
    t = q.tensors[q.subgraph.inputs[0]]
    lo = t.quantization.scale * (-128 - t.quantization.zero_point)
    hi = t.quantization.scale * (127 - t.quantization.zero_point)
    inputs = cmp.default_float_inputs(q, f, 5, seed=2)
    assert len(inputs.samples) == 5 and not inputs.warnings
    for s in inputs.samples:
        assert s[0].dtype == np.float32 and lo <= s[0].min() and s[0].max() <= hi
    code, out, _ = run(capsys, "compare", INT8, "--float", FLOAT, "--samples", "3", "--seed", "2")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("inputs: 3 seeded random samples (seed 2):")
    assert f"uniform over its quantized range [{lo:.4g}, {hi:.4g}]" in first and "--data" in first


def test_n_samples_aggregate_mean_min_and_worst_sample():
    q, f = Interpreter.from_file(INT8), Interpreter.from_file(FLOAT)
    samples = cmp.default_float_inputs(q, f, 4, seed=7).samples
    rows = cmp.compare_float_samples(q, f, samples)
    singles = [cmp.compare_float(q, f, s) for s in samples]
    for k, r in enumerate(rows):
        per = [s[k].snr_db for s in singles]
        assert r.samples == 4
        assert r.snr_db_mean == pytest.approx(np.mean(per), abs=1e-9)
        assert r.snr_db_min == pytest.approx(min(per), abs=1e-9)
        assert r.worst_sample == int(np.argmin(per))
        assert r.max_abs == pytest.approx(max(s[k].max_abs for s in singles))
    text = cmp.format_float_comparison(rows)
    header = text.splitlines()[0].split()
    assert header[header.index("SNR"):header.index("SNR") + 5] == ["SNR", "dB", "mean", "min", "worst"]


def test_data_with_n_samples_and_the_clipping_warning(capsys, tmp_path):
    real = np.load(PAIR / "data.npz")["image"]
    batch = np.concatenate([real, real * 0.5, real * 4])  # (3, 12, 12, 3): three samples in place of a batch of 1
    np.savez(tmp_path / "d.npz", image=batch)
    code, out, _ = run(capsys, "compare", INT8, "--float", FLOAT, "--data", tmp_path / "d.npz")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"inputs: 3 samples from {tmp_path / 'd.npz'}"
    warning = lines[1]
    q = Interpreter.from_file(INT8)
    t = q.tensors[q.subgraph.inputs[0]]
    lo = t.quantization.scale * (-128 - t.quantization.zero_point)
    hi = t.quantization.scale * (127 - t.quantization.zero_point)
    half = t.quantization.scale / 2
    outside = int(((batch < lo - half) | (batch > hi + half)).sum())
    assert outside > 0
    assert warning.startswith(f"warning: input 0: {outside} of {batch.size} values")
    assert "clipped by the int8 model" in warning
    # The real data alone: nothing clipped, no warning, and the pinned SNR of the softmax.
    code, out, _ = run(capsys, "compare", INT8, "--float", FLOAT, "--data", PAIR / "data.npz", "--json")
    report = json.loads(out)
    assert report["warnings"] == [] and report["samples"] == 1
    assert report["layers"][-1]["op_name"] == "SOFTMAX" and report["layers"][-1]["snr_db"] == pytest.approx(24.96,
                                                                                                         abs=0.01)


def test_real_range_inputs_measure_far_less_error_than_standard_normal_would():
    """The issue's complaint: standard-normal inputs on a model whose input spans a small range
    report an SNR far below what in-range data gives. In-range inputs are not clipped."""
    q, f = Interpreter.from_file(INT8), Interpreter.from_file(FLOAT)
    t = q.tensors[q.subgraph.inputs[0]]
    rng = np.random.default_rng(0)
    wide = [[(rng.standard_normal((1, 12, 12, 3)) * 20).astype(np.float32)] for _ in range(3)]
    assert cmp.clipping_warnings(q, wide)
    in_range = cmp.default_float_inputs(q, f, 3, 0)
    assert cmp.clipping_warnings(q, in_range.samples) == []
    assert t.quantization is not None


@pytest.mark.parametrize("first,second,fragment", [
    (INT8, INT8, "(given as --float) is an int8-quantized model, not a float one"),
    (FLOAT, FLOAT, "is a float model (no operator computes in int8/int16)"),
    (FLOAT, INT8, "the models are swapped"),
])
def test_int8_and_float_mix_ups_are_said_plainly(capsys, first, second, fragment):
    code, out, err = run(capsys, "compare", first, "--float", second)
    assert code == cli.EXIT_INPUT and out == ""
    assert fragment in err and "usage: microref compare INT8_MODEL --float FLOAT_MODEL" in err
    assert err.count("\n") == 1


def test_float_plot_is_written(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra")
    code, out, _ = run(capsys, "compare", INT8, "--float", FLOAT, "--samples", "2", "--plot", tmp_path / "snr.png")
    assert code == 0 and (tmp_path / "snr.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- run, plan

def test_run_says_the_inputs_were_random_and_the_seed(capsys, tmp_path):
    _, out, _ = run(capsys, "run", INT8, "--seed", "5")
    assert out.splitlines()[0].startswith("inputs: random, seed 5 ")
    np.save(tmp_path / "x.npy", np.zeros((1, 12, 12, 3), np.int8))
    _, out, _ = run(capsys, "run", INT8, "--input", tmp_path / "x.npy")
    assert "random" not in out and out.startswith("output ")


@pytest.mark.parametrize("argv,fragment", [
    (["--budget", "lots"], "'lots' is not a size"),
    (["--flash-budget", "-3"], "is not a size"),
    (["--optimize"], "--optimize needs -o/--output"),
])
def test_plan_usage_errors_exit_2_with_one_line(capsys, argv, fragment):
    code, out, err = run(capsys, "plan", INT8, *argv)
    assert code == cli.EXIT_USAGE and out == ""
    assert fragment in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- against the real LiteRT

def test_litert_mismatch_on_a_converted_model_is_single_rounding_end_to_end():
    """The README's walk-through: LiteRT differs from TFLM on net_mobile_block (converted by
    TFLiteConverter); the first differing element's explain under single rounding gives LiteRT's value."""
    pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is an optional extra")
    it, xs = seeded(MOBILE)
    c = cmp.compare_runtime(it, MOBILE.read_bytes(), xs, "litert")
    first = c.first_divergent
    assert first is not None and first.differs_in_isolation
    assert first.reproduced_by[0] == "single rounding (TFLITE_SINGLE_ROUNDING)"
    d = next(d for d in first.chained if not d.exact)
    at = d.coords(1)[0]
    plain = explain(it, first.op_index, at, xs)
    single = explain(it, first.op_index, at, xs, numerics="single")
    assert plain.value == d.mine[0] and single.value == d.theirs[0] != plain.value
    assert math.isfinite(float(single.value))
