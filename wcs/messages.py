"""
Server-to-client messages, independent of the wire that carries them.
"""

from typing import Any, Callable, TypeVar

T = TypeVar("T")


class ServerMessage:
    """
    One server message: a name and its arguments, as the SDK names them
    (C{OnDataEvent}, C{DataStatusEvent}, C{notifyStreamStatusEvent}, ...).

    A room event goes to every participant: the same instance is handed to
    each channel and each wire format encodes it once (L{encoded}).
    """

    __slots__ = ("name", "args", "_encoded")

    def __init__(self, name: str, *args: Any):
        self.name = name
        self.args = list(args)
        self._encoded: dict[str, Any] = {}

    def encoded(self, wire: str, encode: Callable[["ServerMessage"], T]) -> T:
        """
        The encoding of this message for C{wire}, made on first use.
        """
        try:
            return self._encoded[wire]
        except KeyError:
            value = self._encoded[wire] = encode(self)
            return value

    def __repr__(self) -> str:
        return f"ServerMessage({self.name!r}, {self.args!r})"
