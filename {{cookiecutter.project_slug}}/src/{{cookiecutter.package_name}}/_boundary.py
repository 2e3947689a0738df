{{ starter_file("reference/_boundary.py") }}
