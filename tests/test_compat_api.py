"""The small things of issue 16: interp.quantize / interp.dequantize (TFLM's QUANTIZE and
DEQUANTIZE, bit for bit), tensor() after a plain run, Numerics validation, option enums printed
by name, help(Interpreter), py.typed."""
from __future__ import annotations

import pydoc
from pathlib import Path

import numpy as np
import pytest

import interp
from interp import InputError, Interpreter, dequantize, quantize
from interp.builder import ModelBuilder
from ops.registry import Numerics

EDGE_FLOATS = np.array([0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, 1e-45, 3.0e38, -3.0e38, np.inf, -np.inf, np.nan,
                        2.0 ** 31, -(2.0 ** 31), 12.7499, 12.75, -12.75, 6.35, -6.4, 0.049999, 0.05],
                       np.float32)


def quantize_model(dtype: str, scale: float, zero_point: int, n: int) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [n], "FLOAT32")
    y = b.tensor("y", [n], dtype, scale=scale, zero_point=zero_point)
    b.op("QUANTIZE", [x], [y])
    b.output(y)
    return b.build()


def dequantize_model(dtype: str, scale: float, zero_point: int, n: int) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [n], dtype, scale=scale, zero_point=zero_point)
    y = b.tensor("y", [n], "FLOAT32")
    b.op("DEQUANTIZE", [x], [y])
    b.output(y)
    return b.build()


def tflm(model: bytes, x: np.ndarray) -> np.ndarray:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro (the oracle) is not installed")
    ref = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    ref.set_input(x, 0)
    ref.invoke()
    return np.array(ref.get_output(0))


@pytest.mark.parametrize("dtype,scale,zero_point", [
    ("INT8", 0.05, -3), ("INT8", 1 / 128, 0), ("INT16", 3.0517578125e-05, 0), ("INT16", 0.001, 17),
    ("INT8", 0.1, 127), ("INT8", 7.3e-3, -128)])
def test_quantize_is_tflm_s_quantize(dtype, scale, zero_point):
    rng = np.random.default_rng(hash((dtype, scale)) & 0xFFFF)
    x = np.concatenate([EDGE_FLOATS, (rng.standard_normal(300) * 200 * scale).astype(np.float32),
                        ((rng.integers(-300, 300, 200) + 0.5) * np.float32(scale)).astype(np.float32)])
    details = Interpreter.from_bytes(quantize_model(dtype, scale, zero_point, x.size)).output_details[0]
    ours = quantize(x, details)
    assert ours.dtype == details["dtype"]
    np.testing.assert_array_equal(ours, tflm(quantize_model(dtype, scale, zero_point, x.size), x))


@pytest.mark.parametrize("dtype,scale,zero_point", [
    ("INT8", 0.05, -3), ("INT16", 3.0517578125e-05, 0), ("UINT8", 0.1, 128), ("INT8", 1e-30, 5)])
def test_dequantize_is_tflm_s_dequantize(dtype, scale, zero_point):
    info = np.iinfo(np.dtype(dtype.lower()))
    q = np.linspace(info.min, info.max, 257).round().astype(dtype.lower())
    details = Interpreter.from_bytes(dequantize_model(dtype, scale, zero_point, q.size)).input_details[0]
    ours = dequantize(q, details)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours.view(np.int32), tflm(dequantize_model(dtype, scale, zero_point, q.size), q)
                                  .view(np.int32))


def test_quantize_edge_values_without_tflm():
    details = {"dtype": np.int8, "quantization_parameters": {"scales": np.array([0.5], np.float32),
                                                             "zero_points": np.array([1])}}
    got = quantize(np.array([0.25, 0.75, -0.25, 1e30, np.nan, -1e30, 63.0, 64.0]), details)
    # ties away from zero; NaN and values past int32 become INT32_MIN (x86) and clamp to -128
    assert got.tolist() == [2, 3, 0, -128, -128, -128, 127, 127]
    assert dequantize(got, details).tolist() == [0.5, 1.0, -0.5, -64.5, -64.5, -64.5, 63.0, 63.0]
    legacy = {"dtype": np.int8, "quantization": (0.5, 1)}
    assert quantize(np.array([0.25]), legacy).tolist() == [2]


def test_quantize_refuses_what_the_operators_refuse():
    per_channel = {"dtype": np.int8, "quantization_parameters": {"scales": np.array([0.1, 0.2], np.float32),
                                                                  "zero_points": np.array([0, 0])}}
    with pytest.raises(ValueError, match="per channel"):
        quantize(np.zeros(2), per_channel)
    with pytest.raises(ValueError, match="not quantized"):
        quantize(np.zeros(2), {"dtype": np.int8, "quantization_parameters": {"scales": np.zeros(0),
                                                                             "zero_points": np.zeros(0)}})
    with pytest.raises(ValueError, match="QUANTIZE writes int8 or int16"):
        quantize(np.zeros(2), {"dtype": np.uint8, "quantization": (0.5, 0)})
    with pytest.raises(ValueError, match="DEQUANTIZE reads"):
        dequantize(np.zeros(2, np.int32), {"dtype": np.int32, "quantization": (0.5, 0)})
    with pytest.raises(ValueError, match="outside"):
        dequantize(np.array([300]), {"dtype": np.int8, "quantization": (0.5, 0)})


