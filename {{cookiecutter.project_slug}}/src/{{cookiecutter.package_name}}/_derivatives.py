{{ starter_file("reference/_derivatives.py") }}
