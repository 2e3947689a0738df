{{ starter_file("reference/_op_factory.py") }}
