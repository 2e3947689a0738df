"""Prints what to do next. The template renders only the chosen starter's files, so nothing needs removing."""

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
