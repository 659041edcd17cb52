"""wcs.access without a server: tokens, buckets, the stream-name rule, the gate."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from wcs.access.gate import Gate
from wcs.access.limits import Bans, Buckets
from wcs.access.policy import AccessPolicy, checkSettings, reservedName
from wcs.access.tokens import TokenError, Verifier, loadKeys, mint
from wcs.config import ConfigError, Settings

SECRET = "a-test-secret-of-at-least-32-bytes!!"


def verifier(secret=SECRET, public=""):
    return Verifier(loadKeys(secret, public))


def test_valid_token_gives_its_claims():
    claims = verifier().verify(mint(SECRET, "alice", "demo", ["join", "play"], 60))
    assert (claims.login, claims.room, claims.grants) == ("alice", "demo",
                                                           frozenset({"join", "play"}))
    assert claims.allows("join", "demo") and not claims.allows("join", "other")
    assert not claims.allows("publish", "demo")  # a grant not given is refused


# Tokens are made when the test runs, not when it is collected: a token
# valid "in 300 s" made at collection reads as expired in a long run.
@pytest.mark.parametrize("makeToken, reason", [
    (lambda: None, "a token is required"),
    (lambda: "", "a token is required"),
    (lambda: "not.a.jwt", "malformed token"),
    (lambda: 12, "malformed token"),
    (lambda: mint("another-secret-of-at-least-32-bytes!", "alice", "demo", ["join"], 60),
     "bad token signature"),
    (lambda: mint(SECRET, "alice", "demo", ["join"], 60, now=time.time() - 200),
     "token expired"),
    (lambda: mint(SECRET, "alice", "demo", ["join"], 60, now=time.time() + 300),
     "token not yet valid"),
    (lambda: jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
     "token has no 'exp' claim"),
    (lambda: jwt.encode({"sub": "a", "exp": time.time() + 60}, None, algorithm="none"),
     "token algorithm 'none' not accepted"),
])
def test_refused_tokens_say_why(makeToken, reason):
    with pytest.raises(TokenError) as e:
        verifier().verify(makeToken())
    assert str(e.value) == reason


def test_leeway_of_60_seconds():
    v = verifier()
    # Expired 30 s ago: within the leeway; 90 s ago: not.
    assert v.verify(mint(SECRET, "a", "r", [], 60, now=time.time() - 90)).login == "a"
    with pytest.raises(TokenError):
        v.verify(mint(SECRET, "a", "r", [], 60, now=time.time() - 150))


def _pem(private, path):
    path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(path)


def test_public_keys_and_rotation_by_kid(tmp_path):
    rsaKey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ecKey = ec.generate_private_key(ec.SECP256R1())
    edKey = ed25519.Ed25519PrivateKey.generate()
    public = ",".join([_pem(rsaKey, tmp_path / "rsa1.pem"), "ec=" + _pem(ecKey, tmp_path / "e.pem"),
                       _pem(edKey, tmp_path / "ed.pem")])
    v = verifier(secret="old:" + SECRET + " new:another-secret-of-at-least-32-bytes!",
                 public=public)
    assert v.verify(mint(rsaKey, "r", "*", [], 60, algorithm="RS256", kid="rsa1")).login == "r"
    assert v.verify(mint(ecKey, "e", "*", [], 60, algorithm="ES256", kid="ec")).login == "e"
    assert v.verify(mint(edKey, "d", "*", [], 60, algorithm="EdDSA", kid="ed")).login == "d"
    assert v.verify(mint(SECRET, "o", "*", [], 60, kid="old")).login == "o"
    assert v.verify(mint("another-secret-of-at-least-32-bytes!", "n", "*", [], 60,
                         kid="new")).login == "n"
    with pytest.raises(TokenError, match="unknown key"):
        v.verify(mint(SECRET, "x", "*", [], 60, kid="gone"))
    # The right key id with another key's signature.
    with pytest.raises(TokenError, match="bad token signature"):
        v.verify(mint(SECRET, "x", "*", [], 60, kid="new"))


def test_a_key_file_that_is_no_key_stops_the_start(tmp_path):
    (tmp_path / "k.pem").write_text("nonsense")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        loadKeys("", str(tmp_path / "k.pem"))
    with pytest.raises(ConfigError, match="cannot read"):
        loadKeys("", str(tmp_path / "missing.pem"))


def test_auth_required_needs_a_key_or_a_hook():
    with pytest.raises(ConfigError, match="nothing can authorise"):
        checkSettings(Settings({"auth_required": True}))
    checkSettings(Settings({"auth_required": True, "auth_jwt_secret": SECRET}))
    checkSettings(Settings({"auth_required": True, "rest_hook_url": "http://127.0.0.1:1/"}))
    with pytest.raises(ConfigError, match="rest_hook_url"):
        checkSettings(Settings({"rest_hook_url": "ftp://x"}))


def test_buckets_refill_at_their_rate():
    clock = Clock()
    buckets = Buckets(clock, rate=2, burst=4)
    assert [buckets.take("a") for _ in range(5)] == [True] * 4 + [False]
    assert buckets.take("b")  # another key has its own bucket
    clock.advance(0.5)
    assert buckets.take("a") and not buckets.take("a")


def test_buckets_memory_is_bounded():
    buckets = Buckets(Clock(), rate=1, burst=1, maxKeys=100)
    for i in range(1000):
        buckets.take(i)
    assert len(buckets._buckets) == 100


def test_too_many_failures_ban_for_a_while():
    clock = Clock()
    bans = Bans(clock, limit=3, duration=60)
    assert [bans.failed("1.2.3.4") for _ in range(4)] == [False, False, False, True]
    assert bans.banned("1.2.3.4") and not bans.banned("5.6.7.8")
    clock.advance(61)
    assert not bans.banned("1.2.3.4")


def test_rate_limits_only_with_access_control():
    assert AccessPolicy(Settings(), Clock()).connections.rate == 0
    on = AccessPolicy(Settings({"auth_required": True, "auth_jwt_secret": SECRET}), Clock())
    assert on.connections.rate == 20 and on.joins.rate == 5 and on.chats.rate == 20


def test_stream_names_belong_to_their_owner():
    rooms = {"demo", "my-room"}.__contains__
    assert reservedName("demo-alice-1234", "demo", "alice", rooms) is None
    assert reservedName("demo-alice", "demo", "alice", rooms) is None
    assert "must be named demo-bob" in reservedName("demo-alice-1234", "demo", "bob", rooms)
    assert "must be named" in reservedName("demo-alicex", "demo", "alice", rooms)
    # Outside a room: a name in a room's pattern is its participant's only.
    assert "reserved" in reservedName("demo-alice-1", None, "bob", rooms)
    assert "reserved" in reservedName("my-room-alice", None, "bob", rooms)
    assert reservedName("my-room-bob-x", None, "bob", rooms) is None
    assert reservedName("live-stream", None, "bob", rooms) is None


def test_gate_runs_at_once_when_the_answer_is_in():
    delivered, done = [], []
    gate = Gate(lambda *m: delivered.append(m), lambda reason: None)
    gate.after(succeed("yes"), done.append)
    assert done == ["yes"] and not gate.waiting


def test_gate_holds_messages_in_order_until_the_answer():
    delivered, done = [], []
    gate = Gate(lambda *m: delivered.append(m), lambda reason: None)
    answer = Deferred()
    gate.after(answer, done.append)
    assert gate.waiting
    gate.hold("a", [1])
    gate.hold("b", [2])
    assert delivered == [] and done == []
    answer.callback("yes")
    assert done == ["yes"] and delivered == [("a", [1]), ("b", [2])] and not gate.waiting


def test_a_released_message_that_waits_again_keeps_the_rest_behind_it():
    answers = [Deferred(), Deferred()]
    delivered = []
    gate = None

    def deliver(name, args):
        delivered.append(name)
        if name == "second-check":
            gate.after(answers[1], lambda r: delivered.append("checked"))

    gate = Gate(deliver, lambda reason: None)
    gate.after(answers[0], lambda r: None)
    for name in ("second-check", "after"):
        gate.hold(name, [])
    answers[0].callback(None)
    assert delivered == ["second-check"] and gate.waiting
    gate.hold("newest", [])
    answers[1].callback(None)
    assert delivered == ["second-check", "checked", "after", "newest"]


def test_gate_holds_a_bounded_number():
    reasons = []
    gate = Gate(lambda *m: None, reasons.append, limit=3)
    gate.after(Deferred(), lambda r: None)
    for i in range(5):
        gate.hold("m", [i])
    assert len(gate.held) == 3 and len(reasons) == 2


def test_gate_waits_for_a_deferred_paused_on_another():
    inner, outer, done = Deferred(), succeed(None), []
    outer.addCallback(lambda _: inner)  # called, but paused
    gate = Gate(lambda *m: None, lambda reason: None)
    gate.after(outer, done.append)
    assert gate.waiting and done == []
    inner.callback("yes")
    assert done == ["yes"] and not gate.waiting


def test_a_failing_continuation_of_a_decided_answer_is_logged_not_raised():
    from twisted.logger import globalLogPublisher
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        gate = Gate(lambda *m: None, lambda reason: None)
        gate.after(succeed("yes"), lambda r: 1 / 0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert not gate.waiting
    assert any(e.get("log_format") == "access decision continuation failed" for e in events)


def test_chat_decided_now_takes_one_message_of_the_rate():
    """chatNow (the chat fast path's) and chat (a Deferred) decide alike."""
    from wcs.access.hooks import ALLOW
    from wcs.access.limits import TOO_MANY

    class Session:
        claims = None

    session = Session()
    assert AccessPolicy(Settings(), Clock()).chatNow(session, "r") is ALLOW
    assert AccessPolicy(Settings(), Clock()).chat(session, "r", "b", "hi").result is ALLOW
    on = AccessPolicy(Settings({"auth_required": True, "auth_jwt_secret": SECRET,
                                "rate_chat_per_participant": 2}), Clock())
    burst = [on.chatNow(session, "r") for _ in range(on.chats.burst)]
    assert {d.reason for d in burst} == {"a token is required"}
    assert not on.chatNow(session, "r").allowed
    assert on.chatNow(session, "r").reason == TOO_MANY
    assert on.chat(session, "r", "b", "hi").result.reason == TOO_MANY
