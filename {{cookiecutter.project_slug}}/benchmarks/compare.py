{{ starter_file("benchmarks/compare.py") }}
