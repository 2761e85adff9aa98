"""Hardening tests: how many inputs each fuzzed parser was given, shown in the terminal summary."""
from __future__ import annotations

from collections import Counter

import pytest

FUZZED_INPUTS = pytest.StashKey[Counter]()


@pytest.fixture(scope="session")
def fuzzed_inputs(pytestconfig) -> Counter:
    """Parser name -> number of inputs tried; each fuzz test adds one per call of the parser."""
    return pytestconfig.stash.setdefault(FUZZED_INPUTS, Counter())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder for one fuzz module's generated files."""
    return tmp_path_factory.mktemp("fuzz")


def pytest_terminal_summary(terminalreporter, config) -> None:
    counts = config.stash.get(FUZZED_INPUTS, Counter())
    if counts:
        terminalreporter.write_line("fuzzed inputs per parser: " + ", ".join(
            f"{parser} {count}" for parser, count in sorted(counts.items())) + f" ({sum(counts.values())} in all)")
