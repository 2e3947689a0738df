{{ starter_file("tests/conftest.py") }}
