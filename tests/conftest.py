"""Shared test settings.

``@pytest.mark.reliability(fault=..., outcome=...)`` marks a test that injects a fault or feeds bad
input; ``benchmarks/reliability.py`` runs them and writes the README's "Reliability" section from
the marks, the results and the fuzzers' input counts (the ``record_inputs`` fixture).

Hypothesis runs a short profile in ``make test`` and a long one by hand:
``HYPOTHESIS_PROFILE=long pytest -m reliability``.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a dev dependency; tests that need it import-skip
    settings = None

if settings is not None:
    settings.register_profile("default", max_examples=60, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=5000, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# How many inputs each fuzz target saw in this session, by target name (written out for the report).
INPUT_COUNTS: Counter[str] = Counter()


@pytest.fixture
def record_inputs():
    """``record_inputs(target, count=1)``: count inputs fed to the fuzz target ``target`` (a short
    name such as ``"read_image"``); the totals go to ``$PIXELWISE_FUZZ_COUNTS`` for the report."""

    def record(target: str, count: int = 1) -> None:
        INPUT_COUNTS[target] += count

    return record


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(fault, outcome): a fault injected or a bad input tried, "
                                       "and what pixelwise does about it (listed in the README)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("PIXELWISE_FUZZ_COUNTS")
    if path and INPUT_COUNTS:
        with open(path, "w") as handle:
            json.dump(dict(sorted(INPUT_COUNTS.items())), handle, indent=2)
