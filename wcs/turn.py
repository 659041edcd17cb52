"""
TURN credentials for clients behind firewalls (docs/networks.md, Firewalls).

A TURN server beside wcs (coturn with C{use-auth-secret}) relays the media
of clients whose UDP is blocked, over TCP or TLS. wcs hands each client
time-limited credentials in the "TURN REST API" scheme coturn checks
without asking us: the username is C{EXPIRY:LOGIN} (EXPIRY in Unix
seconds), the password the base64 HMAC-SHA1 of the username keyed with the
secret both share.

They reach the page in C{getUserData} (C{iceServers}, an RTCIceServer
list), after the access policy let the client in; C{python -m wcs.turn}
prints a set for pages that ask a person for them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from typing import Callable

from wcs.config import ConfigError, Key, declare

declare(
    Key("turn_urls", "str", "",
        "comma-separated TURN URLs handed to clients with credentials "
        "(turn:HOST:3478?transport=tcp, turns:HOST:5349?transport=tcp); empty: none"),
    Key("turn_secret", "str", "",
        "the secret shared with the TURN server (coturn static-auth-secret, "
        "use-auth-secret); needed with turn_urls"),
    Key("turn_ttl", "int", 86400,
        "seconds a client's TURN credentials stay valid (they are made at connect)"),
)

SCHEMES = ("turn:", "turns:", "stun:", "stuns:")
LOGIN_CHARS = 64


def parseUrls(settings) -> list[str]:
    """
    The TURN URLs of C{settings}, checked.

    @raise ConfigError: a URL that is not turn:/turns:/stun:, or URLs
        without a secret (credentials could not be made).
    """
    urls = [u.strip() for u in settings.turn_urls.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(SCHEMES) or len(url) <= len(url.partition(":")[0]) + 1:
            raise ConfigError(f"turn_urls: {url!r} is not a turn:, turns: or stun: URL")
    if urls and not settings.turn_secret:
        raise ConfigError("turn_urls is set but turn_secret is empty: set the secret "
                          "coturn has as static-auth-secret")
    if urls and settings.turn_ttl <= 0:
        raise ConfigError("turn_ttl must be > 0 seconds")
    return urls


def credentials(secret: str, login: str, expires: int) -> tuple[str, str]:
    """The TURN REST API pair for C{login}, valid until Unix time C{expires}."""
    username = f"{int(expires)}:{login}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class TurnCredentials:
    """
    Makes each client's RTCIceServer list; empty when no TURN is configured.
    """

    def __init__(self, settings, now: Callable[[], float] = time.time):
        self.urls = parseUrls(settings)
        self.secret = settings.turn_secret
        self.ttl = settings.turn_ttl
        self.now = now

    def __bool__(self) -> bool:
        return bool(self.urls)

    def iceServers(self, login: str | None) -> list[dict]:
        """
        What the SDK takes as C{mediaOptions.iceServers}. The login is part
        of the username, for coturn's log only: cut to C{LOGIN_CHARS} so that
        the username stays within STUN's 513 bytes; a client without one is
        C{anonymous}.
        """
        if not self.urls:
            return []
        username, password = credentials(self.secret, (login or "anonymous")[:LOGIN_CHARS],
                                         int(self.now()) + self.ttl)
        return [{"urls": list(self.urls), "username": username, "credential": password}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wcs.turn",
        description="Print TURN credentials (the iceServers a page passes to the SDK) "
                    "made as the server makes them.")
    parser.add_argument("--login", default="anonymous", help="the name in the username")
    parser.add_argument("--config", default=None,
                        help="flashphoner.properties with turn_urls, turn_secret, turn_ttl")
    parser.add_argument("--urls", default=None, help="comma-separated TURN URLs")
    parser.add_argument("--secret", default=None, help="coturn's static-auth-secret")
    parser.add_argument("--ttl", type=int, default=None, help="seconds they stay valid")
    options = parser.parse_args(argv)
    from wcs.config import Settings, loadProperties

    settings = loadProperties(options.config) if options.config else Settings()
    for key, value in (("turn_urls", options.urls), ("turn_secret", options.secret),
                       ("turn_ttl", options.ttl)):
        if value is not None:
            settings.set(key, str(value))
    try:
        servers = TurnCredentials(settings).iceServers(options.login)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    if not servers:
        print("no TURN configured: give --urls and --secret, or --config", file=sys.stderr)
        return 2
    print(json.dumps(servers, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
