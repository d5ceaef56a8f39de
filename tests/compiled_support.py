"""What the compiled-kernel tests share: inputs that reach the accumulator bounds, and the check
that a forced compiled path gives the reference kernels' bytes through run_batch and run."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import diff_support as ds
import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import ModelError, UnsupportedOpError
from ops.compiled import use_compiled

SAMPLES = 3  # samples per example: run_batch over all of them, run on the first


def skip_unless_compiled():
    """Skip the calling test module where numba is missing (CI runs once without it) or
    MICROREF_COMPILED turns the compiled kernels off. Call it at module level, before importing
    what needs numba."""
    pytest.importorskip("numba")
    if os.environ.get("MICROREF_COMPILED", "").strip().lower() in ("0", "off", "no", "false"):
        pytest.skip("compiled kernels are turned off (MICROREF_COMPILED)", allow_module_level=True)


@contextlib.contextmanager
def counting_calls(module, *names: str):
    """Inside the block, ``module``'s functions ``names`` count their calls (they still run):
    yields {name: calls}, so a test can check that the path it forced really ran."""
    calls = dict.fromkeys(names, 0)
    with pytest.MonkeyPatch.context() as mp:
        for name in names:
            mp.setattr(module, name, _counted(calls, name, getattr(module, name)))
        yield calls


def _counted(calls: dict, name: str, function):
    def counted(*args):
        calls[name] += 1
        return function(*args)
    return counted


def boundary_inputs(rng, interpreter, zero_point: int, extremes: bool, samples: int = SAMPLES) -> np.ndarray:
    """SAMPLES inputs for the model's first input: uniform over its type, or (``extremes``) only the
    ends of the range and the zero point, which give the largest |x - zero_point|."""
    d = interpreter.input_details[0]
    shape = (samples,) + tuple(int(s) for s in d["shape"])
    info = np.iinfo(np.dtype(d["dtype"]))
    if extremes:
        values = rng.choice(np.array([info.min, info.min + 1, info.max, np.clip(zero_point, info.min, info.max)]),
                            shape)
    else:
        values = rng.integers(info.min, info.max, shape, endpoint=True)
    return values.astype(d["dtype"])


def assert_forced_equals_reference(data: bytes, rng, zero_point: int, extremes: bool, force):
    """The model with compiled kernels on and ``force(monkeypatch)`` applied (which sets the class
    attributes that send its operator down one path) gives the reference kernels' bytes, batched
    and one sample at a time. Returns the prepared kernel of operator 0 (to ask which path it
    planned). A model the reference refuses at prepare (as TFLM would) is not an example."""
    try:
        reference = Interpreter.from_bytes(data, kernels="reference")
    except (ModelError, UnsupportedOpError):
        assume(False)
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        force(mp)
        fast = Interpreter.from_bytes(data)
        x = boundary_inputs(rng, fast, zero_point, extremes)
        got, want = fast.run_batch([x])[0], reference.run_batch([x])[0]
        single = fast.run([x[0]])[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes(), \
        f"{np.count_nonzero(got != want)} of {got.size} values differ: compiled {got.ravel()[:8]}, " \
        f"reference {want.ravel()[:8]}"
    assert single.tobytes() == want[0].tobytes()
    return fast.kernels[0]


def assert_fallback_equals_reference(monkeypatch, data: bytes, x: np.ndarray, force, module, fallback,
                                     function: str = "depthwise_conv"):
    """With ``module.available()`` False (a host without its instructions) and the path forced
    (``force(monkeypatch)``), ``module.<function>`` never runs, ``fallback.<function>`` does, and
    run_batch gives the reference kernels' bytes."""
    want = Interpreter.from_bytes(data, kernels="reference").run_batch([x])[0]
    calls = []
    with use_compiled(True):
        force(monkeypatch)
        monkeypatch.setattr(module, "available", lambda: False)
        monkeypatch.setattr(module, function, lambda *a: pytest.fail(f"{module.__name__} ran"))
        original = getattr(fallback, function)
        monkeypatch.setattr(fallback, function, lambda *a: calls.append(1) or original(*a))
        got = Interpreter.from_bytes(data).run_batch([x])[0]
    assert calls and got.tobytes() == want.tobytes()


