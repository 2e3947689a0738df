"""Writes src/torch_scipy_op/_vendored.json: every version of every file that projects generated before the
package vendored, as the migration (torch_scipy_op.migrate) recognises an unchanged copy.

    python scripts/vendored_hashes.py [--check]

A project's copy is its template's source file with the starter's names replaced by the project's
(template_extension.rename). The migration puts the names back and compares the SHA-256 of the text,
without its trailing newlines, with these: one list per file as a project holds it, from each commit of
this repository's history up to the last that vendored it. --check fails if the file is out of date.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "src" / "torch_scipy_op" / "_vendored.json"
# The last commit whose template vendored the files, and which source each project file was copied from.
LAST_VENDORING_COMMIT = "400526f66adb2f4db72433763c198925e10c69d0"
SOURCES = {
    **{f"src/{{package}}/{m}.py": f"reference/{m}.py" for m in ("_boundary", "_checks", "_derivatives")},
    **{f"src/{{package}}/{m}.py": f"reference/{m}.py" for m in ("_kernel_ops", "_kernels", "_op_factory")},
    **{f"tests/{name}": f"tests/{name}" for name in ("__init__.py", "conftest.py", "contract.py", "helpers.py")},
    "tests/test_boundary.py": "tests/test_boundary.py",
    "tests/test_op_factory.py": "tests/test_op_factory.py",
    "benchmarks/compare.py": "benchmarks/compare.py",
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.rstrip("\n").encode("utf-8")).hexdigest()


def hashes() -> dict[str, list[str]]:
    result = {}
    for project_path, source in SOURCES.items():
        commits = git("log", "--format=%H", LAST_VENDORING_COMMIT, "--", source).split()
        blobs = {git("rev-parse", f"{commit}:{source}").strip() for commit in commits}
        texts = [git("cat-file", "blob", blob) for blob in sorted(blobs)]
        result[project_path] = sorted({fingerprint(text) for text in texts})
    return result


if __name__ == "__main__":
    text = json.dumps(hashes(), indent=1, sort_keys=True) + "\n"
    if "--check" in sys.argv:
        sys.exit(0 if OUTPUT.read_text(encoding="utf-8") == text else f"{OUTPUT} is out of date: run {__file__}")
    OUTPUT.write_text(text, encoding="utf-8")
