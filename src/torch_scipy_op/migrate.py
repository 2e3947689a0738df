"""Moves a project generated before torch-scipy-op was a package onto the package, in one step.

    python -m torch_scipy_op.migrate PATH [--dry-run]

Such a project vendors the op factory (`src/<package>/_op_factory.py`, `_boundary.py`, ...), the
contract and its helpers (`tests/contract.py`, `tests/helpers.py`, `tests/conftest.py`), their tests
and `benchmarks/compare.py`. The migration:

- rewrites the imports of the project's own modules and tests to the package's public API
  (`from torch_scipy_op import declare_op`, `from torch_scipy_op.testing import OpContract`), and
  says which names it could only take from a private module;
- removes each vendored file that is as the template generated it (any version of it), and keeps,
  and reports, one that was changed since, with its imports rewritten: never a file with your work
  in it (though a change to the op factory no longer takes effect: the report says so);
- replaces an unchanged `tests/conftest.py` with the `device` fixture the op tests need;
- adds torch-scipy-op to pyproject.toml's dependencies and test extra;
- flags a forward kernel whose parameters are not the schema's arguments in order: projects of
  before bound them by position, the package binds them by name;
- removes `torchscript = ...` from the contract declarations (TorchScript left the contract);
- flags an nn.Module without `reset_parameters`, which deferred initialisation needs;
- flags a `.github/declared_floor.py` that would pin torch-scipy-op at a development release;
- and leaves everything else alone: your ops' code, the README, CI. It prints what it did.

It decides everything before it writes anything, and a file that does not parse stops it with
nothing changed. `--dry-run` prints the same report and changes nothing.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

_REQUIREMENT = "torch-scipy-op{extra}>=0.1.dev0,<0.2"
_VENDORED = json.loads((Path(__file__).with_name("_vendored.json")).read_text(encoding="utf-8"))
# The names each starter's files were written with, which a project's copies carry as its own.
_STARTERS = {"fft": ("bad_fft", "BadFFT"), "conv2d": ("scipy_conv2d", "ScipyConv2d"), "blank": ("my_op", "MyOp")}
_PLUMBING = ("_boundary", "_checks", "_derivatives", "_kernel_ops", "_kernels", "_op_factory")
_CONFTEST = '''"""Fixtures of this project's tests (each TestContract brings its own): `device`, and a fresh start."""

import pytest
import torch
from torch_scipy_op.testing import DEVICES


@pytest.fixture(params=DEVICES)
def device(request):
    """The CPU, and CUDA where this machine has one."""
    return request.param


@pytest.fixture(autouse=True)
def fresh_start():
    """One seed per test, and torch.compile's caches of earlier tests' frames emptied."""
    torch._dynamo.reset()
    torch.manual_seed(0)
