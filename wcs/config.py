"""
Server settings: C{flashphoner.properties} (C{key=value} lines, C{#} comments)
read into typed values with defaults.

Every key is declared once with its type, default and a line of help. The core
declares its keys here; a transport declares its own with L{declare} when its
module is imported, so a drop-in can add settings without touching this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from wcs.logs import Logger

log = Logger()


class ConfigError(Exception):
    """A setting that cannot be used; the message names the file and line."""


def _parseBool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parseInt(text: str) -> int:
    return int(text.strip(), 10)


def _parsePort(text: str) -> int:
    port = _parseInt(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"a port is 0..65535 (0 disables), got {port}")
    return port


def _parseNonNegative(text: str) -> int:
    value = _parseInt(text)
    if value < 0:
        raise ValueError(f"expected a number >= 0, got {value}")
    return value


def _parseStr(text: str) -> str:
    return text.strip()


def oneOf(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A parser of a setting that takes one of C{choices}, in any case."""

    def parse(text: str) -> str:
        choice = text.strip().lower()
        if choice not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text.strip()!r}")
        return choice

    return parse


LEVELS = ("debug", "info", "warn", "error", "critical")
LOG_FORMATS = ("text", "json")


PARSERS: dict[str, Callable[[str], Any]] = {
    "level": oneOf(LEVELS),
    "logformat": oneOf(LOG_FORMATS),
    "bool": _parseBool,
    "int": _parseNonNegative,
    "port": _parsePort,
    "str": _parseStr,
}


@dataclass(frozen=True)
class Key:
    name: str
    type: str
    default: Any
    help: str

    def parse(self, text: str) -> Any:
        return PARSERS[self.type](text)


_KEYS: dict[str, Key] = {}


def declare(*keys: Key) -> None:
    """
    Declare settings. Declaring the same key twice with the same meaning is
    harmless (modules may be imported twice by the plugin system).
    """
    for key in keys:
        known = _KEYS.get(key.name)
        if known is not None and known != key:
            raise ValueError(f"setting {key.name} declared twice differently")
        _KEYS[key.name] = key


def declaredKeys() -> list[Key]:
    return sorted(_KEYS.values(), key=lambda k: k.name)


declare(
    Key("listen_address", "str", "0.0.0.0", "address every listener binds to"),
    Key("listen_backlog", "int", 1024,
        "connections a listening port queues before they are accepted (the "
        "kernel caps it at net.core.somaxconn); Twisted's 50 drops the SYNs of "
        "a join storm, which the clients resend only after 1 s"),
    Key("ws_port", "port", 8080, "WebSocket signalling port (0 disables)"),
    Key("wss_port", "port", 8443, "secure WebSocket signalling port (0 disables)"),
    Key("http_port", "port", 9091, "HTTP port of the web server (0 disables)"),
    Key("https_port", "port", 8888, "HTTPS port of the web server (0 disables)"),
    Key("rtmp_port", "port", 1935, "RTMP port (0 disables)"),
    Key("log_level", "level", "info", "least level logged: debug, info, warn, error"),
    Key("log_format", "logformat", "text",
        "text: twistd's lines; json: one JSON object per line (twisted.logger's "
        "eventAsJSON), to the same place (stdout with -n, else --logfile)"),
    Key("state_dir", "str", "state", "directory for generated state (certificates, records)"),
    Key("record_dir", "str", "", "directory for recordings; empty: records/ under state_dir"),
    Key("room_idle_timeout", "int", 60000,
        "ms a room lives on after its last participant disconnected without leave"),
    Key("room_max_participants", "int", 100, "participants per room; 0: unlimited"),
    Key("room_max_count", "int", 1000, "rooms on the server at once; 0: unlimited"),
    Key("room_name_max_length", "int", 128, "longest room name accepted, in characters"),
    Key("login_max_length", "int", 128, "longest login accepted, in characters"),
    Key("session_max_streams", "int", 20,
        "streams (published and played) one connection may have at once; 0: no limit"),
    Key("chat_max_length", "int", 16384, "longest chat message accepted, in characters"),
    Key("json_max_depth", "int", 32,
        "deepest nesting of arrays and objects accepted in a JSON message"),
    Key("ws_max_message_size", "int", 65536,
        "largest WebSocket message accepted, in bytes; larger ones get a fail"),
    Key("ws_ping_interval", "int", 5000, "ms between server pings; 0: no pings"),
    Key("ws_dead_peer_timeout", "int", 20000,
        "ms of silence after which a client is disconnected; 0: never"),
)


class Settings:
    """
    Typed settings. Read a value as an attribute: C{settings.ws_port}.
    """

    def __init__(self, values: dict[str, Any] | None = None):
        self._values = {key.name: key.default for key in _KEYS.values()}
        for name, value in (values or {}).items():
            self.set(name, value)

    def set(self, name: str, value: Any) -> None:
        key = _KEYS.get(name)
        if key is None:
            raise ConfigError(f"unknown setting {name!r}")
        if isinstance(value, str):
            try:
                value = key.parse(value)
            except ValueError as e:
                raise ConfigError(f"setting {name}: {e}") from None
        self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            # A key declared after this object was made (a late drop-in).
            key = _KEYS.get(name)
            if key is None:
                raise AttributeError(name) from None
            return key.default

    def recordDirectory(self) -> Path:
        if self.record_dir:
            return Path(self.record_dir)
        return Path(self.state_dir) / "records"


def parseProperties(lines: Iterable[str], source: str = "<properties>") -> Settings:
    """
    Read C{key=value} lines.

    An unknown key is logged as a warning and ignored; a malformed line or
    value raises L{ConfigError} naming C{source} and the line number.
    """
    settings = Settings()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"{source}:{number}: expected key=value, got {line!r}")
        key = _KEYS.get(name)
        if key is None:
            log.warn("{source}:{line}: unknown setting {name!r} ignored",
                     source=source, line=number, name=name)
            continue
        try:
            settings.set(name, key.parse(value))
        except ValueError as e:
            raise ConfigError(f"{source}:{number}: {name}: {e}") from None
    return settings


def loadProperties(path: str | Path) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    return parseProperties(text.splitlines(), str(path))
