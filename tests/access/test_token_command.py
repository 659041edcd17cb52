"""C{twistd wcs token} and C{python -m wcs.token}: one command, a token that verifies."""

import subprocess
import sys
import time

from tests.access.support import SECRET
from tests.support.server import TWISTD
from wcs.access.tokens import Verifier, loadKeys

ARGS = ["--login", "alice", "--room", "demo", "--grant", "join,publish,play,chat",
        "--ttl", "3600"]


def run(command, cwd):
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_twistd_wcs_token_prints_a_token_of_the_configured_secret(tmp_path):
    conf = tmp_path / "wcs.properties"
    conf.write_text(f"auth_jwt_secret=k1:{SECRET}\n")
    result = run(TWISTD + ["wcs", "--config", str(conf), "token", *ARGS], tmp_path)
    assert result.returncode == 0, result.stderr
    claims = Verifier(loadKeys(f"k1:{SECRET}", "")).verify(result.stdout.strip())
    assert (claims.login, claims.room) == ("alice", "demo")
    assert claims.grants == {"join", "publish", "play", "chat"}
    assert 3500 < claims.expires - time.time() <= 3600
    # Nothing started: no pid file, no log.
    assert not (tmp_path / "twistd.pid").exists() and not (tmp_path / "twistd.log").exists()


def test_both_commands_take_the_same_arguments(tmp_path):
    for command in (TWISTD + ["wcs", "token"], [sys.executable, "-m", "wcs.token"]):
        result = run(command + [*ARGS, "--secret", SECRET], tmp_path)
        assert result.returncode == 0, result.stderr
        assert Verifier(loadKeys(SECRET, "")).verify(result.stdout.strip()).login == "alice"
        refused = run(command + ["--login", "alice", "--grant", "fly"], tmp_path)
        assert refused.returncode == 2 and "no key" in refused.stderr
        unknown = run(command + ["--login", "alice", "--grant", "fly", "--secret", SECRET],
                      tmp_path)
        assert unknown.returncode == 2 and "unknown grant(s) fly" in unknown.stderr
