"""
wcs's own feedback counters of a lab run, read from the server's log: the
"video feedback" line each play and publish session logs when it ends
(wcs/media/session.py). Per player: NACK packets received, packets resent,
NACKed packets refused over the budget or within a round trip, held for
reordering, keyframe requests received and not passed on; the publisher:
packets NACKed, given up, held back by the budget, keyframe requests sent.
Whole sessions (warm-up included), not the window alone.
"""

from __future__ import annotations

import re

_NUMBER = r"(\d+)"
PLAYER = re.compile(
    r"<PlaySession '(?P<stream>[^']+)' [^>]*>: video feedback: "
    rf"{_NUMBER} NACKs, {_NUMBER} resent \((?:{_NUMBER}|None) as RTX\), {_NUMBER} over the budget, "
    rf"{_NUMBER} within a round trip \({_NUMBER} ms\), {_NUMBER} too old \({_NUMBER} more before its "
    rf"last keyframe, ignored\); eager in {_NUMBER} re-askings of {_NUMBER} NACKs: {_NUMBER} held for "
    rf"reordering \({_NUMBER} came meanwhile, wait {_NUMBER} ms\), {_NUMBER} for packets late "
    rf"on the way in not held; {_NUMBER} keyframe requests, {_NUMBER} not passed on; "
    rf"{_NUMBER} late packets sent twice(?:, {_NUMBER} repeats within a round trip sent again)?"
    rf"(?:, {_NUMBER} first NACKs left for their repeat)?"
    rf"(?:, {_NUMBER} far behind not sent again)?"
    rf"(?:, {_NUMBER} keyframe starts held for copies on their way)?")
PLAYER_FIELDS = ("nacks", "resent", "rtx", "overBudget", "tooSoon", "rttMs", "tooOld",
                 "beforeKeyframe", "reasked", "nackLists", "held",
                 "heldCameMeanwhile", "waitMs", "upstreamLate", "pliReceived", "pliLimited",
                 "repeated", "resentEarly", "deferred", "farRepeats", "startsHeld")
PUBLISHER = re.compile(
    r"<PublishSession '(?P<stream>[^']+)' [^>]*>: video feedback: "
    rf"{_NUMBER} NACKed(?: \({_NUMBER} twice\))?, {_NUMBER} repaired, {_NUMBER} given up, "
    rf"{_NUMBER} held by the budget, {_NUMBER} keyframe requests")
PUBLISHER_FIELDS = ("nacked", "nackedTwice", "repaired", "givenUp", "overBudgetTicks",
                    "keyframeRequests")


# wcs.media.narrow's moves of a player to the lower rendition and back.
NARROW = re.compile(r"<PlaySession '(?P<stream>[^']+)' [^>]*>: (?:(?P<moved>narrow link "
                    r"\(\d+ of \d+ packets lost\), moved)|(?P<back>clean on the rendition))")


def feedback(log: str, stream: str) -> dict:
    """
    {"publisher": {...} or None, "players": [{...}, ...], "narrow": {"moved":
    n, "back": n}} of C{stream} in C{log}.
    """
    players, publisher = [], None
    narrow = {"moved": 0, "back": 0}
    for line in log.splitlines():
        match = NARROW.search(line)
        if match and match["stream"] == stream:
            narrow["moved" if match["moved"] else "back"] += 1
            continue
        match = PLAYER.search(line)
        if match and match["stream"] == stream:
            players.append({k: int(v) if v is not None else None
                            for k, v in zip(PLAYER_FIELDS, match.groups()[1:])})
            continue
        match = PUBLISHER.search(line)
        if match and match["stream"] == stream:
            publisher = {k: int(v) if v is not None else None
                         for k, v in zip(PUBLISHER_FIELDS, match.groups()[1:])}
    return {"publisher": publisher, "players": players, "narrow": narrow}
