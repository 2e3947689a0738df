{{ starter_file("tests/helpers.py") }}
