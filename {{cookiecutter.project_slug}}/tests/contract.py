{{ starter_file("tests/contract.py") }}
