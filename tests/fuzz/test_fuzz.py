"""
Fuzzing in CI: every target for FUZZ_SECONDS (15 by default) from its
corpus, and every input a fuzzer ever failed on (tests/fuzz/crashes/) fed
again as a regression test.
"""

from __future__ import annotations

import importlib
import os

import pytest

from tests.fuzz.runner import CRASHES, TARGETS, checked, runTarget

SECONDS = int(os.environ.get("FUZZ_SECONDS", 15))
JOBS = 2  # the CI machine's cores; each target is one process

# Crash inputs of bugs not fixed yet ("target/file": reason), as strict
# xfails: the fix turns them into failures until the entry is removed.
KNOWN: dict[str, str] = {}


def _known(name: str) -> str | None:
    reasons = [reason for key, reason in KNOWN.items() if key.startswith(name + "/")]
    return "; ".join(reasons) or None


def _crashInputs():
    for path in sorted(CRASHES.glob("*/*")):
        key = f"{path.parent.name}/{path.name}"
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN[key])] if key in KNOWN else []
        yield pytest.param(path, id=key, marks=marks)


@pytest.mark.parametrize("path", list(_crashInputs()))
def test_crashInput(path):
    """An input that once failed its target passes it now."""
    target = importlib.import_module(f"tests.fuzz.target_{path.parent.name}")
    checked(target)(path.read_bytes())


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Every target fuzzed once, JOBS at a time; results by name."""
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("atheris")
    work = tmp_path_factory.mktemp("fuzz")
    with ThreadPoolExecutor(JOBS) as pool:
        results = pool.map(lambda n: runTarget(n, SECONDS, work, [CRASHES / n]), TARGETS)
        return {result.name: result for result in results}


def _targets():
    for name in TARGETS:
        reason = _known(name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(name, id=name, marks=marks)


@pytest.mark.parametrize("name", list(_targets()))
def test_fuzzTarget(campaign, name):
    """
    Fuzzed from its corpus and its past crash inputs: no failure, and the
    fuzzer did run (executions counted by libFuzzer).
    """
    result = campaign[name]
    assert not result.failed, result.output[-4000:]
    assert result.executions > 0, result.output[-4000:]