def assert_runs_in_fresh_process(code: str):
    """``code`` (which asserts, e.g., that prepare does not import numba) succeeds in a new Python
    process with the project on its path and compiled kernels on."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env_path = [p for p in sys.path if p]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([root] + env_path),
                                 "MICROREF_COMPILED": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def assert_depthwise_prepare_skips_numba(channels: int, depth_multiplier: int, planned: str):
    """In a fresh process: from_bytes + prepare of a 64x64 3x3 int8 DEPTHWISE_CONV_2D with ``channels``
    input channels plans its compiled path (the kernel's attribute ``planned``) without importing
    numba, and its first eval (large enough) imports it."""
    out = channels * depth_multiplier
    assert_runs_in_fresh_process(f"""
import sys, numpy as np
from interp import Interpreter
from interp.builder import ModelBuilder
b = ModelBuilder()
x = b.input("x", [1, 64, 64, {channels}], "INT8", scale=0.05, zero_point=2)
wt = b.constant("w", np.ones((1, 3, 3, {out}), np.int8), "INT8", scale=0.01, zero_point=0, quantized_dimension=3)
y = b.tensor("y", [1, 64, 64, {out}], "INT8", scale=0.1, zero_point=0)
b.op("DEPTHWISE_CONV_2D", [x, wt], [y], padding="SAME", stride_h=1, stride_w=1, depth_multiplier={depth_multiplier})
b.output(y)
it = Interpreter.from_bytes(b.build())
assert it.kernels[0].{planned} is not None
assert "numba" not in sys.modules, "prepare imported numba"
it.run([np.zeros((1, 64, 64, {channels}), np.int8)])
assert "numba" in sys.modules, "the large eval did not take the compiled path"
""")


def assert_forced_matches_tflm(data: bytes, rng, zero_point: int, extremes: bool, force, planned: str, label: str):
    """With ``force(monkeypatch)`` applied, operator 0 plans its compiled path (its attribute
    ``planned`` is set) and run_batch / run give TFLM's bytes (diff_support.check_model)."""
    ds.require_oracle()
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        force(mp)
        it = Interpreter.from_bytes(data)
        assert getattr(it.kernels[0], planned) is not None
        x = boundary_inputs(rng, it, zero_point, extremes)
        assert ds.check_model(data, [x], label=label).compared


def check_diff_conv_cases(force, label: str, kind: str = "INT8", depthwise: bool = True, fraction: float = 0.5):
    """test_diff_conv's cases (``conv_cases``) with ``force(monkeypatch)`` applied, run_batch and run
    against TFLM (diff_support.check_model)."""
    from test_diff_conv import build_conv, conv_cases

    ds.require_oracle()

    def run(case):
        ds.note_case(**case)
        data, inputs = build_conv(case, depthwise=depthwise)
        with pytest.MonkeyPatch.context() as mp, use_compiled(True):
            force(mp)
            ds.check_model(data, inputs, label=label)

    ds.run_examples(conv_cases(depthwise=depthwise, kind=kind), run, fraction=fraction)


def _filter_and_bias(b, rng, shape, quantized_dimension: int, filter_type: str, filter_scales, input_scale: float,
                     extreme_weights, bias_kind, bias_bits: int, bias_wrap: bool) -> list:
    """The filter constant of ``shape`` (random, only the type's ends with ``extreme_weights=True``,
    or only the values of a tuple) and the bias of the output channels (the filter's quantized
    dimension), of ``bias_bits`` bits or the ±2^31 ends (``bias_wrap``), or none."""
    per_channel = len(filter_scales) > 1
    oc = shape[quantized_dimension]
    lo, hi = (-8, 7) if filter_type == "INT4" else (-128, 127)
    weights = rng.integers(lo, hi, shape, endpoint=True).astype(np.int8)
    if isinstance(extreme_weights, tuple):
        weights = rng.choice(np.array(extreme_weights, np.int8), weights.shape)
    elif extreme_weights:  # the largest |w| everywhere: the largest accumulators
        weights = np.where(rng.integers(0, 2, weights.shape) == 1, lo, hi).astype(np.int8)
    constants = [b.constant("w", weights, filter_type, scale=list(filter_scales) if per_channel else filter_scales[0],
                            zero_point=0, quantized_dimension=quantized_dimension)]
    if bias_kind is not None:
        top = 2 ** bias_bits - 1
        values = rng.integers(-top - 1, top, oc, endpoint=True, dtype=np.int64)
        if bias_wrap:
            values = np.where(rng.integers(0, 2, oc) == 1, (1 << 31) - 1, -(1 << 31))
        constants.append(b.constant("b", values.astype(bias_kind.lower()), bias_kind,
                                    scale=[input_scale * s for s in filter_scales] if per_channel
                                    else input_scale * filter_scales[0], zero_point=0))
    return constants


def conv_model(rng, *, kind="INT8", batch=1, h=6, w=6, c=4, oc=16, kh=3, kw=3, stride=(1, 1), dilation=(1, 1),
               padding="SAME", zp_in=0, zp_out=0, input_scale=0.02, output_scale=0.05, filter_scales=(0.01,),
               bias_kind="INT32", bias_bits=16, activation="NONE", extreme_weights=False, bias_wrap=False) -> bytes:
    """A one-op CONV_2D model: ``kind`` INT8, INT4 (int8 activations, int4 filter) or INT16 (16x8);
    random weights, or only the type's ends (``extreme_weights=True``) or only the values given
    (``extreme_weights=(-128, 127, -127)``); a bias of ``bias_bits`` bits, or ±2^31 ends
    (``bias_wrap``) that make the int32 accumulator wrap."""
    io = "INT16" if kind == "INT16" else "INT8"
    filter_type = "INT4" if kind == "INT4" else "INT8"
    oh = ds.window_output_size(padding, h, kh, stride[0], dilation[0])
    ow = ds.window_output_size(padding, w, kw, stride[1], dilation[1])
    b = ModelBuilder()
    x = b.input("x", [batch, h, w, c], io, scale=input_scale, zero_point=zp_in)
    inputs = [x] + _filter_and_bias(b, rng, (oc, kh, kw, c), 0, filter_type, filter_scales, input_scale,
                                    extreme_weights, bias_kind, bias_bits, bias_wrap)
    y = b.tensor("y", [batch, oh, ow, oc], io, scale=output_scale, zero_point=zp_out)
    b.op("CONV_2D", inputs, [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
         dilation_h_factor=dilation[0], dilation_w_factor=dilation[1], fused_activation_function=activation)
    b.output(y)
    return b.build()


def draw_conv_numerics(draw, oc: int, io: str = "INT8", output_exponents=(-14, 10), filter_exponents=None) -> dict:
    """Hypothesis draws of a quantized CONV_2D's numerics, as ``conv_model``'s keyword arguments:
    zero points (int8: the ends, 0, -1 or any; int16: 0), input and output scales 2^e (output
    e from ``output_exponents``), one or ``oc`` filter scales 2^e (e from ``filter_exponents``,
    default -30..0 and its ends), no bias or an int32 (int16: int64) one of up to 31 bits or at the
    ±2^31 ends that wrap the accumulator, the batch (1, 2), the fused activation and extreme weights."""
    int16 = io == "INT16"
    zp_in = 0 if int16 else draw(st.sampled_from([-128, 127, 0, -1]) | st.integers(-128, 127))
    zp_out = 0 if int16 else draw(st.sampled_from([-128, 127, 0]) | st.integers(-128, 127))
    input_scale = float(np.float32(2.0 ** draw(st.floats(-12, 2))))
    output_scale = float(np.float32(2.0 ** draw(st.floats(*output_exponents))))
    n_scales = oc if draw(st.booleans()) else 1
    if filter_exponents is None:
        filter_exponents = st.floats(-30, 0) | st.sampled_from([-30.0, -9.0, 0.0])
    exponents = draw(st.lists(filter_exponents, min_size=n_scales, max_size=n_scales))
    bias_kind = draw(st.sampled_from([None, "INT64", "INT32"] if int16 else [None, "INT32", "INT32"]))
    bias_bits = draw(st.sampled_from([0, 12, 20, 31]) | st.integers(0, 31))
    return dict(batch=draw(st.integers(1, 2)), zp_in=zp_in, zp_out=zp_out, input_scale=input_scale,
                output_scale=output_scale, filter_scales=[float(np.float32(2.0 ** e)) for e in exponents],
                bias_kind=bias_kind, bias_bits=bias_bits,
                activation=draw(st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])),
                extreme_weights=draw(st.booleans()),
                bias_wrap=bias_kind == "INT32" and bias_bits == 31 and draw(st.booleans()))


