"""`microref run --profile` and interp.tools.profile: per-operator times, MACs and rates."""
from pathlib import Path

import numpy as np

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.runtime.inputs import random_inputs
from interp.tools import cli
from interp.tools.profile import model_macs, op_macs, profile

ROOT = Path(__file__).resolve().parents[1]
INT8 = str(ROOT / "golden" / "float_pair" / "int8.tflite")


def _conv_fc_model() -> bytes:
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = b.input("x", [1, 6, 6, 3], "INT8", scale=0.05, zero_point=-3)
    w = b.constant("w", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=0.01, zero_point=0)
    y = b.tensor("y", [1, 6, 6, 4], "INT8", scale=0.1, zero_point=5)
    b.op("CONV_2D", [x, w, None], [y], padding="SAME", stride_w=1, stride_h=1)
    dw = b.constant("dw", rng.integers(-127, 128, (1, 3, 3, 4)).astype(np.int8), scale=0.01, zero_point=0)
    z = b.tensor("z", [1, 6, 6, 4], "INT8", scale=0.1, zero_point=5)
    b.op("DEPTHWISE_CONV_2D", [y, dw], [z], padding="SAME", stride_w=1, stride_h=1, depth_multiplier=1)
    fw = b.constant("fw", rng.integers(-127, 128, (5, 144)).astype(np.int8), scale=0.01, zero_point=0)
    o = b.tensor("o", [1, 5], "INT8", scale=0.1, zero_point=0)
    b.op("FULLY_CONNECTED", [z, fw, None], [o])
    b.output(o)
    return b.build()


def test_op_macs_counts_every_multiply_accumulate():
    it = Interpreter.from_bytes(_conv_fc_model())
    conv, depthwise, fc = it.subgraph.operators
    assert op_macs(it.tensors, conv) == 36 * 4 * 27  # output pixels x channels x 3*3*3 taps
    assert op_macs(it.tensors, depthwise) == 36 * 4 * 9
    assert op_macs(it.tensors, fc) == 5 * 144
    assert model_macs(it) == 36 * 4 * 27 + 36 * 4 * 9 + 5 * 144


def test_profile_times_every_operator_and_leaves_the_kernels_as_they_were():
    it = Interpreter.from_bytes(_conv_fc_model())
    xs = random_inputs(it, np.random.default_rng(1))
    before = it.run(xs)
    rows, total = profile(it, xs, batch=3, repeat=2)
    assert [r.name for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
    assert all(r.ms > 0 and r.batch == 3 for r in rows) and total > 0
    assert all("eval" not in vars(k) for k in it.kernels)  # the timing wrappers are gone
    np.testing.assert_array_equal(it.run(xs)[0], before[0])


def test_run_profile_prints_the_table(capsys):
    code = cli.main(["run", INT8, "--profile", "--batch", "2", "--repeat", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "profile (CPU time, one thread):" in out and "G MAC/s" in out and "by operator type:" in out
    assert "CONV_2D" in out and "raw:" in out
