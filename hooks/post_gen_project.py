"""Exports an added op from the package, gives it a section of the README, and prints what to do next.

Rendering into an existing project (cookiecutter -f -s, see the README's "Several ops") writes only
the new op's files; this hook then adds the op's module and class to the package's __init__.py,
sorted as the project's lint sorts them (ruff's isort and RUF022), with no tool to install, and
appends the op's section to README.md. The rendered code needs no formatting: its line breaks are the
same whatever the names (at most 24 characters each).
"""

import ast
import re
import sys
from pathlib import Path

PACKAGE_INIT = Path("src/{{ cookiecutter.package_name }}/__init__.py")
README = Path("README.md")
OP, CLASS = "{{ cookiecutter.op_name }}", "{{ cookiecutter.class_name }}"
SECTION = {{ op_readme_section() | py_literal }}


class Natural(str):
    """A name in ruff's natural order (the natord crate): a run of digits compares as a number, or digit by
    digit where either run starts with 0; a digit is below any letter or "_"."""

    def __lt__(self, other: str) -> bool:
        a, b = str(self), str(other)
        for i in range(min(len(a), len(b))):
            if a[i].isdigit() and b[i].isdigit():
                runs = re.match(r"\d*", a[i:]).group(), re.match(r"\d*", b[i:]).group()
                left, right = runs if "0" in (a[i], b[i]) else [(len(run), run) for run in runs]
                if left != right:
                    return left < right
            if a[i] != b[i]:
                return a[i] < b[i]
        return len(a) < len(b)


def kind(name: str) -> int:
    """How isort's order-by-type and RUF022 rank a name: CONSTANT, then Class, then anything else."""
    if len(name) > 1 and name.isupper():
        return 0
    return 1 if name[0].isupper() else 2


def import_order(name: str) -> tuple:
    return kind(name), Natural(name.lower()), Natural(name)


def imports(modules: dict[str, set[str]], line_length: int) -> str:
    """`from . import <modules>`, then `from .<module> import <names>` per module, as ruff's isort writes them."""
    lines = []
    for module in sorted(modules, key=lambda module: (Natural(module.lower()), Natural(module))):
        names = sorted(modules[module], key=import_order)
        line = f"from .{module} import {', '.join(names)}\n"
        wrapped = f"from .{module} import (\n" + "".join(f"    {name},\n" for name in names) + ")\n"
        lines.append(line if len(line) - 1 <= line_length else wrapped)
    return "".join(lines)


def span(lines: list[str], first: ast.stmt, last: ast.stmt) -> slice:
    """The whole lines from `first` to `last`, refused if a comment there would be lost."""
    where = slice(first.lineno - 1, last.end_lineno)
    if "#" in "".join(lines[where]):
        refuse(f"line {first.lineno} has a comment among the exports, which this hook would not keep")
    return where


def refuse(reason: str) -> None:
    sys.exit(
        f"error: {PACKAGE_INIT}: {reason}. Export the op by hand: add `from . import {OP}` and "
        f'`from .{OP} import {CLASS}`, and "{CLASS}" and "{OP}" to __all__.'
    )


def export_the_op() -> bool:
    """Adds this op's module and class to __init__.py, when an earlier op's render wrote it; says whether it did."""
    text = PACKAGE_INIT.read_text(encoding="utf-8")
    body = ast.parse(text).body
    relative = [node for node in body if isinstance(node, ast.ImportFrom) and node.level == 1]
    exports = [node for node in body if isinstance(node, ast.Assign) and ast.unparse(node.targets) == "__all__"]
    if not relative or body.index(relative[-1]) - body.index(relative[0]) != len(relative) - 1:
        refuse("its relative imports (`from . import ...`) are not one block")
    listed = len(exports) == 1 and isinstance(exports[0].value, ast.List | ast.Tuple)
    if not listed or not all(isinstance(name, ast.Constant) for name in exports[0].value.elts):
        refuse("it has no `__all__ = [...]` that lists names as strings")
    if exports[0].lineno < relative[-1].lineno:
        refuse("its `__all__` comes before its imports")
    modules: dict[str, set[str]] = {}
    for node in relative:
        modules.setdefault(node.module or "", set()).update(ast.unparse(alias) for alias in node.names)
    if OP in modules.get("", ()):
        return False
    modules.setdefault("", set()).add(OP)
    modules.setdefault(OP, set()).add(CLASS)
    names = {str(name.value) for name in exports[0].value.elts} | {CLASS, OP}
    brackets = "[]" if isinstance(exports[0].value, ast.List) else "()"
    entries = "".join(f'    "{name}",\n' for name in sorted(names, key=lambda name: (kind(name), Natural(name))))
    setting = re.search(r"^line-length\s*=\s*(\d+)", Path("pyproject.toml").read_text(encoding="utf-8"), re.M)
    lines = text.splitlines(keepends=True)
    # The later span first, so that the earlier one's line numbers still hold.
    lines[span(lines, exports[0], exports[0])] = [f"__all__ = {brackets[0]}\n{entries}{brackets[1]}\n"]
    lines[span(lines, relative[0], relative[-1])] = [imports(modules, int(setting.group(1)) if setting else 88)]
    PACKAGE_INIT.write_text("".join(lines), encoding="utf-8")
    return True


def add_the_readme_section() -> None:
    """Appends this op's section (its usage, which tests/test_readme.py runs) to README.md, once."""
    text = README.read_text(encoding="utf-8")
    if f"\n## {OP}\n" not in text:
        README.write_text(f"{text.rstrip()}\n\n{SECTION}", encoding="utf-8")


if export_the_op():
    add_the_readme_section()
    print(
        """
Added {{ cookiecutter.package_name }}.{{ cookiecutter.op_name }} and {{ cookiecutter.package_name }}.{{ cookiecutter.class_name }} ({{ cookiecutter.starter }} starter) to this project.

Next steps:
    src/{{ cookiecutter.package_name }}/{{ cookiecutter.op_name }}.py: the kernels and the declaration
    tests/test_{{ cookiecutter.op_name }}.py: native, the samples and the bad inputs (TestContract)
    README.md: the op's section, whose code tests/test_readme.py runs
    python -m pytest tests/test_{{ cookiecutter.op_name }}.py tests/test_readme.py
"""
    )
else:
    print(
        """
Created {{ cookiecutter.project_slug }} with the {{ cookiecutter.starter }} starter: {{ cookiecutter.package_name }}.{{ cookiecutter.op_name }} and {{ cookiecutter.package_name }}.{{ cookiecutter.class_name }}.

Next steps:
    cd {{ cookiecutter.project_slug }}
    python -m pip install -e ".[test]"
    python -m pytest
    python -m benchmarks.bench_{{ cookiecutter.op_name }}
"""
    )
