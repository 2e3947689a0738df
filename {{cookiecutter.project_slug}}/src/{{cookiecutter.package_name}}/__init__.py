"""PyTorch ops whose math is done in NumPy/SciPy: each op's module, under the op's name, and its nn.Module.

`import {{ cookiecutter.package_name }}.<op>` gives the op's module; the function is `{{ cookiecutter.package_name }}.<op>.<op>`.
"""

from . import {{ cookiecutter.op_name }}
from .{{ cookiecutter.op_name }} import {{ cookiecutter.class_name }}

__all__ = [
    "{{ cookiecutter.class_name }}",
    "{{ cookiecutter.op_name }}",
]
