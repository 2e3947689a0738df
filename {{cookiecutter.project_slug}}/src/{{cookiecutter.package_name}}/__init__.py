"""A PyTorch op whose math is done in NumPy/SciPy, with its nn.Module."""

from .{{ cookiecutter.op_name }} import (
    {{ cookiecutter.class_name }},
    {{ cookiecutter.op_name }},
)

__all__ = [
    "{{ cookiecutter.class_name }}",
    "{{ cookiecutter.op_name }}",
]
