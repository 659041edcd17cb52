"""
The one place the core asks whether a client may do something.

Each question (L{AccessPolicy.connect}, C{join}, C{publish}, C{play},
C{chat}) answers with a Deferred firing with a L{Decision}, never failing.
Without a REST hook the Deferred has already fired, so the core's handlers
still run to completion synchronously; with one, the session holds the
client's later messages until the answer is in (L{wcs.access.gate}).

What decides, in order: the rate limits; with C{auth_required} and a token
key, the token's claims; with C{rest_hook_url}, the backend. All must allow.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet import defer

from wcs.access.hooks import ALLOW, BACKEND_FAULTS, Decision, RestHook, deny
from wcs.access.limits import TOO_MANY, Bans, Buckets
from wcs.access.tokens import Claims, TokenError, Verifier, loadKeys
from wcs.config import ConfigError, Key, declare

declare(
    Key("auth_required", "bool", False,
        "clients must be authorised: by a signed token (auth_jwt_secret, "
        "auth_jwt_public_key) and/or the REST hooks (rest_hook_url)"),
)


def checkSettings(settings) -> None:
    """
    @raise ConfigError: the access settings cannot work (say why, at start).
    """
    keys = loadKeys(settings.auth_jwt_secret, settings.auth_jwt_public_key)
    if settings.auth_required and not keys and not settings.rest_hook_url:
        raise ConfigError(
            "auth_required=true, but nothing can authorise a client: set auth_jwt_secret "
            "or auth_jwt_public_key (signed tokens) and/or rest_hook_url (REST hooks)")
    url = settings.rest_hook_url
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"rest_hook_url must be an http:// or https:// URL, got {url!r}")


def _address(peer: str) -> str:
    """C{tcp:1.2.3.4:5678} -> C{1.2.3.4}."""
    return peer.split(":", 1)[-1].rpartition(":")[0] or peer


def _transport(peer: str) -> str:
    kind = peer.partition(":")[0]
    return "websocket" if kind.startswith("tcp") else kind


class AccessPolicy:
    def __init__(self, settings, clock, reactor=None, now: Callable[[], float] = time.time):
        checkSettings(settings)
        self.required = settings.auth_required
        self.verifier = Verifier(loadKeys(settings.auth_jwt_secret,
                                          settings.auth_jwt_public_key))
        # Tokens are checked only when required: with auth off, today's open
        # server stays as it is whatever a client sends.
        self.tokens = self.required and bool(self.verifier)
        self.hook = None
        if settings.rest_hook_url:
            self.hook = RestHook(settings.rest_hook_url, settings.rest_hook_timeout / 1000.0,
                                 reactor if reactor is not None else clock,
                                 settings.rest_hook_connections, settings.rest_hook_ca)
        self.chatHook = settings.rest_hook_chat
        self.now = now
        # The rate limits come with access control: an open server (the
        # demos, the tests) is left as it was.
        on = self.active
        self.connections = self._buckets(clock, on and settings.rate_connections_per_address)
        self.joins = self._buckets(clock, on and settings.rate_joins_per_login)
        self.chats = self._buckets(clock, on and settings.rate_chat_per_participant)
        self.bans = Bans(clock, on and settings.rate_auth_failures_per_address,
                         settings.rate_auth_ban / 1000.0)

    @staticmethod
    def _buckets(clock, rate: int) -> Buckets:
        return Buckets(clock, rate, 2 * rate)

    @property
    def active(self) -> bool:
        """Whether anything is checked beyond the rate limits."""
        return self.required or self.hook is not None

    # Questions

    def connect(self, session, connection) -> defer.Deferred:
        """
        May this client connect? The decision carries the login to use and
        the token's claims (kept by the session for later questions).
        """
        address = _address(session.channel.peer)
        if self.bans.banned(address) or not self.connections.take(address):
            return defer.succeed(deny(TOO_MANY))
        claims = None
        login = connection.login
        if self.tokens:
            try:
                claims = self.verifier.verify(connection.token)
            except TokenError as e:
                return defer.succeed(self._failed(address, deny(str(e))))
            if login is not None and login != claims.login:
                return defer.succeed(self._failed(
                    address, deny(f"login {login!r} is not the token's login")))
            login = claims.login
        if self.hook is None:
            return defer.succeed(Decision(True, login=login, claims=claims))
        body = self._body(session, login, None, custom=connection.custom,
                          appKey=connection.appKey)
        d = self.hook.ask("connect", body)

        def decided(decision: Decision) -> Decision:
            if not decision.allowed:
                if decision.reason in BACKEND_FAULTS:
                    return decision
                return self._failed(address, decision)
            return Decision(True, None, decision.login or login, None, decision.custom, claims)
        return d.addCallback(decided)

    def join(self, session, room: str, record: bool) -> defer.Deferred:
        if not self.joins.take(session.login):
            return defer.succeed(deny(TOO_MANY))
        refusal = self._claimsRefuse(session, "join", room, f"join room {room!r}")
        if refusal is None and record:
            refusal = self._claimsRefuse(session, "record", room, "record")
        if refusal is not None:
            return defer.succeed(deny(refusal))
        return self._ask(session, "joinRoom", room, record=record)

    def publish(self, session, request, roomTaken: Callable[[str], bool]) -> defer.Deferred:
        """
        May this session publish C{request}? C{roomTaken(name)} says whether
        a room of that name exists, for the stream-name rule.
        """
        refusal = self._claimsRefuse(session, "publish", request.room, "publish")
        if refusal is None and request.record:
            refusal = self._claimsRefuse(session, "record", request.room, "record")
        if refusal is None and self.required:
            refusal = reservedName(request.name, request.room, session.login, roomTaken)
        if refusal is not None:
            return defer.succeed(deny(refusal))
        extra = dict(name=request.name, record=request.record,
                     mediaProvider=request.mediaProvider, custom=_custom(request))
        d = self._ask(session, "publishStream", request.room, **extra)
        if self.hook is None:
            return d

        def thenRecord(decision: Decision) -> Any:
            record = decision.record if decision.record is not None else request.record
            if not decision.allowed or not record:
                return decision
            return self.hook.ask("recordStream", self._body(
                session, session.login, request.room, **dict(extra, record=True))
            ).addCallback(lambda answer: answer if not answer.allowed else Decision(
                True, None, None, record, {**decision.custom, **answer.custom}))
        return d.addCallback(thenRecord)

    def play(self, session, request, streamRoom: str | None) -> defer.Deferred:
        """May this session play C{request}, a stream of C{streamRoom} (or none)?"""
        refusal = self._claimsRefuse(session, "play", None, "play")
        claims: Claims | None = getattr(session, "claims", None)
        if refusal is None and self.tokens and streamRoom is not None \
                and not claims.coversRoom(streamRoom) and streamRoom not in session.participants:
            refusal = f"stream {request.name!r} belongs to room {streamRoom!r}: join it to play"
        if refusal is not None:
            return defer.succeed(deny(refusal))
        return self._ask(session, "playStream", streamRoom, name=request.name,
                         mediaProvider=request.mediaProvider, custom=_custom(request))

    def chat(self, session, room: str, to: str, text: str) -> defer.Deferred:
        decision = self.chatNow(session, room)
        if decision is not None:
            return defer.succeed(decision)
        return self.askChat(session, room, to, text)

    def chatNow(self, session, room: str):
        """
        The decision on one chat message when it needs no hook (C{ALLOW} or
        a denial), without a Deferred: the chat fast path's. None: the
        hook decides, L{askChat}. Takes one message of the sender's rate.
        """
        chats = self.chats
        # Without a rate, a token or a hook (the default) nothing is made or
        # called per message: no bucket key, no claims check.
        if chats.rate > 0 and not chats.take((id(session), room)):
            return deny(TOO_MANY)
        if self.tokens:
            refusal = self._claimsRefuse(session, "chat", room, "chat")
            if refusal is not None:
                return deny(refusal)
        return None if self.chatHook else ALLOW

    def askChat(self, session, room: str, to: str, text: str) -> defer.Deferred:
        """The hook's decision, after L{chatNow} said None."""
        return self._ask(session, "sendMessage", room, to=to, text=text)

    def close(self) -> defer.Deferred:
        return self.hook.close() if self.hook is not None else defer.succeed(None)

    # Internals

    def _claimsRefuse(self, session, grant: str, room: str | None, action: str) -> str | None:
        """Why the session's token does not allow C{action}, or None."""
        if not self.tokens:
            return None
        claims: Claims | None = getattr(session, "claims", None)
        if claims is None:
            return "a token is required"
        if claims.expired(self.now()):
            return "token expired"
        if grant not in claims.grants:
            return f"token does not grant {grant}"
        if room is not None and not claims.coversRoom(room):
            return f"token does not allow room {room!r}"
        return None

    def _ask(self, session, action: str, room: str | None, **extra) -> defer.Deferred:
        if self.hook is None:
            return defer.succeed(ALLOW)
        return self.hook.ask(action, self._body(session, session.login, room, **extra))

    def _body(self, session, login, room, **extra) -> dict[str, Any]:
        peer = session.channel.peer
        body = {"login": login, "sessionId": getattr(session, "sessionId", None),
                "address": _address(peer), "transport": _transport(peer)}
        if room is not None:
            body["room"] = room
        body.update(extra)
        return body

    def _failed(self, address: str, decision: Decision) -> Decision:
        if self.bans.failed(address):
            return deny(TOO_MANY)
        return decision


def _custom(request) -> dict:
    custom = request.raw.get("custom") if isinstance(request.raw, dict) else None
    return custom if isinstance(custom, dict) else {}


def reservedName(name: str, room: str | None, login: str | None,
                 roomTaken: Callable[[str], bool]) -> str | None:
    """
    The stream-name rule with auth on: a name C{ROOM-LOGIN} or
    C{ROOM-LOGIN-...} (as the SDK names a participant's streams) belongs to
    LOGIN while the room exists, and a stream published in a room must be
    named so. Returns why C{name} is refused, or None.
    """
    def ownedBy(rest: str) -> bool:
        return bool(login) and (rest == login or rest.startswith(f"{login}-"))

    if room is not None:
        if not ownedBy(name[len(room) + 1:]) or not name.startswith(f"{room}-"):
            return f"a stream of room {room!r} must be named {room}-{login}[-...]"
        return None
    start = 0
    while (dash := name.find("-", start)) > 0:
        prefix = name[:dash]
        if roomTaken(prefix) and not ownedBy(name[dash + 1:]):
            return f"stream name {name!r} is reserved for a participant of room {prefix!r}"
        start = dash + 1
    return None
