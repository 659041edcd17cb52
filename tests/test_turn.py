"""
TURN credentials (wcs/turn.py): the TURN REST API scheme coturn checks with
use-auth-secret, the settings' checks, and getUserData carrying them.
coturn itself accepting them is tests/web/test_turn.py.
"""

import base64
import hashlib
import hmac
import json

import pytest
from twisted.internet.task import Clock

from tests.support.channels import RecordingChannel
from wcs import turn
from wcs.config import ConfigError, Settings
from wcs.server import RoomServer

URLS = "turn:turn.example:3478?transport=tcp, turns:turn.example:5349?transport=tcp"


def settings(**values):
    return Settings({"turn_urls": URLS, "turn_secret": "s3cret", **values})


def test_credentials_follow_the_turn_rest_api():
    username, password = turn.credentials("s3cret", "alice", 1_700_000_000)
    assert username == "1700000000:alice"
    expected = hmac.new(b"s3cret", b"1700000000:alice", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected
    assert len(base64.b64decode(password)) == 20


def test_ice_servers_expire_after_the_ttl_from_now():
    credentials = turn.TurnCredentials(settings(turn_ttl="600"), now=lambda: 1000.5)
    [server] = credentials.iceServers("bob")
    assert server["urls"] == ["turn:turn.example:3478?transport=tcp",
                              "turns:turn.example:5349?transport=tcp"]
    assert server["username"] == "1600:bob"
    assert server["credential"] == turn.credentials("s3cret", "bob", 1600)[1]
    assert credentials.iceServers(None)[0]["username"] == "1600:anonymous"
    # STUN's USERNAME is at most 513 bytes; a long login (up to 128 characters
    # of up to 4 bytes each) is cut.
    long = credentials.iceServers("ж" * 128)[0]["username"]
    assert long == "1600:" + "ж" * 64 and len(long.encode()) <= 513


def test_nothing_without_urls():
    credentials = turn.TurnCredentials(Settings())
    assert not credentials
    assert credentials.iceServers("alice") == []


@pytest.mark.parametrize("values, message", [
    ({"turn_urls": "http://turn.example"}, "is not a turn:"),
    ({"turn_urls": "turn:"}, "is not a turn:"),
    ({"turn_secret": ""}, "turn_secret is empty"),
    ({"turn_ttl": "0"}, "turn_ttl must be > 0"),
])
def test_bad_settings_stop_start_up(values, message):
    with pytest.raises(ConfigError, match=message):
        turn.parseUrls(settings(**values))


def connect(server, login):
    channel = RecordingChannel(login)
    session = server.openSession(channel)
    session.messageReceived("connection", [{"appKey": "roomApp", "custom": {"login": login}}])
    return channel.named("getUserData")[0]


def test_getUserData_carries_each_clients_ice_servers():
    server = RoomServer(settings(turn_ttl="60"), Clock())
    userData = connect(server, "alice")
    [ice] = userData["iceServers"]
    expires, _, login = ice["username"].partition(":")
    assert login == "alice"
    assert ice["credential"] == turn.credentials("s3cret", "alice", int(expires))[1]
    assert ice["urls"][0] == "turn:turn.example:3478?transport=tcp"


def test_getUserData_has_no_ice_servers_without_turn():
    server = RoomServer(Settings(), Clock())
    assert "iceServers" not in connect(server, "alice")


def test_the_command_line_prints_what_the_server_hands_out(tmp_path, capsys):
    config = tmp_path / "flashphoner.properties"
    config.write_text(f"turn_urls={URLS}\nturn_secret=s3cret\nturn_ttl=120\n")
    assert turn.main(["--config", str(config), "--login", "carol"]) == 0
    [ice] = json.loads(capsys.readouterr().out)
    expires = int(ice["username"].split(":")[0])
    assert ice["username"].endswith(":carol")
    assert ice["credential"] == turn.credentials("s3cret", "carol", expires)[1]
    assert turn.main(["--login", "carol"]) == 2


def test_twistd_wcs_refuses_turn_urls_without_a_secret():
    from twisted.python import usage

    from wcs.tap import Options

    with pytest.raises(usage.UsageError, match="turn_secret is empty"):
        Options().parseOptions(["--set", f"turn_urls={URLS}"])
    options = Options()
    options.parseOptions(["--set", f"turn_urls={URLS}", "--set", "turn_secret=s3cret"])
    assert options.settings.turn_secret == "s3cret"
