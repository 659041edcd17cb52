"""
The WHIP/WHEP drop-in is written against the contract only: it imports no
part of wcs but the allowed modules, and its plugins provide IWebResource.
"""

import ast
from pathlib import Path

from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject

import plugins
from wcs.interfaces import IWebResource

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"wcs.interfaces", "wcs.messages", "wcs.frames", "wcs.config", "wcs.logs",
           "wcs.errors"}
OWN = "whipwhep"


def importsOf(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            if node.module == "wcs":  # from wcs import server
                names += [f"wcs.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def test_the_check_sees_every_form(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import wcs.server\nfrom wcs import session, logs\nfrom wcs.room import x\n")
    assert importsOf(probe) == ["wcs.server", "wcs.session", "wcs.logs", "wcs.room"]


def test_dropin_imports_only_the_contract():
    files = [ROOT / "plugins" / "whip.py", *sorted((ROOT / OWN).glob("*.py"))]
    assert len(files) > 2
    wrong = [(f.name, name) for f in files for name in importsOf(f)
             if (name == "wcs" or name.startswith("wcs.")) and name not in ALLOWED]
    assert wrong == []


def test_plugins_provide_the_interface():
    found = {p.name: p for p in getPlugins(IWebResource, plugins)}
    assert {"whip", "whep"} <= set(found)
    for provider in found.values():
        assert verifyObject(IWebResource, provider)