'''


@dataclass
class Report:
    """What the migration did, and what it leaves to you."""

    done: list[str] = field(default_factory=list)
    to_do: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = ["Done:", *(f"  - {line}" for line in self.done or ["nothing"])]
        if self.to_do:
            lines += ["For you to look at:", *(f"  - {line}" for line in self.to_do)]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Project:
    root: Path
    package: str
    starter_names: dict[str, str]  # a name in the project's copies -> the starter's name in the source

    def vendored(self) -> dict[Path, str]:
        """The vendored files the project holds, each with its key in _vendored.json."""
        paths = {Path(key.format(package=self.package)): key for key in _VENDORED}
        return {self.root / path: key for path, key in paths.items() if (self.root / path).is_file()}

    def unchanged(self, path: Path, key: str) -> bool:
        """Whether `path` is a version of its template file: with the project's names back to the starter's, its
        hash is one of that file's, and renaming it again gives `path` exactly (so no two texts can pass as one)."""
        text = path.read_text(encoding="utf-8")
        source = _renamed(text, self.package, "reference", self.starter_names)
        again = _renamed(source, "reference", self.package, {v: k for k, v in self.starter_names.items()})
        return again == text and hashlib.sha256(source.rstrip("\n").encode("utf-8")).hexdigest() in _VENDORED[key]


def _renamed(text: str, package: str, new_package: str, names: dict[str, str]) -> str:
    """`text` with the package's name where code names it as a module, and each of `names`, replaced, as the
    template's renamer replaces a starter's names with a project's."""
    text = re.sub(rf"(?<![\w.]){package}(?=\.[A-Za-z_]| import\b)|(?<=ops\.){package}(?=\.)", new_package, text)
    for name, new_name in names.items():
        text = re.sub(rf"(?<![A-Za-z0-9]){name}(?![a-z0-9])", new_name, text)
    return text


def _read_project(root: Path) -> _Project:
    """The project's package and names, from the answers it was generated with."""
    answers_file = root / ".cookiecutter.yaml"
    if not answers_file.is_file():
        raise SystemExit(
            f"migrate: PATH must be a project generated by the template, with its .cookiecutter.yaml; "
            f"got {root}, which has none"
        )
    answers = dict(re.findall(r'^  (\w+): "((?:[^"\\]|\\.)*)"$', answers_file.read_text(encoding="utf-8"), re.M))
    answers = {key: json.loads(f'"{value}"') for key, value in answers.items()}
    package = answers.get("package_name", "")
    if not (root / "src" / package / "__init__.py").is_file():
        raise SystemExit(f"migrate: .cookiecutter.yaml names the package {package!r}, but src/{package}/ is not one")
    names: dict[str, str] = {}
    if answers.get("starter") in _STARTERS and {"op_name", "class_name"} <= answers.keys():
        op, cls = _STARTERS[answers["starter"]]
        names = {answers["op_name"]: op, answers["class_name"]: cls}
    return _Project(root, package, names)


# ----------------------------------------------------------------------------
# Imports
# ----------------------------------------------------------------------------


def _public_names(module: str) -> set[str]:
    """The names a module of this package makes public, read from its source: `__all__`, or (for a module
    without one) its top-level names that do not start with `_`. Reading, not importing, keeps pytest out."""
    path = Path(__file__).parent.joinpath(*module.split(".")[1:])
    source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]:
            return set(ast.literal_eval(node.value))
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return {name for name in defined if not name.startswith("_")}


def _targets(package: str) -> dict[str, tuple[str, str]]:
    """Each old module path -> (its private home in the package, the public module that may export its names)."""
    targets = {}
    for module in _PLUMBING:
        for old in (f".{module}", f"{package}.{module}"):
            targets[old] = (f"torch_scipy_op.{module}", "torch_scipy_op")
    targets["tests.contract"] = ("torch_scipy_op.testing._contract", "torch_scipy_op.testing")
    targets["tests.helpers"] = ("torch_scipy_op.testing._helpers", "torch_scipy_op.testing")
    targets["benchmarks.compare"] = ("torch_scipy_op.testing.benchmark", "torch_scipy_op.testing.benchmark")
    return targets


def _rewrite_imports(text: str, tree: ast.Module, package: str, where: str, report: Report) -> str:
    """`text` with each import from a vendored module, at any depth, replaced by imports from the package."""
    targets, lines = _targets(package), text.splitlines(keepends=True)
    for node in sorted(ast.walk(tree), key=lambda n: -getattr(n, "lineno", 0)):  # bottom up: line numbers hold
        if isinstance(node, ast.Import) and any(a.name.startswith(f"{package}._") for a in node.names):
            report.to_do.append(f"{where}:{node.lineno}: rewrite `{ast.unparse(node)}` by hand (a vendored module)")
        if not isinstance(node, ast.ImportFrom):
            continue
        module = "." * node.level + (node.module or "")
        if module in (".", package, "tests") and any(a.name in (*_PLUMBING, "contract", "helpers") for a in node.names):
            report.to_do.append(f"{where}:{node.lineno}: rewrite `{ast.unparse(node)}` by hand (a vendored module)")
        if module not in targets:
            continue
        private_home, public_module = targets[module]
        public = _public_names(public_module)
        imported = [f"{a.name} as {a.asname}" if a.asname else a.name for a in node.names]
        public_names = [n for n, a in zip(imported, node.names, strict=True) if a.name in public]
        private_names = [n for n in imported if n not in public_names]
        segment = "".join(lines[node.lineno - 1 : node.end_lineno])
        comments = re.findall(r"#[^\n]*", segment)
        indent = " " * node.col_offset
        new = [f"{indent}from {public_module} import {', '.join(public_names)}"] if public_names else []
        if private_names:
            new.append(f"{indent}from {private_home} import {', '.join(private_names)}")
            report.to_do.append(
                f"{where}: {', '.join(private_names)} come from the private module {private_home}, which may change "
                "in any release: ask for them to be public, or do without"
            )
        new[-1] += f"  {' '.join(comments)}" if comments else ""
        lines[node.lineno - 1 : node.end_lineno] = [line + "\n" for line in new]
    return "".join(lines)


# ----------------------------------------------------------------------------
# Declarations
# ----------------------------------------------------------------------------


def _schema_arguments(schema: str) -> list[str]:
    inside = schema[schema.index("(") + 1 : schema.rindex(")", 0, schema.index("->"))]
    return [re.split(r"\s+", a.split("=")[0].strip())[-1] for a in inside.split(",") if a.strip()]


def _forward_order(tree: ast.Module, where: str, report: Report) -> None:
    """Flags a forward kernel whose parameters after `backend` are not the schema's arguments in order."""
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "declare_op" and len(call.args) >= 2):
            continue
        schema, forward = call.args[1], {k.arg: k.value for k in call.keywords}.get("forward")
        if not (isinstance(schema, ast.Constant) and isinstance(schema.value, str)):
            continue
        if not (isinstance(forward, ast.Name) and forward.id in functions):
            continue
        parameters = [a.arg for a in functions[forward.id].args.args][1:]
        arguments = _schema_arguments(schema.value)
        if parameters != arguments[: len(parameters)]:
            report.to_do.append(
                f"{where}: the forward kernel {forward.id} takes ({', '.join(parameters)}) where the schema's "
                f"arguments are ({', '.join(arguments)}). It was called by position; the package calls kernels by "
                "name, so each parameter now gets the argument of its name: check that this is what you meant"
            )


def _reset_parameters(tree: ast.Module, where: str, report: Report) -> None:
    """Flags an nn.Module that makes parameters or buffers but has no reset_parameters: made on the meta device,
    as FSDP's deferred initialisation makes it, it would keep uninitialised memory (a check the contract added)."""
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        methods = {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}
        init = ast.unparse(methods["__init__"]) if "__init__" in methods else ""
        if ("nn.Parameter(" in init or "register_buffer(" in init) and "reset_parameters" not in methods:
            report.to_do.append(
                f"{where}: {cls.name} makes parameters or buffers but has no reset_parameters(), so one made on the "
                "meta device (FSDP's deferred initialisation: to_empty, then reset_parameters) keeps uninitialised "
                "memory. Move their initial values into reset_parameters() and call it from __init__; the contract's "
                "test_module_made_on_the_meta_device_initialises_as_one_made_normally checks it"
            )


def _without_torchscript(text: str, tree: ast.Module, where: str, report: Report) -> str:
    """`text` without the `torchscript = ...` of a class that declares an op into OpContract."""
    lines = text.splitlines(keepends=True)
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and "OpContract" in map(ast.unparse, n.bases)):
        for node in reversed(cls.body):
            if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["torchscript"]:
                alone = [" " * node.col_offset + "pass\n"] if len(cls.body) == 1 else []  # a class needs a body
                lines[node.lineno - 1 : node.end_lineno] = alone
                report.done.append(
                    f"{where}: removed `torchscript = ...` from {cls.name} (TorchScript left the contract)"
                )
    return "".join(lines)


# ----------------------------------------------------------------------------
# The project
# ----------------------------------------------------------------------------


def _add_to_array(text: str, key: str, item: str) -> str | None:
    """`text` (TOML) with `item` first in the array `key = [...]`, which a comma after it keeps valid however the
    array is laid out; None where there is no such array."""
    match = re.search(rf"^{re.escape(key)}\s*=\s*\[", text, re.M)
    if match is None:
        return None
    empty = re.match(r"\s*\]", text[match.end() :])
    return f'{text[: match.end()]}"{item}"{"" if empty else ", "}{text[match.end() :]}'


def _add_requirements(text: str, report: Report) -> str:
    """pyproject.toml's text requiring torch-scipy-op, and its testing extra in the test extra."""
    if "torch-scipy-op" in text:
        return text
    for key, item in (
        ("dependencies", _REQUIREMENT.format(extra="")),
        ("test", _REQUIREMENT.format(extra="[testing]")),
    ):
        new = _add_to_array(text, key, item)
        if new is None:
            report.to_do.append(f"pyproject.toml: add {item!r} to {key} by hand")
        else:
            text = new
            report.done.append(f"pyproject.toml: {key} requires {item}")
    return text


def _plan(project: _Project, report: Report) -> tuple[dict[Path, str], list[Path]]:
    """What to write and what to remove, all decided before anything is."""
    root, vendored = project.root, project.vendored()
    unchanged = {path for path, key in vendored.items() if project.unchanged(path, key)}
    writes: dict[Path, str] = {}
    removals = [path for path in sorted(unchanged) if vendored[path] != "tests/conftest.py"]
    conftest = root / "tests" / "conftest.py"
    if conftest in unchanged:
        writes[conftest] = _CONFTEST
        report.done.append("tests/conftest.py: replaced with the `device` fixture of the op tests")
    for path in sorted(set(vendored) - unchanged):
        where = str(path.relative_to(root))
        effect = "nothing uses it any more (the ops run on torch_scipy_op's own)" if "src" in path.parts else ""
        if vendored[path] == "tests/conftest.py":
            effect = "the op tests need its `device` fixture: copy it from the template's tests/conftest.py"
        report.to_do.append(
            f"{where} was changed since the template generated it, so it stays, with its imports "
            f"rewritten{'; ' + effect if effect else ''}. Move your change into your own code (or "
            "propose it to torch-scipy-op), then delete the file"
        )
    rewritten = []
    for path in [p for d in ("src", "tests", "benchmarks") for p in sorted((root / d).rglob("*.py"))]:
        if path in removals or path in writes:
            continue
        where, text = str(path.relative_to(root)), path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text)
        except SyntaxError as error:
            message = f"migrate: {where} does not parse ({error}); fix it, then migrate: nothing was changed"
            raise SystemExit(message) from None
        if path not in vendored:
            _forward_order(tree, where, report)
            _reset_parameters(tree, where, report)
        new = _without_torchscript(text, tree, where, report)
        new = _rewrite_imports(new, ast.parse(new), project.package, where, report)
        ast.parse(new)  # what the migration writes parses
        if new != text:
            writes[path] = new
            rewritten.append(where)
    if rewritten:
        report.done.append(f"imports from torch_scipy_op in {', '.join(rewritten)}")
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    if (new := _add_requirements(text, report)) != text:
        writes[pyproject] = new
    floor = root / ".github" / "declared_floor.py"
    if floor.is_file() and ".dev" not in floor.read_text(encoding="utf-8"):
        report.to_do.append(
            ".github/declared_floor.py pins torch-scipy-op==0.1.dev0, which no index has: replace it "
            "with the template's current one, which pins the release a .dev0 floor leads to"
        )
    report.done += [f"removed {path.relative_to(root)}, as the template generated it" for path in removals]
    return writes, removals


def migrate(root: Path, dry_run: bool = False) -> Report:
    """Migrates the project at `root` (see the module's docstring); with `dry_run`, changes nothing."""
    report = Report()
    writes, removals = _plan(_read_project(root), report)
    if not dry_run:
        for path, text in writes.items():
            path.write_text(text, encoding="utf-8")
        for path in removals:
            path.unlink()
    report.to_do.append(
        'then: python -m pip install -e ".[test]", python -m ruff check --fix . (to sort the imports), python -m pytest'
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torch_scipy_op.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the project's folder, which holds its .cookiecutter.yaml")
    parser.add_argument("--dry-run", action="store_true", help="say what it would do, and change nothing")
    args = parser.parse_args(argv)
    print(migrate(args.path, args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
