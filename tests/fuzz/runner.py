"""
The one runner of the fuzz targets (docs/security.md, "Fuzzing").

A target is a module C{tests.fuzz.target_NAME} with:
  - C{fuzz(data: bytes) -> None}: feeds one input to the real parser;
  - C{EXPECTED}: the exception types that parser documents for bad input;
  - C{MAX_LEN} (optional): the longest input libFuzzer makes.

An input fails when it raises anything not in C{EXPECTED}, when it logs a
failure (a handler that caught an exception to survive is still a bug), when
it takes over L{TIME_LIMIT} of CPU (twice in a row: a lazy import or a
collection pause is not a finding), or when the process passes the
C{-rss_limit_mb} bound.

    python -m tests.fuzz.runner NAME [libFuzzer flags] [corpus dirs]   one target
    python -m tests.fuzz.runner --all [--seconds N] [--jobs J]           every target
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"

TARGETS = ("websocket", "sdp", "amf0", "amf3", "amf_reencode", "rtmp_connection",
           "rtmp_protocol", "flv", "rtp", "properties", "wsframes", "twcc", "rtx",
           "rtmp_arguments", "http", "cluster", "resp", "feedback")

TIME_LIMIT = 0.1  # s of CPU per input
RSS_LIMIT_MB = 2048
HANG_SECONDS = 10  # libFuzzer's own -timeout: catches an input that never returns


class SlowInput(Exception):
    """An input took more than TIME_LIMIT of CPU, twice."""


class LoggedFailure(Exception):
    """The code under test caught an exception and logged it."""


_logged: list[str] = []
_observing = False


def _watchFailures() -> list[str]:
    """The failures logged (twisted.logger) since the list was last cleared."""
    global _observing
    if not _observing:
        from twisted.logger import globalLogPublisher

        def observer(event):
            failure = event.get("log_failure")
            if failure is not None:
                _logged.append(f"{event.get('log_format')}\n{failure.getTraceback()}")

        globalLogPublisher.addObserver(observer)
        _observing = True
    return _logged


def checked(target):
    """C{target.fuzz} wrapped with the failure rules above."""
    expected = tuple(target.EXPECTED)
    logged = _watchFailures()

    def once(data: bytes) -> float:
        start = time.thread_time()
        try:
            target.fuzz(data)
        except expected:
            pass
        return time.thread_time() - start

    def run(data: bytes) -> None:
        del logged[:]
        if once(data) > TIME_LIMIT:
            spent = once(data)
            if spent > TIME_LIMIT:
                raise SlowInput(f"{len(data)}-byte input took {spent * 1000:.0f} ms of CPU")
        if logged:
            raise LoggedFailure(logged[0])

    return run


def fuzzMain(name: str, argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["wcs"]):
        target = importlib.import_module(f"tests.fuzz.target_{name}")
    run = checked(target)
    flags = [f"-rss_limit_mb={RSS_LIMIT_MB}", f"-timeout={HANG_SECONDS}",
             f"-max_len={getattr(target, 'MAX_LEN', 4096)}", "-print_final_stats=1"]
    atheris.Setup([sys.argv[0], *flags, *argv], run)
    atheris.Fuzz()


# Running targets in subprocesses, for `make fuzz` and tests/fuzz/test_fuzz.py.

@dataclass
class Result:
    name: str
    executions: int
    failed: bool
    seconds: float
    output: str
    artifacts: list[Path]

    @property
    def summary(self) -> str:
        rate = self.executions / self.seconds if self.seconds else 0
        state = "FAILED" if self.failed else "ok"
        line = (f"{self.name:16} {self.executions:>10} execs  {rate:>8.0f}/s  "
                f"{self.seconds:>6.0f} s  failures: {int(self.failed)}  {state}")
        return line + "".join(f"\n    crash input: {a}" for a in self.artifacts)


def runTarget(name: str, seconds: int, workDir: Path, extraCorpus: list[Path] = ()) -> Result:
    """
    Fuzz target C{name} for C{seconds} in a subprocess, starting from its
    committed corpus (read-only: new inputs go to C{workDir}/corpus).
    """
    corpus = workDir / "corpus" / name
    artifacts = workDir / "crashes" / name
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    seeds = [str(d) for d in (CORPUS / name, *extraCorpus) if Path(d).is_dir()]
    command = [sys.executable, "-m", "tests.fuzz.runner", name,
               f"-max_total_time={seconds}", f"-artifact_prefix={artifacts}/",
               str(corpus), *seeds]
    start = time.monotonic()
    process = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace",
                             timeout=seconds + 120 + HANG_SECONDS)
    elapsed = time.monotonic() - start
    output = process.stdout
    found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output) or \
        re.findall(r"Done (\d+) runs", output)
    executions = int(found[-1]) if found else 0
    new = sorted(set(artifacts.iterdir()) - before)
    return Result(name, executions, process.returncode != 0 or bool(new),
                  min(elapsed, seconds) if process.returncode == 0 else elapsed, output, new)


def campaign(names: list[str], seconds: int, jobs: int, workDir: Path) -> bool:
    print(f"fuzzing {len(names)} targets for {seconds} s each, {jobs} at a time; "
          f"work in {workDir}", flush=True)
    ok = True
    with ThreadPoolExecutor(jobs) as pool:
        for result in pool.map(lambda n: runTarget(n, seconds, workDir), names):
            if result.failed:
                ok = False
                tail = result.output.strip().splitlines()[-40:]
                print("\n".join(f"  | {line}" for line in tail))
            print(result.summary, flush=True)
    return ok


def main() -> None:
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        fuzzMain(sys.argv[1], sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every target")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 300)))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None,
                        help="grown corpus and crash inputs (default: a temporary directory)")
    args = parser.parse_args()
    names = list(TARGETS) if args.all else args.targets.split(",")
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="wcs-fuzz-") as work:
            sys.exit(0 if campaign(names, args.seconds, args.jobs, Path(work)) else 1)
    sys.exit(0 if campaign(names, args.seconds, args.jobs, args.work) else 1)


if __name__ == "__main__":
    main()
