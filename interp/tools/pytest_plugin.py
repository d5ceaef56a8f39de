"""A pytest plugin for conformance suites: your kernels and runtimes against microref, bit for bit.

Installed with microref (entry point ``pytest11``), so any test can use:

* ``microref_model(path_or_bytes, **options)`` (fixture): an ``interp.Interpreter`` for a model,
  with the suite's ``--microref-numerics`` unless ``numerics=`` is given;
* ``tflm_oracle`` (fixture): TFLM itself (the tflite-micro wheel): ``tflm_oracle.run(model,
  inputs)`` gives its outputs; tests using it skip, with the reason, where the wheel is absent;
* ``assert_bit_exact(actual, expected_or_model, inputs=..., output=0)`` (fixture, or import it
  from this module): on a difference, the count and the first coordinates of the differing
  elements, the largest difference in LSBs, the operator that produced the tensor and the
  ``explain`` story of the first differing element;
* ``parametrize_models(folder, seeds=3)``: a decorator running a test once per model in a folder
  and seed, giving it a ``ModelCase`` (``case.path``, ``case.seed``, ``case.inputs(it)``);
* ``--microref-numerics rounding=single`` (any ``ops.registry.Numerics`` fields, comma-separated):
  the whole suite under an arithmetic variant.

The plugin imports microref lazily: loading it costs nothing in suites that do not use it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

__all__ = ["ModelCase", "TflmOracle", "assert_bit_exact", "parametrize_models", "parse_numerics"]

MAX_COORDINATES_SHOWN = 5
_NUMERICS_KEY = pytest.StashKey[Any]()


# ----------------------------------------------------------------------------- numerics

def parse_numerics(text: str | None):
    """``"rounding=single,scale_precision=float32"`` -> ``Numerics(...)``; None or "" -> the default.
    ``"single"`` alone is short for ``rounding=single``."""
    from ops.registry import DEFAULT_NUMERICS, Numerics

    if not text:
        return DEFAULT_NUMERICS
    fields: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            if part in ("single", "double"):
                fields["rounding"] = part
                continue
            raise ValueError(f"--microref-numerics: {part!r} is not NAME=VALUE (fields: {', '.join(Numerics.CHOICES)})")
        name, value = (s.strip() for s in part.split("=", 1))
        if name not in Numerics.CHOICES:
            raise ValueError(f"--microref-numerics: no field {name!r} (fields: {', '.join(Numerics.CHOICES)})")
        fields[name] = value
    return Numerics(**fields)


def pytest_addoption(parser):
    group = parser.getgroup("microref", "microref bit-exact oracle")
    group.addoption("--microref-numerics", default=None, metavar="FIELD=VALUE[,...]",
                    help="run the suite's microref interpreters under an arithmetic variant, e.g. "
                         "rounding=single or scale_precision=float32 (ops.registry.Numerics)")


def pytest_configure(config):
    config.addinivalue_line("markers", "microref: a test checked against microref (the plugin's fixtures)")
    try:
        config.stash[_NUMERICS_KEY] = parse_numerics(config.getoption("microref_numerics", None))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_report_header(config):
    numerics = config.stash.get(_NUMERICS_KEY, None)
    from ops.registry import DEFAULT_NUMERICS

    if numerics is not None and numerics != DEFAULT_NUMERICS:
        return f"microref numerics: {numerics}"
    return None


# ----------------------------------------------------------------------------- models

def _interpreter(model, numerics=None, **options):
    """An interp.Interpreter for a path, bytes, an interp.Model or an interpreter (returned as is)."""
    from interp import Interpreter, Model

    if isinstance(model, Interpreter):
        return model
    inner = getattr(model, "microref", None)  # interp.compat interpreters
    if inner is not None and not callable(inner):
        return inner
    if numerics is not None:
        options["numerics"] = numerics
    if isinstance(model, Model):
        return Interpreter(model, **options)
    if isinstance(model, (bytes, bytearray, memoryview)):
        return Interpreter.from_bytes(bytes(model), **options)
    return Interpreter.from_file(os.fspath(model), **options)


@pytest.fixture(scope="session")
def microref_numerics(pytestconfig):
    """The suite's ``ops.registry.Numerics`` (``--microref-numerics``; default: the TFLM wheel's)."""
    return pytestconfig.stash[_NUMERICS_KEY]


@pytest.fixture
def microref_model(microref_numerics):
    """``microref_model(path_or_bytes, **options)`` -> ``interp.Interpreter`` (with the suite's
    numerics unless ``numerics=`` is given)."""
    def load(path_or_bytes, **options):
        options.setdefault("numerics", microref_numerics)
        return _interpreter(path_or_bytes, **options)
    return load


class TflmOracle:
    """TFLM's own interpreter (the tflite-micro wheel): ``run(model, inputs)`` -> its outputs."""

    def __init__(self, runtime):
        self.runtime = runtime

    def run(self, model, inputs: Sequence[np.ndarray], arena_size: int | None = None) -> list[np.ndarray]:
        if isinstance(model, (str, os.PathLike)):
            data = Path(model).read_bytes()
        else:
            data = bytes(model)
        ref = self.runtime.Interpreter.from_bytes(data, arena_size=arena_size or max(1 << 22, 16 * len(data)))
        for i, x in enumerate(inputs):
            ref.set_input(np.asarray(x), i)
        ref.invoke()
        from interp import load_model

        n_out = len(load_model(data).main.outputs)
        return [np.array(ref.get_output(k)) for k in range(n_out)]

    __call__ = run


