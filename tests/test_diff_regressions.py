"""Every mismatch the differential fuzzing found, replayed as a fixed case.

Each ``tests/regressions/*.json`` names the test module whose ``run_case(op, case)`` builds and
checks it, the minimal parameters hypothesis shrank the failure to, and what was wrong. The case
is checked against TFLM exactly as the fuzzer checks it, so it keeps guarding the fix.
"""
import importlib
import json
import pathlib

import pytest

REGRESSIONS = sorted((pathlib.Path(__file__).parent / "regressions").glob("*.json"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regression_matches_tflm(path):
    entry = json.loads(path.read_text())
    module = importlib.import_module(entry["module"])
    module.run_case(entry["op"], entry["case"])


def test_every_registered_op_has_a_differential_test():
    # A new kernel needs a strategy in some tests/test_diff_*.py (and its name in that DIFF_OPS).
    import ops  # noqa: F401  (registers every kernel)
    from ops.registry import REGISTRY
    covered = set()
    for path in sorted(pathlib.Path(__file__).parent.glob("test_diff_*.py")):
        module = importlib.import_module(path.stem)
        covered |= set(getattr(module, "DIFF_OPS", ()))
    assert sorted(set(REGISTRY) - covered) == []
