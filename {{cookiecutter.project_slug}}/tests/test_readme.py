{{ starter_file("tests/test_readme.py") }}