@pytest.fixture(scope="session")
def tflm_oracle():
    """TFLM itself, or a skip saying why it cannot be had."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:
        pytest.skip(f"tflite-micro (TFLM's Python wheel, the oracle) is not installed here ({e}); "
                    f"pip install 'microref[test]' where a wheel exists")
    return TflmOracle(runtime)


# ----------------------------------------------------------------------------- parametrizing

@dataclass(frozen=True)
class ModelCase:
    """One model file and one seed of inputs (see ``parametrize_models``)."""

    path: Path
    seed: int

    def inputs(self, it) -> list[np.ndarray]:
        """Seeded inputs over each input's whole range (float inputs: standard normal)."""
        from interp.runtime.inputs import random_inputs

        return random_inputs(it, np.random.default_rng(self.seed))

    def __str__(self) -> str:
        return f"{self.path.name}-seed{self.seed}"


def parametrize_models(folder: str | os.PathLike, seeds: int | Sequence[int] = 3, pattern: str = "*.tflite",
                       argname: str = "model_case"):
    """``@parametrize_models("models/", seeds=3)``: the test runs once per model file in
    ``folder`` (matching ``pattern``) and seed, receiving a ``ModelCase`` as ``argname``. An
    absent or empty folder gives no cases (pytest reports the test as skipped)."""
    folder = Path(folder)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    paths = sorted(folder.glob(pattern)) if folder.is_dir() else []
    cases = [ModelCase(p, s) for p in paths for s in seed_list]
    return pytest.mark.parametrize(argname, cases, ids=[str(c) for c in cases])


# ----------------------------------------------------------------------------- bit-exactness

