"""microref eval and interp.scale.evaluate: the accuracy table against an independent loop over
TFLM's own interpreter (500 samples), byte-identical results from worker processes, LiteRT's LSB
histogram, the report, --json, --output, the progress bar, and bad data refused before work."""
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from interp import InputError, Interpreter
from interp.builder import ModelBuilder
from interp.scale import LiteRTRefused, evaluate
from interp.tools import cli
from interp.tools.eval import Progress

ROOT = Path(__file__).resolve().parents[1]
INT8 = ROOT / "golden" / "float_pair" / "int8.tflite"  # 10 classes, input (1, 12, 12, 3)
FLOAT = ROOT / "golden" / "float_pair" / "float.tflite"
PERSON = Path("/work/shared/models/person_detect.tflite")


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def real_data(n, seed=0):
    """Inputs drawn like the pair's calibration data (standard normal)."""
    return np.random.default_rng(seed).normal(0, 1, (n, 12, 12, 3)).astype(np.float32)


def labels_for(n, seed=1):
    return np.random.default_rng(seed).integers(0, 10, n)


# ----------------------------------------------------------------------------- against TFLM's loop

def tflm_quantize(real, details):
    """TFLM's QUANTIZE on each sample (a one-op model run by the wheel): real -> the input's int8."""
    from tflite_micro.python.tflite_micro import runtime
    b = ModelBuilder()
    scale, zp = details["quantization"]
    x = b.input("x", [1, 12, 12, 3], "FLOAT32")
    y = b.tensor("y", [1, 12, 12, 3], "INT8", scale=float(scale), zero_point=int(zp))
    b.op("QUANTIZE", [x], [y])
    b.output(y)
    ref = runtime.Interpreter.from_bytes(b.build())
    out = []
    for sample in real:
        ref.set_input(sample[None], 0)
        ref.invoke()
        out.append(ref.get_output(0).copy())
    return np.concatenate(out)


def tflm_outputs(model_path, inputs):
    from tflite_micro.python.tflite_micro import runtime
    ref = runtime.Interpreter.from_bytes(model_path.read_bytes())
    out = []
    for sample in inputs:
        ref.set_input(sample[None], 0)
        ref.invoke()
        out.append(ref.get_output(0).copy().reshape(-1))
    return np.stack(out)


def best_first(scores):
    """Class indices by score, best first, ties to the lower index — a plain loop."""
    return sorted(range(len(scores)), key=lambda c: (-float(scores[c]), c))


def test_accuracy_table_matches_an_independent_loop_over_tflm_on_500_samples():
    pytest.importorskip("tflite_micro", reason="the oracle is the tflite-micro wheel (Linux x86-64)")
    n = 500
    real, labels = real_data(n, seed=11), labels_for(n, seed=12)
    it = Interpreter.from_file(INT8)
    q = tflm_quantize(real, it.input_details[0])
    mine_q, mine_f = tflm_outputs(INT8, q), tflm_outputs(FLOAT, real)
    # The table, computed sample by sample from TFLM's outputs.
    top1 = top5 = ftop1 = ftop5 = agree = 0
    confusion = np.zeros((10, 10), np.int64)
    disagree = []
    for i in range(n):
        r, fr = best_first(mine_q[i]), best_first(mine_f[i])
        top1 += r[0] == labels[i]
        top5 += labels[i] in r[:5]
        ftop1 += fr[0] == labels[i]
        ftop5 += labels[i] in fr[:5]
        agree += r[0] == fr[0]
        if r[0] != fr[0]:
            disagree.append(i)
        confusion[labels[i], r[0]] += 1

    result = evaluate(INT8, real, labels=labels, float_model=FLOAT, workers=1, chunk_size=64)
    s = result.summary
    assert np.array_equal(result.outputs[0].reshape(n, -1), mine_q)  # every output byte is TFLM's
    assert (s["int8"]["correct_top1"], s["int8"]["correct_top5"]) == (top1, top5)
    assert (s["float"]["correct_top1"], s["float"]["correct_top5"]) == (ftop1, ftop5)
    assert s["float"]["top1_agreement"] == agree / n and s["float"]["disagreeing_samples"] == disagree
    assert s["confusion"]["matrix"] == confusion.tolist()
    assert s["predicted_per_class"] == confusion.sum(axis=0).tolist()
    recall = [confusion[c, c] / confusion[c].sum() for c in range(10)]
    assert [c["recall"] for c in s["confusion"]["per_class"]] == pytest.approx(recall)
    assert 0 < top1 < n and 0 < agree < n  # the data exercises the table (not all right, not all wrong)


