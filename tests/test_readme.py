"""The README's Python code blocks run as they stand: a stale example fails here, not in a reader's hands."""

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
# Each block, with the number of lines above it, so that a traceback names the README's own line.
BLOCKS = [
    (TEXT.count("\n", 0, m.start(1)), m.group(1)) for m in re.finditer(r"^```python\n(.*?)^```", TEXT, re.M | re.S)
]


@pytest.mark.parametrize(("offset", "code"), BLOCKS, ids=[f"line{offset + 1}" for offset, _ in BLOCKS])
def test_code_block_runs(offset, code, monkeypatch):
    # A module of its own, as a script is: torch.compile imports the module of what it compiles.
    module = types.ModuleType("readme")
    monkeypatch.setitem(sys.modules, "readme", module)
    try:
        exec(compile("\n" * offset + code, str(README), "exec"), module.__dict__)
    except Exception as error:
        raise AssertionError(
            f"README.md's code block at line {offset + 1} fails ({type(error).__name__}: {error}): "
            "edit it to match the op"
        ) from error
