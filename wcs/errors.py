"""
Errors the core reports to clients. Their text reaches the client verbatim, so
each one names the problem.
"""


# Why the core refused: a code beside the text, for transports that answer
# in a vocabulary of their own (HTTP statuses). The text stays the client's.
INVALID = "invalid"  # the request cannot be taken as it is: the client's to fix
NOT_FOUND = "not-found"  # no such stream (or room)
IN_USE = "in-use"  # the login or the stream name is taken
FULL = "full"  # the room has its maximum of participants
UNAVAILABLE = "unavailable"  # the server is at its capacity, or lacks the feature
TOO_MANY = "too-many"  # this client or address is at its share
SERVER_ERROR = "server-error"  # the server or the media failed ("Failed by ...")


class WcsError(Exception):
    """
    Base of errors whose message is meant for the client.

    @ivar code: why, as one of the refusal codes above.
    """

    code = INVALID

    def __init__(self, *args, code: str | None = None):
        super().__init__(*args)
        if code is not None:
            self.code = code

    @property
    def info(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ProtocolError(WcsError):
    """A client message that cannot be understood (bad JSON, wrong type)."""


class RoomError(WcsError):
    """A room command that cannot be carried out (join refused, ...)."""


class StreamError(WcsError):
    """
    A publish or play that cannot be carried out. C{info} is one of the SDK's
    C{STREAM_STATUS_INFO} strings where one fits.
    """


class AccessDenied(WcsError):
    """
    The access policy refused an action (no token, a grant missing, the
    application backend said no); C{info} is the reason.
    """


class IncompatibleLibrary(Exception):
    """
    Not for clients: a library whose internals wcs relies on has changed
    (L{wcs.media.internals}). Its message is one line; the server refuses
    to start with it.
    """
