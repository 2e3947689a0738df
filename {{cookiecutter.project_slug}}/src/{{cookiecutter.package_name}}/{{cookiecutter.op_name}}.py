{{ starter_file("reference/{op}.py") }}
