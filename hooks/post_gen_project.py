"""Exports the op from the package, and prints what to do next.

Rendering into an existing project (cookiecutter -f -s, see the README's "Several ops") writes only
the new op's files; this hook then adds the op to the package's __init__.py, and ruff, where it is
installed, sorts that file's imports and __all__ as the project's lint wants. The rendered code
needs no formatting: its line breaks are the same whatever the names (at most 24 characters each).
"""

import shutil
import subprocess
from pathlib import Path

PACKAGE_INIT = Path("src/{{ cookiecutter.package_name }}/__init__.py")
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


if export_the_op():
    formatter = ruff()
    if formatter:
        init = str(PACKAGE_INIT)
        subprocess.run([formatter, "check", "--quiet", "--no-cache", "--fix", "--select", "I,RUF022", init], check=True)
        subprocess.run([formatter, "format", "--quiet", "--no-cache", init], check=True)
    else:
        print(f"ruff was not found: run `python -m ruff check --fix {PACKAGE_INIT}` once, to sort the exports.")
    print(
        """
Added {{ cookiecutter.package_name }}.{{ cookiecutter.op_name }} and {{ cookiecutter.package_name }}.{{ cookiecutter.class_name }} ({{ cookiecutter.starter }} starter) to this project.

Next steps:
    src/{{ cookiecutter.package_name }}/{{ cookiecutter.op_name }}.py: the kernels and the declaration
    tests/test_{{ cookiecutter.op_name }}.py: native, the samples and the bad inputs (TestContract)
    python -m pytest tests/test_{{ cookiecutter.op_name }}.py
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
