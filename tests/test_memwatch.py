"""wcs.memwatch: the allocation sites that grew, reported on an injected clock."""

from twisted.internet import defer
from twisted.internet.task import Clock

from wcs.memwatch import MemoryWatch, rssKiB

held = []


def _grow():
    held.append([bytearray(1000) for _ in range(2000)])  # ~2 MB, kept


def test_reportsTheSiteThatGrewSinceTheBaseline(tmp_path):
    path = tmp_path / "memory.txt"
    clock = Clock()
    # The thread's work done at once: the test reads the file after each tick.
    watch = MemoryWatch(clock, str(path), 60, offThread=defer.maybeDeferred)
    watch.startService()
    try:
        clock.advance(60)
        first = path.read_text()
        assert "baseline taken" in first and "RSS" in first
        _grow()
        clock.advance(60)
    finally:
        watch.stopService()
        held.clear()
    report = path.read_text()[len(first):]
    assert report.startswith("== ") and "grown since the baseline:" in report
    lines = report.splitlines()
    # The largest growth first, its site this file's _grow.
    assert lines[2].startswith("+") and "KiB" in lines[2]
    site = next(line for line in lines[3:] if "File" in line)
    assert "test_memwatch.py" in site
    size = float(lines[2][1:].split()[0])
    assert 1500 < size < 4000, lines[2]
    assert not clock.getDelayedCalls()  # stopped


def test_rss():
    assert rssKiB() > 1000
    assert rssKiB("/nonexistent") is None


def test_aFailedReportIsLoggedAndTheNextStillComes(tmp_path):
    clock = Clock()
    watch = MemoryWatch(clock, str(tmp_path / "missing" / "memory.txt"), 60,
                        offThread=defer.maybeDeferred)
    watch.startService()
    try:
        clock.advance(60)
        assert len(clock.getDelayedCalls()) == 1
    finally:
        watch.stopService()
