"""python -m benchmarks [--quick | --full] [--only OP] [--mode fwd|bwd|fwd+bwd] [--device cpu|cuda] [--out DIR]
                        [--compare OLD.json]

Runs every entry (benchmarks/bench_*.py), prints a Markdown table to stdout (progress on
stderr) and writes DIR/results.csv, DIR/results.json (one row per case, provider, mode and
device), DIR/results.md and PNG plots (speedup per op; time versus size for the size sweeps).
"""
import argparse
import importlib
import os
import pkgutil
import sys

import torch


def entries():
    """The bench_* modules of this package, in name order."""
    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    names = sorted(m.name for m in pkgutil.iter_modules([pkg_dir]) if m.name.startswith("bench_"))
    return [importlib.import_module(f"{__package__}.{n}") for n in names]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true", help="small repeat budget (min_run_time 0.1 s instead of 1 s), one size per op, "
                        "no torch.compile baseline, no backward-alone mode: the whole suite in a few minutes")
    p.add_argument("--full", action="store_true", help="also run the size sweeps (time versus problem size)")
    p.add_argument("--compare", metavar="OLD.json", help="flag vgops regressions against an earlier results.json")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--only", metavar="OP", help="run only entries whose op name contains OP")
    p.add_argument("--mode", choices=("fwd", "bwd", "fwd+bwd"), action="append",
                   help="mode to run (repeatable): fwd, bwd (the backward alone) or fwd+bwd; default: all "
                        "three (--quick: fwd and fwd+bwd, model steps fwd+bwd only)")
    p.add_argument("--device", choices=("cpu", "cuda"), action="append",
                   help="device to run on (repeatable); default: cpu, plus cuda when available")
    p.add_argument("--out", default="bench_results", metavar="DIR", help="output folder (default: %(default)s)")
    args = p.parse_args(argv)

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available to this torch "
                f"({torch.__version__}, CUDA {torch.version.cuda})")
    if args.quick and args.full:
        p.error("--quick and --full exclude each other")
    try:
        from . import harness, report
        cases = [c for mod in entries() for c in mod.CASES]
        if not args.full:
            cases = [c for c in cases if c.size is None]
        if args.quick:
            cases = [c for c in cases if c.quick]
    except ImportError as e:
        print(f"benchmarks: cannot import vgops ({e})", file=sys.stderr)
        return 1
    if args.only:
        cases = [c for c in cases if args.only in c.op]
        if not cases:
            p.error(f"--only {args.only!r} matches no entry")
    modes = args.mode and tuple(dict.fromkeys(args.mode))
    if modes and not any(harness.modes_to_run(c, args.quick, modes) for c in cases):
        p.error(f"--mode {' '.join(modes)}: no selected entry runs in that mode")
    if harness.torchvision is None:
        print(f"benchmarks: torchvision is not importable ({harness.TORCHVISION_REASON}); "
              "its columns are left out", file=sys.stderr)
    regressions = []

    def extra(rows):
        md = report.bandwidth_section(rows)
        if not args.no_plots:
            paths = report.plots(rows, args.out)
            md += "".join(f"\n![{os.path.basename(q)}]({os.path.basename(q)})\n" for q in paths)
        if args.compare:
            text, n = report.compare(rows, args.compare)
            regressions.append(n)
            md += text
        return md
    md, _ = harness.run_all(cases, [torch.device(d) for d in dict.fromkeys(devices)], args.quick, args.out,
                            extra_md=extra, modes=modes)
    print(md)
    if regressions and regressions[0]:
        print(f"benchmarks: {regressions[0]} regression(s) against {args.compare}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
