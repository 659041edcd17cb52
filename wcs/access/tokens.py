"""
Signed access tokens (JWT, verified with PyJWT).

A token names a login (C{sub}), a room (C{room}, or C{*} for any) and what
its holder may do there (C{grants}: C{join}, C{publish}, C{play}, C{chat},
C{record}; a grant not given is refused). Keys are an HMAC secret (HS256)
and/or public keys in PEM files (RS256, ES256, EdDSA); a token's C{kid}
header picks one of several keys, so keys can be rotated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from wcs.config import ConfigError, Key, declare

declare(
    Key("auth_jwt_secret", "str", "",
        "HMAC secret(s) of signed tokens (HS256); several separated by spaces, "
        "each SECRET or KID:SECRET"),
    Key("auth_jwt_public_key", "str", "",
        "PEM public key file(s) of signed tokens (RS256, ES256, EdDSA); several "
        "separated by commas, each PATH or KID=PATH (kid by default: the file name "
        "without extension)"),
)

GRANTS = ("join", "publish", "play", "chat", "record")
LEEWAY = 60  # s of clock difference allowed on exp and nbf

_HMAC = ["HS256", "HS384", "HS512"]
_RSA = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_EC = ["ES256", "ES384", "ES512"]
_ED = ["EdDSA"]


class TokenError(Exception):
    """A token that cannot be used; the message is the reason given to the client."""


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    login: str
    room: str
    grants: frozenset[str]
    expires: float | None

    def allows(self, grant: str, room: str | None = None) -> bool:
        if grant not in self.grants:
            return False
        return room is None or self.coversRoom(room)

    def coversRoom(self, room: str) -> bool:
        return self.room == "*" or self.room == room

    def expired(self, now: float) -> bool:
        return self.expires is not None and now > self.expires + LEEWAY


@dataclass(frozen=True)
class _Key:
    kid: str | None
    key: Any
    algorithms: tuple[str, ...]


def _algorithmsOf(key) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return tuple(_RSA)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return tuple(_EC)
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return tuple(_ED)
    raise ConfigError(f"unsupported public key type {type(key).__name__}")


def loadKeys(secrets: str, publicKeys: str) -> list[_Key]:
    """
    The keys of the C{auth_jwt_secret} and C{auth_jwt_public_key} settings.

    @raise ConfigError: a file that cannot be read or is not a public key.
    """
    keys = []
    for item in secrets.split():
        kid, sep, secret = item.partition(":")
        if not sep:
            kid, secret = None, item
        keys.append(_Key(kid, secret.encode("utf-8"), tuple(_HMAC)))
    for item in filter(None, (i.strip() for i in publicKeys.split(","))):
        kid, sep, path = item.partition("=")
        if not sep:
            kid, path = Path(item).stem, item
        try:
            key = load_pem_public_key(Path(path).read_bytes())
        except OSError as e:
            raise ConfigError(f"auth_jwt_public_key: cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise ConfigError(f"auth_jwt_public_key: {path} is not a PEM public key: {e}") \
                from None
        keys.append(_Key(kid.strip(), key, _algorithmsOf(key)))
    return keys


class Verifier:
    """Checks tokens against the configured keys."""

    def __init__(self, keys: Iterable[_Key]):
        self.keys = list(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def verify(self, token: Any) -> Claims:
        """
        @return: the token's L{Claims}.
        @raise TokenError: missing, malformed, unknown key, bad signature,
            expired, not yet valid, or claims of the wrong type.
        """
        if not token:
            raise TokenError("a token is required")
        if not isinstance(token, str) or len(token) > 8192:
            raise TokenError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        kid = header.get("kid")
        candidates = [k for k in self.keys if kid is None or k.kid == kid]
        if not candidates:
            raise TokenError("token signed with an unknown key")
        alg = header.get("alg")
        candidates = [k for k in candidates if alg in k.algorithms]
        if not candidates:
            raise TokenError(f"token algorithm {str(alg)[:16]!r} not accepted")
        reason = "bad token signature"
        for key in candidates:
            try:
                payload = jwt.decode(
                    token, key.key, algorithms=list(key.algorithms), leeway=LEEWAY,
                    options={"require": ["sub", "exp"], "verify_aud": False})
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise TokenError("token expired") from None
            except jwt.ImmatureSignatureError:
                raise TokenError("token not yet valid") from None
            except jwt.MissingRequiredClaimError as e:
                raise TokenError(f"token has no {e.claim!r} claim") from None
            except jwt.PyJWTError as e:
                reason = f"invalid token: {str(e)[:80]}"
                continue
            return _claims(payload)
        raise TokenError(reason)


def _claims(payload: dict) -> Claims:
    login, room, grants = payload.get("sub"), payload.get("room", ""), payload.get("grants", {})
    if not isinstance(login, str) or not login:
        raise TokenError("token 'sub' must be a login")
    if not isinstance(room, str):
        raise TokenError("token 'room' must be a string")
    if not isinstance(grants, dict):
        raise TokenError("token 'grants' must be an object of booleans")
    expires = payload.get("exp")
    return Claims(login, room, frozenset(g for g in GRANTS if grants.get(g) is True),
                  float(expires) if isinstance(expires, (int, float)) else None)


def mint(key, login: str, room: str, grants: Iterable[str], ttl: float, *,
         algorithm: str = "HS256", kid: str | None = None, now: float | None = None) -> str:
    """A token, as a backend would make one (also used by C{python -m wcs.token})."""
    now = time.time() if now is None else now
    unknown = set(grants) - set(GRANTS)
    if unknown:
        raise ValueError(f"unknown grant(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(GRANTS)}")
    payload = {"sub": login, "room": room, "grants": {g: True for g in grants},
               "iat": int(now), "nbf": int(now), "exp": int(now + ttl)}
    return jwt.encode(payload, key, algorithm=algorithm,
                      headers={"kid": kid} if kid else None)
