"""
Who may list and download recordings at C{/records/}.

With C{auth_required} or an C{admin_api_key}, a request needs either the
key (C{Authorization: Bearer KEY}: listing and downloads) or a signed link
to one file (C{?expires=UNIX&signature=HEX}, an HMAC-SHA256 of
C{NAME:EXPIRES} with C{records_url_secret}), which the server hands out as
C{recordUrl} in the stream's status. Otherwise (a demo server) C{/records/}
stays open. Files still being written are never listed nor served.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from twisted.web import resource, static

from wcs.config import Key, declare
from wcs.logs import Logger

# admin_api_key, the administrator's key, is declared by the REST API
# (wcs.rest.service); setting it protects /records/ even with auth off.
declare(
    Key("records_url_secret", "str", "",
        "HMAC secret of signed /records/ links; empty: generated into "
        "state_dir/records_url_secret at first start"),
    Key("records_url_ttl", "int", 86400, "s a signed /records/ link stays valid"),
)

log = Logger()
SECRET_FILE = "records_url_secret"
WRITING = (".ts", ".part")  # the recorder's files in progress (wcs.recording.writer)


def loadSecret(settings) -> bytes:
    if settings.records_url_secret:
        return settings.records_url_secret.encode("utf-8")
    path = Path(settings.state_dir) / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value + b"\n")
    log.info("generated the records link secret in {path}", path=str(path))
    return value


def signature(secret: bytes, name: str, expires: int) -> str:
    return hmac.new(secret, f"{name}:{expires}".encode("utf-8"), hashlib.sha256).hexdigest()


def signedLink(secret: bytes, name: str, ttl: float, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    return (f"/records/{quote(name)}?expires={expires}"
            f"&signature={signature(secret, name, expires)}")


class RecordLinks:
    """A stream observer (after the recorder): a recorded stream gets its C{recordUrl}."""

    def __init__(self, secret: bytes, ttl: float):
        self.secret = secret
        self.ttl = ttl

    def streamStarted(self, stream) -> None:
        if stream.recordName:
            stream.recordUrl = signedLink(self.secret, stream.recordName, self.ttl)

    def streamEnded(self, stream) -> None:
        pass


class Records(resource.Resource):
    """C{/records/}: the guarded folder of recordings."""

    isLeaf = True

    def __init__(self, folder: Path, settings, busy=lambda name: False):
        super().__init__()
        self.folder = folder
        adminKey = getattr(settings, "admin_api_key", "")
        self.adminKey = adminKey.encode("utf-8")
        self.guarded = bool(settings.auth_required or adminKey)
        self.secret = loadSecret(settings)
        self.busy = busy

    def writing(self, name: str) -> bool:
        return name.endswith(WRITING) or self.busy(name)

    def render_GET(self, request):
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        name = "/".join(s for s in segments if s)
        if any(s in ("..", ".") or "\\" in s or "\0" in s for s in segments) or "/" in name:
            return resource.ForbiddenResource().render(request)
        admin = self._isAdmin(request)
        if self.guarded and not admin and not (name and self._signed(request, name)):
            request.setHeader(b"www-authenticate", b'Bearer realm="records"')
            return resource.ErrorPage(401, "Unauthorized",
                                      "a key or a signed link is needed").render(request)
        if not name:
            return self._listing(request)
        path = self.folder / name
        if self.writing(name) or not path.is_file():
            return resource.NoResource("No such recording.").render(request)
        return static.File(str(path)).render(request)

    render_HEAD = render_GET

    def _isAdmin(self, request) -> bool:
        header = request.getHeader(b"authorization") or b""
        scheme, _, key = header.partition(b" ")
        return bool(self.adminKey) and scheme.lower() == b"bearer" and \
            hmac.compare_digest(key.strip(), self.adminKey)

    def _signed(self, request, name: str) -> bool:
        try:
            expires = int(request.args.get(b"expires", [b""])[0])
            given = request.args.get(b"signature", [b""])[0].decode("ascii")
        except (ValueError, UnicodeDecodeError):
            return False
        if expires < time.time():
            return False
        return hmac.compare_digest(given, signature(self.secret, name, expires))

    def _listing(self, request) -> bytes:
        names = sorted(p.name for p in self.folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and not self.writing(p.name))
        items = "".join(f'<li><a href="{quote(n)}">{html.escape(n)}</a></li>' for n in names)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (f"<!doctype html><meta charset=utf-8><title>records</title>"
                f"<h1>Recordings</h1><ul>{items}</ul>").encode("utf-8")
