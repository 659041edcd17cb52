"""An RTMP connection's commands while an access check is out (wcs.rtmp.waiting)."""

from twisted.internet import defer

from wcs.errors import AccessDenied
from wcs.rtmp.chunks import VIDEO
from wcs.rtmp.connection import Command, Media
from wcs.rtmp.waiting import HELD_MAX, Waiting


def command(name):
    return Command(name, 0.0, None, [], 1)


class Connection:
    def __init__(self):
        self.handled, self.outcomes, self.closedWith = [], [], None
        self.waiting = Waiting(self.handle, self.close, lambda: self.closedWith is not None,
                               lambda: None)

    def handle(self, event):
        self.handled.append(event.name if isinstance(event, Command) else "media")

    def close(self, reason):
        self.closedWith = reason

    def check(self, decision):
        self.waiting.after(decision, lambda result: self.outcomes.append(("ok", result)),
                           lambda info: self.outcomes.append(("refused", info)))


def test_a_decision_already_made_runs_at_once_and_holds_nothing():
    conn = Connection()
    conn.check(defer.succeed(True))
    conn.check(defer.fail(AccessDenied("no token")))
    conn.waiting.receive(command("play"))
    assert conn.outcomes == [("ok", True), ("refused", "no token")]
    assert conn.handled == ["play"] and not conn.waiting.waiting


def test_commands_wait_in_order_media_is_dropped_and_a_second_check_keeps_them():
    conn = Connection()
    first, second = defer.Deferred(), defer.Deferred()
    # The first answer starts another check: what was held waits for it too.
    conn.waiting.after(first, lambda _: conn.check(second), lambda info: None)
    for name in ("createStream", "publish"):
        conn.waiting.receive(command(name))
    conn.waiting.receive(Media(VIDEO, 1, 0, b"\x17"))
    assert conn.handled == [] and conn.waiting.waiting

    first.callback(None)
    assert conn.handled == [] and conn.waiting.waiting
    conn.waiting.receive(command("deleteStream"))
    second.callback("yes")
    assert conn.outcomes == [("ok", "yes")]
    assert conn.handled == ["createStream", "publish", "deleteStream"]
    assert not conn.waiting.waiting


def test_too_many_commands_while_waiting_close_the_connection():
    conn = Connection()
    conn.check(defer.Deferred())
    for _ in range(HELD_MAX + 1):
        conn.waiting.receive(command("call"))
    assert conn.closedWith == f"more than {HELD_MAX} commands sent while an access check " \
                              "was pending"


def test_an_answer_after_the_close_does_nothing():
    conn = Connection()
    pending = defer.Deferred()
    conn.check(pending)
    conn.waiting.receive(command("publish"))
    conn.close("gone")
    pending.callback(True)
    assert conn.outcomes == [] and conn.handled == []
