"""
Errors the core reports to clients. Their text reaches the client verbatim, so
each one names the problem.
"""


class WcsError(Exception):
    """Base of errors whose message is meant for the client."""

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
