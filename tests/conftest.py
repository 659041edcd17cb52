import pytest

from tests.support.server import startServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real `twistd wcs` per test module, WebSocket only."""
    running = startServer(tmp_path_factory.mktemp("wcs"))
    yield running
    running.stop()


@pytest.fixture
def serverFactory(tmp_path):
    """Start servers with particular settings; all are stopped after the test."""
    started = []

    def start(**kwargs):
        running = startServer(tmp_path / f"s{len(started)}", **kwargs)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
