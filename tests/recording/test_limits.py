"""
The recorder's limits, unit by unit: the mix's filter graph escaping (with
the real ffmpeg), file names cut by bytes, child process timeouts and the
mix queue (on a task.Clock), a writer whose file cannot be written.
"""

import re
import signal
import subprocess
import time
from fractions import Fraction

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from wcs.frames import EncodedFrame
from wcs.recording import NAME_BYTES, fileName, process
from wcs.recording.mixer import LABEL_MAX, MixerSettings, Part, RoomMix, ffmpegCommand, \
    filterValue, label
from wcs.recording.writer import PENDING_MAX, StreamWriter

HOSTILE = ["%{e:while(1,0)}", "o'neil: 'x'", "back\\slash\\", "a,b;c[d]e=f",
           "new\nline\r\tand\x00nul", "  spaces  ", "\u202eevil", "中" * 128,
           "%{localtime}%%{pts}", "'", "\\", ":"]


def source(path, seconds=1):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=s=160x120:r=15:d={seconds}", "-f", "lavfi", "-i",
                    f"sine=d={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", str(path)], check=True, timeout=60)
    return path


def test_labels_of_hostile_logins_reach_drawtext_literally(tmp_path):
    """The real ffmpeg mix: it ends at once, and drawtext got each label as it is."""
    files = [source(tmp_path / f"in{i}.mp4") for i in range(2)]
    mix = RoomMix("room", [Part(login, files[i % 2], i * 0.1, 1.0 + i * 0.1)
                           for i, login in enumerate(HOSTILE)])
    settings = MixerSettings(mixerDisplayStreamName=True, width=320, height=240, frameRate=15)
    command = ffmpegCommand(mix, tmp_path / "out.mp4", settings, loglevel="debug")
    graph = command[command.index("-filter_complex") + 1]
    assert graph.count("expansion=none") == len(HOSTILE)
    started = time.monotonic()
    # ffmpeg must end by itself (the old escaping made it spin for ever).
    result = subprocess.run(command, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # ffmpeg's debug log says what each option was set to, once parsed.
    texts = re.findall(r"Setting 'text' to value '(.*?)'\n", result.stderr.decode(), re.S)
    assert texts[:len(HOSTILE)] == [label(login) for login in HOSTILE]
    assert time.monotonic() - started < 120
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_label_is_printable_and_short():
    assert label("new\nline\x00") == "new line "
    assert label("\u202eevil") == " evil"
    assert len(label("中" * 128)) == LABEL_MAX and label("中" * 128).endswith("\u2026")
    assert label("%{e:while(1,0)}") == "%{e:while(1,0)}"  # shown as it is


def test_filter_value_escapes_both_levels():
    assert filterValue("a:b") == r"a\\:b"  # \: for the options, its \ again for the graph
    assert filterValue("a b") == r"a\\ b"
    assert filterValue("x,y") == "x\\,y"
    assert filterValue("'") == "\\\\\\'"


def test_file_name_is_cut_by_utf8_bytes():
    name = fileName("中" * 100)
    part = name[len("stream-") + 37:-len(".mp4")]
    assert part == "中" * (NAME_BYTES // 3)  # 33 characters, 99 bytes: none split
    assert len(name.encode()) < 255
    assert fileName("r" * 300, suffix="-mixed").endswith("r" * NAME_BYTES + "-mixed.mp4")
    assert fileName("../x").endswith("-.._x.mp4")


# Child processes: the watchdog and the queue, on a task.Clock.

class Signals:
    def __init__(self):
        self.sent = []

    def __call__(self, pid, signum):
        self.sent.append((pid, signum))


def test_watchdog_terms_then_kills_after_the_grace():
    clock, signals = Clock(), Signals()
    watchdog = process.Watchdog("hook", 4242, clock, timeout=10, grace=5, kill=signals)
    clock.advance(9.9)
    assert signals.sent == []
    clock.advance(0.1)
    assert signals.sent == [(4242, signal.SIGTERM)]
    clock.advance(4.9)
    assert signals.sent == [(4242, signal.SIGTERM)]
    clock.advance(0.1)
    assert signals.sent == [(4242, signal.SIGTERM), (4242, signal.SIGKILL)]
    clock.advance(1)
    assert watchdog.ended() == 16 and watchdog.timedOut
    assert clock.getDelayedCalls() == []


def test_watchdog_of_a_child_that_ends_in_time():
    clock, signals = Clock(), Signals()
    watchdog = process.Watchdog("mix", 1, clock, timeout=10, kill=signals)
    clock.advance(3)
    assert watchdog.ended() == 3 and not watchdog.timedOut
    clock.advance(100)
    assert signals.sent == [] and clock.getDelayedCalls() == []


def test_watchdog_of_a_child_gone_after_sigterm():
    clock, signals = Clock(), Signals()
    watchdog = process.Watchdog("mix", 1, clock, timeout=2, grace=5, kill=signals)
    clock.advance(3)
    watchdog.ended()
    clock.advance(10)
    assert signals.sent == [(1, signal.SIGTERM)] and clock.getDelayedCalls() == []


def test_watchdog_without_a_timeout_never_signals():
    clock, signals = Clock(), Signals()
    process.Watchdog("mix", 1, clock, timeout=0, kill=signals)
    assert clock.getDelayedCalls() == []


def test_job_queue_runs_a_bounded_number_and_refuses_past_the_queue():
    queue = process.JobQueue(maxRunning=2, maxWaiting=1)
    started, jobs = [], {}

    def job(name):
        started.append(name)
        jobs[name] = Deferred()
        return jobs[name]

    results = [queue.submit(job, n) for n in "abc"]
    assert started == ["a", "b"] and queue.running == 2 and queue.waiting == 1
    assert queue.submit(job, "d") is None  # refused: the queue is full
    jobs["a"].callback("done a")
    assert started == ["a", "b", "c"] and queue.waiting == 0
    assert queue.submit(job, "e") is not None  # room again
    done = []
    results[0].addCallback(done.append)
    assert done == ["done a"]
    jobs["b"].errback(RuntimeError("mix failed"))  # a failed job frees its slot too
    results[1].addErrback(lambda f: None)
    assert started == ["a", "b", "c", "e"]


def test_a_mix_past_the_queue_bound_is_refused_and_its_recordings_stay(tmp_path):
    from twisted.logger import globalLogPublisher

    from wcs.config import Settings
    from wcs.recording import Recorder

    settings = Settings({"mix_max_concurrent": 1, "mix_queue_max": 0})
    recorder = Recorder(tmp_path, Clock(), settings)
    busy = Deferred()
    assert recorder.queue.submit(lambda: busy) is not None  # a mix that runs for ever
    assert recorder.queue.running == 1
    files = [source(tmp_path / f"stream-{i}.mp4") for i in range(2)]
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        done = recorder._mix(RoomMix("late-room", [Part("a", files[0], 0, 1),
                                                   Part("b", files[1], 0, 1)]))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert done.called  # refused at once, not queued
    lines = [e for e in events if "mix_queue_max" in e.get("log_format", "")]
    assert len(lines) == 1 and lines[0]["room"] == "'late-room'"
    assert all(f.exists() for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream-0.mp4", "stream-1.mp4"]


# The writer

def frame(kind, pts, keyframe=True):
    return EncodedFrame(kind, "H264" if kind == "video" else "opus", b"\x00\x00\x00\x01\x65",
                        pts, Fraction(1, 90000), keyframe)


def test_writer_whose_file_cannot_be_made_fails_once_and_holds_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    failures = []
    writer = StreamWriter(blocker / "records" / "x.ts", {"video": "H264", "audio": "opus"},
                          onFailure=failures.append)
    writer.writeFrame(frame("video", 0))
    writer.writeFrame(frame("audio", 0))  # the file is opened now, and fails
    for i in range(1, 1000):
        writer.writeFrame(frame("video", i * 3000))
    assert len(failures) == 1 and isinstance(failures[0], OSError)
    assert writer.pending == [] and writer.closed and writer.frames == 0


def test_writer_waiting_for_audio_holds_a_bounded_number_of_frames(tmp_path):
    """Timestamps that never move (a hostile RTMP encoder) cannot make it wait for ever."""
    writer = StreamWriter(tmp_path / "x.ts", {"video": "H264", "audio": "opus"})
    for _ in range(PENDING_MAX * 3):
        writer.writeFrame(frame("video", 0))
        assert len(writer.pending) < PENDING_MAX
    writer.close()
