"""The release of torch-scipy-op itself: .github/workflows/release.yml, what it checks before it publishes, and
the repository review (sp-repo-review) of this repository."""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
import yaml
from repo_review.processor import process

from tests.test_template import clone_of_this_template, git, run

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
TEMPLATE_WORKFLOWS = REPO / "{{cookiecutter.project_slug}}" / ".github" / "workflows"
PINNED = re.compile(r"(?P<action>[\w-]+/[\w-]+)@(?P<commit>[0-9a-f]{40})  # v\d+\.\d+\.\d+")
VERSION_CHECK = "The version built is the tag's"
IGNORED = {"PY006", "PY007", "PP006", "SEC001"}  # pyproject.toml's [tool.repo-review.ignore]


def release() -> dict:
    return yaml.safe_load((WORKFLOWS / "release.yml").read_text(encoding="utf-8"))


def runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def uses(job: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_a_tag_releases_and_a_manual_run_only_builds_and_tests():
    workflow = release()
    assert workflow[True] == {"push": {"tags": ["v*"]}, "workflow_dispatch": None}  # YAML 1.1 reads `on` as True
    assert workflow["permissions"] == {"contents": "read"}
    assert list(workflow["jobs"]) == ["build", "test", "publish"]
    assert workflow["jobs"]["publish"]["if"] == "github.event_name == 'push'"


def test_the_build_job_checks_the_artifacts_and_their_version():
    build = release()["jobs"]["build"]
    checkout = build["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0  # hatch-vcs needs the tag
    commands = runs(build)
    for command in ("check-sdist", "python -m build", "twine check --strict dist/*", "check-wheel-contents dist/*.whl"):
        assert command in commands, command
    steps = [step.get("run") for step in build["steps"]]
    assert steps.index("check-sdist") < steps.index("python -m build")  # on the checkout, before the build
    (version_check,) = (step for step in build["steps"] if step.get("name") == VERSION_CHECK)
    assert version_check["if"] == "github.ref_type == 'tag'"
    assert build["steps"][-1]["uses"].startswith("actions/upload-artifact@")
    assert build["steps"][-1]["with"] == {"name": "dist", "path": "dist/"}
    assert "permissions" not in build  # the workflow's: contents read


def test_the_test_job_runs_the_suite_against_the_wheel():
    """The built wheel with its testing extra and the CPU torch; the test tools from requirements.txt but for
    its editable install of the checkout; then the suite but its slow tests."""
    test = release()["jobs"]["test"]
    assert test["needs"] == "build"
    assert "permissions" not in test
    assert uses(test) == ["actions/checkout", "actions/setup-python", "actions/download-artifact"]
    assert test["steps"][0]["with"]["fetch-depth"] == 0  # tests that read the history run as on a clone
    commands = [step["run"] for step in test["steps"] if "run" in step]
    assert commands[0] == "python -m pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert commands[1] == 'python -m pip install "$(echo dist/*.whl)[testing]"'
    assert "grep -v '^-e ' requirements.txt" in commands[2]
    assert "-e .[testing]" in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert "torch_scipy_op" in commands[3]
    assert "purelib" in commands[3]
    assert commands[-1] == 'python -m pytest -m "not slow"'


def test_the_publish_job_needs_both_and_alone_may_mint_a_token():
    publish = release()["jobs"]["publish"]
    assert sorted(publish["needs"]) == ["build", "test"]
    assert publish["environment"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    assert uses(publish) == ["actions/download-artifact", "pypa/gh-action-pypi-publish"]
    assert publish["steps"][0]["with"] == {"name": "dist", "path": "dist/"}
    assert not any("with" in step and "password" in step["with"] for step in publish["steps"])  # no token


def test_every_action_is_pinned_as_the_generated_projects_pin_it():
    """Each `uses:` of this repository's workflows is a commit with its version beside it, the very commit the
    template's workflows pin for the same action (a Dependabot update here must update the template too), and
    every checkout keeps no credentials."""
    template_pins = {}
    for workflow in TEMPLATE_WORKFLOWS.glob("*.yml"):
        for action in re.findall(r"uses: (.*)", workflow.read_text(encoding="utf-8")):
            template_pins[PINNED.fullmatch(action)["action"]] = action
    assert {"actions/checkout", "actions/upload-artifact", "pypa/gh-action-pypi-publish"} <= set(template_pins)
    for path in WORKFLOWS.glob("*.yml"):
        for action in re.findall(r"uses: (.*)", path.read_text(encoding="utf-8")):
            pinned = PINNED.fullmatch(action)
            assert pinned, action
            assert action == template_pins[pinned["action"]], (path.name, action)
        for job in yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path.name


def test_dependabot_keeps_the_actions_current_as_in_generated_projects():
    dependabot = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    generated = REPO / "{{cookiecutter.project_slug}}" / ".github" / "dependabot.yml"
    assert dependabot == yaml.safe_load(generated.read_text(encoding="utf-8"))
    (update,) = dependabot["updates"]
    assert update["package-ecosystem"] == "github-actions"
    assert update["cooldown"] == {"default-days": 7}


def test_the_workflows_pass_the_security_audit():
    run(str(Path(sys.executable).with_name("zizmor")), "--offline", "--no-progress", ".github/", cwd=REPO)


def test_check_sdist_leaves_out_only_what_exists():
    """Each path [tool.check-sdist] leaves out of the sdist exists, and none is in what the sdist includes."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    included = tool["hatch"]["build"]["targets"]["sdist"]["include"]
    for pattern in tool["check-sdist"]["git-only"]:
        assert pattern.startswith("/"), pattern  # anchored: the package's own files of the same names stay checked
        assert (REPO / pattern.strip("/")).exists(), pattern
        assert not any(path.startswith(pattern.rstrip("/")) for path in included), pattern


def version_check(dist: Path, tag: str) -> subprocess.CompletedProcess:
    """The workflow's version check, run as GitHub runs a `run:` step, on a tag's push."""
    (step,) = (step for step in release()["jobs"]["build"]["steps"] if step.get("name") == VERSION_CHECK)
    env = {**os.environ, "GITHUB_REF_NAME": tag}
    command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
    return subprocess.run(command, cwd=dist.parent, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_release_artifacts_pass_the_release_checks(tmp_path):
    """What release.yml's build job runs, on a git copy of this repository tagged v1.2.3: check-sdist, the build
    (whose version is the tag's, by the workflow's own check, which refuses another tag), twine and
    check-wheel-contents."""
    source = clone_of_this_template(tmp_path / "source")
    git("tag", "v1.2.3", cwd=source)
    run(str(Path(sys.executable).with_name("check-sdist")), "--no-isolation", cwd=source)
    dist = source / "dist"  # where the workflow builds: ignored by git
    run(sys.executable, "-m", "build", "--no-isolation", cwd=source)
    (sdist,), (wheel,) = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    assert sdist.name == "torch_scipy_op-1.2.3.tar.gz"
    assert wheel.name == "torch_scipy_op-1.2.3-py3-none-any.whl"
    run(sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel), cwd=tmp_path)
    run(str(Path(sys.executable).with_name("check-wheel-contents")), str(wheel), cwd=tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"torch_scipy_op/__init__.py", "torch_scipy_op/py.typed", "torch_scipy_op/testing/__init__.py"} <= names
    assert not {name.split("/")[0] for name in names} - {"torch_scipy_op", "torch_scipy_op-1.2.3.dist-info"}
    assert version_check(dist, "v1.2.3").returncode == 0
    refused = version_check(dist, "v1.2.4")
    assert refused.returncode == 1
    assert "::error::The build is not version 1.2.4" in refused.stdout


def test_scientific_python_repo_review():
    """sp-repo-review passes on this repository, its GitHub Actions checks all run and pass, and each check
    that pyproject.toml ignores has a reason and fails without the ignore (none stays on after it is fixed)."""
    _, results = process(REPO)
    assert [f"{r.name}: {r.description}" for r in results if r.result is False] == []
    github = {r.name: r.result for r in results if r.name.startswith("GH")}
    assert {"GH100", "GH103", "GH105", "GH200", "GH210", "GH212"} <= set(github)
    assert all(result is True for result in github.values()), github
    ignored = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["repo-review"]["ignore"]
    assert set(ignored) == IGNORED
    assert all(reason for reason in ignored.values())
    _, unignored = process(REPO, ignore={"none"})
    assert {r.name for r in unignored if r.result is False} == IGNORED
