"""
Messages from other nodes are checked before they reach a handler
(wcs.cluster.bus.readPayload): a malformed one (an older or buggy node) is
dropped with one rate-limited line, never an exception in a handler.
"""

import json

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from wcs.cluster.bus import Bus, readPayload

GOOD = {"op": "chat", "from": "a", "inc": "1", "session": "s", "room": "r", "to": "x",
        "text": "hi"}


@pytest.mark.parametrize("payload, reason", [
    ("[1]", "not an object"),
    ('{"op": "chat"}', "from"),
    (json.dumps({**GOOD, "session": ["s"]}), "session is not a string"),
    (json.dumps({**GOOD, "room": None}), "without room"),
    (json.dumps({**GOOD, "op": "join", "login": 5}), "login is not a string"),
    (json.dumps({"op": "deliver", "from": "a", "name": "x", "to": "s"}), "list of sessions"),
    (json.dumps({"op": "deliver", "from": "a", "name": "x", "to": ["s"], "args": {}}),
     "args is not a list"),
    (json.dumps({**GOOD, "op": "joined", "id": ["a"]}), "id is not a string"),
    (json.dumps({**GOOD, "claims": "x"}), "claims is not an object"),
    ("{" + '"a":[' * 100 + "]" * 100 + "}", "nested deeper than 64"),
    (json.dumps({**GOOD, "text": "x" * 2000}), "over cluster_max_message"),
    (b"\xff", "utf-8"),
])
def test_malformed_messages_are_refused(payload, reason):
    with pytest.raises(ValueError, match=reason):
        readPayload(payload, 1024)


def test_well_formed_messages_pass():
    assert readPayload(json.dumps(GOOD), 1024) == GOOD
    deliver = {"op": "deliver", "from": "a", "inc": "1", "to": ["s", "t"],
               "name": "OnDataEvent", "args": [{"payload": {}}]}
    assert readPayload(json.dumps(deliver).encode(), 1024) == deliver


def test_the_bus_drops_them_with_one_line_per_interval():
    events = []
    globalLogPublisher.addObserver(events.append)
    dispatched = []
    try:
        bus = Bus(None, "b", "1", dispatched.append, Clock(), maxMessage=1024)
        for _ in range(50):
            bus._received('{"op": "leave", "from": "a", "session": 7}')
        bus._received(json.dumps(GOOD))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert dispatched == [GOOD]
    lines = [e for e in events if "unreadable message" in e.get("log_format", "")]
    assert len(lines) == 1 and not any(e.get("log_failure") for e in events)
