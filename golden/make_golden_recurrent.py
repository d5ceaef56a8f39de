#!/usr/bin/env python3
"""Build microref's recurrent golden data: TF-converted stateful and control-flow models, and
what TFLM computes for them call after call.

Run from the project root with the generator environment (TensorFlow 2.21, tf-keras, the TFLM
wheel: the project's `golden` extra):

    .venv/bin/python golden/make_golden_recurrent.py            # rebuild everything
    .venv/bin/python golden/make_golden_recurrent.py -k lstm    # rebuild the cases whose name contains 'lstm'
    .venv/bin/python golden/make_golden_recurrent.py --list     # list the case names
    python golden/make_golden_recurrent.py --verify             # re-run stored models in TFLM, compare (no TF needed)

Each case is a Keras 2 (tf-keras) LSTM model, or a tf.Module / tf.function with a tf.Variable,
tf.cond or tf.while_loop, converted with tf.lite.TFLiteConverter. Its inputs are a stream of
CALLS calls; TFLM runs them on one interpreter, consecutively, with MicroInterpreter::Reset()
before call RESET_AT (the "stream" outputs); and each call again on a freshly loaded
interpreter (the "fresh" outputs, what a model's first call gives). Files, in golden/recurrent/:

    models/<case>.tflite
    cases/<case>.npz    input_{i}, output_{j} (stream), fresh_output_{j}, reset_at, arena_head
    manifest.json

Each case is built in a child process: the converter crashes (SIGSEGV) on some recurrent
models, and such a case is skipped with the reason instead of ending the run.

Expected values come from TFLM only; this script never imports microref's `interp` / `ops`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_golden import (  # noqa: E402  (shared helpers: npz writing, flatbuffer reading, TFLM's head)
    ARENA_SIZE,
    TFLM_VERSION,
    SkipCase,
    case_seed,
    model_info,
    quiet_fds,
    save_npz,
    tflm_arena_head,
)

OUT = os.path.join(HERE, "recurrent")
MODELS_DIR = os.path.join(OUT, "models")
CASES_DIR = os.path.join(OUT, "cases")
MANIFEST = os.path.join(OUT, "manifest.json")

CALLS = 12      # calls per stream
RESET_AT = 8    # MicroInterpreter::Reset() before this call
REP_SAMPLES = 64

tf = None
tf_keras = None


def _import_tf():
    global tf, tf_keras
    if tf is None:
        import absl.logging
        import tensorflow as _tf
        import tf_keras as _tf_keras
        absl.logging.set_verbosity(absl.logging.ERROR)
        _tf.get_logger().setLevel("ERROR")
        tf, tf_keras = _tf, _tf_keras
    return tf


# --------------------------------------------------------------------------- case definitions
CASES: list[dict] = []


def case(name, description, shape, build, expect, *, mode="int8", stateful=True, ranges=(-1.0, 1.0)):
    """Register a case.

    shape     the input's shape (batch included).
    build     rng -> ("keras", tf_keras.Model) or ("module", tf.Module with a tf.function
              ``__call__``) or ("function", tf.function), with one float32 input.
    expect    builtin ops the converted model must contain (else the case is skipped).
    mode      'int8' (full-integer quantization, int8 input/output), '16x8' (int16 activations),
              'float' (no quantization).
    stateful  the outputs must depend on earlier calls (checked on TFLM's outputs).
    """
    assert not any(c["name"] == name for c in CASES), name
    CASES.append(dict(name=name, description=description, shape=tuple(shape), build=build,
                      expect=set(expect), mode=mode, stateful=stateful, ranges=ranges))


def keras_rnn(layers, shape, dense=None):
    """A tf-keras (Keras 2) model: the given stack of (kind, units, return_sequences) layers,
    optionally a Dense head, with every weight drawn from the case's rng (nonzero biases)."""
    def build(rng):
        kinds = {"lstm": tf_keras.layers.LSTM, "gru": tf_keras.layers.GRU, "rnn": tf_keras.layers.SimpleRNN}
        inp = tf_keras.Input(shape[1:], batch_size=shape[0])
        h = inp
        for kind, units, seq in layers:
            h = kinds[kind](units, return_sequences=seq)(h)
        if dense:
            h = tf_keras.layers.Dense(dense)(h)
        model = tf_keras.Model(inp, h)
        weights = []
        for w in model.get_weights():
            fan_in = w.shape[0] if w.ndim > 1 else 4
            weights.append(rng.normal(0.0, 1.0 / np.sqrt(fan_in), w.shape).astype(np.float32))
        model.set_weights(weights)
        return "keras", model
    return build


def accumulator(rng):
    """A tf.Variable (initialised to nonzero values by a CALL_ONCE subgraph) updated each call:
    v = 0.5 v + x W; the output is the new v."""
    n = 4
    w = tf.constant(rng.normal(0, 0.5, (n, n)).astype(np.float32))
    init = rng.uniform(-0.5, 0.5, (1, n)).astype(np.float32)

    class Accumulator(tf.Module):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable(init)

        @tf.function(input_signature=[tf.TensorSpec((1, n), tf.float32)])
        def __call__(self, x):
            self.v.assign(self.v * 0.5 + tf.matmul(x, w))
            return self.v.read_value()
    return "module", Accumulator()


def cond_model(rng):
    """tf.cond on the sign of sum(x): x W + b, or 2x - 1."""
    w = tf.constant(rng.normal(0, 0.5, (4, 4)).astype(np.float32))
    b = tf.constant(rng.normal(0, 0.2, (1, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    def f(x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: tf.matmul(x, w) + b, lambda: x * 2.0 - 1.0)
    return "function", f


def while_model(rng):
    """tf.while_loop with a data-dependent trip count min(1.5 sum|x|, 5) (0..5): y = 0.75 y + c."""
    c = tf.constant(rng.normal(0, 0.3, (1, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    def f(x):
        n = tf.cast(tf.minimum(tf.reduce_sum(tf.abs(x)) * 1.5, 5.0), tf.int32)
        _, y = tf.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, y * 0.75 + c), (tf.constant(0), x))
        return y
    return "function", f


def cond_variable(rng):
    """A tf.Variable updated in one of two tf.cond branches: v += x (sum(x) > 0, output v) or
    v *= 0.5 (output v - x)."""
    init = rng.uniform(-0.5, 0.5, (1, 4)).astype(np.float32)

    class CondVariable(tf.Module):
        def __init__(self):
            super().__init__()
            self.v = tf.Variable(init)

        @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
        def __call__(self, x):
            def up():
                self.v.assign(self.v + x)
                return self.v.read_value()

            def down():
                self.v.assign(self.v * 0.5)
                return self.v.read_value() - x
            return tf.cond(tf.reduce_sum(x) > 0, up, down)
    return "module", CondVariable()


LSTM = ["UNIDIRECTIONAL_SEQUENCE_LSTM"]
for nm, shape, layers, dense, mode, desc in [
    ("lstm_seq_int8", (1, 5, 4), [("lstm", 8, True)], None, "int8",
     "one LSTM(8), return_sequences: every step's hidden state"),
    ("lstm_last_int8", (1, 5, 4), [("lstm", 8, False)], None, "int8",
     "one LSTM(8), last step only (STRIDED_SLICE after the fused op)"),
    ("lstm_stacked_seq_int8", (1, 6, 3), [("lstm", 8, True), ("lstm", 5, True)], None, "int8",
     "two stacked LSTMs (8, 5), both return_sequences"),
    ("lstm_stacked_last_int8", (1, 6, 3), [("lstm", 8, True), ("lstm", 5, False)], 3, "int8",
     "two stacked LSTMs (8, 5), the second returning its last step, then Dense(3)"),
    ("lstm_batch2_seq_int8", (2, 4, 3), [("lstm", 6, True)], None, "int8",
     "LSTM(6) over a batch of 2 sequences (each batch row its own state)"),
    ("lstm_seq_float", (1, 5, 4), [("lstm", 8, True)], None, "float",
     "one LSTM(8), return_sequences, float32 (no quantization)"),
    ("lstm_stacked_last_float", (1, 6, 3), [("lstm", 8, True), ("lstm", 5, False)], None, "float",
     "two stacked LSTMs (8, 5), last step, float32"),
    ("lstm_seq_16x8", (1, 5, 4), [("lstm", 8, True)], None, "16x8",
     "one LSTM(8), int16 activations with int8 weights (16x8)"),
    ("gru_seq_int8", (1, 5, 4), [("gru", 6, True)], None, "int8",
     "GRU(6), return_sequences: unfused, a WHILE loop"),
]:
    case(nm, desc, shape, keras_rnn(layers, shape, dense), LSTM if layers[0][0] == "lstm" else ["WHILE"], mode=mode)

VARIABLES = ["VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"]
for mode in ("int8", "float"):
    case(f"variable_accumulator_{mode}", "tf.Variable (nonzero initial value, set by CALL_ONCE) updated "
         "each call: v = 0.5 v + x W", (1, 4), accumulator, VARIABLES, mode=mode)
    case(f"cond_{mode}", "tf.cond on sum(x) > 0 kept as IF: x W + b or 2x - 1 (no state)", (1, 4), cond_model,
         ["IF"], mode=mode, stateful=False)
    case(f"while_{mode}", "tf.while_loop kept as WHILE, trip count min(1.5 sum|x|, 5) from the input (no state)",
         (1, 4), while_model, ["WHILE"], mode=mode, stateful=False)
    case(f"cond_variable_{mode}", "a tf.Variable assigned in the branches of a tf.cond (IF with resource "
         "variables)", (1, 4), cond_variable, VARIABLES + ["IF"], mode=mode)


# --------------------------------------------------------------------------- conversion
def convert(c: dict, rng) -> tuple[bytes, str]:
    """The converted model, and how it was written ("keras", "module" or "function")."""
    _import_tf()
    kind, obj = c["build"](rng)
    if kind == "keras":
        converter = tf.lite.TFLiteConverter.from_keras_model(obj)
    elif kind == "module":
        converter = tf.lite.TFLiteConverter.from_concrete_functions([obj.__call__.get_concrete_function()], obj)
        converter.experimental_enable_resource_variables = True
    else:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([obj.get_concrete_function()])
    if c["mode"] != "float":
        rep_rng = np.random.default_rng(case_seed(c["name"]) + 1)
        lo, hi = c["ranges"]
        rep = [[rep_rng.uniform(lo, hi, c["shape"]).astype(np.float32)] for _ in range(REP_SAMPLES)]
        rep += [[np.full(c["shape"], lo, np.float32)], [np.full(c["shape"], hi, np.float32)]]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(rep)
        if c["mode"] == "16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = tf.int16
            converter.inference_output_type = tf.int16
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with quiet_fds():
        return converter.convert(), kind


# --------------------------------------------------------------------------- TFLM
def _runtime():
    from tflite_micro.python.tflite_micro import runtime
    return runtime


def _invoke(it, xs, n_out):
    for i, x in enumerate(xs):
        it.set_input(np.ascontiguousarray(x), i)
    it.invoke()
    return [np.array(it.get_output(j), copy=True) for j in range(n_out)]


def tflm_stream(path: str, inputs: list[np.ndarray], n_out: int, reset_at: int):
    """(stream outputs, fresh outputs), each a list of (S,) + shape arrays: the calls on one
    interpreter with Reset() before call reset_at; and each call on a newly loaded interpreter."""
    runtime = _runtime()
    n = inputs[0].shape[0]
    it = runtime.Interpreter.from_file(path, arena_size=ARENA_SIZE)
    stream = []
    for s in range(n):
        if s == reset_at:
            it.reset()
        stream.append(_invoke(it, [x[s] for x in inputs], n_out))
    fresh = [_invoke(runtime.Interpreter.from_file(path, arena_size=ARENA_SIZE), [x[s] for x in inputs], n_out)
             for s in range(n)]
    stack = lambda rows: [np.stack([r[j] for r in rows]) for j in range(n_out)]  # noqa: E731
    return stack(stream), stack(fresh)


def make_inputs(c: dict, details: list[dict], rng) -> list[np.ndarray]:
    """CALLS calls: real values uniform over the calibrated range, quantized with the input's
    parameters (integer inputs), except call 3 (every element at the type's maximum), call 6
    (uniform over the whole type range) and call 10 (every element at the minimum); float inputs
    normal draws, call 6 four times wider."""
    xs = []
    lo, hi = c["ranges"]
    for d in details:
        dt = np.dtype(d["dtype"])
        shape = tuple(int(v) for v in d["shape"])
        real = rng.uniform(lo, hi, (CALLS,) + shape)
        if dt.kind == "f":
            real[6] *= 4
            xs.append(real.astype(dt))
            continue
        qp = d["quantization_parameters"]
        scale, zp = float(qp["scales"][0]), int(qp["zero_points"][0])
        info = np.iinfo(dt)
        q = np.clip(np.round(real / scale) + zp, info.min, info.max)
        q[3] = info.max
        q[6] = rng.integers(info.min, info.max, shape, endpoint=True)
        q[10] = info.min
        xs.append(q.astype(dt))
    return xs


def build_case(c: dict) -> dict:
    name = c["name"]
    seed = case_seed(name)
    _import_tf()
    tf_keras.utils.set_random_seed(seed % (2 ** 31))
    model, kind = convert(c, np.random.default_rng(seed))
    info = model_info(model)
    missing = c["expect"] - set(info["ops"])
    if missing:
        raise SkipCase(f"converter produced {info['ops']}, missing {sorted(missing)}")
    model_path = os.path.join(MODELS_DIR, name + ".tflite")
    with open(model_path, "wb") as f:
        f.write(model)
    try:
        it = _runtime().Interpreter.from_file(model_path, arena_size=ARENA_SIZE)
        details = [it.get_input_details(i) for i in range(info["n_inputs"])]
        xs = make_inputs(c, details, np.random.default_rng(seed + 2))
        stream, fresh = tflm_stream(model_path, xs, info["n_outputs"], RESET_AT)
        head = tflm_arena_head(model_path)
    except Exception as e:
        os.remove(model_path)
        raise SkipCase(f"TFLM cannot run the model: {type(e).__name__}: {e}") from None
    depends = any(not np.array_equal(a, b) for a, b in zip(stream, fresh))
    if c["stateful"] and not depends:
        os.remove(model_path)
        raise SkipCase("TFLM's outputs do not depend on earlier calls: the case would not test any state")
    call_once = "CALL_ONCE" in info["ops"]
    arrays = {f"input_{i}": x for i, x in enumerate(xs)}
    arrays.update({f"output_{j}": y for j, y in enumerate(stream)})
    arrays.update({f"fresh_output_{j}": y for j, y in enumerate(fresh)})
    arrays["reset_at"] = np.int64(RESET_AT)
    arrays["arena_head"] = np.int64(head)
    save_npz(os.path.join(CASES_DIR, name + ".npz"), arrays)
    return {
        "case": name,
        "ops": info["ops"],
        "description": c["description"],
        "tflm_version": TFLM_VERSION,
        "tf_version": tf.__version__,
        "keras": f"tf-keras {tf_keras.__version__}" if kind == "keras" else None,
        "quantization": c["mode"],
        "per_channel": info["per_channel"],
        "model": f"models/{name}.tflite",
        "data": f"cases/{name}.npz",
        "samples": CALLS,
        "reset_at": RESET_AT,
        "stateful": bool(depends),
        "call_once": call_once,
        "inputs": [{"shape": list(x.shape[1:]), "dtype": str(x.dtype)} for x in xs],
        "outputs": [{"shape": list(y.shape[1:]), "dtype": str(y.dtype)} for y in stream],
        "arena_head": head,
    }


def build_in_child(c: dict) -> dict:
    """build_case in a child process (the converter can crash); its manifest entry, or SkipCase."""
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "entry.json")
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", c["name"], result],
                              capture_output=True, text=True)
        if proc.returncode < 0:
            raise SkipCase(f"the converter crashed (signal {-proc.returncode}, "
                           f"{'SIGSEGV' if proc.returncode == -11 else 'killed'})")
        if not os.path.exists(result):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SkipCase(f"the build failed (exit {proc.returncode}): {tail[0][:300]}")
        with open(result) as f:
            out = json.load(f)
    if "skip" in out:
        raise SkipCase(out["skip"])
    return out["entry"]


def one(name: str, result_path: str) -> int:
    c = next(c for c in CASES if c["name"] == name)
    try:
        out = {"entry": build_case(c)}
    except SkipCase as e:
        out = {"skip": str(e)}
    except Exception as e:  # noqa: BLE001 - a converter refusal is a reason to skip the case
        text = str(e).strip()
        out = {"skip": f"converter failed: {type(e).__name__}: {text.splitlines()[-1][:300] if text else ''}"}
    with open(result_path, "w") as f:
        json.dump(out, f)
    return 0


# --------------------------------------------------------------------------- verify
def verify() -> int:
    """Re-run every stored model in TFLM on the stored inputs; compare with the stored outputs."""
    with open(MANIFEST) as f:
        manifest = json.load(f)
    bad = 0
    for entry in manifest:
        path = os.path.join(OUT, entry["model"])
        data = np.load(os.path.join(OUT, entry["data"]))
        xs = [data[f"input_{i}"] for i in range(len(entry["inputs"]))]
        n_out = len(entry["outputs"])
        stream, fresh = tflm_stream(path, xs, n_out, int(data["reset_at"]))
        ok = all(np.array_equal(stream[j], data[f"output_{j}"]) and np.array_equal(fresh[j], data[f"fresh_output_{j}"])
                 for j in range(n_out))
        ok = ok and tflm_arena_head(path) == int(data["arena_head"])
        if not ok:
            bad += 1
            print(f"MISMATCH {entry['case']}")
    print(f"verify: {len(manifest) - bad}/{len(manifest)} cases reproduce with TFLM")
    return 1 if bad else 0


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", dest="pattern", help="only (re)build cases whose name contains this substring")
    ap.add_argument("--list", action="store_true", help="list the case names and exit")
    ap.add_argument("--verify", action="store_true", help="re-run stored models in TFLM and compare")
    ap.add_argument("--one", nargs=2, metavar=("CASE", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return one(*args.one)
    if args.list:
        for c in CASES:
            print(c["name"])
        return 0
    if args.verify:
        return verify()

    os.makedirs(MODELS_DIR, exist_ok=True)
    os.makedirs(CASES_DIR, exist_ok=True)
    selected = [c for c in CASES if not args.pattern or args.pattern in c["name"]]
    previous = {}
    if args.pattern and os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            previous = {e["case"]: e for e in json.load(f)}
    t0 = time.perf_counter()
    built, skipped = {}, []
    for c in selected:
        t = time.perf_counter()
        try:
            entry = build_in_child(c)
        except SkipCase as e:
            skipped.append((c["name"], str(e)))
            print(f"SKIP  {c['name']}: {e}", flush=True)
            continue
        built[c["name"]] = entry
        print(f"ok    {c['name']:28s} {','.join(entry['ops']):70s} head={entry['arena_head']:6d} "
              f"[{time.perf_counter() - t:.1f}s]", flush=True)

    manifest = []
    for c in CASES:
        if c["name"] in built:
            manifest.append(built[c["name"]])
        elif args.pattern and c["name"] in previous and c not in selected:
            manifest.append(previous[c["name"]])
    if not args.pattern:  # drop stale files of cases that no longer exist or were skipped
        keep = {e["case"] for e in manifest}
        for d, ext in ((MODELS_DIR, ".tflite"), (CASES_DIR, ".npz")):
            for fn in os.listdir(d):
                if fn.endswith(ext) and fn[: -len(ext)] not in keep:
                    os.remove(os.path.join(d, fn))
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"\n{len(built)} cases built, {len(skipped)} skipped, {len(manifest)} in the manifest, "
          f"{time.perf_counter() - t0:.1f}s")
    for name, why in skipped:
        print(f"  skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
