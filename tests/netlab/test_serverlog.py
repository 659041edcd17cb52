"""The lab's readers of wcs's feedback log lines and of its own CPU."""

import os
import subprocess
import sys
import time

from tests.netlab.cpu import CpuMeter, residentMB, snapshot
from tests.netlab.serverlog import feedback

PLAY = ("2026-11-27T00:36:23+0000 [wcs.media.session.PlaySession#info] <PlaySession "
        "'room-pub' 7f99fcd0>: video feedback: 1293 NACKs, 425 resent (425 as RTX), 222 over "
        "the budget, 1405 within a round trip (201 ms), 3 too old (5 more before its last "
        "keyframe, ignored); eager in 40 re-askings of 1293 NACKs: 1033 held for reordering "
        "(1037 came meanwhile, wait 133 ms), 1037 for packets late on the way in not held; "
        "18 keyframe requests, 89 not passed on; 61 late packets sent twice, 7 repeats within "
        "a round trip sent again, 5 first NACKs left for their repeat, 4 far behind "
        "not sent again, 2 keyframe starts held for copies on their way")
PUBLISH = ("2026-11-27T00:36:24+0000 [wcs.media.session.PublishSession#info] <PublishSession "
           "'room-pub' 78d61e10>: video feedback: 418 NACKed (17 twice), 2993 repaired, 81 given "
           "up, 1829 held by the budget, 12 keyframe requests; RTX 303 (48 unasked, 0 padding)")


def test_feedbackOfOneStream():
    other = PLAY.replace("'room-pub'", "'else-pub'").replace("1293 NACKs", "7 NACKs")
    got = feedback("\n".join([PLAY, other, PLAY.replace("(425 as RTX)", "(None as RTX)"),
                              PUBLISH]), "room-pub")
    assert got["publisher"] == {"nacked": 418, "nackedTwice": 17, "repaired": 2993,
                                "givenUp": 81, "overBudgetTicks": 1829, "keyframeRequests": 12}
    # A line from before the count of NACKs sent twice.
    older = feedback(PUBLISH.replace(" (17 twice)", ""), "room-pub")["publisher"]
    assert (older["nacked"], older["nackedTwice"], older["repaired"]) == (418, None, 2993)
    assert [p["nacks"] for p in got["players"]] == [1293, 1293]
    first, second = got["players"]
    assert (first["rtx"], second["rtx"]) == (425, None)
    assert (first["overBudget"], first["tooSoon"], first["held"], first["waitMs"],
            first["pliReceived"], first["pliLimited"], first["repeated"]) == \
        (222, 1405, 1033, 133, 18, 89, 61)
    assert (first["tooOld"], first["beforeKeyframe"], first["reasked"],
            first["nackLists"], first["resentEarly"], first["deferred"],
            first["farRepeats"], first["startsHeld"]) == (3, 5, 40, 1293, 7, 5, 4, 2)
    # A line from before the count of repeats answered again.
    older = feedback(PLAY.replace(", 7 repeats within a round trip sent again, 5 first NACKs "
                                  "left for their repeat, 4 far behind not sent again, 2 keyframe "
                                  "starts held for copies on their way", ""),
                     "room-pub")["players"][0]
    assert (older["repeated"], older["resentEarly"], older["farRepeats"],
            older["startsHeld"]) == (61, None, None, None)


def test_feedbackOfNoStream():
    assert feedback(PLAY, None) == {"publisher": None, "players": [],
                                    "narrow": {"moved": 0, "back": 0}}


def test_narrowMovesAsTheWatchLogsThem():
    """The lines wcs.media.narrow writes when it moves a player and brings it back."""
    from twisted.internet.task import Clock
    from twisted.logger import Logger, formatEvent

    from tests.media.test_narrow import _interval, _MovingSubscription, _Rendition
    from wcs.media.narrow import NarrowWatch

    events = []
    clock, subscription = Clock(), _MovingSubscription()
    watch = NarrowWatch(clock, subscription, _Rendition, loss=0.1, share=0.5, hold=2,
                        name="<PlaySession 'room-pub' 1a2b>")
    watch.log = Logger(observer=events.append)
    for share in (0.4,) * 3 + (0,) * 3 + (0.4,) * 3:  # moved, back, moved again
        _interval(clock, subscription, share)
    watch.stop()
    lines = [formatEvent(e) for e in events]
    assert feedback("\n".join(lines), "room-pub")["narrow"] == {"moved": 2, "back": 1}, lines
    assert feedback("\n".join(lines), "else-pub")["narrow"] == {"moved": 0, "back": 0}


def test_cpuCountsThisProcess():
    assert os.getpid() in snapshot()
    meter = CpuMeter().start()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass
    cores = meter.stop()
    assert cores["harness"] > 0 and cores["lab"] >= cores["harness"]
    assert 0 < cores["machine"] <= cores["cores"] + 0.5


def test_residentMemoryOfAServerChild():
    """A child python (a server, for the lab) counts, and stops counting once it is gone."""
    before = residentMB() or 0.0  # a server another test left running counts too
    child = subprocess.Popen([sys.executable, "-c",
                              "import sys, time; b = bytearray(40 << 20); sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        grew = 0.0
        while grew < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
            grew = (residentMB() or 0.0) - before
        assert 40 <= grew < 200
    finally:
        child.communicate(b"", timeout=10)
    assert (residentMB() or 0.0) - before < 40
