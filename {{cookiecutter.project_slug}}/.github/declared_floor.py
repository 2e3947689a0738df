"""What pyproject.toml declares, for CI: python .github/declared_floor.py [--pythons] [pyproject.toml]

By default, the floor of its dependencies as pip constraints, one `name==version` a line. Each
dependency's `>=` lower bound becomes `==`, whatever the name (scikit-image, PyWavelets) and however
the list is laid out, so that CI's minimum-versions job tests exactly what the project declares. A
dependency without a lower bound is left free; a floor of X.dev0 pins the release X.

With --pythons, the Python versions to test, oldest first, as a JSON list: each `Programming Language ::
Python :: 3.x` classifier that requires-python allows.
"""

from __future__ import annotations

import json
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
            # A development release's floor (0.1.dev0: builds from a checkout before 0.1.0) pins the release it
            # leads to, the oldest that an index has.
            pins.append(f"{name}=={re.sub(r'[.]dev[0-9]+$', '', lower.group(1))}")
    return pins


def pythons(project: dict) -> list[str]:
    def minor(version: str) -> tuple[int, int]:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)

    lowest, below = minor("3.0"), minor("4.0")
    for bound in project["requires-python"].split(","):
        match = re.fullmatch(r"\s*(>=\s*\d+\.\d+(?:\.\d+)?|<\s*\d+\.\d+)\s*", bound)
        if not match:
            sys.exit(f"requires-python: got {bound.strip()!r}; this script reads `>=3.X[.Y]` and `<3.X` bounds")
        if bound.strip().startswith(">="):
            lowest = minor(bound.strip()[2:].strip())
        else:
            below = minor(bound.strip()[1:].strip())
    classified = re.findall(r"^Programming Language :: Python :: (3\.\d+)$", "\n".join(project["classifiers"]), re.M)
    versions = sorted((v for v in classified if lowest <= minor(v) < below), key=minor)
    if not versions:
        sys.exit("pyproject.toml: no `Programming Language :: Python :: 3.x` classifier that requires-python allows")
    return versions


if __name__ == "__main__":
    arguments = sys.argv[1:]
    want_pythons = "--pythons" in arguments
    paths = [argument for argument in arguments if argument != "--pythons"]
    with open(paths[0] if paths else "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    print(json.dumps(pythons(project)) if want_pythons else "\n".join(floor(project["dependencies"])))
