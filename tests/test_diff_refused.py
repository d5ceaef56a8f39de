"""The operators TFLM registers that microref refuses by design (ops/unrunnable.py), against the wheel.

* ``ethos-u``: the wheel registers no kernel for it either, so the differential property holds
  as it does for every op (both refuse the model).
* ``TFLM_DECODE``: the wheel runs it and microref refuses it, saying why; the test pins both
  halves, and that the advice in the refusal (run the uncompressed model) gives the wheel's
  values bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
from diff_support import check_model, require_oracle, tflm_run

from interp import Interpreter, UnsupportedOpError
from interp.builder import ModelBuilder

DIFF_OPS = {"ethos-u", "TFLM_DECODE"}  # the ops this module tests (see test_diff_regressions.py)


def custom_model(code: str) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", scale=0.5, zero_point=0)
    y = b.tensor("y", [1, 4], "INT8", scale=0.5, zero_point=0)
    b.op("CUSTOM", [x], [y], custom_code=code)
    b.output(y)
    return b.build()


def fc_model(weights: np.ndarray) -> tuple[bytes, int]:
    """An int8 FULLY_CONNECTED [1, 8] -> [1, 4]; returns the model and the weights' tensor index."""
    b = ModelBuilder()
    x = b.input("x", [1, 8], "INT8", scale=0.05, zero_point=0)
    w = b.constant("w", weights, "INT8", scale=0.02, zero_point=0)
    y = b.tensor("y", [1, 4], "INT8", scale=0.1, zero_point=0)
    b.op("FULLY_CONNECTED", [x, w, None], [y])
    b.output(y)
    return b.build(), w


def compressed_fc_model(seed: int = 15) -> bytes:
    """fc_model with its weights LUT-compressed by TFLM's own compression tool (in the wheel),
    which inserts a TFLM_DECODE operator in front of the FULLY_CONNECTED."""
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec
    weights = np.random.default_rng(seed).integers(-8, 8, size=(4, 8)).astype(np.int8)
    data, w = fc_model(weights)
    lut = spec.LookUpTableCompression(index_bitwidth=4, mode=spec.PerTensor())
    with pytest.warns(UserWarning):  # 32 bytes of weights do not get smaller
        return bytes(compress(data, [spec.Tensor(0, w, [lut])]))


def with_deprecated_codes(data: bytes) -> bytes:
    """The model with every operator code's deprecated_builtin_code set as converters set it
    (min(code, 127)); TFLM's compression tool leaves it 0 on the codes it adds."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(data, 0)
    for oc in model.operatorCodes:
        oc.deprecatedBuiltinCode = min(max(oc.builtinCode, oc.deprecatedBuiltinCode), 127)
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_ethos_u_is_refused_by_both():
    require_oracle()
    x = np.arange(-4, 4, dtype=np.int8).reshape(2, 1, 4)
    outcome = check_model(custom_model("ethos-u"), [x], label="ethos-u")
    assert not outcome.compared and "Failed to get registration" in outcome.message


def test_ethos_u_refusal_says_it_is_npu_only():
    with pytest.raises(UnsupportedOpError) as e:
        Interpreter.from_bytes(custom_model("ethos-u"))
    text = str(e.value)
    assert "ethos-u" in text and "NPU" in text and "microref plan" in text
    assert e.value.unsupported[0][0] == "ethos-u" and e.value.unsupported[0][2] == [0]


def test_decode_refusal_names_the_operator_and_the_way_out():
    b = ModelBuilder()
    enc = b.constant("encoded", [1, 2, 3, 4], "INT8")
    anc = b.constant("ancillary", [0] * 16, "UINT8")
    x = b.input("x", [4], "INT8", scale=0.5, zero_point=0)
    w = b.tensor("w", [4], "INT8", scale=0.5, zero_point=0)
    y = b.tensor("y", [4], "INT8", scale=0.5, zero_point=0)
    b.op("CUSTOM", [enc, anc], [w], custom_code="TFLM_DECODE")
    b.op("ADD", [x, w], [y])
    b.output(y)
    with pytest.raises(UnsupportedOpError) as e:
        Interpreter.from_bytes(b.build())
    assert "TFLM_DECODE" in str(e.value) and "uncompressed model" in str(e.value)


def test_decode_runs_in_the_wheel_is_refused_here_and_the_uncompressed_model_matches():
    require_oracle()
    for seed in (15, 16, 17):
        compressed = with_deprecated_codes(compressed_fc_model(seed))
        weights = np.random.default_rng(seed).integers(-8, 8, size=(4, 8)).astype(np.int8)
        plain, _ = fc_model(weights)
        xs = [np.random.default_rng(seed + 100).integers(-128, 128, size=(1, 8)).astype(np.int8)
              for _ in range(4)]
        verdict, want = tflm_run(compressed, [[x] for x in xs])
        assert verdict == "ok", want  # the wheel decodes the LUT and runs the model
        with pytest.raises(UnsupportedOpError, match="TFLM_DECODE"):
            Interpreter.from_bytes(compressed)
        it = Interpreter.from_bytes(plain)
        for x, w in zip(xs, want):
            assert np.array_equal(it.run([x])[0], w[0])