# ----------------------------------------------------------------------------- engines

def test_worker_processes_give_the_same_bytes_in_order():
    real, labels = real_data(240, seed=3), labels_for(240, seed=4)
    one = evaluate(INT8, real, labels=labels, float_model=FLOAT, workers=1, chunk_size=240)
    two = evaluate(INT8, real, labels=labels, float_model=FLOAT, workers=2, chunk_size=17)
    assert two.workers == 2 and one.workers == 1
    assert one.outputs[0].tobytes() == two.outputs[0].tobytes()
    assert one.summary == two.summary


def test_generators_and_chunk_sizes_give_the_same_result():
    real, labels = real_data(50, seed=5), labels_for(50, seed=6)
    base = evaluate(INT8, real, labels=labels, workers=1)
    gen = evaluate(INT8, (real[i:i + 7] for i in range(0, 50, 7)), labels=labels, workers=1, chunk_size=3)
    assert gen.summary == base.summary and np.array_equal(gen.outputs[0], base.outputs[0])
    with pytest.raises(InputError, match="50 samples and 51 labels"):
        evaluate(INT8, iter([real]), labels=labels_for(51), workers=1)


def test_litert_lsb_histogram_and_top1_disagreement_match_litert_itself():
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (microref[litert])")
    real = real_data(120, seed=8)
    result = evaluate(INT8, real, against="litert", workers=1)
    lit = litert.Interpreter(model_path=str(INT8), num_threads=1)
    lit.allocate_tensors()
    d_in, d_out = lit.get_input_details()[0], lit.get_output_details()[0]
    mine = result.outputs[0]
    x = Interpreter.from_file(INT8)
    from interp import quantize
    q = quantize(real[:, None], x.input_details[0])
    theirs = []
    for i in range(len(q)):
        lit.set_tensor(d_in["index"], q[i])
        lit.invoke()
        theirs.append(lit.get_tensor(d_out["index"]).copy())
    theirs = np.stack(theirs)
    diff = np.abs(mine.astype(int) - theirs.astype(int)).ravel()
    lt = result.summary["litert"]
    hist = list(lt["outputs"].values())[0]["histogram"]
    assert [hist[str(i)] for i in range(8)] == [int(np.sum(diff == i)) for i in range(8)]
    assert hist[">=8"] == int(np.sum(diff >= 8))
    differ = [i for i in range(len(q)) if best_first(mine[i].ravel())[0] != best_first(theirs[i].ravel())[0]]
    assert lt["disagreeing_samples"] == differ