def _lsb_difference(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """|actual - expected| in units of the last place: integers exactly, floats in ULPs."""
    if expected.dtype.kind == "f":
        bits = {2: np.int16, 4: np.int32, 8: np.int64}[expected.dtype.itemsize]

        def ordered(a):
            i = np.ascontiguousarray(a).view(bits).astype(np.int64)
            return np.where(i < 0, np.iinfo(bits).min - i, i)
        return np.abs(ordered(actual.astype(expected.dtype)) - ordered(expected))
    if expected.dtype.kind == "b":
        return (actual != expected).astype(np.int64)
    return np.abs(actual.astype(np.int64) - expected.astype(np.int64))


def _producer(it, tensor_index: int):
    for op in it.subgraph.operators:
        if tensor_index in op.outputs:
            return op
    return None


def assert_bit_exact(actual, expected_or_model, inputs=None, *, output: int = 0, tensor: int | str | None = None,
                     numerics=None, explain: bool = True) -> None:
    """Assert ``actual`` equals, bit for bit, what microref computes (or ``expected``).

    ``expected_or_model``: an array of expected values, or a model (path, bytes, interp.Model,
    interp.Interpreter, interp.compat interpreter) run on ``inputs`` — then ``actual`` is compared
    with its output ``output`` (or the tensor ``tensor``, by index or name), and a failure names
    the operator that produced it and tells the ``explain`` story of the first differing element.
    """
    __tracebackhide__ = True
    actual = np.asarray(actual)
    it = t = None
    if isinstance(expected_or_model, (np.ndarray, list, tuple, np.generic)):
        expected = np.asarray(expected_or_model)
    else:
        if inputs is None:
            raise TypeError("assert_bit_exact: give the model's inputs (inputs=[...]) to compare with a model")
        it = _interpreter(expected_or_model, numerics=numerics)
        xs = [inputs] if isinstance(inputs, np.ndarray) and len(it.subgraph.inputs) == 1 else inputs
        it.run(xs, keep=True)
        ti = it.subgraph.outputs[output] if tensor is None else it.tensor_index(tensor)
        t = it.tensors[ti]
        expected = np.asarray(it.tensor(ti))
    where = f'tensor {t.index} "{t.name}" {t.type_name}{list(t.shape)}' if t is not None else "the array"
    if actual.shape != expected.shape:
        pytest.fail(f"microref bit-exactness: shape {actual.shape} differs from microref's {expected.shape} "
                    f"({where})", pytrace=False)
    if actual.dtype != expected.dtype:
        pytest.fail(f"microref bit-exactness: dtype {actual.dtype} differs from microref's {expected.dtype} "
                    f"({where})", pytrace=False)
    if expected.dtype.kind == "f":
        differs = ~((actual == expected) | (np.isnan(actual) & np.isnan(expected))) | \
            (np.signbit(actual) != np.signbit(expected))
    else:
        differs = actual != expected
    count = int(np.count_nonzero(differs))
    if count == 0:
        return
    coords = [tuple(int(c) for c in idx) for idx in np.argwhere(differs)[:MAX_COORDINATES_SHOWN]]
    lsb = _lsb_difference(actual, expected)
    unit = "ULP" if expected.dtype.kind == "f" else "LSB"
    lines = [f"microref bit-exactness: {count} of {expected.size} elements differ "
             f"(max {int(lsb[differs].max())} {unit})", f"  {where}"]
    op = _producer(it, t.index) if it is not None else None
    if op is not None:
        lines[-1] += f", produced by operator {op.index} ({op.display_name})"
    lines.append(f"  first differing elements (actual vs microref, difference in {unit}):")
    for c in coords:
        a, e = actual[c], expected[c]
        lines.append(f"    {c}: {a.item()} vs {e.item()} ({int(lsb[c])} {unit})")
    if count > len(coords):
        lines.append(f"    … and {count - len(coords)} more")
    if explain and op is not None and op.outputs and op.outputs[0] == t.index:
        from .explain import explain as explain_element

        try:
            story = explain_element(it, op.index, coords[0], xs)
        except Exception as e:  # noqa: BLE001 (the report must not hide the difference)
            lines.append(f"  (explain could not tell the story of {coords[0]}: {type(e).__name__}: {e})")
        else:
            lines.append(f"  microref's arithmetic for {coords[0]} (interp.tools.explain):")
            lines += ["    " + line for line in story.lines]
    pytest.fail("\n".join(lines), pytrace=False)


@pytest.fixture(name="assert_bit_exact")
def _assert_bit_exact_fixture(microref_numerics):
    """``assert_bit_exact`` with the suite's ``--microref-numerics``."""
    def check(actual, expected_or_model, inputs=None, **kwargs):
        __tracebackhide__ = True
        kwargs.setdefault("numerics", microref_numerics)
        assert_bit_exact(actual, expected_or_model, inputs, **kwargs)
    return check
