"""vgops microbenchmarks: one harness (harness.py), one entry per op (bench_<op>.py, each with a
list CASES). Run from the repository root: ``python -m benchmarks [--quick] [--only OP]
[--device cpu|cuda] [--out DIR]``."""
