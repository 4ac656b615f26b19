"""Tornado's private attributes are used in the compatibility module only.

A Tornado release that renames an internal must break one place,
``tornado_kit/_compat*`` (with its own tests), not a feature. This test
reads the package's source with :mod:`ast` and reports every use of a
private name (``_foo``) that Tornado (or ``multiprocessing`` /
``concurrent.futures``, whose internals the process pool needs) defines:

- in a class derived from a Tornado class (a mixin, a handler, a delegate):
  ``self._foo`` and ``super()._foo``. tornado-kit's own state on such
  classes is named ``_tk_*`` so that it can never collide with Tornado's;
- anywhere: ``obj._foo`` on another object, unless one of tornado-kit's own
  (non-Tornado) classes defines ``_foo``;
- ``getattr`` / ``hasattr`` / ``setattr`` with such a name as a constant.
"""

from __future__ import annotations

import ast
import concurrent.futures
import multiprocessing
from pathlib import Path

import tornado

ROOT = Path(__file__).resolve().parent.parent / "tornado_kit"
FOREIGN = [Path(m.__file__).parent for m in (tornado, multiprocessing, concurrent.futures)]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_names(tree: ast.AST) -> set[str]:
    """Private names a tree defines: assigned attributes, methods, class attributes, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                targets: list[ast.expr] = []
                if isinstance(statement, ast.Assign):
                    targets = list(statement.targets)
                elif isinstance(statement, ast.AnnAssign):
                    targets = [statement.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
                        if target.id == "__slots__":
                            names.update(
                                c.value
                                for c in ast.walk(statement.value)  # type: ignore[arg-type]
                                if isinstance(c, ast.Constant) and isinstance(c.value, str)
                            )
    return {name for name in names if _is_private(name)}


def _foreign() -> tuple[set[str], set[str]]:
    """(private names, class names) defined by Tornado and the stdlib pool modules.

    Tornado's own test suite (``tornado/test``) is not Tornado: its classes
    (``Handler``, ...) and their attributes are nothing tornado-kit can use.
    """
    names: set[str] = set()
    tornado_classes: set[str] = set()
    for root in FOREIGN:
        for path in root.rglob("*.py"):
            if root == FOREIGN[0] and path.relative_to(root).parts[0] == "test":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names |= _defined_names(tree)
            if root == FOREIGN[0]:
                tornado_classes |= {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    return names, tornado_classes


def _ours(root: Path) -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(root.rglob("*.py"))
    }


def _in_compat(path: Path, root: Path) -> bool:
    return any(part.startswith("_compat") for part in path.relative_to(root).parts)


def _tornado_bindings(tree: ast.Module, tornado_classes: set[str]) -> tuple[set[str], set[str]]:
    """(local names of Tornado classes, local names of Tornado modules) in one module."""
    classes: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tornado":
            for alias in node.names:
                bound = alias.asname or alias.name
                if alias.name in tornado_classes:
                    classes.add(bound)
                elif node.module == "tornado":  # from tornado import web
                    modules.add(bound)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tornado":
                    modules.add(alias.asname or "tornado")
    return classes, modules


def _is_tornado_base(
    base: ast.expr, classes: set[str], modules: set[str], tornado_classes: set[str]
) -> bool:
    """Whether a base, as the module spells it, is a Tornado class.

    ``RequestHandler`` counts when that module imported it from Tornado, and
    ``tornado.web.RequestHandler`` / ``web.RequestHandler`` when the root is
    a Tornado module it imported; ``logging.Handler`` or ``threading.Event``
    never do, whatever Tornado names its own classes.
    """
    if isinstance(base, ast.Name):
        return base.id in classes
    if isinstance(base, ast.Attribute) and base.attr in tornado_classes:
        root = base.value
        while isinstance(root, ast.Attribute):
            root = root.value
        return isinstance(root, ast.Name) and root.id in modules
    return False


class _Visitor(ast.NodeVisitor):
    """Adds (file, name) to *found* for each use of a foreign private name (see the docstring)."""

    def __init__(
        self,
        where: str,
        derived: set[str],
        own: set[str],
        foreign: set[str],
        found: set[tuple[str, str]],
    ) -> None:
        self.where = where
        self.derived = derived
        self.own = own
        self.foreign = foreign
        self.found = found
        self.classes: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if _is_private(name) and name in self.foreign:
            receiver = node.value
            on_self = isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")
            on_super = (
                isinstance(receiver, ast.Call)
                and isinstance(receiver.func, ast.Name)
                and receiver.func.id == "super"
            )
            in_derived = bool(self.classes) and self.classes[-1] in self.derived
            if (in_derived and (on_self or on_super)) or (
                not on_self and not on_super and name not in self.own
            ):
                self.found.add((self.where, name))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name = node.args[1].value
            if _is_private(name) and name in self.foreign and name not in self.own:
                self.found.add((self.where, name))
        self.generic_visit(node)


def violations(root: Path = ROOT) -> set[tuple[str, str]]:
    foreign, tornado_classes = _foreign()
    trees = _ours(root)
    # Our classes, by name: whether a base is Tornado's, and the names of the
    # other bases (one of our own classes, imported by name).
    on_tornado: set[str] = set()
    bases: dict[str, list[str]] = {}
    for tree in trees.values():
        classes, modules = _tornado_bindings(tree, tornado_classes)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                if any(_is_tornado_base(b, classes, modules, tornado_classes) for b in node.bases):
                    on_tornado.add(node.name)
                bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
    derived = set(on_tornado)
    changed = True
    while changed:
        changed = False
        for name, class_bases in bases.items():
            if name not in derived and any(b in derived for b in class_bases):
                derived.add(name)
                changed = True
    # The compatibility module's classes are bases like any other, but what
    # it does with Tornado's internals is its business.
    trees = {path: tree for path, tree in trees.items() if not _in_compat(path, root)}
    own: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name not in derived:
                own |= _defined_names(node)
    found: set[tuple[str, str]] = set()
    for path, tree in trees.items():
        _Visitor(str(path.relative_to(root.parent)), derived, own, foreign, found).visit(tree)
    return found


def test_no_tornado_internal_is_used_outside_the_compat_module() -> None:
    assert violations() == set()


def test_the_scan_finds_a_use_when_there_is_one(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "_compat").mkdir(parents=True)
    (package / "mod.py").write_text(
        "from tornado.web import RequestHandler\n"
        "class Mixin(RequestHandler):\n"
        "    def done(self):\n"
        "        return self._finished or self._tk_mine\n"
        "class Ours:\n"
        "    def __init__(self):\n"
        "        self._closed = False\n"
        "def peek(stream, other):\n"
        "    getattr(stream, '_write_buffer', None)\n"
        "    return other._closed, stream._read_buffer\n"
    )
    (package / "_compat" / "inside.py").write_text("def f(s):\n    return s._write_buffer\n")
    assert violations(package) == {
        ("pkg/mod.py", "_finished"),
        ("pkg/mod.py", "_write_buffer"),
        ("pkg/mod.py", "_read_buffer"),
    }


def test_the_scan_resolves_bases_as_each_module_spells_them(tmp_path: Path) -> None:
    # A stdlib class named like a Tornado class is not Tornado's (threading.Event
    # vs tornado.locks.Event), even in a module that imports the Tornado one; a
    # Tornado class reached through its module (tornado.web.RequestHandler) is,
    # and so is a class derived from a compat base.
    package = tmp_path / "pkg"
    (package / "_compat").mkdir(parents=True)
    (package / "flags.py").write_text(
        "import threading\n"
        "from tornado.locks import Event\n"
        "class Flag(threading.Event):\n"
        "    def arm(self):\n"
        "        self._waiters = []\n"
        "        return Event()\n"
    )
    (package / "qualified.py").write_text(
        "import tornado.web\n"
        "from pkg._compat.hooks import Hook\n"
        "class Qualified(tornado.web.RequestHandler):\n"
        "    def done(self):\n"
        "        return self._finished\n"
        "class Hooked(Hook):\n"
        "    def status(self):\n"
        "        return self._status_code\n"
    )
    (package / "_compat" / "hooks.py").write_text(
        "from tornado.web import RequestHandler\n"
        "class Hook(RequestHandler):\n"
        "    def _log(self):\n"
        "        return self._headers\n"
    )
    assert violations(package) == {
        ("pkg/qualified.py", "_finished"),
        ("pkg/qualified.py", "_status_code"),
    }
