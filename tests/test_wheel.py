"""
A wheel built from this tree, installed in a fresh venv outside the
checkout, serves the demo pages and the browser SDK (docs/operations.md,
"Installing"). Slow for a test (a real build and install: ~30-60 s under
load), so one test does it all.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.server import startServer

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "node_modules" / "@flashphoner" / "websdk"
DEMOS = "/client2/examples/demo/streaming"
# What a build must not see of a working checkout (a stale build/ would be shipped).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "node_modules", "build", "dist",
                                     "*.egg-info", "__pycache__", "state", "records",
                                     ".pytest_cache", ".hypothesis", "dropin.cache")


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def buildWheel(tmp: Path) -> Path:
    """`make dist`'s build, from a clean copy of the tree and its node_modules."""
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    assert (SDK / "flashphoner.js").is_file(), f"no browser SDK in {SDK}: run `npm ci`"
    (source / "node_modules").symlink_to(ROOT / "node_modules")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
         str(source)])
    [wheel] = (tmp / "dist").glob("wcs-*.whl")
    return wheel


def makeVenv(tmp: Path, wheel: Path) -> tuple[Path, Path]:
    """
    A venv without system site-packages: the wheel installed in it, its
    dependencies borrowed from this venv's site-packages by a .pth (a path
    line adds that folder only: its own .pth files, among them the editable
    install's link to the checkout, are not read), so nothing is downloaded.
    """
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; "
                        "print(sysconfig.get_path('purelib'))"]).stdout.strip())
    (purelib / "zz_borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)])
    # Twisted's console script, as pip would write it in a full install.
    twistd = venv / "bin" / "twistd"
    twistd.write_text(f"#!{python}\nimport sys\nfrom twisted.scripts.twistd import run\n"
                      "sys.exit(run())\n")
    twistd.chmod(0o755)
    return python, twistd


def get(server, path):
    connection = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_installed_wheel_serves_demo_pages_and_sdk(tmp_path):
    wheel = buildWheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    ours = {str(p.relative_to(ROOT)) for folder in ("wcs", "wcs_plugins", "twisted/plugins")
            for p in (ROOT / folder).rglob("*.py")}
    assert ours - names == set(), "modules of the tree missing from the wheel"
    assert "wcs/web/websdk/flashphoner.js" in names
    assert "wcs/web/websdk/examples/demo/dependencies/js/utils.js" in names
    assert not any(n.startswith(("wcs/web/websdk/src/", "plugins/")) for n in names)

    python, twistd = makeVenv(tmp_path, wheel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    workdir = tmp_path / "run"
    workdir.mkdir()
    where = run([str(python), "-c", "import wcs, wcs_plugins; print(wcs.__file__)"],
                cwd=workdir, env=env).stdout.strip()
    installed = Path(where).parent
    assert installed.is_relative_to(tmp_path / "venv"), where

    server = startServer(workdir, enable=("http",), env=env, twistd=[str(twistd)])
    try:
        version = json.loads((SDK / "package.json").read_text())["version"]
        assert f"browser SDK {version} from {installed / 'web' / 'websdk'}" in server.log()
        status, body = get(server, f"{DEMOS}/conference/")
        assert status == 200 and b"<title>Conference" in body
        assert b'src="../../../../flashphoner-room-api.js"' in body
        status, body = get(server, "/client2/flashphoner.js")
        assert status == 200 and body == (SDK / "flashphoner.js").read_bytes()
        status, body = get(server, "/client2/flashphoner-room-api.js")
        assert status == 200 and body == (SDK / "flashphoner-room-api.js").read_bytes()
        status, body = get(server, f"{DEMOS}/conference/conference.html")
        assert status == 200 and b"conference.js" in body
    finally:
        server.stop()
