"""Sphinx configuration of the tornado-kit site (``make docs``).

The pages are Markdown (MyST); the API reference is autodoc, rendering the
docstrings as the reST they are written in, with links into Tornado's and
Python's documentation through intersphinx. The build runs offline: the two
inventories are local files, made by ``_inventories/make_inventories.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tornado.web import RequestHandler
from typing_extensions import is_protocol

if TYPE_CHECKING:
    from docutils.nodes import Element, TextElement, reference
    from sphinx.application import Sphinx
    from sphinx.environment import BuildEnvironment
    from sphinx.ext.autodoc import Options

# The reference documents this checkout's package, wherever the build runs.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tornado_kit

project = "tornado-kit"
author = "tornado-kit developers"
copyright = "tornado-kit developers"
release = version = tornado_kit.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
]

root_doc = "index"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_inventories", "snippets"]

# Every cross-reference must resolve: a broken one fails the build (-W).
nitpicky = True

# -- Markdown pages ------------------------------------------------------------------
# "#section" links and "page.md#section" links between pages resolve to headings.
myst_heading_anchors = 3

# -- API reference, the Tornado way ------------------------------------------------------
# Tornado's docs use the same settings: members in source order, the class
# docstring followed by __init__'s, no docstring inherited from a base (a
# logging.Formatter subclass does not repeat the stdlib's text), and the
# default role a cross-reference.
default_role = "py:obj"
autodoc_member_order = "bysource"
autoclass_content = "both"
autodoc_inherit_docstrings = False
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
python_use_unqualified_type_names = True

intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", "_inventories/python.inv"),
    "tornado": ("https://www.tornadoweb.org/en/stable/", "_inventories/tornado.inv"),
}

# -- HTML ------------------------------------------------------------------------
html_theme = "furo"
html_title = f"tornado-kit {release}"
html_show_sourcelink = False

# -- Cross-references the Python domain does not find by itself -------------------------
# Annotations that autodoc writes as the source spells them (postponed
# evaluation, names imported under TYPE_CHECKING, private CPython modules),
# mapped to the name their documentation uses.
ANNOTATION_TARGETS = {
    "Application": "tornado.web.Application",
    "AsyncHTTPClient": "tornado.httpclient.AsyncHTTPClient",
    "TracebackType": "types.TracebackType",
    "_asyncio.Future": "asyncio.Future",
    "concurrent.futures._base.Future": "concurrent.futures.Future",
}

# Names that appear in signatures but have no documentation to link to: the
# library's type variables, one private helper class, and types of packages
# with no inventory here (redis-py) or not documented by Python itself.
nitpick_ignore = [
    ("py:class", "P"),
    ("py:class", "tornado_kit._auth.R"),
    ("py:class", "tornado_kit._auth.H"),
    ("py:class", "tornado_kit._executor.T"),
    ("py:class", "tornado_kit._executor_mixin.T"),
    ("py:class", "tornado_kit._timing._Span"),
    ("py:class", "Redis"),
    ("py:class", "BaseContext"),
    ("py:class", "multiprocessing.context.BaseContext"),
]


def resolve_short_or_spelled_names(
    app: Sphinx, env: BuildEnvironment, node: Element, contnode: TextElement
) -> reference | None:
    """Resolve a Python reference that the exact lookup missed, or return None.

    Docstrings name their neighbours briefly (``:class:`EventLogGap```),
    relative to the module they are written in, while this site documents
    them under ``tornado_kit``: such a reference is looked up again the way
    Sphinx's ``.EventLogGap`` form is (the one documented object of that name;
    several are an error). Annotation spellings go through
    ANNOTATION_TARGETS to intersphinx.
    """
    from sphinx.ext import intersphinx

    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    retry = node.deepcopy()
    if target in ANNOTATION_TARGETS:
        retry["reftarget"] = ANNOTATION_TARGETS[target]
        return intersphinx.missing_reference(app, env, retry, contnode)
    if node.get("refspecific"):
        return None
    retry["refspecific"] = True
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, retry, contnode
    )


def hide_constructor_of_mixins_and_protocols(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Options,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """Show a mixin or a protocol by its name alone, without a constructor signature.

    A mixin would show Tornado's ``(application, request, **kwargs)`` and a
    protocol ``(*args, **kwargs)``: user code calls neither.
    """
    constructed_by_user = not (
        isinstance(obj, type) and (issubclass(obj, RequestHandler) or is_protocol(obj))
    )
    if what in {"class", "exception"} and not constructed_by_user:
        return "", return_annotation
    return None


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-signature", hide_constructor_of_mixins_and_protocols)
    # After intersphinx (priority 500), so that its inventories answer first.
    app.connect("missing-reference", resolve_short_or_spelled_names, priority=900)
