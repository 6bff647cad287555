"""The benchmark suite runs end to end (tiny budget, one cheap entry): tables, CSV/JSON rows,
plots, the bandwidth table and --compare. It asserts what is written, never a time."""
import json
import os
import subprocess
import sys

import pytest

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
    assert "--quick (one size per op, no torch.compile), modes fwd, fwd+bwd" in res.stdout
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
    res = run_bench("--only", "tube_iou", "--mode", "bwd")
    assert res.returncode != 0 and "no selected entry runs in that mode" in res.stderr


def test_backward_alone_matches_forward_backward():
    """"bwd" times only the backward of a kept graph: the same gradients as "fwd+bwd" on every
    call (the graph is retained), also through torch.compile (whose donated buffers would refuse
    retain_graph)."""
    import torch

    sys.path.insert(0, ROOT)
    from benchmarks import harness

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=g), torch.randn(3, 4, generator=g)
    grad = torch.randn(5, 4, generator=g)

    def f(a, b):
        return torch.tanh(a @ b) * a.sum()

    want = harness.forward_run(f, x, y, mode="fwd+bwd", grad_out=grad).fn()
    for fn in (f, harness.Compiled(f)):
        run = harness.forward_run(fn, x, y, mode="bwd", grad_out=grad)
        for _ in range(3):
            got = run.fn()
            assert len(got) == 2
            for w, v in zip(want, got):
                torch.testing.assert_close(v, w)
    fwd = harness.forward_run(f, x, y, mode="fwd").fn()
    assert not fwd.requires_grad
    torch.testing.assert_close(fwd, f(x, y))
    with pytest.raises(ValueError, match="mode: expected one of .*got 'backward'"):
        harness.forward_run(f, x, y, mode="backward")


def test_mode_selection():
    """--quick leaves the backward alone out (model steps: whole steps only); --mode chooses."""
    sys.path.insert(0, ROOT)
    from benchmarks import harness

    op = harness.Case("op", "s", None, {}, modes=harness.MODES)
    step = harness.Case("step", "s", None, {}, modes=harness.MODES, quick_modes=("fwd+bwd",))
    fwd_only = harness.Case("nms", "s", None, {})
    assert harness.modes_to_run(op, quick=False) == ["fwd", "bwd", "fwd+bwd"]
    assert harness.modes_to_run(op, quick=True) == ["fwd", "fwd+bwd"]
    assert harness.modes_to_run(step, quick=True) == ["fwd+bwd"]
    assert harness.modes_to_run(step, quick=True, modes=("bwd",)) == ["bwd"]
    assert harness.modes_to_run(fwd_only, quick=False, modes=("bwd",)) == []


def test_quick_run_with_all_three_modes_for_a_differentiable_op(tmp_path):
    out = tmp_path / "run"
    res = run_bench("--quick", "--only", "temporal_iou.aligned", "--mode", "fwd", "--mode", "bwd",
                    "--mode", "fwd+bwd", "--out", str(out), "--no-plots")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())
    assert {r["mode"] for r in rows} == {"fwd", "bwd", "fwd+bwd"}
    assert all(r["check"].startswith("ok") for r in rows), [(r["mode"], r["check"]) for r in rows]
    for mode in ("fwd", "bwd", "fwd+bwd"):
        assert f"| temporal_iou.aligned | 1000000 pairs fp32 | {mode} |" in res.stdout
    assert "modes fwd, bwd, fwd+bwd" in res.stdout


def test_slow_calls_are_timed_one_by_one():
    """A call of 1 ms or more gives one sample per call, repeated until min_run_time is spent."""
    import time

    import torch

    sys.path.insert(0, ROOT)
    from benchmarks import harness

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)
    median, p20, p80, runs = harness.measure(harness.Run(fn), torch.device("cpu"), min_run_time=0.02)
    assert runs == len(calls) and runs >= 2
    assert p20 <= median <= p80 and median >= 2.0