@pytest.mark.skipif(not PERSON.exists(), reason="needs /work/shared/models/person_detect.tflite")
def test_person_detect_streams_the_same_bytes_as_run_batch(tmp_path):
    x = np.random.default_rng(0).integers(-128, 128, (48, 96, 96, 1), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    result = evaluate(PERSON, tmp_path / "x.npy", workers=1, chunk_size=20)
    it = Interpreter.from_file(PERSON)
    assert np.array_equal(result.outputs[0], it.run_batch([x[:, None]])[0])
    assert result.summary["classes"] == 2 and result.chunk_size == 20
    pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (microref[litert])")
    with pytest.raises(LiteRTRefused, match="LiteRT cannot load the model"):  # TFLM runs it; LiteRT refuses it
        evaluate(PERSON, tmp_path / "x.npy", against="litert", workers=1)


# ----------------------------------------------------------------------------- the command

@pytest.fixture
def dataset(tmp_path):
    real = real_data(60, seed=9)
    np.save(tmp_path / "x.npy", real)
    np.save(tmp_path / "y.npy", labels_for(60, seed=10))
    return tmp_path


def test_eval_report(capsys, dataset):
    code, out, err = run(capsys, "eval", INT8, "--data", dataset / "x.npy", "--labels", dataset / "y.npy",
                         "--float", FLOAT, "--workers", "1")
    assert code == 0, err
    assert "60 samples, 10 classes" in out
    assert "int8 (TFLM)" in out and "top-5" in out and "float" in out
    assert "int8 vs float: the same top-1 on" in out
    assert "per class (label: samples, recall, most often predicted as):" in out
    assert err == ""  # no progress bar: stderr is not a terminal


def test_eval_json_and_output(capsys, dataset):
    preds = dataset / "preds.npz"
    code, out, err = run(capsys, "eval", INT8, "--data", dataset / "x.npy", "--labels", dataset / "y.npy",
                         "--json", "--quiet", "--output", preds, "--batch-size", "16", "--workers", "1")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["samples"] == 60 and payload["classes"] == 10 and payload["top_k"] == 5
    assert set(payload["int8"]) == {"top1", "top5", "correct_top1", "correct_top5"}
    assert payload["run"]["chunk_size"] == 16 and payload["run"]["engine"] == "local"
    assert len(payload["confusion"]["matrix"]) == 10
    with np.load(preds) as z:
        assert z.files == ["StatefulPartitionedCall_1:0"] and z["StatefulPartitionedCall_1:0"].shape == (60, 1, 10)
    code, _, err = run(capsys, "eval", INT8, "--data", dataset / "x.npy", "--output", preds)
    assert code == cli.EXIT_USAGE and "exists; pass --force" in err


def test_eval_output_holds_tflm_bytes(capsys, tmp_path):
    q = np.random.default_rng(2).integers(-128, 128, (30, 1, 12, 12, 3), dtype=np.int8)
    np.save(tmp_path / "q.npy", q)
    code, _, err = run(capsys, "eval", INT8, "--data", tmp_path / "q.npy", "--output", tmp_path / "p",
                       "--workers", "1")
    assert code == 0, err
    with np.load(tmp_path / "p.npz") as z:
        assert np.array_equal(z["StatefulPartitionedCall_1:0"], Interpreter.from_file(INT8).run_batch([q])[0])


@pytest.mark.parametrize("extra, code, message", [
    (["--labels", "short.npy"], cli.EXIT_INPUT, "labels file .*: 59 labels for 60 samples"),
    (["--labels", "big.npy"], cli.EXIT_INPUT, "label 10 of sample 3 is not a class of the model"),
    (["--address", "127.0.0.1:1"], cli.EXIT_USAGE, "--address is for --engine ray"),
    (["--float", str(ROOT / "golden" / "models" / "does_not_exist.tflite")], cli.EXIT_MODEL, "ModelError"),
])
def test_eval_mistakes_are_one_line_before_any_work(capsys, dataset, extra, code, message):
    np.save(dataset / "short.npy", labels_for(59))
    big = labels_for(60)
    big[3] = 10
    np.save(dataset / "big.npy", big)
    extra = [str(dataset / e) if e.endswith(".npy") else e for e in extra]
    got, out, err = run(capsys, "eval", INT8, "--data", dataset / "x.npy", "--output", dataset / "never.npz", *extra)
    assert got == code and out == ""
    assert err.count("\n") == 1
    assert re.search(message, err), err
    assert not (dataset / "never.npz").exists()


def test_eval_of_an_image_folder_names_the_classes(capsys, tmp_path):
    PIL = pytest.importorskip("PIL.Image", reason="image folders need Pillow (pip install 'microref[images]')")
    rng = np.random.default_rng(4)
    for cls in ("apple", "banana"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            PIL.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    code, out, err = run(capsys, "eval", INT8, "--data", tmp_path, "--workers", "1", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["class_names"] == ["apple", "banana"] and payload["samples"] == 6
    assert payload["int8"]["correct_top1"] == sum(c["correct"] for c in payload["confusion"]["per_class"])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_rate_on_a_terminal_only():
    stream = _Terminal()
    with Progress("eval", stream=stream, mininterval=0) as bar:
        for done in (10, 40, 100):
            bar(done, 100)
    text = stream.getvalue()
    assert "eval" in text and "100/100" in text and "sample" in text
    quiet, plain = _Terminal(), io.StringIO()
    for stream, kwargs in ((quiet, {"quiet": True}), (plain, {})):
        with Progress("eval", stream=stream, **kwargs) as bar:
            bar(5, 10)
        assert stream.getvalue() == ""


def test_compare_float_data_refuses_nan_and_non_numbers_naming_the_sample(capsys, tmp_path):
    """compare --float --data over N samples: NaN or infinity names the first sample holding it, and
    an array of strings is refused, before either model runs (exit 6, one line)."""
    x = real_data(6, seed=13)
    x[4, 0, 0, 0] = np.inf
    x[5, 1, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    np.savez(tmp_path / "text.npz", x=np.full((3, 12, 12, 3), "a"))
    for name, message in (("nan.npz", 'sample 4 of "x" (input 0) holds NaN or infinity (2 samples do)'),
                          ("text.npz", '"x" holds <U1 values; input 0 takes real numbers')):
        code, out, err = run(capsys, "compare", INT8, "--float", FLOAT, "--data", tmp_path / name)
        assert code == cli.EXIT_INPUT and out == "" and err.count("\n") == 1 and message in err, err
