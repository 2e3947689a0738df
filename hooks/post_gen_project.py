"""Exports the op from the package, formats its files for the names you chose, and prints what to do next.

Rendering into an existing project (cookiecutter -f -s, see the README's "Several ops") writes only
the new op's files; this hook then adds the op to the package's __init__.py. Names move line breaks,
so ruff, where it is installed, formats the op's files as `ruff format --check` (CI, pre-commit) wants.
"""

import shutil
import subprocess
from pathlib import Path

PACKAGE_INIT = Path("src/{{ cookiecutter.package_name }}/__init__.py")
OP_FILES = [
    "src/{{ cookiecutter.package_name }}/{{ cookiecutter.op_name }}.py",
    "tests/test_{{ cookiecutter.op_name }}.py",
    "benchmarks/bench_{{ cookiecutter.op_name }}.py",
]
EXPORTS = ["{{ cookiecutter.class_name }}", "{{ cookiecutter.op_name }}"]


def export_the_op() -> bool:
    """Adds this op's import and names to __init__.py, when an earlier op's render wrote it; says whether it did."""
    text = PACKAGE_INIT.read_text(encoding="utf-8")
    if "from .{{ cookiecutter.op_name }} import" in text:
        return False
    names = "".join(f'    "{name}",\n' for name in EXPORTS)
    new_import = "from .{{ cookiecutter.op_name }} import " + ", ".join(EXPORTS) + "\n"
    text = text.replace("\n__all__ = [\n", f"{new_import}\n__all__ = [\n{names}", 1)
    PACKAGE_INIT.write_text(text, encoding="utf-8")
    return True


def ruff() -> str | None:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return shutil.which("ruff")
    return find_ruff_bin()


joined_a_project = export_the_op()
formatter = ruff()
if formatter:
    # A new project is formatted whole (its package name is in every file); an op that joins
    # a project touches only its own files and the exports, never what the user wrote.
    files = [*OP_FILES, str(PACKAGE_INIT)] if joined_a_project else ["."]
    # Sorts the imports and __all__ of __init__.py after an op joins, then formats.
    subprocess.run([formatter, "check", "--quiet", "--no-cache", "--fix", "--select", "I,RUF022", *files], check=True)
    subprocess.run([formatter, "format", "--quiet", "--no-cache", *files], check=True)

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
if not formatter:
    print("ruff was not found, so the code keeps the template's line breaks: run `python -m ruff format .` once.")
