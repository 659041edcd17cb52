"""The webhook queue of one URL, with an injected clock (no network)."""

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock

from wcs.metrics import Metrics
from wcs.webhooks import Delivery, sign


class Response:
    def __init__(self, code):
        self.code = code
        self.phrase = b"Whatever"

    def deliverBody(self, protocol):
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone

        protocol.dataReceived(b"")
        protocol.connectionLost(Failure(ResponseDone()))


class Agent:
    """Records requests; answers each with the next of C{answers} (a code or a failure)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    def request(self, method, uri, headers, body):
        self.requests.append((uri, headers, body))
        answer = self.answers.pop(0) if self.answers else Deferred()
        if isinstance(answer, int):
            d = Deferred()
            d.callback(Response(answer))
            return d
        return answer


def delivery(agent, clock, metrics=None, queueMax=100):
    return Delivery("http://127.0.0.1:1/hook", agent, clock, "key", queueMax, timeout=5,
                    retryMin=0.2, retryMax=1.0, metrics=metrics)


def test_failures_are_retried_with_doubling_back_off_in_order():
    clock = Clock()
    agent = Agent([fail(ConnectionRefusedError()), 500, fail(ConnectionRefusedError()),
                   fail(ConnectionRefusedError()), fail(ConnectionRefusedError()), 204, 204])
    queue = delivery(agent, clock)
    queue.push(b'{"n": 1}')
    queue.push(b'{"n": 2}')
    delays = []
    while queue.retry is not None:
        delays.append(round(queue.retry.getTime() - clock.seconds(), 3))
        clock.advance(delays[-1])
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0]  # doubling, capped at retryMax
    assert not queue.events
    bodies = [body for _, _, body in agent.requests]
    assert len(bodies) == 7
    # Every try of the first event, then the second: never out of order.
    assert [b._inputFile.getvalue() for b in bodies] == [b'{"n": 1}'] * 6 + [b'{"n": 2}']
    headers = agent.requests[0][1]
    assert headers.getRawHeaders(b"x-wcs-signature") == [sign("key", b'{"n": 1}').encode()]


def test_a_full_queue_drops_new_events_and_counts_them():
    clock = Clock()
    metrics = Metrics()
    queue = delivery(Agent([]), clock, metrics, queueMax=3)  # never answers
    assert [queue.push(b"%d" % i) for i in range(5)] == [True, True, True, False, False]
    assert list(queue.events) == [b"0", b"1", b"2"]
    assert metrics.registry.get_sample_value("wcs_webhook_dropped_total") == 2


def test_a_slow_receiver_times_out_and_is_retried():
    clock = Clock()
    agent = Agent([Deferred(), 204])  # the first never answers
    queue = delivery(agent, clock)
    queue.push(b"x")
    idle = queue.idle()
    clock.advance(5)  # webhook_timeout
    assert queue.retry is not None and len(agent.requests) == 1
    clock.advance(0.2)
    assert len(agent.requests) == 2 and not queue.events
    assert idle.called