def test_quantize_takes_tensors_and_compat_details():
    from interp import compat

    model = quantize_model("INT8", 0.05, -3, 4)
    it = Interpreter.from_bytes(model)
    x = np.array([0.1, -0.1, 1.0, 100.0], np.float32)
    want = quantize(x, it.output_details[0])
    assert np.array_equal(quantize(x, it.tensors[it.subgraph.outputs[0]]), want)
    assert np.array_equal(quantize(x, compat.Interpreter(model_content=model).get_output_details()[0]), want)


# ----------------------------------------------------------------------------- tensor() after run()

def two_relus() -> Interpreter:
    b = ModelBuilder()
    q = dict(scale=0.5, zero_point=1)
    x, y, z = b.input("x", [1, 4], "INT8", **q), b.tensor("y", [1, 4], "INT8", **q), b.tensor("z", [1, 4], "INT8", **q)
    b.op("RELU", [x], [y])
    b.op("RELU", [y], [z])
    b.output(z)
    return Interpreter.from_bytes(b.build())


def test_outputs_and_inputs_are_readable_after_a_plain_run():
    it = two_relus()
    x = np.array([[-3, 2, 5, -1]], np.int8)
    out = it.run([x])[0]
    assert np.array_equal(it.tensor("z"), out) and np.array_equal(it.tensor("x"), x)
    assert it.dequantized("z").tolist() == [[0.0, 0.5, 2.0, 0.0]]
    out[...] = 0
    x[...] = 0
    assert it.tensor("z").tolist() == [[1, 2, 5, 1]] and it.tensor("x").tolist() == [[-3, 2, 5, -1]]
    batch = it.run_batch([np.array([[[-3, 2, 5, -1]], [[4, 4, 4, 4]]], np.int8)])[0]
    assert np.array_equal(it.tensor("z"), batch)


def test_a_tensor_not_kept_raises_input_error_saying_how_to_keep_it():
    it = two_relus()
    with pytest.raises(InputError, match="keep=True"):
        it.tensor("z")
    it.run([np.zeros((1, 4), np.int8)])
    with pytest.raises(InputError, match=r'tensor 1 "y" was not kept.*run\(inputs, keep=True\)'):
        it.tensor("y")
    it.run([np.zeros((1, 4), np.int8)], keep=True)
    assert it.tensor("y").tolist() == [[1, 1, 1, 1]]
    with pytest.raises(KeyError):
        it.tensor("no such tensor")


# ----------------------------------------------------------------------------- the rest

def test_numerics_refuses_unknown_values():
    with pytest.raises(ValueError, match="rounding must be one of 'double', 'single'"):
        Numerics(rounding="bogus")
    with pytest.raises(ValueError, match="scale_precision"):
        Numerics(scale_precision="half")
    assert Numerics(rounding="single", scale_precision="float32").rounding == "single"


def conv_model() -> bytes:
    b = ModelBuilder()
    x = b.input("x", [1, 4, 4, 1], "INT8", scale=0.1, zero_point=0)
    w = b.constant("w", np.ones((1, 3, 3, 1), np.int8), scale=[0.1], zero_point=0)
    y = b.tensor("y", [1, 4, 4, 1], "INT8", scale=0.1, zero_point=0)
    b.op("CONV_2D", [x, w, None], [y], padding="SAME", stride_w=1, stride_h=1, fused_activation_function="RELU6")
    b.output(y)
    return b.build()


def test_option_enums_print_as_names_and_compare_as_numbers():
    op = interp.load_model(conv_model()).main.operators[0]
    assert "'padding': SAME" in repr(op.options) and "'fused_activation_function': RELU6" in repr(op.options)
    assert op.options["padding"] == 0 and op.options["fused_activation_function"] == 3
    assert f"{op.options['padding']}" == "SAME" and f"{op.options['padding']:d}" == "0"
    assert {0: "same"}[op.options["padding"]] == "same"
    import pickle
    assert pickle.loads(pickle.dumps(op.options)) == op.options
    it = Interpreter.from_bytes(conv_model())  # the kernels still read them as numbers
    assert it.run([np.full((1, 4, 4, 1), 100, np.int8)])[0].max() == 60  # RELU6: 6 / 0.1


def test_info_ops_prints_option_names(tmp_path, capsys):
    from interp.tools.cli import main

    path = tmp_path / "conv.tflite"
    path.write_bytes(conv_model())
    assert main(["info", str(path), "--ops"]) == 0
    text = capsys.readouterr().out
    assert "'padding': SAME" in text and "'fused_activation_function': RELU6" in text


def test_help_documents_every_public_method_and_parameter():
    text = pydoc.render_doc(Interpreter, renderer=pydoc.plaintext)
    for word in ("numerics", "kernels", "max_while_iterations", "from_file", "from_bytes", "run_batch",
                 "dequantized", "input_details", "output_details", "plan", "reset", "state"):
        assert word in text, word
    for name in dir(Interpreter):
        if not name.startswith("_"):
            member = getattr(Interpreter, name)
            if callable(member) or isinstance(member, property):
                assert (member.__doc__ or "").strip(), f"Interpreter.{name} has no docstring"


def test_the_packages_ship_py_typed():
    root = Path(interp.__file__).resolve().parent
    assert (root / "py.typed").is_file() and (root.parent / "ops" / "py.typed").is_file()
