"""
Rules the test suite keeps, checked by reading its sources.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
OWN = ("tests", "wcs", "wcs_plugins", "twisted.plugins")


def test_noImportorskipOfOurOwnModules():
    """
    An ImportError in the project's own code is a failure, not a skip:
    importorskip is for optional third-party tools only.
    """
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
                if name.split(".")[0] in OWN or name.startswith(OWN):
                    found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}: {name}")
    assert found == []
