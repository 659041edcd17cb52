"""flashphoner.properties and the twistd options."""

import pytest
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python import usage

from wcs.config import ConfigError, Settings, loadProperties, parseProperties


def test_defaults_match_the_original_server():
    settings = Settings()
    assert (settings.ws_port, settings.wss_port, settings.http_port, settings.https_port,
            settings.rtmp_port) == (8080, 8443, 9091, 8888, 1935)
    assert settings.room_idle_timeout == 60000
    assert settings.room_max_participants == 100


def test_typed_values_comments_and_blank_lines():
    settings = parseProperties([
        "# a comment", "", "  ws_port = 9000  ", "room_max_participants=3",
        "state_dir=/tmp/x",
    ])
    assert settings.ws_port == 9000
    assert settings.room_max_participants == 3
    assert settings.state_dir == "/tmp/x"


def test_unknown_key_is_warned_about_and_ignored():
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        settings = parseProperties(["no_such_key=1", "ws_port=1"], "f.properties")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert settings.ws_port == 1
    warnings = [e for e in seen if e.get("log_level") == LogLevel.warn]
    assert len(warnings) == 1
    assert warnings[0]["name"] == "no_such_key" and warnings[0]["line"] == 1


@pytest.mark.parametrize("lines, where", [
    (["ws_port=80", "ws_port=eighty"], "f.properties:2: ws_port"),
    (["ws_port=70000"], "f.properties:1: ws_port"),
    (["room_idle_timeout=-1"], "f.properties:1: room_idle_timeout"),
    (["just a line"], "f.properties:1: expected key=value"),
])
def test_malformed_value_names_the_line(lines, where):
    with pytest.raises(ConfigError) as e:
        parseProperties(lines, "f.properties")
    assert str(e.value).startswith(where)


def test_shipped_properties_file_holds_the_defaults():
    shipped = loadProperties("conf/flashphoner.properties")
    defaults = Settings()
    for key in ("ws_port", "wss_port", "http_port", "https_port", "rtmp_port",
                "room_idle_timeout", "ws_max_message_size"):
        assert getattr(shipped, key) == getattr(defaults, key)


def test_command_line_overrides_the_file(tmp_path):
    from wcs.tap import Options

    conf = tmp_path / "flashphoner.properties"
    conf.write_text("ws_port=9000\nrtmp_port=1936\n")
    options = Options()
    options.parseOptions(["--config", str(conf), "--ws-port", "9100", "--records", "/r",
                          "--set", "room_max_participants=5"])
    assert options.settings.ws_port == 9100
    assert options.settings.rtmp_port == 1936
    assert options.settings.record_dir == "/r"
    assert options.settings.room_max_participants == 5


def test_bad_option_value_is_a_usage_error(tmp_path):
    from wcs.tap import Options

    conf = tmp_path / "bad.properties"
    conf.write_text("ws_port=x\n")
    with pytest.raises(usage.UsageError, match="bad.properties:1: ws_port"):
        Options().parseOptions(["--config", str(conf)])
    with pytest.raises(usage.UsageError, match="unknown setting 'nope'"):
        Options().parseOptions(["--set", "nope=1"])


def test_log_level_filters_wcs_events():
    from wcs.logs import Logger, setLevel

    seen = []
    globalLogPublisher.addObserver(seen.append)
    log = Logger()
    try:
        setLevel("warn")
        log.info("hidden {x}", x=1)
        log.warn("shown {x}", x=2)
        setLevel("info")
        log.info("shown again")
    finally:
        globalLogPublisher.removeObserver(seen.append)
        setLevel("info")
    formats = [e["log_format"] for e in seen if e.get("log_namespace") == __name__]
    assert formats == ["shown {x}", "shown again"]
    with pytest.raises(ConfigError, match="log_level: expected one of debug"):
        parseProperties(["log_level=loud"])
