{{ starter_file("tests/test_{op}.py") }}
