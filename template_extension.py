"""How the template renders the ops of this repository under the user's names.

cookiecutter.json loads `StarterExtension`, which gives the template:

- `starter_file(path)`: a file of this repository, with the starter's names
  (`reference`, the op and its class) replaced by the user's. The op, its tests
  and its benchmark thus live once, in reference/, tests/ and benchmarks/;
- `starter_doc()`: the op module's docstring, for the generated README, whose
  Usage is the starter's `reference/usage/<op>.py`;
- `op_readme_section()`: the README section of an op added to a project;
- `warnings_policy()`: the pytest `filterwarnings` of this repository's
  pyproject.toml, which generated projects share;
- `template_repo`: this repository's absolute path, for the hooks;
- filters: `default_op_name` and `default_class_name` for a starter, the escapes
  `toml_str`, `yaml_str`, `md` and `py_literal`, and `check_answers`.

`check_answers` runs twice with the same rules: from cookiecutter.json, before
cookiecutter creates any folder, and from hooks/pre_gen_project.py.
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from jinja2 import pass_context
from jinja2.ext import Extension

REPO = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Starter:
    op_name: str  # also the file stem: reference/<op_name>.py, tests/test_<op_name>.py, ...
    class_name: str


STARTERS = {
    "fft": Starter("bad_fft", "BadFFT"),
    "conv2d": Starter("scipy_conv2d", "ScipyConv2d"),
    "blank": Starter("my_op", "MyOp"),
    "minimal": Starter("minimal_op", "MinimalOp"),
}
REFERENCE_PACKAGE = "reference"
MAX_NAME_LENGTH = 24


def rename(text: str, answers: dict) -> str:
    """Replaces the starter's package, op and class names in `text` with the user's, in one pass.

    The package name matches only as a module path (`from reference import`,
    `reference._boundary`, `torch.ops.reference.op`), so the word in prose stays.
    The op and class names match where they start an identifier and end a part of
    it, so `bad_fft_kernel` and `BadFFTFunction` follow the user's names and
    `my_options` does not.
    """
    starter = STARTERS[answers["starter"]]
    new = {
        REFERENCE_PACKAGE: answers["package_name"],
        starter.op_name: answers["op_name"],
        starter.class_name: answers["class_name"],
    }
    pattern = (
        rf"(?<![\w.]){REFERENCE_PACKAGE}(?=\.[A-Za-z_]| import\b)|(?<=ops\.){REFERENCE_PACKAGE}(?=\.)"
        rf"|(?<![A-Za-z0-9]){starter.op_name}(?![a-z0-9])|(?<![A-Za-z0-9]){starter.class_name}(?![a-z0-9])"
    )
    return re.sub(pattern, lambda match: new[match.group()], text)


@pass_context
def starter_file(context, path: str) -> str:
    """The file at `path` in this repository ({op} standing for the starter's op), renamed."""
    answers = context["cookiecutter"]
    text = (REPO / path.format(op=STARTERS[answers["starter"]].op_name)).read_text(encoding="utf-8")
    return rename(text, answers).rstrip("\n")


@pass_context
def starter_doc(context) -> str:
    """The docstring of the starter's op module, renamed."""
    return ast.get_docstring(ast.parse(starter_file(context, "reference/{op}.py")))


@pass_context
def op_readme_section(context) -> str:
    """An added op's section of the project's README: its name, its module's summary line and its usage."""
    usage = starter_file(context, "reference/usage/{op}.py")
    summary = starter_doc(context).splitlines()[0]
    return f"## {context['cookiecutter']['op_name']}\n\n{summary}\n\n```python\n{usage}\n```\n"


def warnings_policy() -> str:
    """The `filterwarnings = [...]` setting of this repository's pyproject.toml, comment included."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r"^filterwarnings = \[\n.*?^\]", text, re.MULTILINE | re.DOTALL).group()


def toml_str(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest kept."""
    escapes = {'"': '\\"', "\\": "\\\\"}
    escaped = re.sub(r'["\\\x00-\x1f\x7f]', lambda m: escapes.get(m.group(), f"\\u{ord(m.group()):04X}"), value)
    return f'"{escaped}"'


def yaml_str(value: str) -> str:
    """A double-quoted YAML scalar (JSON's string syntax is YAML's)."""
    return json.dumps(value, ensure_ascii=False)


def md(value: str) -> str:
    """Text with Markdown's punctuation backslash-escaped, so it shows as typed."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~\"'&])", r"\\\1", value)


def py_literal(value) -> str:
    """A Python literal of plain JSON-like data."""
    return repr(json.loads(json.dumps(value)))


# ----------------------------------------------------------------------------
# The answers' rules
# ----------------------------------------------------------------------------

LICENSES = ("MIT", "BSD-3-Clause", "Apache-2.0")
# Names an op module already uses, besides builtins and importable modules.
_NAMES_IN_OP_MODULES = {"torch", "nn", "F", "Tensor", "math", "annotations", "ArrayBackend"}
_TAKEN_MODULES = {"torch", "numpy", "scipy", "cupy", "cupyx", "torch_scipy_op", "tests", "benchmarks", "conftest"}


class InvalidAnswerError(Exception):
    """One line: the field, its value and the rule it breaks."""

    def __init__(self, field: str, value: str, rule: str):
        super().__init__(f"{field}: {value!r} {rule}")


def _taken(name: str) -> bool:
    return (
        keyword.iskeyword(name)
        or hasattr(builtins, name)
        or name in _TAKEN_MODULES
        or name in _NAMES_IN_OP_MODULES
        or name in sys.stdlib_module_names
    )


def check_answers(answers: dict) -> None:
    """Raises InvalidAnswerError for the first answer that breaks its rule."""
    text = {key: str(answers.get(key, "")) for key in ("project_name", "author_name", "description")}
    rules = [
        ("starter", answers["starter"] in STARTERS, f"must be one of {', '.join(STARTERS)}"),
        (
            "project_slug",
            re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", answers["project_slug"])
            and ".." not in answers["project_slug"],
            "must be a plain folder and distribution name: letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit, with no '/', '\\' or '..'",
        ),
        (
            "package_name",
            re.fullmatch(r"[a-z_][a-z0-9_]*", answers["package_name"]),
            "must be a lowercase Python identifier (a-z, 0-9, _)",
        ),
        (
            "package_name",
            not _taken(answers["package_name"]),
            "must not shadow a keyword, a builtin, torch/numpy/scipy/cupy/torch_scipy_op or a standard-library module",
        ),
        ("op_name", re.fullmatch(r"[a-z][a-z0-9_]*", answers["op_name"]), "must be a snake_case Python identifier"),
        (
            "op_name",
            not _taken(answers["op_name"]),
            "must not shadow a keyword, a builtin, a module or a name the op module uses (torch, nn, F, Tensor, math)",
        ),
        (
            "class_name",
            re.fullmatch(r"[A-Z][A-Za-z0-9]*", answers["class_name"]) and not _taken(answers["class_name"]),
            "must be a CamelCase Python identifier that shadows no builtin or name the op module uses",
        ),
        (
            "author_email",
            re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s.]+", answers["author_email"]),
            "must be an email address like name@example.com",
        ),
        (
            "repository_url",
            re.fullmatch(r"https://[\w.-]+(:\d+)?(/[\w.~%+-]+)+", answers["repository_url"]),
            "must be the https:// address of the project's repository, like https://github.com/you/project, "
            "without a trailing '/'",
        ),
        (
            "version",
            re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", answers["version"]),
            "must be a PEP 440 version like 0.1.0",
        ),
        ("license", answers["license"] in LICENSES, f"must be one of {', '.join(LICENSES)}"),
    ]
    rules += [
        # Longer names would move the generated code's line breaks: see the post-generation hook.
        (key, len(answers[key]) <= MAX_NAME_LENGTH, f"must be at most {MAX_NAME_LENGTH} characters")
        for key in ("package_name", "op_name", "class_name")
    ]
    rules += [
        # A tab is whitespace within the line; every other control character breaks a file it lands in.
        (key, value.strip() and not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value), "must be one non-empty line of text")
        for key, value in text.items()
    ]
    for field, ok, rule in rules:
        if not ok:
            raise InvalidAnswerError(field, answers[field], rule)


# What cookiecutter takes for a repository address rather than a local folder: an abbreviation (gh:, gl:, bb:),
# a URL (file:// included), an SSH address, a zip file.
_ADDRESS = re.compile(r"^((gh|gl|bb):|[\w+.-]+://|[\w.-]+@[\w.-]+:)|\.zip$")


def template_address(template: str) -> str:
    """The template as the user rendered it, for a shell command that renders it again: an address
    (gh:..., a URL) or an absolute folder as given; a relative one (`.`) as this template's own folder,
    absolute (cookiecutter renders from inside it, where a relative path means another). An absolute
    folder is kept as given: cruft renders from a temporary clone of it."""
    absolute = _ADDRESS.search(template) or Path(template).expanduser().is_absolute()
    return shlex.quote(template if absolute else str(REPO))


def _check_answers_filter(answers: dict) -> str:
    """Runs check_answers from cookiecutter.json; cookiecutter prints a FailedHookException as one line."""
    from cookiecutter.exceptions import FailedHookException

    try:
        check_answers(answers)
    except InvalidAnswerError as error:
        raise FailedHookException(str(error)) from None
    return "ok"


class StarterExtension(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        # cruft update renders two commits of this template in one process: each must import its own copy of
        # this module (its REPO, its functions), not find the other's in sys.modules.
        sys.modules.pop(__name__, None)
        environment.globals.update(
            starter_file=starter_file,
            starter_doc=starter_doc,
            op_readme_section=op_readme_section,
            warnings_policy=warnings_policy,
            template_repo=str(REPO),
        )
        environment.filters.update(
            default_op_name=lambda starter: STARTERS[starter].op_name,
            default_class_name=lambda starter: STARTERS[starter].class_name,
            toml_str=toml_str,
            yaml_str=yaml_str,
            md=md,
            py_literal=py_literal,
            check_answers=_check_answers_filter,
            template_address=template_address,
        )
