{{ starter_file("benchmarks/bench_{op}.py") }}
