"""Runs the reference suites and every starter's generated suite on each Python and torch we support.

    python scripts/compat.py                 # every row below
    python scripts/compat.py floor newest    # rows whose label contains one of these words

Each row gets a virtual environment of its own under ~/.cache/torch-scipy-op/compat, kept between runs
(a torch from the registry is about 1.4 GB). Interpreters come from pyenv where it has them. The
declared floor is read from the package's pyproject.toml, which generated projects declare too, so the
"floor" row tests exactly what they declare. Each row installs the package from this checkout. Prints
one table: the closing line of each suite, or why it did not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch-scipy-op" / "compat"
STARTERS = ("fft", "conv2d", "blank", "minimal")
TEMPLATE = REPO / "{{cookiecutter.project_slug}}"


def declared_floor() -> tuple[str, list[str]]:
    """The lowest Python and the `name==version` pins of the package's dependencies (pyproject.toml), as a
    generated project's minimum-versions job pins its own (with its .github/declared_floor.py)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    path = TEMPLATE / ".github" / "declared_floor.py"
    spec = importlib.util.spec_from_file_location("declared_floor", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return project["requires-python"].removeprefix(">="), script.floor(project["dependencies"])


@dataclass(frozen=True)
class Row:
    python: str
    label: str
    packages: tuple[str, ...]  # what to install beside requirements.txt; a bare name means its newest release


def rows() -> list[Row]:
    floor_python, floor_pins = declared_floor()
    newest = ("torch", "numpy", "scipy")
    return [
        Row(floor_python, "floor", tuple(floor_pins)),
        Row("3.10", "newest", newest),
        Row("3.11", "pinned", ("torch==2.13.0",)),  # the CPU build that .ci/run uses
        Row("3.11", "newest", newest),
        Row("3.12", "newest", newest),
        Row("3.13", "newest", newest),
    ]


def interpreter(version: str) -> str | None:
    """A `python<version>` from pyenv, else from PATH."""
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False).stdout.strip()
    found = sorted(Path(root, "versions").glob(f"{version}.*/bin/python")) if root else []
    if found:
        return str(found[-1])
    path = subprocess.run(["which", f"python{version}"], capture_output=True, text=True, check=False).stdout.strip()
    return path or None


def run(command: list[str], log, **kwargs) -> subprocess.CompletedProcess:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    log.write(result.stdout + result.stderr)
    return result


def summary(result: subprocess.CompletedProcess) -> str:
    """pytest's closing counts, shortened: '62 passed, 40 skipped' or '3 failed, 59 passed'."""
    lines = (result.stdout + result.stderr).strip().splitlines()
    closing = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed|error)", line)), None)
    if closing is None:
        return f"did not run (exit {result.returncode})"
    counts = re.findall(r"(\d+) (passed|failed|errors?|skipped)", closing)
    return ", ".join(f"{n} {what}" for n, what in counts)


def test_row(row: Row, log) -> list[str]:
    python = interpreter(row.python)
    if python is None:
        return [f"no Python {row.python} here"] * (2 + len(STARTERS))
    venv = CACHE / f"py{row.python}-{row.label}"
    if not (venv / "bin" / "python").exists():
        run([python, "-m", "venv", str(venv)], log)
    py = str(venv / "bin" / "python")
    # An empty constraints file lifts any pip cap on torch that this machine sets.
    no_cap = Path(tempfile.mkdtemp()) / "no-cap.txt"
    no_cap.write_text("", encoding="utf-8")
    env = {**os.environ, "PIP_CONSTRAINT": str(no_cap), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = run(
        [py, "-m", "pip", "install", "--quiet", "--upgrade", *row.packages, "-r", str(REPO / "requirements.txt")],
        log,
        env=env,
        cwd=REPO,  # requirements.txt installs the package from "."
    )
    if install.returncode:
        return ["install failed (see the log)"] + [""] * (1 + len(STARTERS))
    version = "import sys, torch, numpy, scipy; print(sys.version.split()[0], torch.__version__.split('+')[0], "
    version += "numpy.__version__, scipy.__version__)"
    versions = run([py, "-c", version], log).stdout.split()
    cells = [" · ".join(versions)]
    # The reference ops' suites; the template's tests use this repository's tools (Python 3.11+).
    template_tests = [
        *("--ignore", "tests/test_template.py"),
        *("--ignore", "tests/test_declared_ops.py"),
    ]
    reference = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *template_tests]
    cells.append(summary(run(reference, log, cwd=REPO)))
    with tempfile.TemporaryDirectory() as out:
        for starter in STARTERS:
            generate = [py, "-m", "cookiecutter", str(REPO), "--no-input", "-o", out, f"starter={starter}"]
            generate.append(f"project_slug=compat-{starter}")
            if run(generate, log).returncode:
                cells.append("render failed")
                continue
            project = Path(out, f"compat-{starter}")
            project_env = {**os.environ, "PYTHONPATH": str(project / "src")}
            cells.append(
                summary(run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], log, cwd=project, env=project_env))
            )
    return cells


def main(words: list[str]) -> int:
    CACHE.mkdir(parents=True, exist_ok=True)
    selected = [row for row in rows() if not words or any(w in f"{row.python} {row.label}" for w in words)]
    header = ["row", "Python · torch · numpy · scipy", "reference suites", *STARTERS]
    table = []
    for row in selected:
        log_path = CACHE / f"py{row.python}-{row.label}.log"
        print(f"{row.python} {row.label}: log in {log_path}", file=sys.stderr, flush=True)
        with open(log_path, "w") as log:
            table.append([f"{row.python} {row.label}", *test_row(row, log)])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in table:
        print("| " + " | ".join(cells) + " |")
    return int(any(re.search(r"failed|error|did not run|install failed|render failed", c) for r in table for c in r))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
