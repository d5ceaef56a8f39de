"""Shared pytest configuration.

Hypothesis profiles for the differential tests (tests/test_diff_*.py), chosen with
``pytest --hypothesis-profile=NAME``:

* ``default`` (CI): a fixed, derandomized set of examples per test, so a CI run is reproducible;
  the whole differential suite (100 examples per test) takes about 1.5 minutes on two cores.
* ``deep``: thousands of fresh random examples per op, for hunting mismatches
  (``pytest tests/test_diff_*.py --hypothesis-profile=deep``).
"""
from collections import Counter

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("default", max_examples=100, derandomize=True, database=None, **_COMMON)
settings.register_profile("deep", max_examples=3000, **_COMMON)
settings.load_profile("default")


def pytest_terminal_summary(terminalreporter, config):
    """How many examples each differential test compared with TFLM, and how many both refused
    (per op; per op and type with -v)."""
    try:
        from diff_support import OUTCOMES
    except ImportError:
        return
    if not OUTCOMES:
        return
    rows = OUTCOMES
    if config.getoption("verbose") < 1:
        rows = {}
        for label, counts in OUTCOMES.items():
            op = "builder" if label.startswith("builder") else label.split()[0]
            rows.setdefault(op, Counter()).update(counts)
    terminalreporter.section("differential examples: compared with TFLM / refused by both")
    for label in sorted(rows):
        counts = rows[label]
        terminalreporter.write_line(
            f"{label:<40} {counts['compared']:>7} compared {counts['rejected by both']:>7} refused")
