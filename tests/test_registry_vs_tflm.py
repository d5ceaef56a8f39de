"""microref's op registry against the operators TFLM registers, so that a gap cannot hide.

Two authorities, checked independently:

* TFLM's source (/work/tflm-src, or $TFLM_SRC): every ``Add*`` method of
  ``MicroMutableOpResolver`` (micro_mutable_op_resolver.h) and the ones the Python interpreter's
  resolver calls (python/tflite_micro/python_ops_resolver.cc, what the wheel is built from);
* the pinned tflite-micro wheel itself: a one-operator model for every BuiltinOperator of the
  wheel's schema and for every custom name above is loaded, and TFLM's own message says whether
  it found a registration ("Didn't find op for builtin opcode" / "Failed to get registration").

Every name TFLM registers must be registered in ``ops.registry.REGISTRY``; the names microref
refuses by design (``ops.unrunnable``: ``ethos-u``, ``TFLM_DECODE``) must say why. And microref
registers nothing TFLM does not: a model microref runs but TFLM cannot is not one it can vouch for.
"""
from __future__ import annotations

import os
import pathlib
import re

import pytest
from diff_support import NO_ORACLE, ORACLE_AVAILABLE, TflmCrashed, tflm_run
from test_diff_refused import compressed_fc_model

import ops  # noqa: F401  (registers every kernel)
from interp import Interpreter, UnsupportedOpError
from ops.registry import REGISTRY
from ops.unrunnable import _Refused

TFLM_SRC = pathlib.Path(os.environ.get("TFLM_SRC", "/work/tflm-src"))
RESOLVER_H = TFLM_SRC / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
PYTHON_RESOLVER = TFLM_SRC / "python/tflite_micro/python_ops_resolver.cc"

# What TFLM registers that microref refuses at load, by design (ops/unrunnable.py says why).
REFUSED = {"ethos-u", "TFLM_DECODE"}
# Registered by the resolver source but not by the wheel's host build: AddEthosU() adds nothing
# when Register_ETHOSU() returns nullptr (kernels/ethosu.cc, every non-NPU build).
NOT_IN_HOST_BUILD = {"ethos-u"}

# The real models (../shared/models beside the project) are not part of it.
SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "models"

needs_src = pytest.mark.skipif(not RESOLVER_H.is_file(), reason=f"TFLM's source is not at {TFLM_SRC} "
                               "(set TFLM_SRC to a tflite-micro checkout)")
needs_oracle = pytest.mark.skipif(not ORACLE_AVAILABLE, reason=NO_ORACLE)


# ------------------------------------------------------------------------------- TFLM's source
def resolver_methods() -> dict[str, str]:
    """Add* method name -> the operator name it registers, from micro_mutable_op_resolver.h."""
    text = RESOLVER_H.read_text()
    methods: dict[str, str] = {}
    # Each public "TfLiteStatus AddXxx(...) { ... }" up to the next method.
    heads = list(re.finditer(r"TfLiteStatus (Add\w+)\(", text))
    for head, nxt in zip(heads, heads[1:] + [None]):
        name = head.group(1)
        if name in ("AddBuiltin", "AddCustom"):
            continue
        body = text[head.end():nxt.start() if nxt else len(text)]
        builtin = re.search(r"AddBuiltin\(\s*BuiltinOperator_(\w+)", body)
        custom = re.search(r'AddCustom\(\s*"([^"]+)"', body)
        if builtin:
            methods[name] = builtin.group(1)
        elif custom:
            methods[name] = custom.group(1)
        elif "GetString_ETHOSU()" in body:
            methods[name] = "ethos-u"  # kernels/ethos_u/ethosu.cc: GetString_ETHOSU() { return "ethos-u"; }
        else:
            raise AssertionError(f"cannot tell which operator {name} registers:\n{body[:400]}")
    return methods


def python_resolver_calls() -> list[str]:
    return re.findall(r"^\s*(Add\w+)\(\);", PYTHON_RESOLVER.read_text(), re.M)


@needs_src
def test_resolver_source_is_parsed_whole():
    # The parser must see the whole header: ~120 methods, builtins and customs both.
    methods = resolver_methods()
    assert len(methods) >= 115, sorted(methods)
    assert methods["AddConv2D"] == "CONV_2D" and methods["AddWindow"] == "SignalWindow"
    assert methods["AddCircularBuffer"] == "CIRCULAR_BUFFER" and methods["AddDecode"] == "TFLM_DECODE"
    assert methods["AddEthosU"] == "ethos-u"


@needs_src
def test_every_operator_tflm_registers_is_registered_in_microref():
    tflm = set(resolver_methods().values())
    missing = sorted(tflm - set(REGISTRY))
    assert missing == [], f"TFLM registers operators microref has no kernel for: {missing}"


