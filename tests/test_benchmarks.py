"""The benchmark suite runs end to end (tiny budget, one cheap entry): tables, CSV/JSON rows,
plots, the bandwidth table and --compare. It asserts what is written, never a time."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_quick_run_writes_report_and_compares(tmp_path):
    out = tmp_path / "run1"
    res = run_bench("--quick", "--only", "tube_iou", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| tube_iou | 10000 tubes x 100 frames fp32 | fwd |" in res.stdout
    assert "Achieved bandwidth" in res.stdout and "fraction of copy" in res.stdout
    rows = json.loads((out / "results.json").read_text())
    providers = {r["provider"] for r in rows}
    # --quick leaves torch.compile out (compile time) and says so in the report's notes.
    assert providers == {"vgops", "reference"}
    assert "compiled_reference left out: --quick leaves torch.compile out" in res.stdout
    assert all(r["check"].startswith("ok") for r in rows), [r["check"] for r in rows]
    vg = next(r for r in rows if r["provider"] == "vgops")
    assert vg["median_ms"] > 0 and vg["bytes_moved"] > 0 and vg["torch_version"] and vg["machine"]
    assert (out / "results.csv").read_text().startswith("op,shape,provider,mode")
    assert (out / "speedup_cpu.png").stat().st_size > 1000

    # A run compared with a copy of itself whose vgops times were made 100x faster: it regresses.
    old = tmp_path / "old.json"
    for r in rows:
        if r["provider"] == "vgops":
            r["median_ms"] /= 100
    old.write_text(json.dumps(rows))
    res = run_bench("--quick", "--only", "tube_iou", "--out", str(tmp_path / "run2"), "--no-plots",
                    "--compare", str(old))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "**REGRESSION**" in res.stdout and "1 regression(s)" in res.stdout


def test_bad_arguments_fail_clearly():
    res = run_bench("--only", "no_such_op")
    assert res.returncode != 0 and "matches no entry" in res.stderr
    res = run_bench("--quick", "--full")
    assert res.returncode != 0 and "exclude each other" in res.stderr
