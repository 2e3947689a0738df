{{ starter_file("reference/_kernels.py") }}
