"""
An RTMP client's command arguments (L{wcs.rtmp.arguments}): AMF0 values as a
client sends them, through C{connect} (the app's C{?token=} query, a Flash
room client's object, ffmpeg's C{-rtmp_conn} arguments) and every string
through C{query} (a stream or app name with C{?token=...&record=...}). What
comes out must be within the limits: names of at most the maximum length,
tokens and queries of at most L{arguments.MAX_QUERY} characters.
"""

from wcs.rtmp import amf0
from wcs.rtmp.arguments import MAX_QUERY, Arguments, BadArgument
from wcs.rtmp.errors import RTMPProtocolError

EXPECTED = (BadArgument, RTMPProtocolError)
MAX_LEN = 16384
MAX_NAME = 256
ARGUMENTS = Arguments(MAX_NAME)


def _checkName(value, what: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise AssertionError(f"{what} {value!r:.200}")


def _checkToken(value) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_QUERY):
        raise AssertionError(f"token of {len(value)} characters")


def fuzz(data: bytes) -> None:
    values = amf0.decode(data)
    for value in values:
        if isinstance(value, str):
            try:
                name, fields = ARGUMENTS.query(value, "stream name")
            except BadArgument:
                continue
            _checkName(name, "name")
            if sum(len(k) + len(v) for k, v in fields.items()) > MAX_QUERY:
                raise AssertionError(f"query fields {len(fields)}")
    command = values[2] if len(values) > 2 else (values[0] if values else None)
    found = ARGUMENTS.connect(command, values[3:] if len(values) > 3 else values)
    _checkName(found.app, "app")
    _checkToken(found.token)
    if found.flash:
        _checkName(found.flash, "login")
    if found.argsRoom is not None:
        for part in found.argsRoom:
            _checkName(part, "room or login")
