"""interp.compat.Interpreter against LiteRT (ai_edge_litert): the same tf.lite snippets run on
both, line by line — results, dtypes, shapes, details and the kinds of errors raised — and the
outputs compared with TFLM's, bit for bit (LiteRT's own kernels may differ by an LSB)."""
from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from compat_support import (
    SHARED,
    Transcript,
    compare_transcripts,
    conv_model,
    tflm_outputs,
    two_input_model,
)

import interp
from interp import compat


def litert_interpreter():
    mod = pytest.importorskip("ai_edge_litert.interpreter",
                              reason="LiteRT (pip install 'microref[litert]') is not installed")
    return mod.Interpreter


def both(snippet, model: bytes, *args):
    """(LiteRT's transcript, compat's transcript) of ``snippet`` on ``model``; LiteRT's is None
    where LiteRT is not installed (the outputs are still checked against TFLM's)."""
    try:
        theirs_cls = litert_interpreter()
    except pytest.skip.Exception:
        return None, snippet(compat.Interpreter, model, *args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = snippet(theirs_cls, model, *args)
    ours = snippet(compat.Interpreter, model, *args)
    return theirs, ours


def inputs_for(model: bytes, seed: int, batch: int | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    it = interp.Interpreter.from_bytes(model)
    xs = []
    for d in it.input_details:
        shape = tuple(int(s) for s in d["shape"])
        if batch is not None:
            shape = (batch,) + shape[1:]
        xs.append(rng.integers(-128, 128, shape).astype(d["dtype"]))
    return xs


MODELS = {"conv": conv_model, "two_inputs": two_input_model}
if (SHARED / "hello_world_int8.tflite").is_file():
    MODELS["hello_world"] = lambda: (SHARED / "hello_world_int8.tflite").read_bytes()


# ----------------------------------------------------------------------------- snippets

def snippet_details(Interpreter, model):
    t = Transcript()
    it = Interpreter(model_content=model)
    t("input details before allocate", it.get_input_details)
    it.allocate_tensors()
    t("input details", it.get_input_details)
    t("output details", it.get_output_details)
    t("names", lambda: [d["name"] for d in it.get_input_details() + it.get_output_details()])
    t("indices", lambda: [d["index"] for d in it.get_input_details() + it.get_output_details()])
    t("shapes", lambda: [d["shape"].tolist() for d in it.get_input_details() + it.get_output_details()])
    t("signatures", lambda: [d["shape_signature"].tolist() for d in it.get_input_details()])
    t("quantization", lambda: [d["quantization"] for d in it.get_input_details() + it.get_output_details()])
    t("scales", lambda: [d["quantization_parameters"]["scales"].tolist() for d in it.get_output_details()])
    t("zero points", lambda: [d["quantization_parameters"]["zero_points"].tolist() for d in it.get_output_details()])
    # (LiteRT rewrites some constants' quantization when it prepares its kernels: not compared.)
    t("tensor details", lambda: [(d["index"], d["name"], d["dtype"], d["shape"].tolist(), sorted(d))
                                 for d in it.get_tensor_details()])
    t("num subgraphs", it.num_subgraphs)
    t("signature list", it.get_signature_list)
    t("tensor details of a missing subgraph", lambda: it.get_tensor_details(7))
    return t


def snippet_run(Interpreter, model, inputs):
    t = Transcript()
    it = Interpreter(model_content=model)
    t("get_tensor before allocate", lambda: it.get_tensor(it.get_input_details()[0]["index"]))
    t("set_tensor before allocate", lambda: it.set_tensor(it.get_input_details()[0]["index"], inputs[0]))
    t("invoke before allocate", it.invoke)
    t("allocate", it.allocate_tensors)
    for d, x in zip(it.get_input_details(), inputs):
        t(f"set {d['index']}", lambda d=d, x=x: it.set_tensor(d["index"], x))
    t("invoke", it.invoke)
    for k, d in enumerate(it.get_output_details()):
        t(f"output {k}", lambda d=d: it.get_tensor(d["index"]))
    t("input read back", lambda: it.get_tensor(it.get_input_details()[0]["index"]))
    t("invoke again", it.invoke)
    t("reset_all_variables", it.reset_all_variables)
    return t


def snippet_errors(Interpreter, model):
    t = Transcript()
    t("no model", lambda: Interpreter())
    t("both model arguments", lambda: Interpreter(model_path="m.tflite", model_content=model))
    t("missing file", lambda: Interpreter(model_path="/nonexistent/model.tflite"))
    t("not a model", lambda: Interpreter(model_content=b"garbage" * 4))
    t("num_threads=0", lambda: Interpreter(model_content=model, num_threads=0))
    t("num_threads float", lambda: Interpreter(model_content=model, num_threads=1.5))
    it = Interpreter(model_content=model, num_threads=2)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    shape, dtype = tuple(d["shape"]), d["dtype"]
    t("wrong dtype", lambda: it.set_tensor(d["index"], np.zeros(shape, np.float32)))
    t("python list", lambda: it.set_tensor(d["index"], np.zeros(shape).tolist()))
    t("wrong rank", lambda: it.set_tensor(d["index"], np.zeros(shape[1:], dtype)))
    t("wrong dimension", lambda: it.set_tensor(d["index"], np.zeros(shape[:-1] + (shape[-1] + 1,), dtype)))
    t("bad tensor index", lambda: it.set_tensor(999, np.zeros(shape, dtype)))
    t("get bad index", lambda: it.get_tensor(999))
    t("get negative index", lambda: it.get_tensor(-1))
    t("get bad subgraph", lambda: it.get_tensor(0, 5))
    t("tensor() bad index", lambda: it.tensor(999)())
    t("signature runner of a missing key", lambda: it.get_signature_runner("nope"))
    return t


def snippet_tensor_views(Interpreter, model, inputs):
    t = Transcript()
    it = Interpreter(model_content=model)
    it.allocate_tensors()
    in_view = it.tensor(it.get_input_details()[0]["index"])
    out_view = it.tensor(it.get_output_details()[0]["index"])
    t("write through the input view", lambda: in_view().__setitem__(Ellipsis, inputs[0]))
    t("invoke", it.invoke)
    t("read through the output view", lambda: out_view().copy())
    held = out_view()
    t("invoke while a view is alive", it.invoke)
    t("allocate while a view is alive", it.allocate_tensors)
    del held
    gc.collect()
    t("invoke after the view is gone", it.invoke)
    t("output again", lambda: out_view().copy())
    return t


def snippet_signature(Interpreter, model, feeds):
    t = Transcript()
    it = Interpreter(model_content=model)
    t("signature list", it.get_signature_list)
    runner = it.get_signature_runner()
    t("runner input details", runner.get_input_details)
    t("runner output details", runner.get_output_details)
    t("call", lambda: runner(**feeds))
    t("call with a wrong name", lambda: runner(image_typo=next(iter(feeds.values())), **dict(list(feeds.items())[1:])))
    t("call with nothing", lambda: runner())
    t("call with a list", lambda: runner(**{k: v.tolist() for k, v in feeds.items()}))
    t("explicit key", lambda: it.get_signature_runner(next(iter(it.get_signature_list())))(**feeds))
    return t


def snippet_resize_batch(Interpreter, model, batch_inputs):
    t = Transcript()
    it = Interpreter(model_content=model)
    n = batch_inputs[0].shape[0]
    for d in it.get_input_details():
        t(f"resize {d['index']}", lambda d=d: it.resize_tensor_input(d["index"], [n] + d["shape"].tolist()[1:]))
    t("input shapes after resize", lambda: [d["shape"].tolist() for d in it.get_input_details()])
    t("set before allocate", lambda: it.set_tensor(it.get_input_details()[0]["index"], batch_inputs[0]))
    t("invoke before allocate", it.invoke)
    t("allocate", it.allocate_tensors)
    t("output shapes after allocate", lambda: [d["shape"].tolist() for d in it.get_output_details()])
    for d, x in zip(it.get_input_details(), batch_inputs):
        t(f"set {d['index']}", lambda d=d, x=x: it.set_tensor(d["index"], x))
    t("invoke", it.invoke)
    for k, d in enumerate(it.get_output_details()):
        t(f"output {k}", lambda d=d: it.get_tensor(d["index"]))
    d0 = it.get_input_details()[0]
    t("strict resize of a fixed dimension", lambda: it.resize_tensor_input(
        d0["index"], d0["shape"].tolist()[:-1] + [d0["shape"].tolist()[-1] + 1], strict=True))
    return t


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", sorted(MODELS))
def test_details_are_litert_s(name):
    litert_interpreter()
    compare_transcripts(*both(snippet_details, MODELS[name]()))


def test_details_values_equal_litert_s():
    """Beyond types and shapes: names, indices, quantization and signatures are LiteRT's values."""
    litert_interpreter()
    theirs, ours = both(snippet_details, conv_model())
    for label in ("names", "indices", "shapes", "signatures", "quantization", "zero points", "signature list"):
        assert ours.values[label] == theirs.values[label], label
    np.testing.assert_array_equal(ours.values["scales"], theirs.values["scales"])
    assert set(ours.values["input details"][0]) == set(theirs.values["input details"][0])
    assert set(ours.values["input details"][0]["quantization_parameters"]) == \
        set(theirs.values["input details"][0]["quantization_parameters"])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_set_invoke_get_runs_unchanged_and_gives_tflm_outputs(name, seed):
    model = MODELS[name]()
    xs = inputs_for(model, seed)
    theirs, ours = both(snippet_run, model, xs)
    compare_transcripts(theirs, ours)
    n_out = len(compat.Interpreter(model_content=model).get_output_details())
    want = tflm_outputs(model, xs, n_out)
    for k in range(n_out):
        np.testing.assert_array_equal(ours.values[f"output {k}"], want[k], err_msg=f"output {k} differs from TFLM's")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_errors_are_litert_s_types(name):
    litert_interpreter()
    compare_transcripts(*both(snippet_errors, MODELS[name]()))


def test_error_messages_are_litert_s():
    litert_interpreter()
    theirs, ours = both(snippet_errors, conv_model())
    for label in ("no model", "both model arguments", "wrong dtype", "wrong rank", "wrong dimension",
                  "bad tensor index", "get bad index", "get bad subgraph", "num_threads=0",
                  "signature runner of a missing key"):
        assert str(ours.values[label]) == str(theirs.values[label]).strip() or \
            str(ours.values[label]).strip() == str(theirs.values[label]).strip(), label


def test_load_errors_are_also_microref_s():
    with pytest.raises(interp.ModelError) as e:
        compat.Interpreter(model_content=b"garbage" * 4)
    assert isinstance(e.value, ValueError) and "TFL3" in str(e.value)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tensor_views_behave_as_litert_s(name):
    model = MODELS[name]()
    xs = inputs_for(model, 5)
    theirs, ours = both(snippet_tensor_views, model, xs)
    compare_transcripts(theirs, ours)
    fed = [xs[0]] + [np.zeros_like(x) for x in xs[1:]]  # the snippet writes input 0 only
    first = tflm_outputs(model, fed, len(compat.Interpreter(model_content=model).get_output_details()))[0]
    np.testing.assert_array_equal(ours.values["read through the output view"], first)


@pytest.mark.parametrize("seed", range(2))
def test_signature_runner_takes_signature_names(seed):
    model = conv_model(seed)
    x = inputs_for(model, seed)[0]
    theirs, ours = both(snippet_signature, model, {"image": x})
    compare_transcripts(theirs, ours)
    np.testing.assert_array_equal(ours.values["call"]["features"], tflm_outputs(model, [x], 1)[0])


def test_signature_runner_with_two_inputs_maps_names_not_positions():
    model = two_input_model()
    a, b = inputs_for(model, 9)
    theirs, ours = both(snippet_signature, model, {"zeta": a, "alpha": b})
    compare_transcripts(theirs, ours)
    assert ours.values["signature list"] == {"add": {"inputs": ["alpha", "zeta"], "outputs": ["real", "sum"]}}
    want = tflm_outputs(model, [a, b], 2)
    np.testing.assert_array_equal(ours.values["call"]["sum"], want[0])
    np.testing.assert_array_equal(ours.values["call"]["real"], want[1])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_resize_batch_runs_every_sample_as_tflm_does(name):
    model = MODELS[name]()
    batch = inputs_for(model, 11, batch=4)
    theirs, ours = both(snippet_resize_batch, model, batch)
    compare_transcripts(theirs, ours)
    n_out = len(compat.Interpreter(model_content=model).get_output_details())
    for s in range(4):
        want = tflm_outputs(model, [x[s:s + 1] for x in batch], n_out)
        for k in range(n_out):
            np.testing.assert_array_equal(ours.values[f"output {k}"][s:s + 1], want[k])


def test_signature_runner_with_a_batch_resizes():
    model = conv_model(3)
    batch = inputs_for(model, 4, batch=3)[0]
    out = compat.Interpreter(model_content=model).get_signature_runner("serving_default")(image=batch)
    assert out["features"].shape == (3, 3, 3, 3)
    for s in range(3):
        np.testing.assert_array_equal(out["features"][s:s + 1], tflm_outputs(model, [batch[s:s + 1]], 1)[0])


# ----------------------------------------------------------------------------- microref's own limits (no LiteRT)

def test_resizing_other_than_the_batch_is_refused_at_allocate_with_the_reason():
    it = compat.Interpreter(model_content=conv_model())
    it.resize_tensor_input(0, [1, 8, 8, 2])
    with pytest.raises(RuntimeError, match="can only set the batch"):
        it.allocate_tensors()
    it.resize_tensor_input(0, [1, 6, 6, 2])
    it.allocate_tensors()


def test_intermediates_need_preserve_all_tensors():
    model = conv_model()
    x = inputs_for(model, 1)[0]
    it = compat.Interpreter(model_content=model)
    it.allocate_tensors()
    it.set_tensor(0, x)
    it.invoke()
    conv_out = [d["index"] for d in it.get_tensor_details() if d["name"] == "conv/out"][0]
    with pytest.raises(ValueError, match="experimental_preserve_all_tensors=True"):
        it.get_tensor(conv_out)
    kept = compat.Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    kept.allocate_tensors()
    kept.set_tensor(0, x)
    kept.invoke()
    ref = interp.Interpreter.from_bytes(model)
    ref.run([x], keep=True)
    np.testing.assert_array_equal(kept.get_tensor(conv_out), ref.tensor("conv/out"))
    assert not kept.tensor(conv_out)().flags.writeable


def test_set_tensor_on_a_non_input_says_so():
    it = compat.Interpreter(model_content=conv_model())
    it.allocate_tensors()
    out = it.get_output_details()[0]
    with pytest.raises(ValueError, match="not an input"):
        it.set_tensor(out["index"], np.zeros(out["shape"], np.int8))


def test_unsupported_operators_fail_at_allocate_as_runtime_and_microref_errors():
    from interp.builder import ModelBuilder
    b = ModelBuilder()
    x = b.input("x", [1, 4], "FLOAT32")
    y = b.tensor("y", [1, 4], "FLOAT32")
    b.op("CUSTOM", [x], [y], custom_code="NoSuchOp")
    b.output(y)
    it = compat.Interpreter(model_content=b.build())
    assert it.get_input_details()[0]["shape"].tolist() == [1, 4]
    with pytest.raises(interp.UnsupportedOpError) as e:
        it.allocate_tensors()
    assert isinstance(e.value, RuntimeError) and "NoSuchOp" in str(e.value)


def test_microref_options_reach_the_interpreter():
    from ops.registry import Numerics
    it = compat.Interpreter(model_content=conv_model(), numerics=Numerics(rounding="single"), kernels="reference")
    it.allocate_tensors()
    assert it.microref.numerics.rounding == "single" and it.microref.kernel_mode == "reference"
    with pytest.raises(TypeError):
        compat.Interpreter(model_content=conv_model(), not_an_option=1)
    compat.Interpreter(model_content=conv_model(), experimental_disable_delegate_clustering=True)
