{{ starter_file("tests/test_op_factory.py") }}
