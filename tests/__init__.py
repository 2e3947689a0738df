"""The tests of this repository, a package: test_declared_ops.py imports test_template.py."""
