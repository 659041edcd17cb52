"""
Mint an access token for a client, as a backend would:

    twistd wcs token --login alice --room demo --grant join,publish,play,chat --ttl 3600
    python -m wcs.token --login alice --room demo --grant join,publish,play,chat --ttl 3600

The key is C{auth_jwt_secret} from the settings file (C{--config}; for
C{twistd wcs token}, also the one given to C{twistd wcs --config} or
conf/flashphoner.properties) or C{--secret}; C{--key} signs with a private
key PEM file instead (RS256, ES256 or EdDSA, chosen by the key's type).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wcs.access.tokens import GRANTS, mint


def _privateKey(path: str):
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(Path(path).read_bytes(), password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key, "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key, "EdDSA"
    raise SystemExit(f"{path}: unsupported key type {type(key).__name__}")


def main(argv: list[str] | None = None, prog: str = "python -m wcs.token",
         defaultConfig: str | None = None) -> int:
    """
    Print a token; the exit status. C{defaultConfig}: the settings file
    read when C{--config} is not given (C{twistd wcs token}).
    """
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--login", required=True, help="the login (claim sub)")
    parser.add_argument("--room", default="*", help="the room, or * for any (claim room)")
    parser.add_argument("--grant", default="join,publish,play,chat",
                        help=f"comma-separated grants among {','.join(GRANTS)}")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    parser.add_argument("--kid", default=None, help="key id put in the token's header")
    parser.add_argument("--secret", default=None, help="HMAC secret (HS256)")
    parser.add_argument("--key", default=None, help="private key PEM file (RS256/ES256/EdDSA)")
    parser.add_argument("--config", default=None,
                        help="flashphoner.properties to read auth_jwt_secret from")
    options = parser.parse_args(argv)
    grants = [g.strip() for g in options.grant.split(",") if g.strip()]
    if options.key:
        key, algorithm = _privateKey(options.key)
    else:
        secret = options.secret
        options.config = options.config or defaultConfig
        if secret is None and options.config:
            from wcs.access import policy  # noqa: F401 (declares the keys)
            from wcs.config import loadProperties

            secret = loadProperties(options.config).auth_jwt_secret.split()[0:1]
            secret = secret[0] if secret else None
        if not secret:
            print("no key: give --secret, --key or --config with auth_jwt_secret",
                  file=sys.stderr)
            return 2
        kid, sep, value = secret.partition(":")
        if sep and options.kid is None:
            options.kid, secret = kid, value
        key, algorithm = secret, "HS256"
    try:
        print(mint(key, options.login, options.room, grants, options.ttl,
                   algorithm=algorithm, kid=options.kid))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
