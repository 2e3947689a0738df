"""The API reference in docs/: it builds with Sphinx without a warning, documents every public name and the
contract's attributes, and its errors page has an entry for every error message in the package's source."""

import ast
import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch_scipy_op
import torch_scipy_op.testing
from torch_scipy_op.testing import OpContract, benchmark

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PACKAGE = REPO / "src" / "torch_scipy_op"

# The modules a declaration, a call of a declared op, its kernels' results and its derivatives raise from.
SOURCES = ("_op_factory", "_kernels", "_checks", "_kernel_ops", "_derivatives", "_boundary")
ERRORS = {"TypeError", "ValueError", "RuntimeError", "NotImplementedError"}

# Messages that no user of the package can meet, by a fragment of each, with the reason. Each must still be
# in the source (the test below says where one is stale). Everything else needs an entry on the errors page.
UNREACHABLE = {
    "has no derivative of its own; differentiate the public op": "_kernel_ops._NoDerivative: a kernel op that has "
    "no autograd.Function; declare_op gives every kernel op its Function before the op can be called",
    "tensors must be dense (strided) to reach an array kernel": "_boundary: every op refuses a tensor that is not "
    "strided before its kernels run (check_tensor: '<op>: <name> must be a dense (strided) tensor')",
    "NumPy has no dtype for": "_boundary: every op refuses a tensor that is not float before its kernels run "
    "(check_float), and halves reach kernels in float32",
}

# A fixed fragment this long or longer must be on the errors page, as well as each message's longest one.
DISTINCTIVE = 10


def _normal(text: str) -> str:
    return " ".join(text.split())


def _fragments(message: ast.expr) -> list[str] | None:
    """The fixed parts of a message, an f-string or a string, whitespace normalised; None for anything else."""
    if isinstance(message, ast.Constant) and isinstance(message.value, str):
        parts = [message.value]
    elif isinstance(message, ast.JoinedStr):
        parts = [v.value for v in message.values if isinstance(v, ast.Constant)]
    else:
        return None
    return [_normal(p) for p in parts if _normal(p)]


def error_messages(source: str) -> list[tuple[int, list[str] | None]]:
    """(line, fixed fragments) of each message given to TypeError, ValueError, RuntimeError or
    NotImplementedError in `source`: in a raise, and in a function that builds the error for its callers to raise
    (`_derivatives._missing`, `_kernel_ops.torch_func_unknown`)."""
    found = [
        (node.lineno, _fragments(node.args[0]) if node.args else None)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERRORS
    ]
    return sorted(found, key=lambda found: found[0])


def all_error_messages() -> dict[str, list[str] | None]:
    """Every message of the sources, by "module:line"."""
    return {
        f"{module}.py:{line}": fragments
        for module in SOURCES
        for line, fragments in error_messages((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    }


def page_text(path: Path) -> str:
    """A built page's text, as a reader sees it: no tags, no entities, whitespace normalised."""
    return _normal(html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))))


def missing_from(page: str, messages: dict[str, list[str] | None]) -> list[str]:
    """The messages that have neither an entry on `page` nor a place in UNREACHABLE."""
    missing = []
    for where, fragments in messages.items():
        if fragments is None:
            missing.append(f"{where}: a message that is not a string or an f-string")
            continue
        if any(key in "".join(fragments) for key in UNREACHABLE):
            continue
        wanted = {max(fragments, key=len)} | {f for f in fragments if len(f) >= DISTINCTIVE}
        absent = sorted(f for f in wanted if f not in page)
        if absent:
            missing.append(f"{where}: {absent}")
    return missing


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The HTML reference, built as CI builds it: every warning an error."""
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "WARNING" not in run.stderr, run.stderr
    return out


def test_the_docs_build_without_a_warning(built):
    assert {"index.html", "declaration.html", "api.html", "contract.html", "errors.html"} <= {
        p.name for p in built.glob("*.html")
    }


def test_every_public_name_and_the_benchmarks_functions_have_an_entry(built):
    anchors = set()
    for page in built.glob("*.html"):
        anchors |= set(re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8")))
    public = [f"torch_scipy_op.{name}" for name in torch_scipy_op.__all__]
    public += [f"torch_scipy_op.testing.{name}" for name in torch_scipy_op.testing.__all__]
    functions = [
        name
        for name, value in vars(benchmark).items()
        if callable(value) and getattr(value, "__module__", None) == benchmark.__name__ and not name.startswith("_")
    ]
    assert len(functions) > 10
    public += [f"torch_scipy_op.testing.benchmark.{name}" for name in functions]
    assert [name for name in public if name not in anchors] == []


def test_every_attribute_of_the_contract_has_an_entry(built):
    attributes = list(OpContract.__annotations__)
    assert {"op", "native", "samples", "module_input_domain", "tolerances"} <= set(attributes)
    page = (built / "contract.html").read_text(encoding="utf-8")
    assert [a for a in attributes if f'id="torch_scipy_op.testing.OpContract.{a}"' not in page] == []


def test_every_error_the_package_raises_has_an_entry_on_the_errors_page(built):
    messages = all_error_messages()
    assert len(messages) > 40, "the sources' errors were not found: has the way they raise changed?"
    missing = missing_from(page_text(built / "errors.html"), messages)
    assert not missing, "no entry on docs/errors.rst (give each its message, mistake and fix):\n" + "\n".join(missing)
    # No stale reasons: each message UNREACHABLE excuses is still in the source.
    joined = ["".join(f) for f in messages.values() if f is not None]
    assert [key for key in UNREACHABLE if not any(key in message for message in joined)] == []


def test_a_new_error_without_an_entry_is_caught(built):
    """The check above can fail: a raise added to a source, with a message the page does not have."""
    source = (PACKAGE / "_kernels.py").read_text(encoding="utf-8")
    added = source + '\n\ndef _new(op):\n    raise ValueError(f"{op}: a message the errors page has never seen")\n'
    messages = {f"_kernels.py:{line}": fragments for line, fragments in error_messages(added)}
    missing = missing_from(page_text(built / "errors.html"), messages)
    assert len(missing) == 1
    assert "a message the errors page has never seen" in missing[0]
