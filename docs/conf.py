"""Sphinx configuration: the API reference of `torch_scipy_op`, built from its docstrings.

Build with `python -m sphinx -W --keep-going -b html docs <outdir>` (tests/test_docs.py does, into a temporary
folder). Nothing here reaches the network: no intersphinx, no remote images.
"""

from __future__ import annotations

import re

import torch_scipy_op
from docutils import nodes

project = "torch-scipy-op"
author = "The torch-scipy-op developers"
copyright = "The torch-scipy-op developers"
release = torch_scipy_op.__version__
version = release

extensions = ["sphinx.ext.autodoc"]
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["wrap.css"]  # long error messages wrap
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}  # no network: builds run where nothing outside is reached

# Documented in the order of the source, with signatures as written (the package annotates lazily, from
# __future__ import annotations): a docstring states the rules, the signature the names.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = False

# The docstrings use Markdown's single backticks for code (`declare_op`, `backend.xp`, `torch.ops.<ns>.<op>`):
# a dotted name becomes a cross-reference (code, linked where the name is documented), anything else code.
default_role = "code-or-name"
_NAME = re.compile(r"[A-Za-z_][\w.]*(\(\))?")


def _code_or_name(role, rawtext, text, lineno, inliner, options=None, content=None):
    if _NAME.fullmatch(text):
        env = inliner.document.settings.env
        return env.get_domain("py").role("obj")(role, rawtext, text, lineno, inliner, options or {}, content or [])
    return [nodes.literal(rawtext, text)], []


def _no_docstring_of_the_type(app, what, name, obj, options, lines):
    """A constant's entry leaves out its type's docstring (str's, tuple's, pytest's MarkDecorator's), which
    autodoc gives for an object without a docstring of its own; the page says what the constant is."""
    if what == "data" and " ".join(lines).split() == (getattr(obj, "__doc__", None) or "").split():
        lines.clear()


def setup(app):
    app.add_role("code-or-name", _code_or_name)
    app.connect("autodoc-process-docstring", _no_docstring_of_the_type)
    return {"parallel_read_safe": True}
