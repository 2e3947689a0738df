"""Formats the project's Python for the names you chose, and prints what to do next.

The op's files come from the template under your names, and a longer or shorter name moves
line breaks: ruff's formatter puts them where `ruff format --check` (CI, pre-commit) wants them.
"""

import shutil
import subprocess


def ruff() -> str | None:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return shutil.which("ruff")
    return find_ruff_bin()


formatter = ruff()
if formatter:
    subprocess.run([formatter, "format", "--quiet", "--no-cache", "."], check=True)

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
