"""The debugging tools: per-layer float comparison, runtime comparison with its 'why', explain."""
import math
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter
from interp.tools import compare as cmp
from interp.tools.explain import explain
from ops.registry import Numerics

PAIR = Path(__file__).resolve().parents[1] / "golden" / "float_pair"
runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro is not installed")


def tflm_tensors(path, inputs):
    it = Interpreter.from_file(path)
    return it, cmp.tflm_all_tensors(open(path, "rb").read(), inputs, it.tensors)


def test_float_comparison_metrics_match_independent_computation_from_tflm_tensors():
    real = np.load(PAIR / "data.npz")["image"]
    int8_it = Interpreter.from_file(PAIR / "int8.tflite")
    float_it = Interpreter.from_file(PAIR / "float.tflite")
    rows = cmp.compare_float(int8_it, float_it, [real])
    assert [r.op_name for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "RESHAPE", "FULLY_CONNECTED",
                                         "SOFTMAX"]
    # Independent: TFLM runs both models; metrics computed here from its tensors.
    t_in = int8_it.tensors[int8_it.subgraph.inputs[0]]
    q = np.clip(np.round(real / t_in.quantization.scale) + t_in.quantization.zero_point, -128, 127).astype(np.int8)
    _, q_vals = tflm_tensors(str(PAIR / "int8.tflite"), [q])
    _, f_vals = tflm_tensors(str(PAIR / "float.tflite"), [real])
    f_by_name = {float_it.tensors[i].name: v for i, v in f_vals.items()}
    for r in rows:
        t = next(t for t in int8_it.tensors if t.name == r.tensor)
        deq = t.quantization.scale * (q_vals[t.index].astype(np.float64) - t.quantization.zero_point)
        ref = f_by_name[r.float_tensor].astype(np.float64)
        err = deq.ravel() - ref.ravel()
        assert r.rmse == pytest.approx(math.sqrt(np.mean(err ** 2)), rel=1e-4)
        assert r.max_abs == pytest.approx(np.abs(err).max(), rel=1e-4)
        snr = 10 * math.log10(np.sum(ref ** 2) / np.sum(err ** 2))
        assert r.snr_db == pytest.approx(snr, abs=1e-3)
    # The pinned known case: softmax loses the most on this pair.
    worst = min(rows, key=lambda r: r.snr_db)
    assert worst.op_name == "SOFTMAX"
    assert worst.snr_db == pytest.approx(24.96, abs=0.01)
    assert rows[0].cosine == pytest.approx(0.999928, abs=1e-6)


def test_compare_with_tflm_finds_no_divergence_on_a_conforming_model():
    it = Interpreter.from_file(PAIR / "int8.tflite")
    x = np.random.default_rng(3).integers(-128, 128, (1, 12, 12, 3)).astype(np.int8)
    c = cmp.compare_runtime(it, (PAIR / "int8.tflite").read_bytes(), [x], "tflm")
    assert c.outputs_exact and c.first_divergent is None
    assert all(o.isolated is not None and not o.differs_in_isolation for o in c.ops)


def test_why_names_the_numerics_variant_that_reproduces_another_runtime():
    # Pretend another runtime was built with single rounding: its tensors are microref's under that variant.
    path = PAIR / "int8.tflite"
    x = np.random.default_rng(4).integers(-128, 128, (1, 12, 12, 3)).astype(np.int8)
    other = Interpreter.from_file(path, numerics=Numerics(rounding="single"))
    other.run([x], keep=True)
    theirs = dict(other._kept)
    it = Interpreter.from_file(path)
    differing_ops = []
    for op in it.subgraph.operators:
        results = cmp.explain_difference(it, op, theirs)
        base = [r for r in results if r["variant"].startswith("single rounding (")]
        assert base and base[0]["reproduces"], f"op {op.index}: {results}"
        it.run([x], keep=True)
        if any(not np.array_equal(it._kept[t], theirs[t]) for t in op.outputs):
            differing_ops.append(op.index)
    assert differing_ops, "single rounding should change at least one op's output on this model"


def _hand_quantize_multiplier(real):
    mant, exp = math.frexp(real)
    m = math.floor(mant * 2 ** 31 + 0.5)
    if m == 2 ** 31:
        m, exp = m // 2, exp + 1
    return m, exp


