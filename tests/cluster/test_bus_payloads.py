"""
Messages from other nodes are checked before they reach a handler
(wcs.cluster.bus.readEnvelope: size, nesting, shape;
wcs.cluster.routing.checkMessage: each op's fields): a malformed one (an older
or buggy node) is dropped with one rate-limited line, never an exception in
a handler.
"""

import json

import pytest

from wcs.access.tokens import Claims
from wcs.cluster.bus import readEnvelope
from wcs.cluster.hosts import claimsFromJson
from wcs.cluster.relay import claimsAsJson
from wcs.cluster.resync import readMembers
from wcs.cluster.routing import checkMessage

GOOD = {"op": "chat", "session": "s", "room": "r", "to": "x", "text": "hi"}
JOIN = {"op": "join", "session": "s", "room": "r", "login": "zed"}
CLAIMS = claimsAsJson(Claims("zed", "*", frozenset({"join", "play"}), 1764226800.0))


def envelope(*messages, node="a"):
    return json.dumps({"from": node, "inc": "1", "m": list(messages)})


@pytest.mark.parametrize("data, reason", [
    ("[1]", "not an envelope"),
    ('{"m": {}}', "not an envelope"),
    ('{"m": []}', "without its node"),
    ('{"from": ["a"], "m": []}', "without its node"),
    ('{"from": "a", "m": [' + "[" * 100 + "]" * 100 + "]}", "nested deeper than 64"),
    (envelope({**GOOD, "text": "x" * 2000}), "over cluster_max_message"),
    (b"\xff", "utf-8"),
])
def test_malformed_envelopes_are_refused(data, reason):
    with pytest.raises(ValueError, match=reason):
        readEnvelope(data, 1024)


@pytest.mark.parametrize("payload, reason", [
    ({"session": "s"}, "without op"),
    ({**GOOD, "session": ["s"]}, "session is not a string"),
    ({**GOOD, "room": None}, "without room"),
    ({**GOOD, "op": "join", "login": 5}, "login is not a string"),
    ({"op": "deliver", "name": "x", "to": "s"}, "list of sessions"),
    ({"op": "deliver", "name": "x", "to": ["s"], "args": {}}, "args is not a list"),
    ({**GOOD, "op": "joined", "id": ["a"]}, "id is not a string"),
    ({**GOOD, "op": "joined", "relay": ["h", "80"]}, "relay is not"),
    ({**GOOD, "claims": "x"}, "claims is not an object"),
    # The fuzzer's: grants of 1 reached frozenset() in the room's node's join.
    ({**JOIN, "claims": {**CLAIMS, "grants": 1}}, "grants are not a list of grants"),
    ({**JOIN, "claims": {**CLAIMS, "grants": ["play"] * 6}}, "grants are not a list"),
    ({**JOIN, "claims": {**CLAIMS, "grants": [["play"]]}}, "grants are not a list"),
    ({**JOIN, "claims": {**CLAIMS, "login": None}}, "claims without login or room"),
    ({**JOIN, "claims": {**CLAIMS, "expires": "soon"}}, "expires is not a number"),
    ({**JOIN, "claims": {**CLAIMS, "expires": True}}, "expires is not a number"),
    ({**JOIN, "claims": {**CLAIMS, "expires": float("inf")}}, "expires is not a number"),
    ({**JOIN, "claims": {**CLAIMS, "expires": float("nan")}}, "expires is not a number"),
    ({**JOIN, "claims": {**CLAIMS, "expires": 10 ** 400}}, "expires is not a number"),
    ({"op": "split", "room": "r", "since": "1"}, "since is not a number"),
    ({"op": "split", "room": "r", "since": True}, "since is not a number"),
    ({"op": "split", "room": "r", "since": float("inf")}, "since is not a number"),
    ({"op": "split", "room": "r", "since": float("nan")}, "since is not a number"),
    ({"op": "split", "room": "r", "since": -10 ** 400}, "since is not a number"),
    ({"op": "split", "since": 1.5}, "without room"),
])
def test_malformed_messages_are_refused(payload, reason):
    with pytest.raises(ValueError, match=reason):
        checkMessage({"from": "a", **payload})


def test_well_formed_messages_pass():
    node, incarnation, messages = readEnvelope(envelope(GOOD), 1024)
    assert (node, incarnation, messages) == ("a", "1", [GOOD])
    checkMessage({"from": "a", **GOOD})
    checkMessage({"from": "a", "op": "deliver", "to": ["s", "t"], "name": "OnDataEvent",
                  "args": [{"payload": {}}]})
    checkMessage({"from": "a", "op": "joined", "session": "s", "room": "r",
                  "relay": ["127.0.0.1", 4000]})
    checkMessage({"from": "a", "op": "split", "room": "r", "since": 1764226800.25})
    checkMessage({"from": "a", **JOIN, "claims": CLAIMS})
    checkMessage({"from": "a", **JOIN, "claims": None})
    assert claimsFromJson(CLAIMS) == Claims("zed", "*", frozenset({"join", "play"}),
                                            1764226800.0)


def test_a_listing_with_malformed_claims_is_refused():
    """A resync's listing admits its members with their claims: checked as a join's."""
    member = {"session": "s", "login": "zed", "streams": [], "claims": CLAIMS}
    listing = {"rooms": {"r": [member]}, "sessions": ["s"]}
    assert readMembers(listing)[0] == {"r": {"s": member}}
    member["claims"] = {**CLAIMS, "grants": 1}
    with pytest.raises(ValueError, match="grants are not a list"):
        readMembers(listing)