@needs_src
def test_microref_registers_nothing_tflm_does_not():
    extra = sorted(set(REGISTRY) - set(resolver_methods().values()))
    assert extra == [], f"microref registers operators TFLM's resolver does not: {extra}"


@needs_src
def test_the_python_interpreter_registers_every_resolver_method():
    # The wheel is built from python_ops_resolver.cc: it calls every Add* method (so the list above
    # is what the wheel registers, up to what its build leaves out; see the wheel test below).
    methods = resolver_methods()
    calls = python_resolver_calls()
    assert len(calls) == len(set(calls))
    assert sorted(set(methods) - set(calls)) == []
    assert sorted(set(calls) - set(methods)) == []


# ------------------------------------------------------------------------------- the wheel
def _probe_model(op_code: int | None, custom_code: str | None = None) -> bytes:
    """A one-operator float32 model written with the wheel's own schema (not microref's builder):
    input [1, 4] -> the operator -> output [1, 4]. Builtin codes below 127 are also written to
    deprecated_builtin_code, as converters do."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    code = s.BuiltinOperator.CUSTOM if custom_code is not None else op_code
    oc = s.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, s.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    oc.customCode = custom_code
    oc.version = 1
    tensors = []
    for name in ("x", "y"):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 4], s.TensorType.FLOAT32, 0, name
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [0], [1], [op], "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [oc], [sg]
    model.buffers = [s.BufferT()]
    model.description = "registry probe"
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


NOT_FOUND = ("Didn't find op for builtin opcode", "Failed to get registration from op code")


def _wheel_registers(data: bytes) -> bool:
    """Whether the wheel finds a registration for the model's one operator. TFLM looks up every
    operator's registration (MicroInterpreter::PrepareNodeAndRegistrationDataFromFlatbuffer) before
    it prepares any: a crash in the kernel's Prepare (the probe's shapes are not the kernel's) means
    the registration was found."""
    import numpy as np
    try:
        verdict, payload = tflm_run(data, [[np.zeros((1, 4), np.float32)]])
    except TflmCrashed:
        return True
    return not (verdict == "rejected" and any(m in payload for m in NOT_FOUND))


def _wheel_builtins() -> dict[str, int]:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
    return {k: v for k, v in vars(s.BuiltinOperator).items()
            if not k.startswith("_") and k not in ("CUSTOM", "DELEGATE", "PLACEHOLDER_FOR_GREATER_OP_CODES")}


@needs_oracle
def test_the_wheel_registers_exactly_microrefs_registry():
    builtins = _wheel_builtins()
    assert len(builtins) > 200  # the whole schema, not a prefix of it
    registered = {name for name, code in builtins.items() if _wheel_registers(_probe_model(code))}
    customs = {n for n in REGISTRY if n not in builtins} | {"ethos-u"}
    if RESOLVER_H.is_file():
        customs |= {n for n in resolver_methods().values() if n not in builtins}
    registered |= {n for n in customs if _wheel_registers(_probe_model(None, n))}
    # The probe can tell "not registered" apart: an unknown custom name and an operator TFLM has
    # never implemented both come back as such.
    assert not _wheel_registers(_probe_model(None, "MicrorefNoSuchOperator"))
    assert "LOCAL_RESPONSE_NORMALIZATION" not in registered and "CONV_2D" in registered
    assert sorted(registered - set(REGISTRY)) == [], "the wheel registers operators microref does not"
    assert sorted(set(REGISTRY) - registered) == sorted(NOT_IN_HOST_BUILD), \
        "microref registers operators the wheel does not (other than the NPU's)"


# ------------------------------------------------------------------------------- the refusals
def test_refused_operators_are_registered_and_say_why():
    for name in REFUSED:
        cls = REGISTRY[name]
        assert issubclass(cls, _Refused) and len(cls.refused) > 80, name
    # Nothing else is a refusal: every other registered kernel runs some variant.
    assert {n for n, c in REGISTRY.items() if issubclass(c, _Refused)} == REFUSED


# ------------------------------------------------------------------------------- real models
@needs_oracle
def test_a_model_compressed_by_tflms_tool_is_refused_as_decode():
    import numpy as np
    data = compressed_fc_model()
    verdict, payload = tflm_run(data, [[np.arange(8, dtype=np.int8).reshape(1, 8)]])
    assert verdict == "ok", payload  # the wheel runs DECODE
    with pytest.raises(UnsupportedOpError, match="TFLM_DECODE"):
        Interpreter.from_bytes(data)


def test_a_vela_model_is_refused_as_npu_only():
    path = SHARED / "person_detect_vela.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared models are not part of the project)")
    with pytest.raises(UnsupportedOpError, match="NPU"):
        Interpreter.from_file(path)
