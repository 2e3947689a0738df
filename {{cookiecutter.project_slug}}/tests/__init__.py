{{ starter_file("tests/__init__.py") }}
