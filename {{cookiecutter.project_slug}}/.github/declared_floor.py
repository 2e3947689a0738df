"""Prints the declared floor of pyproject.toml's dependencies as pip constraints, one `name==version` a line.

Each dependency's `>=` lower bound becomes `==`, whatever the name (scikit-image, PyWavelets) and however
the list is laid out, so that CI's minimum-versions job tests exactly what the project declares. A
dependency without a lower bound is left free. python .github/declared_floor.py [pyproject.toml]
"""

from __future__ import annotations

import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# A requirement (PEP 508): its name, any extras, then its version specifiers up to a marker.
REQUIREMENT = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def floor(dependencies: list[str]) -> list[str]:
    pins = []
    for dependency in dependencies:
        name, specifiers = REQUIREMENT.match(dependency).groups()
        lower = re.search(r">=\s*([^\s,]+)", specifiers)
        if lower:
            pins.append(f"{name}=={lower.group(1)}")
    return pins


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"
    with open(path, "rb") as file:
        print("\n".join(floor(tomllib.load(file)["project"]["dependencies"])))