def _hand_srdhm(a, b):
    p = a * b
    p += 2 ** 30 if p >= 0 else 1 - 2 ** 30
    q = abs(p) // 2 ** 31  # C division truncates toward zero
    return q if p >= 0 else -q


def _hand_rdbpot(x, e):
    if e == 0:
        return x
    q, r = divmod(abs(x), 2 ** e)
    q += 1 if 2 * r >= 2 ** e else 0
    return q if x >= 0 else -q


def test_explain_conv_element_matches_hand_computed_arithmetic():
    path = PAIR / "int8.tflite"
    it = Interpreter.from_file(path)
    x = np.random.default_rng(5).integers(-128, 128, (1, 12, 12, 3)).astype(np.int8)
    op = it.subgraph.operators[0]
    assert op.op_name == "CONV_2D"
    coords = (0, 0, 7, 5)  # top edge: SAME padding skips the row above the image
    e = explain(it, 0, coords, [x])
    t_in, t_w, t_b, t_out = (it.tensors[i] for i in (*op.inputs, op.outputs[0]))
    zp_in = t_in.quantization.zero_point
    w = t_w.data.astype(int)
    acc = 0
    for ky in range(3):
        for kx in range(3):
            iy, ix = -1 + ky, 7 - 1 + kx
            if 0 <= iy < 12 and 0 <= ix < 12:
                for c in range(3):
                    acc += int(w[5, ky, kx, c]) * (int(x[0, iy, ix, c]) - zp_in)
    total = acc + int(t_b.data[5])
    real = float(t_in.quantization.scale) * float(t_w.quantization.scales[5]) / float(t_out.quantization.scale)
    m, shift = _hand_quantize_multiplier(real)
    assert shift <= 0
    scaled = _hand_rdbpot(_hand_srdhm(total, m), -shift)
    out = min(max(scaled + t_out.quantization.zero_point, t_out.quantization.zero_point), 127)  # fused RELU
    assert e.values["accumulator"] == acc
    assert e.values["acc_plus_bias"] == total
    assert (e.values["multiplier"], e.values["shift"]) == (m, shift)
    assert e.values["rdbpot"] == scaled
    assert e.values["output"] == out == e.value
    assert e.values["matches_kernel"]
    assert "out-of-image taps are skipped" in e.text and "(3 filter positions fall outside" in e.text
    # And TFLM agrees on that element.
    _, vals = tflm_tensors(str(path), [x])
    assert vals[op.outputs[0]][coords] == out


SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"


@pytest.mark.skipif(not (SHARED / "kws_ref_model.tflite").exists(), reason="../shared/models is absent")
def test_compare_against_litert_names_first_divergent_op_and_single_rounding_as_why():
    pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is an optional extra")
    path = SHARED / "kws_ref_model.tflite"
    it = Interpreter.from_file(path)
    x = np.random.default_rng(0).integers(-128, 128, (1, 49, 10, 1)).astype(np.int8)
    c = cmp.compare_runtime(it, path.read_bytes(), [x], "litert")
    first = c.first_divergent
    assert first is not None and first.op_name == "CONV_2D" and first.op_index == 0
    assert first.differs_in_isolation
    assert any(w.get("reproduces") and w["variant"].startswith("single rounding") for w in first.why)
    text = cmp.format_runtime_comparison(c)
    assert "<- first divergent op" in text and "reproduced exactly by each of 2 variants on its own" in text
    assert "(1) single rounding (TFLITE_SINGLE_ROUNDING) | (2) single rounding + float32 scales" in text


@pytest.mark.skipif(not (SHARED / "person_detect.tflite").exists(), reason="../shared/models is absent")
def test_litert_refusing_a_model_is_a_one_line_error():
    pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is an optional extra")
    from interp import MicrorefError
    path = SHARED / "person_detect.tflite"
    it = Interpreter.from_file(path)
    x = np.zeros((1, 96, 96, 1), np.int8)
    with pytest.raises(MicrorefError, match="LiteRT could not run the model") as e:
        cmp.compare_runtime(it, path.read_bytes(), [x], "litert")
    assert "\n" not in str(e.value) and len(str(e.value)) < 320
