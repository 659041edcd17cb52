"""
REST hooks: the customer's backend decides each step.

For each action the server POSTs a JSON object to C{rest_hook_url}/ACTION
(C{connect}, C{joinRoom}, C{publishStream}, C{playStream}, C{sendMessage},
C{recordStream}). HTTP 200 allows; its JSON body may override C{login} and
C{record} and add C{custom} fields. Any other status, a timeout, a refused
connection or a body that is not JSON denies, with the body's C{reason} when
it has one. Requests never block the reactor (L{wcs.access.http}): at most
C{rest_hook_connections} at once, each on a kept-alive connection, the
others waiting their turn (within their timeout). Without that bound a
storm of joins opened a connection per request and the server spent its
time opening and closing them (docs/performance.md).

Every request has the same timeout, so their deadlines come in the order
they were asked: one timer for the earliest pending one (L{Deadlines})
instead of a C{callLater} per request, which put each in the reactor's
heap and cancelled it again when the answer came.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from wcs.access.http import Client, HTTPError
from wcs.config import ConfigError, Key, declare
from wcs.logs import LogLimiter, Logger, clip

declare(
    Key("rest_hook_url", "str", "",
        "base URL of the backend asked at each step (URL/connect, URL/joinRoom, ...); "
        "empty: no hooks"),
    Key("rest_hook_timeout", "int", 3000, "ms to wait for the backend before denying"),
    Key("rest_hook_chat", "bool", False, "also ask URL/sendMessage for every chat message"),
    Key("rest_hook_connections", "int", 64,
        "requests to the backend at once, each on a kept-alive connection; "
        "more wait their turn within rest_hook_timeout"),
    Key("rest_hook_ca", "str", "",
        "PEM file of the certificates trusted for an https rest_hook_url (a private "
        "CA, or the backend's self-signed certificate); empty: the system's CAs"),
)

MAX_BODY = 65536  # bytes of a hook's answer read; a longer one denies
DENIED = "denied by the application backend"
UNREACHABLE = "the application backend is unreachable"
NO_ANSWER = "the application backend did not answer in time"
BAD_ANSWER = "the application backend's answer cannot be read"
# The backend's trouble, not the client's: no ban is counted for these.
BACKEND_FAULTS = frozenset({UNREACHABLE, NO_ANSWER, BAD_ANSWER})


@dataclass(frozen=True)
class Decision:
    """An answer to an access question."""

    allowed: bool
    reason: str | None = None
    login: str | None = None
    record: bool | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    claims: Any = None  # the verified token, for a connection

    def withClaims(self, claims) -> "Decision":
        return Decision(self.allowed, self.reason, self.login, self.record, self.custom, claims)


ALLOW = Decision(True)


def deny(reason: str) -> Decision:
    return Decision(False, reason)


# dumps() with options builds an encoder per call.
_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode


class Deadlines:
    """
    Cancels each Deferred given to L{add} that has not fired C{timeout}
    seconds later, with one timer for them all: deadlines are added in
    order, so the earliest is the first one still pending.
    """

    def __init__(self, clock, timeout: float):
        self.clock = clock
        self.timeout = timeout
        self.entries: deque[tuple[float, defer.Deferred]] = deque()
        self.call = None

    def add(self, d: defer.Deferred) -> None:
        entries = self.entries
        while entries and entries[0][1].called:
            entries.popleft()  # answered: nothing to cancel
        entries.append((self.clock.seconds() + self.timeout, d))
        if self.call is None:
            self.call = self.clock.callLater(self.timeout, self._expire)

    def _expire(self) -> None:
        self.call = None
        now = self.clock.seconds()
        entries = self.entries
        while entries:
            deadline, d = entries[0]
            if d.called:
                entries.popleft()
            elif deadline <= now:
                entries.popleft()
                d.cancel()
            else:
                self.call = self.clock.callLater(deadline - now, self._expire)
                return

    def stop(self) -> None:
        if self.call is not None:
            self.call.cancel()
            self.call = None


def trustRoot(path: str):
    """The certificates of PEM file C{path}, as a TLS trust root."""
    from twisted.internet import ssl

    try:
        pem = open(path, "rb").read()
    except OSError as e:
        raise ConfigError(f"rest_hook_ca: cannot read {path}: {e.strerror}") from None
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + block for block in pem.split(marker)[1:]]
    if not blocks:
        raise ConfigError(f"rest_hook_ca: no PEM certificate in {path}")
    return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])


class RestHook:
    log = Logger()

    def __init__(self, url: str, timeout: float, reactor, connections: int = 64,
                 caFile: str = ""):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.reactor = reactor
        connections = max(1, connections)
        self.client = Client(reactor, self.url, timeout, connections, MAX_BODY,
                             trustRoot(caFile) if caFile else None)
        self.deadlines = Deadlines(reactor, timeout)
        self.failures = LogLimiter(self.log, clock=reactor)

    def ask(self, action: str, body: dict[str, Any]) -> defer.Deferred:
        """POST C{body} to URL/C{action}; fires with a L{Decision}, never fails."""
        try:
            data = _encode(body).encode("utf-8")
        except (TypeError, ValueError):
            return defer.succeed(deny("request cannot be encoded"))
        d = self.client.post(action, data)
        # The timeout cancels the request (its turn, its connection) and
        # _failed says so.
        d.addCallbacks(self._decide, self._failed, (action,), None, (action,))
        self.deadlines.add(d)
        return d

    def _decide(self, result, action: str) -> Decision:
        code, body = result
        if code == 200 and body == b"{}":
            return ALLOW  # what most answers are: no parse
        answer = None
        if body:
            try:
                answer = json.loads(body)
            except ValueError:
                answer = None
        if not isinstance(answer, dict):
            answer = {}
        if code != 200:
            reason = answer.get("reason")
            self.failures.warn(("deny", action), "hook {action} denied: {code} {reason}",
                               action=action, code=code, reason=clip(reason))
            return deny(reason[:200] if isinstance(reason, str) and reason else DENIED)
        if body and not answer and body.strip() not in (b"", b"{}"):
            return deny("the application backend answered something other than JSON")
        login = answer.get("login")
        record = answer.get("record")
        custom = answer.get("custom")
        return Decision(True, None,
                        login if isinstance(login, str) and login else None,
                        record if isinstance(record, bool) else None,
                        custom if isinstance(custom, dict) else {})

    def _failed(self, failure, action: str) -> Decision:
        if failure.check(defer.CancelledError):  # only Deadlines cancels
            self.failures.warn(("timeout", action), "hook {action}: no answer in {timeout} s",
                               action=action, timeout=self.timeout)
            return deny(NO_ANSWER)
        self.failures.warn(("fail", action), "hook {action} failed: {error}",
                           action=action, error=failure.getErrorMessage())
        return deny(BAD_ANSWER if failure.check(HTTPError) else UNREACHABLE)

    def close(self) -> defer.Deferred:
        self.deadlines.stop()
        self.client.close()
        return defer.succeed(None)
