"""`twistd wcs` as a user runs it: reactor, settings errors, drop-in transports."""

import asyncio
import os
import subprocess
import textwrap

from tests.support.server import TWISTD, startServer
from tests.support.wait import waitForLog

WCS_OFF = ["--ws-port", "0", "--wss-port", "0", "--http-port", "0", "--https-port", "0",
           "--rtmp-port", "0", "--rest-port", "0", "--rest-https-port", "0"]


def runTwistd(args, cwd, env=None, timeout=30):
    return subprocess.run(TWISTD + args, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_wrong_reactor_is_refused_with_one_clear_line(tmp_path):
    result = runTwistd(["-n", "--pidfile=", "--reactor=epoll", "wcs"] + WCS_OFF, tmp_path)
    assert result.returncode != 0
    assert "wcs needs the asyncio reactor, but EPollReactor is installed: " \
           "run `twistd --reactor=asyncio wcs`" in result.stderr + result.stdout


def test_plugin_listed_without_switching_other_commands_reactor(tmp_path):
    result = runTwistd(["--help"], tmp_path)
    assert result.returncode == 0
    assert "wcs" in result.stdout
    assert "service_identity" not in result.stdout + result.stderr


def test_malformed_config_stops_start_up_naming_the_line(tmp_path):
    conf = tmp_path / "flashphoner.properties"
    conf.write_text("# ok\nws_port=8080\nroom_idle_timeout=soon\n")
    result = runTwistd(["-n", "--pidfile=", "wcs", "--config", str(conf)], tmp_path)
    assert result.returncode != 0
    assert f"{conf}:3: room_idle_timeout: invalid literal" in result.stderr + result.stdout


def test_unknown_key_is_logged_and_the_server_runs(tmp_path):
    conf = tmp_path / "flashphoner.properties"
    conf.write_text("nonsense_key=1\n")
    server = startServer(tmp_path / "run", extraArgs=["--config", str(conf)])
    try:
        assert "unknown setting 'nonsense_key' ignored" in server.log()
        assert f"{conf}:1" in server.log()
    finally:
        server.stop()


def test_default_config_file_is_read_from_conf(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "flashphoner.properties").write_text("room_max_participants=x\n")
    result = runTwistd(["-n", "--pidfile=", "wcs"] + WCS_OFF, tmp_path)
    assert "conf/flashphoner.properties:1: room_max_participants" in result.stderr + result.stdout


DROPIN = textwrap.dedent('''
    from twisted.application.service import Service
    from twisted.logger import Logger
    from zope.interface import implementer
    from wcs.interfaces import ITransport

    class Announcing(Service):
        def startService(self):
            Logger().info("dropin transport up, ws_port={p}", p=self.settings.ws_port)

    @implementer(ITransport)
    class EchoTransport:
        name = "echo-dropin"
        def makeService(self, server, settings):
            service = Announcing()
            service.settings = settings
            return service

    echo = EchoTransport()
''')


def test_dropin_transport_is_found_in_wcs_plugins(tmp_path):
    """
    A module in a `wcs_plugins/` folder on the path adds a transport; the core
    is untouched. A folder named plain `plugins/` (any project's name) is not
    searched.
    """
    extra = tmp_path / "extra"
    (extra / "wcs_plugins").mkdir(parents=True)
    (extra / "wcs_plugins" / "echo_dropin.py").write_text(DROPIN)
    (extra / "plugins").mkdir()
    (extra / "plugins" / "stray_dropin.py").write_text(
        DROPIN.replace('"echo-dropin"', '"stray-dropin"'))
    env = dict(os.environ, PYTHONPATH=str(extra))
    server = startServer(tmp_path / "run", env=env)
    try:
        # The dropin's service starts after the port the test waited for opened.
        asyncio.run(waitForLog(server, f"dropin transport up, ws_port={server.ports['ws']}",
                               timeout=15))
        log = server.log()
        assert "transport echo-dropin enabled" in log
        assert "transport websocket enabled" in log
        assert "stray-dropin" not in log
    finally:
        server.stop()
