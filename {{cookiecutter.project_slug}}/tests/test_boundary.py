{{ starter_file("tests/test_boundary.py") }}
