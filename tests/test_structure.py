"""The shape of the package: no import cycles inside authserver, and imports that flow one way
(views -> oauth, consent, accounts -> store -> models; nothing below the views imports them).

Every `import` and `from ... import` counts, at any depth: an import inside a function is how a
cycle hides from the interpreter, not a way out of one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import authserver

PACKAGE = "authserver"
ROOT = Path(authserver.__file__).resolve().parent

#: Modules that may not reach authserver.views by any chain of imports: the protocol core, the
#: store and the models sit below the views.
LOWER_LAYERS = ("authserver.oauth", "authserver.store", "authserver.models")
VIEWS = "authserver.views"


def module_name(path: Path, root: Path = ROOT, package: str = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def find_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for __init__.py)."""
    return {module_name(path, root, package): path for path in sorted(root.rglob("*.py"))}


def imported_modules(name: str, path: Path, modules: dict[str, Path], package: str = PACKAGE) -> set[str]:
    """The package's own modules that `name` (at `path`) imports anywhere in its text."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # `import a.b.c` and `from a.b import c` name the deepest module that exists.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _inside(alias.name, package):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not _inside(source, package):
                continue
            for alias in node.names:
                # `from pkg import submodule` imports the submodule; any other name is the module's.
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = find_modules(root, package)
    return {name: imported_modules(name, path, modules, package) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path a -> ... -> a) per strongly connected component that has one
    (Tarjan's algorithm, then a shortest path back to the component's first module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(graph, component) for component in components]


def _closed_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, inside the component."""
    start, members = component[0], set(component)
    inner = {node: graph[node] & members for node in members}
    return import_path(inner, start, lambda target: target == start)


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def import_path(graph: dict[str, set[str]], start: str, goal) -> list[str] | None:
    """A shortest chain of imports from `start` to a module for which `goal` holds (`start` itself
    only by way of a cycle), or None."""
    paths: dict[str, list[str]] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, ())):
                if target not in paths:
                    paths[target] = [*paths.get(node, [start]), target]
                    if goal(target):
                        return paths[target]
                    following.append(target)
        frontier = following
    return None


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles inside authserver:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_lower_layers_do_not_reach_the_views():
    """Imports flow one way: nothing in the protocol core, the store or the models imports a view,
    directly or through another module."""
    graph = import_graph()
    upward = [
        " -> ".join(path)
        for name in sorted(graph)
        if any(_inside(name, layer) for layer in LOWER_LAYERS)
        and (path := import_path(graph, name, lambda target: _inside(target, VIEWS)))
    ]
    assert not upward, "lower layers reaching the views:\n" + "\n".join(upward)


def test_lower_layers_do_not_name_view_endpoints(app):
    """The protocol core decides nothing by which view a request reached: no string in oauth/,
    store.py or models/ is one of the app's endpoint names (as "authorize.authorize" once was)."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if "." in rule.endpoint}
    assert endpoints, "the app has no blueprint endpoints: the test would prove nothing"
    named = [
        f"{path.relative_to(ROOT.parent)}:{node.lineno}: {node.value!r}"
        for name, path in find_modules().items()
        if any(_inside(name, layer) for layer in LOWER_LAYERS)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in endpoints
    ]
    assert not named, "view endpoint names below the views:\n" + "\n".join(named)


# --- the checker itself: it must see every form of import, or the tests above prove nothing ------
_FORMS = {
    "top-level import": "import pkg.b\n",
    "from-import of a name": "from pkg.b import thing\n",
    "relative import of a sibling": "from . import b\n",
    "relative from-import": "from .b import thing\n",
    "import inside a function": "def f():\n    from .b import thing\n",
    "import inside a method": "class C:\n    def m(self):\n        import pkg.b\n",
    "import under if TYPE_CHECKING": "import typing\nif typing.TYPE_CHECKING:\n    from .b import thing\n",
}


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("form", sorted(_FORMS))
def test_checker_finds_a_cycle_however_it_is_written(tmp_path, form):
    root = _package(tmp_path, {"__init__.py": "", "a.py": _FORMS[form], "b.py": "def g():\n    from pkg import a\n"})
    cycles = find_cycles(import_graph(root, "pkg"))
    assert cycles == [["pkg.a", "pkg.b", "pkg.a"]]


def test_checker_resolves_relative_imports_in_subpackages(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "views/__init__.py": "",
        "views/page.py": "from ..core import server\n",
        "core/__init__.py": "",
        "core/server.py": "def init():\n    from ..views import page\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.views.page"] == {"pkg.core.server"}
    assert graph["pkg.core.server"] == {"pkg.views.page"}
    assert find_cycles(graph) == [["pkg.core.server", "pkg.views.page", "pkg.core.server"]]


def test_checker_names_every_cycle_and_passes_a_one_way_package(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "def create():\n    from . import a, c\n",
        "a.py": "from . import b\n",
        "b.py": "from .a import x\n",
        "c.py": "import pkg.d\n",
        "d.py": "from pkg import e\n",
        "e.py": "from .c import y\n",
        "f.py": "from . import a\nfrom .models import Thing\n",
        "models/__init__.py": "from .thing import Thing\n",
        "models/thing.py": "import os\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.f"] == {"pkg.a", "pkg.models"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.d", "pkg.e", "pkg.c"]]
    (root / "b.py").write_text("import json\n")
    (root / "e.py").write_text("")
    assert find_cycles(import_graph(root, "pkg")) == []


def test_checker_finds_a_chain_to_the_views(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "views/__init__.py": "",
        "views/page.py": "",
        "oauth/__init__.py": "",
        "oauth/core.py": "def f():\n    from ..helpers import tool\n",
        "helpers.py": "from .views.page import render\n",
    })
    graph = import_graph(root, "pkg")
    assert import_path(graph, "pkg.oauth.core", lambda t: _inside(t, "pkg.views")) == [
        "pkg.oauth.core", "pkg.helpers", "pkg.views.page"]
    assert import_path(graph, "pkg.views.page", lambda t: _inside(t, "pkg.oauth")) is None
