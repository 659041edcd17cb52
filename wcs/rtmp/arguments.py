"""
What an RTMP client's command arguments may be. Each is a decoded client
value of any type: checked for the type and size it must have before use,
never str()-ed, logged whole or encoded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

# Characters of the query after a stream or app name (?token=JWT&record=true):
# a token is longer than a name may be.
MAX_QUERY = 8192


class BadArgument(Exception):
    """A client's command argument that cannot be used; the message says why."""


@dataclass
class Connect:
    """What C{connect} says."""

    app: str = ""
    token: str | None = None  # on the app, in the Flash object or the connect arguments
    flash: str | None = None  # a Flash room client's login ("" if none); None: not Flash
    argsRoom: tuple[str, str] | None = None  # (room, login) of ffmpeg's -rtmp_conn


class Arguments:
    def __init__(self, maxNameLength: int):
        self.maxNameLength = maxNameLength

    def text(self, value, what: str) -> str:
        """C{value} if it is a non-empty string of at most C{maxNameLength} characters."""
        if not isinstance(value, str) or not value:
            raise BadArgument(f"{what} must be a non-empty string")
        if len(value) > self.maxNameLength:
            raise BadArgument(f"{what} is longer than {self.maxNameLength} characters")
        return value

    def query(self, value, what: str) -> tuple[str, dict[str, str]]:
        """C{NAME?QUERY} split: the name checked by L{text}, the query's fields."""
        if not isinstance(value, str) or not value:
            raise BadArgument(f"{what} must be a non-empty string")
        name, _, query = value.partition("?")
        if len(query) > MAX_QUERY:
            raise BadArgument(f"the query of the {what} is longer than {MAX_QUERY} characters")
        return self.text(name, what), dict(parse_qsl(query, keep_blank_values=True))

    def token(self, value) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > MAX_QUERY:
            raise BadArgument(f"token must be a string of at most {MAX_QUERY} characters")
        return value

    def connect(self, commandObject, args: list) -> Connect:
        """
        @raise BadArgument: a field that is not what it must be.
        """
        info = commandObject if isinstance(commandObject, dict) else {}
        found = Connect()
        app = info.get("app")
        if app is not None and app != "":
            app, query = self.query(app, "app")
            found.app = app.strip("/")
            found.token = self.token(query.get("token"))
        for arg in args:
            if not isinstance(arg, dict):
                continue
            if arg.get("appKey") == "flashRoomApp" and found.flash is None:
                login = arg.get("login")
                found.flash = "" if login is None or login == "" else self.text(login, "login")
                found.token = self.token(arg.get("token")) or found.token
            elif arg.get("room") and arg.get("login") and found.argsRoom is None:
                found.argsRoom = (self.text(arg["room"], "room"), self.text(arg["login"], "login"))
                found.token = self.token(arg.get("token")) or found.token
        return found
