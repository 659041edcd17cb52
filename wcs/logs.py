"""
Loggers of wcs, filtered by the C{log_level} setting.

twistd owns the log observers, so a level cannot be set on them; instead
every wcs logger sends its events through one filter in front of the global
publisher, and L{setLevel} moves that filter's threshold.
"""

import sys

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    formatEvent,
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


def clip(value, limit: int = 120) -> str:
    """
    A client-supplied value as it may go into a log line: C{repr}-ed, so that
    a newline cannot forge a line, and cut to about C{limit} characters.
    Containers are named, never walked: a decoded client value may be huge or
    share references (walking it could take for ever).
    """
    if isinstance(value, (str, bytes)):
        text = repr(value[:limit])
        return text + "..." if len(value) > limit else text
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"<{type(value).__name__}>"


class LogLimiter:
    """
    Rate-limited warnings about bad input: at most one line per C{key} (a
    peer address and a kind of fault, say) every C{interval} seconds; the
    lines left out in between are counted and the count travels with the
    next line that is written. A flood of bad input costs a dict lookup per
    event, not a log line.

    @param clock: an C{IReactorTime}; L{twisted.internet.reactor} if None.
    """

    MAX_KEYS = 4096

    def __init__(self, log: _TwistedLogger, interval: float = 10.0, clock=None):
        self.log = log
        self.interval = interval
        self._clock = clock
        self._state: dict = {}  # key -> [time of the last line, events left out]

    def _now(self) -> float:
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock.seconds()

    def warn(self, key, format: str, **kwargs) -> bool:
        """Log C{format} unless C{key} was logged lately; True if written."""
        now = self._now()
        state = self._state.get(key)
        if state is not None and now - state[0] < self.interval:
            state[1] += 1
            return False
        if state is None and len(self._state) >= self.MAX_KEYS:
            self._forgetOld(now)
        suppressed = state[1] if state is not None else 0
        self._state[key] = [now, 0]
        if suppressed:
            format += " ({suppressed} more like it not logged)"
            kwargs["suppressed"] = suppressed
        self.log.warn(format, **kwargs)
        return True

    def _forgetOld(self, now: float) -> None:
        old = [k for k, (when, _) in self._state.items() if now - when >= self.interval]
        for key in old or list(self._state)[: self.MAX_KEYS // 2]:
            del self._state[key]


def jsonLinesObserver(twistdOptions) -> FileLogObserver:
    """
    An observer writing each event as one line of JSON (twisted.logger's
    C{eventAsJSON}, as its C{jsonFileLogObserver} writes it: the format
    string and every field, for log shippers; C{eventFromJSON} reads it
    back; plus C{log_text}, the formatted line), where twistd would write its
    text: stdout under C{-n} without C{--logfile} (or with C{--logfile=-}),
    else the C{--logfile} file (C{twistd.log} by default), rotated as twistd
    rotates it.
    """
    from twisted.python.logfile import LogFile

    name = twistdOptions.get("logfile")
    if name == "-" or (not name and twistdOptions.get("nodaemon")):
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(name or "twistd.log")
    # jsonFileLogObserver's format, without its RFC 7464 record separator,
    # and with the line as text too, for whoever reads it without Twisted.
    return FileLogObserver(
        out, lambda event: eventAsJSON(dict(event, log_text=formatEvent(event))) + "\n")
