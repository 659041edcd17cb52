"""
Loggers of wcs, filtered by the C{log_level} setting.

twistd owns the log observers, so a level cannot be set on them; instead
every wcs logger sends its events through one filter in front of the global
publisher, and L{setLevel} moves that filter's threshold.
"""

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)
from twisted.logger import Logger as _TwistedLogger

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def Logger(namespace: str | None = None) -> _TwistedLogger:
    """
    A L{twisted.logger.Logger} whose events pass the level filter, named
    after the calling module (or, as a class attribute, after the class).
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals.get("__name__", "wcs")
    return _TwistedLogger(namespace=namespace, observer=_observer)


def setLevel(name: str) -> None:
    """
    Log C{name} (debug, info, warn, error, critical) and above, for wcs and
    for Autobahn (which then does not even build its debug events).
    """
    level = LogLevel.levelWithName(name)
    _predicate.setLogLevelForNamespace(None, level)
    import txaio

    txaio.use_twisted()
    txaio.set_global_log_level(name)
