"""The Sphinx site builds cleanly and renders: no raw markup, every include, every link.

The site is built once per module, as ``make docs`` builds it (nitpicky,
warnings as errors), into a temporary directory; the tests then read the
HTML as a person would see it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import tornado_kit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

TESTING_FUNCTIONS = ("parse_sse", "read_sse", "ws_connect")

# What reST, Markdown or the old mkdocs site leave behind when they are not rendered.
RAW_MARKUP = (
    ":class:",
    ":meth:",
    ":func:",
    ":attr:",
    ":mod:",
    ":exc:",
    ":data:",
    ":obj:",
    ":param",
    ":raises",
    ":returns",
    ".. versionadded",
    ".. versionchanged",
    ".. note",
    "--8<--",
    "--8 <",
    ":::",
    "Example::",
    "{literalinclude}",
    "{include}",
    "{toctree}",
)
# In prose only: code legitimately holds ``**kwargs`` and backticks.
RAW_PROSE_MARKUP = ("**", "`")

ROLE = re.compile(r":(?:class|exc|meth|func|attr|data|obj|mod):`~?\.?([\w.]+?)(?:\(\))?`")
DIRECTIVE = re.compile(r"^\.\. auto(?:class|exception|function|data|module):: (\S+)", re.M)


class Page(HTMLParser):
    """The parts of a built page the tests look at."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []  # everything a reader sees, code included
        self.prose: list[str] = []  # outside code blocks, inline code and signatures
        self.ids: set[str] = set()
        self.link_targets: set[str] = set()  # fragments of <a class="reference ..."> links
        self.unlinked_xrefs: list[str] = []
        self._stack: list[tuple[str, str]] = []
        self._hidden = 0
        self._code = 0
        self._xref: list[bool] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "")
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag in {"script", "style"} or (tag == "div" and "sidebar" in classes):
            self._hidden += 1
        if tag in {"pre", "code"} or (tag == "dt" and "sig" in classes.split()):
            self._code += 1
        if tag == "a" and "reference" in classes.split():
            self.link_targets.add(attributes.get("href", "").rpartition("#")[2])
        if tag == "code" and "xref" in classes.split():
            parent_tag, parent_classes = self._stack[-1] if self._stack else ("", "")
            self._xref.append(not (parent_tag == "a" and "reference" in parent_classes.split()))
        elif tag == "code":
            self._xref.append(False)
        self._stack.append((tag, classes))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, classes = self._stack.pop()
            if open_tag in {"script", "style"} or (open_tag == "div" and "sidebar" in classes):
                self._hidden -= 1
            if open_tag in {"pre", "code"} or (open_tag == "dt" and "sig" in classes.split()):
                self._code -= 1
            if open_tag == "code":
                self._xref.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.text.append(data)
        if not self._code:
            self.prose.append(data)
        if self._xref and self._xref[-1]:
            self.unlinked_xrefs.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)

    @property
    def prose_text(self) -> str:
        return "".join(self.prose)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-b", "html", "-E", "-a", "-n", "-W", "--keep-going"),
            *("-q", "-d", str(out / ".doctrees"), str(DOCS), str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    return out


def page(site: Path, name: str) -> Page:
    return Page((site / name).read_text(encoding="utf-8"))


def source_pages() -> Iterator[str]:
    for source in sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("*.rst")):
        yield source.stem + ".html"


def test_every_docs_page_is_built(site: Path) -> None:
    built = {path.name for path in site.glob("*.html")}
    assert set(source_pages()) <= built
    assert not (ROOT / "mkdocs.yml").exists()


@pytest.mark.parametrize("name", list(source_pages()))
def test_page_text_has_no_raw_markup(site: Path, name: str) -> None:
    built = page(site, name)
    found = {mark: built.all_text.count(mark) for mark in RAW_MARKUP}
    found |= {mark: built.prose_text.count(mark) for mark in RAW_PROSE_MARKUP}
    assert {mark: count for mark, count in found.items() if count} == {}
    assert built.unlinked_xrefs == []