def depthwise_model(rng, *, kind="INT8", filter_type=None, batch=1, h=6, w=6, c=4, dm=1, kh=3, kw=3, stride=(1, 1),
                    dilation=(1, 1), padding="SAME", zp_in=0, zp_out=0, input_scale=0.02, output_scale=0.05,
                    filter_scales=(0.01,), bias_kind="INT32", bias_bits=16, activation="NONE", extreme_weights=False,
                    bias_wrap=False) -> bytes:
    """A one-op DEPTHWISE_CONV_2D model of C·dm output channels, as ``conv_model``: ``kind`` INT8 or
    INT16 (16x8) activations, int8 or int4 filters (``filter_type``, default int4 for kind INT4),
    random weights or only the type's ends, a bias of ``bias_bits`` bits or ±2^31 ends (``bias_wrap``)."""
    io = "INT16" if kind == "INT16" else "INT8"
    filter_type = filter_type or ("INT4" if kind == "INT4" else "INT8")
    oc = c * dm
    oh = ds.window_output_size(padding, h, kh, stride[0], dilation[0])
    ow = ds.window_output_size(padding, w, kw, stride[1], dilation[1])
    b = ModelBuilder()
    x = b.input("x", [batch, h, w, c], io, scale=input_scale, zero_point=zp_in)
    inputs = [x] + _filter_and_bias(b, rng, (1, kh, kw, oc), 3, filter_type, filter_scales, input_scale,
                                    extreme_weights, bias_kind, bias_bits, bias_wrap)
    y = b.tensor("y", [batch, oh, ow, oc], io, scale=output_scale, zero_point=zp_out)
    b.op("DEPTHWISE_CONV_2D", inputs, [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
         dilation_h_factor=dilation[0], dilation_w_factor=dilation[1], depth_multiplier=dm,
         fused_activation_function=activation)
    b.output(y)
    return b.build()


def bound_model(depth_channels: int, output_channels: int) -> bytes:
    """A 16x8 1x1 CONV_2D with |w| = 128 everywhere: its accumulator bound is exactly
    Σ|w|·32768 = depth_channels·2^22, so depth 511 stays below 2^31 and 512 reaches it."""
    b = ModelBuilder()
    x = b.input("x", [1, 2, 2, depth_channels], "INT16", scale=1e-4, zero_point=0)
    weights = np.full((output_channels, 1, 1, depth_channels), -128, np.int8)
    wt = b.constant("w", weights, "INT8", scale=1e-6, zero_point=0)
    y = b.tensor("y", [1, 2, 2, output_channels], "INT16", scale=1.0, zero_point=0)
    b.op("CONV_2D", [x, wt], [y], padding="VALID", stride_h=1, stride_w=1, quantized_bias_type=2)
    b.output(y)
    return b.build()
