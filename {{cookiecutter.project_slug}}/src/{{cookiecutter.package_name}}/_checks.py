{{ starter_file("reference/_checks.py") }}
