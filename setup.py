"""
Packaging: everything is in setup.cfg except the browser SDK.

The demo pages and pages written for Web Call Server load the official SDK
(npm package @flashphoner/websdk) from /client2/. A wheel or an sdist
carries the files of it that the server serves (wcs/web/site.py, `_public`:
the built flashphoner*.js scripts and the examples/ folder) in
wcs/web/websdk/, copied at build time from node_modules/ (`npm ci`; `make
dist` does both). Building without them fails with what to do, unless
WCS_BUILD_WITHOUT_SDK=1 says a server without the SDK is meant.
An editable install needs no copy: the server finds node_modules/ itself.
"""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
BUNDLED = Path("wcs", "web", "websdk")
SOURCES = [HERE / BUNDLED,  # an unpacked sdist already has it
           HERE / "node_modules" / "@flashphoner" / "websdk"]


def findSDK() -> Path | None:
    for source in SOURCES:
        if (source / "flashphoner-room-api.js").is_file():
            return source
    if os.environ.get("WCS_BUILD_WITHOUT_SDK") == "1":
        return None
    raise SystemExit(
        "error: the browser SDK (npm package @flashphoner/websdk) is not in "
        f"{SOURCES[1]}: run `npm ci` first (or `make dist`), or set "
        "WCS_BUILD_WITHOUT_SDK=1 to build a server whose demo pages cannot load it")


def copySDK(source: Path, target: Path) -> None:
    """The served files only: not the SDK's sources, tests or build files."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.name == "package.json" or (
                path.name.startswith("flashphoner") and path.suffix == ".js"):
            shutil.copy2(path, target / path.name)
    shutil.copytree(source / "examples", target / "examples")


class BuildWithSDK(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = findSDK()
        if source is not None:
            copySDK(source, Path(self.build_lib) / BUNDLED)


class SdistWithSDK(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        source = findSDK()
        if source is not None and source != HERE / BUNDLED:
            copySDK(source, Path(base_dir) / BUNDLED)


setup(cmdclass={"build_py": BuildWithSDK, "sdist": SdistWithSDK})