def test_testing_page_shows_the_whole_snippet(site: Path) -> None:
    text = page(site, "testing.html").all_text
    lines = (DOCS / "snippets" / "test_with_plugin.py").read_text().splitlines()
    assert len([line for line in lines if line.strip()]) > 20
    for line in lines:
        assert line.rstrip() in text


def test_reference_app_page_shows_the_nginx_template(site: Path) -> None:
    text = page(site, "reference-app.html").all_text
    template = (ROOT / "examples" / "deploy" / "nginx.conf").read_text()
    assert "proxy_pass" in template
    for line in template.splitlines():
        assert line.rstrip() in text


def test_changelog_page_is_the_changelog(site: Path) -> None:
    built = page(site, "changelog.html")
    headings = re.findall(r"^#+ (.+)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert len(headings) >= 3
    for heading in headings:
        # "[0.1.0] - 2026-11-27" is a Markdown link (Keep a Changelog's
        # reference links at the bottom): its text is rendered without brackets.
        text = re.sub(r"\[([^\]]+)\]", r"\1", heading).replace("`", "")
        assert text in built.all_text
    assert "Unreleased" in built.prose_text


def test_every_public_name_is_documented_under_tornado_kit(site: Path) -> None:
    reference = page(site, "reference.html")
    missing = [name for name in tornado_kit.__all__ if f"tornado_kit.{name}" not in reference.ids]
    assert missing == []
    for module in ("auth", "broker", "errors", "executor", "sse", "timing", "upstream"):
        for name in tornado_kit.__all__:
            assert f"tornado_kit.{module}.{name}" not in reference.ids
    assert "module-tornado_kit.testing" in reference.ids
    for name in TESTING_FUNCTIONS:
        assert f"tornado_kit.testing.{name}" in reference.ids


def test_no_submodule_path_is_shown_but_tornado_kit_testing(site: Path) -> None:
    # Every name is documented as tornado_kit.<Name>; the 0.1 paths are only
    # deprecated stubs and the implementation modules are private.
    reference = page(site, "reference.html")
    shown = set(re.findall(r"tornado_kit\.(\w+)\.(\w+)", reference.all_text))
    assert shown - {("testing", name) for name in TESTING_FUNCTIONS} == set()
    assert not re.search(r"tornado_kit\._\w", reference.all_text)


def documented_docstrings() -> Iterator[tuple[str, str]]:
    """(object, docstring) of every object the reference page renders, members included."""
    for name in DIRECTIVE.findall((DOCS / "reference.rst").read_text()):
        # Names without a module are under ``.. currentmodule:: tornado_kit``.
        dotted = name if "." in name else f"tornado_kit.{name}"
        module_name, _, attribute = dotted.rpartition(".")
        try:
            module = importlib.import_module(dotted)
        except ImportError:
            module = getattr(importlib.import_module(module_name), attribute)
        obj: Any = module
        yield dotted, inspect.getdoc(obj) or ""
        if inspect.isclass(obj):
            for member_name, member in vars(obj).items():
                member = getattr(member, "__func__", member)
                if isinstance(member, property):
                    member = member.fget
                doc = getattr(member, "__doc__", None)
                if doc and (callable(member) or member_name == "__init__"):
                    yield f"{dotted}.{member_name}", doc


def test_every_docstring_cross_reference_is_a_link(site: Path) -> None:
    reference = page(site, "reference.html")
    targets = {
        (where, target) for where, doc in documented_docstrings() for target in ROLE.findall(doc)
    }
    # The page has a link to each: an object of this page or of Tornado's or
    # Python's docs whose full name is the target or ends with it.
    unlinked = {
        (where, target)
        for where, target in targets
        if not any(
            fragment == target or fragment.endswith("." + target) or fragment == "module-" + target
            for fragment in reference.link_targets
        )
    }
    assert len(targets) > 100
    assert unlinked == set()
    public_classes = {
        name for name in tornado_kit.__all__ if inspect.isclass(getattr(tornado_kit, name))
    }
    mentioned = {target.rpartition(".")[2] for _, target in targets} & public_classes
    assert len(mentioned) > 10
    for name in mentioned:
        assert f"tornado_kit.{name}" in reference.link_targets
