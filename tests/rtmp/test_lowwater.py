"""
The publisher socket's receive low-water mark (wcs/transports/lowwater.py),
on real loopback sockets: what epoll reports is the kernel's, with the
sweep driven by a L{task.Clock}.
"""

import select
import socket

import pytest
from twisted.internet import task

from wcs.transports.lowwater import LowWater


@pytest.fixture
def pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    listener.close()
    poller = select.epoll()
    poller.register(server.fileno(), select.EPOLLIN)
    yield client, server, lambda: bool(poller.poll(0.2))
    poller.close()
    client.close()
    server.close()


def mark(sock):
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


@pytest.mark.parametrize("floor", [9, 1])
def test_a_lone_header_does_not_wake_the_reader(pair, floor):
    """The default floor (9) holds ffmpeg's lone 8-byte header; floor 1 is off."""
    client, server, readable = pair
    clock = task.Clock()
    LowWater(clock.callLater, floor=floor).set(server, 0)
    assert mark(server) == floor
    assert len(clock.getDelayedCalls()) == (floor > 1)  # a sweep only when holding
    client.sendall(b"h" * 8)  # a type-1 chunk header sent alone, as ffmpeg does
    assert readable() == (floor == 1)
    client.sendall(b"b")
    assert readable()


def test_a_started_chunk_wakes_the_reader_once_whole(pair):
    client, server, readable = pair
    lowWater = LowWater(task.Clock().callLater)
    lowWater.set(server, 3000)
    assert mark(server) == 3000
    client.sendall(b"x" * 2999)
    assert not readable()
    client.sendall(b"x")
    assert readable()
    lowWater.set(server, 1 << 20)
    assert mark(server) == 64 * 1024  # capped


def test_a_small_last_message_waits_at_most_two_sweeps(pair):
    client, server, readable = pair
    clock = task.Clock()
    lowWater = LowWater(clock.callLater, interval=1.0)
    lowWater.set(server, 0)
    client.sendall(b"p" * 7)  # a type-3 ping response: under the mark
    assert not readable()
    clock.advance(1.0)  # the first sweep notes the reads so far
    assert not readable()
    clock.advance(1.0)  # none since: back to any byte, and the kernel says readable
    assert mark(server) == 1 and readable()
    assert lowWater.marks == {} and not clock.getDelayedCalls()  # nothing left to sweep


def test_a_socket_still_read_keeps_its_mark(pair):
    client, server, readable = pair
    clock = task.Clock()
    lowWater = LowWater(clock.callLater, interval=1.0)
    for _ in range(5):
        lowWater.set(server, 0)
        clock.advance(1.0)
    assert mark(server) == 9
    lowWater.forget(server)
    assert mark(server) == 1 and lowWater.marks == {}
    clock.advance(1.0)
    assert not clock.getDelayedCalls()


def test_a_closed_socket_is_no_error(pair):
    client, server, readable = pair
    lowWater = LowWater(task.Clock().callLater)
    lowWater.set(server, 0)
    server.close()
    lowWater.set(server, 500)
    lowWater.forget(server)
    assert lowWater.marks == {}


def test_reads_under_a_mark_are_counted_for_metrics(pair):
    """markedReads (wcs_rtmp_low_water_reads): reads that left a mark over 1 in force."""
    _, server, _ = pair
    lowWater = LowWater(task.Clock().callLater)
    lowWater.set(server, 0)
    lowWater.set(server, 500)
    lowWater.set(server, 1)  # a chunk that lacks one byte: no mark over 1
    assert lowWater.markedReads == 2
    assert list(lowWater.marks) == []
    lowWater.set(server, 0)
    assert lowWater.markedReads == 3 and list(lowWater.marks) == [server]
    lowWater.forget(server)
    assert lowWater.markedReads == 3 and lowWater.marks == {}
    lowWater.stop()


def test_inForce_sums_the_process_marks(pair):
    """What /metrics reports: every LowWater of the process, summed."""
    from wcs.transports.lowwater import inForce

    _, server, _ = pair
    before = inForce()
    lowWater = LowWater(task.Clock().callLater)
    lowWater.set(server, 0)
    assert inForce() == (before[0] + 1, before[1] + 1)
    lowWater.forget(server)
    lowWater.stop()
    assert inForce() == (before[0], before[1] + 1)
