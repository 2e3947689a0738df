"""Refuses bad answers with one line naming the field, the value and the rule; cookiecutter then removes the project."""

import sys

sys.path.insert(0, {{ template_repo | py_literal }})

from template_extension import InvalidAnswerError, check_answers  # noqa: E402

try:
    check_answers({{ cookiecutter | py_literal }})
except InvalidAnswerError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
