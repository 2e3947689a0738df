"""Each op's declaration into the contract sets OpContract's documented attributes and nothing else.

OpContract is public API: an attribute that a declaration sets but the contract does not read (a
leftover, a misspelling) would pass silently. The declarations are read as source, since the
nine declared ops' tests import a package (own_ops) that only their rendered project has.
"""

import ast
import re
from pathlib import Path

import pytest
from torch_scipy_op.testing import OpContract, _contract

TESTS = Path(__file__).resolve().parent
DOCUMENTED = set(OpContract.__annotations__)


def declaration(source: str) -> ast.ClassDef | None:
    """The module's `class TestContract`, if it has one."""
    return next((n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "TestContract"), None)


DECLARATIONS = sorted(
    path
    for path in [*TESTS.glob("test_*.py"), *(TESTS / "declared_ops" / "tests").glob("*.py")]
    if declaration(path.read_text(encoding="utf-8"))
)


def undocumented(source: str) -> list[str]:
    """What `class TestContract` in `source` defines beyond the documented attributes."""
    names = []
    for statement in declaration(source).body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(statement.name)
        elif isinstance(statement, ast.Assign):
            names += [ast.unparse(target) for target in statement.targets]
        elif isinstance(statement, ast.AnnAssign):
            names.append(ast.unparse(statement.target))
        elif not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)):  # a docstring
            names.append(ast.unparse(statement))
    return [name for name in names if name not in DOCUMENTED]


def test_the_attributes_are_those_the_contract_documents():
    assert {"op", "native", "samples", "module", "module_input_domain", "tolerances"} <= DOCUMENTED
    assert [name for name in sorted(DOCUMENTED) if not re.search(rf"\b{name}\b", _contract.__doc__)] == []


def test_every_op_is_found():
    """The four reference ops and the nine declared ops."""
    assert len(DECLARATIONS) == 13, DECLARATIONS


@pytest.mark.parametrize("path", DECLARATIONS, ids=lambda path: path.stem)
def test_a_declaration_sets_only_documented_attributes(path):
    assert undocumented(path.read_text(encoding="utf-8")) == []


def test_an_undocumented_attribute_is_found():
    source = "class TestContract(OpContract):\n    op = f\n    torchscript = False\n    def helper(): ...\n"
    assert undocumented(source) == ["torchscript", "helper"]
