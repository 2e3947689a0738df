"""Both reference ops against native torch and the tutorial's ops, forward plus backward, in one process.

python -m benchmarks.bench_reference [--device cpu] [--min-run-time 0.2]
"""

from benchmarks import bench_bad_fft, bench_scipy_conv2d
from benchmarks.compare import compare, environment, fwd_bwd, parse_args
from benchmarks.tutorial_ops import tutorial_bad_fft, tutorial_scipy_conv2d

if __name__ == "__main__":
    args = parse_args(__doc__)
    print(f"# Reference ops, forward + backward, {args.device}, {environment()}\n")
    for bench, tutorial in ((bench_bad_fft, tutorial_bad_fft), (bench_scipy_conv2d, tutorial_scipy_conv2d)):
        contenders = bench.contenders(args.device)
        if args.device == "cpu":  # the tutorial's ops are NumPy-only
            contenders["tutorial"] = fwd_bwd(tutorial)
        print(f"## {bench.__name__.removeprefix('benchmarks.bench_')}\n")
        compare(bench.cases(args.device), contenders, bench.native, min_run_time=args.min_run_time)
