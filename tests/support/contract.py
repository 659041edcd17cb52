"""
The transport contract, as tests check it: which C{wcs} modules a transport
may import, the import graph of C{wcs}, and L{strict} views of core objects
that let a transport reach only what an interface declares.
"""

from __future__ import annotations

import ast
from pathlib import Path

from zope.interface.interface import InterfaceClass

ROOT = Path(__file__).resolve().parents[2]

# What any transport may import of wcs (docs/transports.md).
CONTRACT = frozenset({"wcs.interfaces", "wcs.messages", "wcs.frames", "wcs.config",
                      "wcs.logs", "wcs.errors", "wcs.offload"})


def moduleName(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def importsOf(path: Path, *, moduleLevel: bool = False, source: str | None = None) -> set[str]:
    """
    The absolute names of the modules C{path} imports (C{from wcs import x}
    counts as C{wcs.x} when C{x} is a module). With C{moduleLevel}, only
    the imports that run when the module is imported (not those inside a
    function or class body: those run later, when called).
    """
    name = moduleName(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if moduleLevel and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                             ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if _isModule(candidate):
                    found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text() if source is None else source, str(path)))
    return found


def _isModule(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def wcsModules() -> dict[str, Path]:
    return {moduleName(path): path for path in sorted((ROOT / "wcs").rglob("*.py"))}


def importGraph() -> dict[str, set[str]]:
    """
    Module-level imports between C{wcs} modules. Importing C{a.b.c} runs
    C{a} and C{a.b} first, so it depends on them too: a package whose
    C{__init__} imports a submodule that imports a sibling is a cycle.
    """
    modules = wcsModules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in importsOf(path, moduleLevel=True):
            parts = imported.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    onStack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        onStack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in onStack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                onStack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


class ContractViolation(Exception):
    """
    Not an AttributeError: C{getattr(obj, name, default)} or C{hasattr}
    in a transport must not hide a reach past the interface.
    """


class Strict:
    """
    A core object seen through one interface: reading a name the interface
    does not declare raises L{ContractViolation}, so a transport driven
    with it in a test proves it uses the contract only.
    """

    def __init__(self, interface: InterfaceClass, target, wrap: dict | None = None):
        object.__setattr__(self, "_interface", interface)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_wrap", wrap or {})

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)  # Python's own probes (copy, pickle, ...)
        if name not in self._interface.names(all=True):
            raise ContractViolation(
                f"{name!r} is not part of {self._interface.__name__}")
        value = getattr(self._target, name)
        wrapper = self._wrap.get(name)
        return wrapper(value) if wrapper is not None else value

    def __setattr__(self, name: str, value) -> None:
        raise ContractViolation(f"a transport sets {name!r} on the core's object")

    def __repr__(self) -> str:
        return f"<Strict {self._interface.__name__} of {self._target!r}>"


def strictServer(server) -> Strict:
    """The server as a transport may see it; its sessions likewise."""
    from wcs.interfaces import IClientSession, IRoomServer, IStream

    def publish(method):
        return lambda *args, **kwargs: Strict(IStream, method(*args, **kwargs))

    def openSession(method):
        return lambda channel: Strict(IClientSession, method(channel), {"publish": publish})

    return Strict(IRoomServer, server, {"openSession": openSession})
