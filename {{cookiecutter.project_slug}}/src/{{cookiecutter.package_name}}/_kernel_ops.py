{{ starter_file("reference/_kernel_ops.py") }}
