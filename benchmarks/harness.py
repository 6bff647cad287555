"""The one benchmark harness: cases with named providers, timing, peak memory, agreement checks,
and the CSV / JSON / Markdown output.

An entry file (``benchmarks/bench_<op>.py``) exposes ``CASES``, a list of :class:`Case`. A case
names its op and shape, builds its inputs once per device (fixed seed) and maps provider names
("vgops", "reference", "compiled_reference", "torchvision",
"sdpa": torch's scaled_dot_product_attention) to factories that return a
:class:`Run` for one mode: "fwd" (forward, no autograd graph), "bwd" (the backward alone, of a
forward graph built once and kept; see :func:`backward_run`) or "fwd+bwd" (both, as a training
step runs them). A factory raises :class:`Unavailable` when the
provider cannot serve the case (torchvision not importable, no torchvision op for the job); the
harness then leaves that provider out and says why.

For each (case, device, mode, provider) the harness:

1. calls the provider once (warm-up; for ``torch.compile`` this is where compilation of the
   forward and the backward happens, so it is never timed) and compares its result with the
   vgops result (the vgops result is compared with the reference's); a disagreement is flagged in
   the ``check`` column and on stderr, never hidden; a provider that raises (a compile failure)
   gets a row with the error in ``note`` and no timings;
2. calls it once more to measure the peak memory of one call (below);
3. times it for at least min_run_time, using all of torch's intra-op threads: a call of 1 ms
   or more call by call (each call one sample; a call longer than min_run_time gives one
   sample, so p20 == p80 == median there), a shorter one with
   ``torch.utils.benchmark.Timer.blocked_autorange`` (each sample a block average: a block is
   as many calls as make the timer overhead negligible; Timer's default of one thread is
   overridden). median / p20 / p80 are quantiles of the samples.

Peak memory of one call:

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus what
  was allocated before the call (exact, for the caching allocator's tensors);
* CPU: an **RSS approximation**. The resident-set high-water mark is reset by writing "5" to
  ``/proc/self/clear_refs`` and read back as ``VmHWM`` from ``/proc/self/status`` after the
  call; the increase is reported. Before the call freed heap memory is returned to the OS
  (``malloc_trim``) and, on glibc, allocations >= 64 KiB are made to use their own mappings
  for the duration of the measured call, so memory freed and reused inside the call is not
  hidden and memory that was already resident is not counted. It still counts pages, not
  bytes (4 KiB granularity), includes whatever the interpreter allocates, and misses
  allocations served from memory resident before the call. Compare ratios, not bytes.

Timing runs with fixed glibc malloc thresholds (mmap 32 MiB, trim 64 MiB: what a long-running
glibc process settles at) so a case's timing does not depend on which cases ran before it.
"""
import csv
import ctypes
import dataclasses
import datetime
import gc
import io
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable

import torch
import torch._functorch.config  # noqa: F401 (backward_run switches donated buffers off)
import torch.utils.benchmark as tbench

MODES = ("fwd", "bwd", "fwd+bwd")
PROVIDERS = ("vgops", "reference", "compiled_reference", "torchvision", "sdpa")
BASELINES = PROVIDERS[1:]


class Unavailable(Exception):
    """Raised by a provider factory that cannot serve a case; the message says why."""


@dataclasses.dataclass
class Run:
    """One provider ready to run one case in one mode.

    fn: one call (forward, or forward + backward) returning what the call produces.
    convert: maps fn's result to the form compared across providers (e.g. box gradients to
        segment gradients); identity when None.
    note: text recorded in the row; a callable is read after the warm-up (torch.compile
        fallbacks are only known then).
    """
    fn: Callable[[], Any]
    convert: Callable[[Any], Any] | None = None
    note: str | Callable[[], str] = ""


@dataclasses.dataclass
class Case:
    """op: entry name ("temporal_iou.pairwise"), matched by --only. shape: description.
    make_inputs(device) -> dict of tensors (fixed seed). providers: name -> factory(inputs, mode)
    -> Run. modes: "fwd" and, for differentiable ops, "bwd" and "fwd+bwd" (MODES). compare(expected, got, inputs)
    -> (ok, message). size: the problem size of a member of a size sweep (time-versus-size plots;
    sweeps run with --full only). bytes_moved(inputs) -> bytes a memory-bound op must read and
    write in its forward, for the achieved-bandwidth table. quick: whether --quick runs the case
    (False for the large companions of a case that --quick keeps). quick_modes: the modes --quick
    runs (None: those of QUICK_MODES in modes)."""
    op: str
    shape: str
    make_inputs: Callable[[torch.device], dict]
    providers: dict
    modes: tuple = ("fwd",)
    compare: Callable | None = None
    size: int | None = None
    bytes_moved: Callable[[dict], int] | None = None
    quick: bool = True
    quick_modes: tuple | None = None


# ----------------------------------------------------------------------------------------------
# data

def segments(n, generator, *lead):
    """Moment proposals: starts uniform in [0, 100), lengths uniform in [1, 30); [*lead, n, 2]."""
    start = torch.rand(*lead, n, generator=generator) * 100
    length = 1 + torch.rand(*lead, n, generator=generator) * 29
    return torch.stack([start, start + length], dim=-1)


def as_boxes(seg):
    """Segments [..., 2] as torchvision boxes [..., 4]: x1 = start, x2 = end, y1 = 0, y2 = 1 (so
    box IoU == segment IoU)."""
    s, e = seg.unbind(-1)
    return torch.stack([s, torch.zeros_like(s), e, torch.ones_like(s)], dim=-1)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# optional providers

def _import_torchvision():
    try:
        import torchvision.ops
        return torchvision, ""
    except Exception as e:  # ImportError, or a torch/torchvision version mismatch at load
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()


torchvision, TORCHVISION_REASON = _import_torchvision()


def require_torchvision():
    if torchvision is None:
        raise Unavailable(f"torchvision is not importable here ({TORCHVISION_REASON})")
    return torchvision


class Compiled:
    """torch.compile of a reference function, compiled on its first call (the warm-up, never
    timed). fullgraph=True is tried first; if Dynamo cannot capture the whole function (a
    data-dependent loop), the reason is recorded in ``note`` and the default mode (graph breaks:
    the unsupported part runs eagerly) is used instead. If that fails too the error propagates
    and the harness records it in the row."""

    def __init__(self, fn):
        self.source = fn
        self.fn = None
        self.note = ""

    def __call__(self, *args):
        if self.fn is None:
            torch._dynamo.reset()  # each case compiles from scratch: no recompile-limit fallbacks
            try:
                fn = torch.compile(self.source, fullgraph=True, dynamic=False)
                out = fn(*args)
                self.fn = fn
                self.note = "torch.compile(fullgraph=True)"
                return out
            except Exception as e:
                reason = _first_line(e)
                torch._dynamo.reset()
                fn = torch.compile(self.source, dynamic=False)
                out = fn(*args)
                self.fn = fn
                self.note = (f"fullgraph=True failed ({reason}); timed torch.compile with graph "
                             "breaks (the uncapturable part runs eagerly)")
                return out
        return self.fn(*args)


def forward_run(f, *inputs, mode, grad_out=None, convert=None, note=""):
    """A Run of f(*inputs) for mode "fwd"; of the gradient of f(*inputs) with respect to every
    input (torch.autograd.grad, so nothing accumulates between calls) for "bwd" (the backward
    alone, :func:`backward_run`); of both for "fwd+bwd". Inputs are cloned: leaves that require
    grad only in "bwd" and "fwd+bwd"."""
    if mode == "fwd":
        xs = tuple(x.detach().clone() for x in inputs)

        def fn():
            with torch.no_grad():
                return f(*xs)
        return Run(fn, convert, note)
    xs = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    if mode == "bwd":
        return backward_run(lambda: f(*xs), xs, grad_out, convert, note)
    if mode != "fwd+bwd":
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")

    def fn_bwd():
        out = f(*xs)
        return torch.autograd.grad(out, xs, grad_out)
    return Run(fn_bwd, convert, note)


def backward_run(forward, wrt, grad_out=None, convert=None, note="", allow_unused=False):
    """A Run of the backward alone. forward() -> output(s) runs once, on the first call (the
    untimed warm-up; torch.compile compiles both graphs there), and its graph is kept
    (retain_graph=True); every call then computes the gradients of that output with respect to
    wrt. Peak memory is what one backward allocates beyond the forward's saved tensors, which are
    resident before it starts (a real training step frees saved tensors as its backward consumes
    them; with the graph kept they stay, so this peak is an upper bound of that part).

    AOTAutograd donates saved buffers to a compiled backward, which then refuses retain_graph;
    donation is switched off for the forward that builds the kept graph (the same kernels run)."""
    state = {}

    def fn():
        if "out" not in state:
            with torch._functorch.config.patch(donated_buffer=False):
                state["out"] = forward()
        return torch.autograd.grad(state["out"], wrt, grad_out, retain_graph=True,
                                   allow_unused=allow_unused)
    return Run(fn, convert, note)


# ----------------------------------------------------------------------------------------------
# agreement checks

def _first_line(e, limit=160):
    text = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def compare_tensors(expected, got, inputs=None, rtol=1e-4, atol=1e-5):
    """Tensors (or tuples of tensors) close in float64 after conversion."""
    exp = expected if isinstance(expected, (tuple, list)) else (expected,)
    res = got if isinstance(got, (tuple, list)) else (got,)
    if len(exp) != len(res):
        return False, f"{len(res)} outputs, expected {len(exp)}"
    for i, (e, g) in enumerate(zip(exp, res)):
        if tuple(e.shape) != tuple(g.shape):
            return False, f"output {i}: shape {tuple(g.shape)}, expected {tuple(e.shape)}"
        e64, g64 = e.detach().double().cpu(), g.detach().double().cpu()
        if not torch.allclose(g64, e64, rtol=rtol, atol=atol):
            err = (g64 - e64).abs().max().item()
            return False, f"output {i}: max abs diff {err:.3g}"
    return True, ""


def compare_kept(expected, got, inputs):
    """Kept NMS indices: equal; or equal up to the order of equal scores (the sort order of ties
    is unspecified in torchvision); otherwise a mismatch that counts the differences."""
    e, g = expected.cpu(), got.cpu()
    if torch.equal(e, g):
        return True, ""
    scores = inputs["scores"].cpu()
    same_set = e.numel() == g.numel() and torch.equal(e.sort().values, g.sort().values)
    if same_set and torch.equal(scores[e], scores[g]):
        return True, "same kept set; order differs only among equal scores"
    if same_set:
        return False, "same kept set in a different order"
    only_e = e.numel() - torch.isin(e, g).sum().item()
    only_g = g.numel() - torch.isin(g, e).sum().item()
    return False, f"kept {g.numel()} vs {e.numel()}: {only_g} extra, {only_e} missing"


# ----------------------------------------------------------------------------------------------
# memory

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # glibc only
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def _malloc_thresholds(mmap_bytes, trim_bytes):
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, int(mmap_bytes))
        _LIBC.mallopt(_M_TRIM_THRESHOLD, int(trim_bytes))


def _timing_malloc():
    _malloc_thresholds(32 << 20, 64 << 20)


def _vmhwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def peak_memory(fn, device):
    """(peak bytes of one call of fn, method) — see the module docstring; (None, reason) when it
    cannot be measured here."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return peak, "cuda_max_memory_allocated"
    try:
        _malloc_thresholds(64 << 10, 64 << 10)
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _vmhwm()
        out = fn()
        peak = _vmhwm() - base
        del out
        return max(peak, 0), "cpu_rss_vmhwm_approx"
    except OSError as e:
        return None, f"unavailable ({_first_line(e)})"
    finally:
        _timing_malloc()


# ----------------------------------------------------------------------------------------------
# environment

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine():
    return f"{platform.platform()}; {cpu_model()}; {os.cpu_count()} logical CPUs"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def vgops_backend(op, *tensors):
    """Which vgops backend serves these inputs (so a row never hides a reference fallback)."""
    try:
        from vgops import _backend
        return _backend.choose(op, None, *tensors)
    except Exception as e:
        return f"unknown ({_first_line(e)})"


# ----------------------------------------------------------------------------------------------
# running

def _quantiles(times):
    t = torch.tensor(times, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64))
    return [v * 1e3 for v in q.tolist()]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# A call at least this long is timed call by call: the timer's own overhead (well under a
# microsecond on the CPU, a synchronisation on CUDA) is then below 1e-4 of a sample, and a slow
# call is not repeated ten times in one block as blocked_autorange's block sizing would do.
DIRECT_TIMING_S = 1e-3


def _time_once(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def measure(run, device, min_run_time):
    """(median_ms, p20_ms, p80_ms, number of runs) of run.fn: calls of DIRECT_TIMING_S or longer
    one by one until min_run_time is spent (each call one sample; at least one), shorter ones with
    torch.utils.benchmark's blocked_autorange."""
    times = [_time_once(run.fn, device)]
    if times[0] >= DIRECT_TIMING_S:
        while sum(times) < min_run_time:
            times.append(_time_once(run.fn, device))
        p20, median, p80 = _quantiles(times)
        return median, p20, p80, len(times)
    timer = tbench.Timer(stmt="fn()", globals={"fn": run.fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    p20, median, p80 = _quantiles(m.times)
    return median, p20, p80, len(m.times) * m.number_per_run


# Left out of --quick runs: compiling the reference (forward and backward, per case) took most
# of a quick run's time; its ratios are in the full runs.
QUICK_LEFT_OUT = {"compiled_reference": "--quick leaves torch.compile out (its compile time per case dominates a "
                                        "quick run); run without --quick for it"}


# --quick leaves the backward alone out (a third of a quick run's time; its cost is also inside
# fwd+bwd); the default and --full runs, or --mode bwd, have it. Model steps: whole steps only.
QUICK_MODES = ("fwd", "fwd+bwd")


def modes_to_run(case, quick, modes=None):
    """The modes of case that a run does: those asked for (--mode), else all of case.modes, or
    under --quick those of case.quick_modes (default QUICK_MODES)."""
    if modes:
        return [m for m in case.modes if m in modes]
    if quick:
        return [m for m in case.modes if m in (case.quick_modes or QUICK_MODES)]
    return list(case.modes)


def run_case(case, device, mode, min_run_time, meta, left_out=None):
    """Rows (dicts) for every provider of one case, device and mode, plus the providers left out
    as (case, provider, reason). left_out: provider name -> reason, providers not to run."""
    inputs = case.make_inputs(device)
    compare = case.compare or compare_tensors
    runs, skipped = {}, []
    for name, factory in case.providers.items():
        if left_out and name in left_out:
            skipped.append(((f"{case.op} {case.shape} {device.type}", mode), name, left_out[name]))
            continue
        try:
            runs[name] = factory(inputs, mode)
        except Unavailable as e:
            skipped.append(((f"{case.op} {case.shape} {device.type}", mode), name, str(e)))
    # Warm-up call and result of every provider first, so the check runs before any timing. The
    # second call (compilation, forward and backward, is done by then) measures the peak memory.
    results, errors, memory = {}, {}, {}
    for name, run in runs.items():
        try:
            out = run.fn()
            _sync(device)
            results[name] = run.convert(out) if run.convert else out
            del out
            memory[name] = peak_memory(run.fn, device)
        except Exception as e:
            errors[name] = _first_line(e, 300)
    checks = {}
    for name in runs:
        if name in errors:
            continue
        against = "reference" if name == "vgops" else "vgops"
        if against not in results:
            checks[name] = f"not checked ({against} has no result)"
            continue
        try:
            ok, msg = compare(results[against], results[name], inputs)
        except Exception as e:
            ok, msg = False, f"comparison failed: {_first_line(e)}"
        checks[name] = ("ok" + (f" ({msg})" if msg else "")) if ok else f"MISMATCH vs {against}: {msg}"
    rows = []
    for name, run in runs.items():
        row = dict(op=case.op, shape=case.shape, provider=name, mode=mode, device=device.type,
                   device_name=meta["device_names"][device.type], median_ms=None, p20_ms=None,
                   p80_ms=None, runs=None, peak_mem_bytes=None, mem_method=None,
                   check=checks.get(name, "error"), note="", size=case.size, **meta["common"])
        if name in errors:
            row["note"] = f"error: {errors[name]}"
            rows.append(row)
            continue
        row["median_ms"], row["p20_ms"], row["p80_ms"], row["runs"] = measure(run, device, min_run_time)
        row["peak_mem_bytes"], row["mem_method"] = memory[name]
        row["note"] = run.note() if callable(run.note) else run.note
        if case.bytes_moved is not None and mode == "fwd":
            row["bytes_moved"] = case.bytes_moved(inputs)
        rows.append(row)
    del runs, results, inputs
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows, skipped


# ----------------------------------------------------------------------------------------------
# output

FIELDS = ["op", "shape", "provider", "mode", "device", "device_name", "median_ms", "p20_ms",
          "p80_ms", "runs", "peak_mem_bytes", "mem_method", "check", "note", "size", "bytes_moved",
          "threads", "machine", "torch_version", "git_commit", "timestamp"]


def write_results(rows, out_dir, markdown):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in FIELDS})
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump([{k: r.get(k) for k in FIELDS} for r in rows], f, indent=1)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown)


def _ms(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _ratio(num, den):
    if num is None or den is None or den <= 0:
        return "-"
    r = num / den
    return f"{r:.3g}x" if r < 100 else f"{r:.0f}x"


def _bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def markdown_table(rows):
    """One table per device: op, shape, mode, vgops ms, each baseline's ms, speedups
    (baseline/vgops), vgops peak memory, memory ratios (baseline/vgops), check."""
    out = io.StringIO()
    for dev in dict.fromkeys(r["device"] for r in rows):
        drows = [r for r in rows if r["device"] == dev]
        present = [p for p in BASELINES if any(r["provider"] == p for r in drows)]
        short = {"reference": "ref", "compiled_reference": "compiled", "torchvision": "tv", "sdpa": "sdpa"}
        head = (["op", "shape", "mode", "vgops ms"] + [f"{short[p]} ms" for p in present]
                + [f"{short[p]}/vgops" for p in present] + ["vgops peak"]
                + [f"mem {short[p]}/vgops" for p in present] + ["check"])
        out.write(f"\n### {dev}: {drows[0]['device_name']} ({drows[0]['threads']} threads)\n\n")
        out.write("| " + " | ".join(head) + " |\n")
        out.write("|" + "|".join("---" if i < 3 or h == "check" else "---:"
                                 for i, h in enumerate(head)) + "|\n")
        groups = {}
        for r in drows:
            groups.setdefault((r["op"], r["shape"], r["mode"]), {})[r["provider"]] = r
        for (op, shape, mode), by in groups.items():
            v = by.get("vgops", {})
            cells = [op, shape, mode, _ms(v.get("median_ms"))]
            cells += [_ms(by[p]["median_ms"]) if p in by else "n/a" for p in present]
            cells += [_ratio(by[p]["median_ms"], v.get("median_ms")) if p in by else "n/a"
                      for p in present]
            cells.append(_bytes(v.get("peak_mem_bytes")))
            cells += [_ratio(by[p]["peak_mem_bytes"], v.get("peak_mem_bytes")) if p in by else "n/a"
                      for p in present]
            errs = [p for p, r in by.items() if r["note"].startswith("error")]
            bad = [f"{p}: {r['check']}" for p, r in by.items()
                   if p not in errs and not r["check"].startswith("ok")]
            flags = bad + [f"{p}: error (see notes)" for p in errs]
            cells.append("ok" if not flags else "**" + "; ".join(flags) + "**")
            out.write("| " + " | ".join(c.replace("|", "/") for c in cells) + " |\n")
    return out.getvalue()


def _where(cases_modes):
    """'op shape device (mode, mode); ...' from (case, mode) pairs."""
    by_case = {}
    for case, mode in cases_modes:
        by_case.setdefault(case, []).append(mode)
    return "; ".join(f"{c} ({', '.join(dict.fromkeys(m))})" for c, m in by_case.items())


def notes_section(rows, skipped):
    """Row notes grouped by (provider, note), then the providers left out grouped by reason."""
    out = io.StringIO()
    notes = {}
    for r in rows:
        if r["note"]:
            notes.setdefault((r["provider"], r["note"]), []).append(r)
    left_out = {}
    for where, name, reason in skipped:
        left_out.setdefault((name, reason), []).append(where)
    if notes or left_out:
        out.write("\nNotes:\n")
    for (prov, note), group in notes.items():
        n_prov = sum(r["provider"] == prov for r in rows)
        where = "all cases" if len(group) == n_prov else _where(
            (f"{r['op']} {r['shape']} {r['device']}", r["mode"]) for r in group)
        out.write(f"- {prov}: {note} [{where}]\n")
    n_work = len({(f"{r['op']} {r['shape']} {r['device']}", r["mode"]) for r in rows})
    for (name, reason), where in left_out.items():
        where = "all cases" if len(set(where)) >= n_work else _where(where)
        out.write(f"- {name} left out: {reason} [{where}]\n")
    return out.getvalue()


def main_meta(devices):
    import vgops  # noqa: F401 (the version and build are part of what is measured)
    common = dict(threads=torch.get_num_threads(), machine=machine(), torch_version=torch.__version__,
                  git_commit=git_commit(),
                  timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return dict(common=common, device_names={d.type: device_name(d) for d in devices})


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_all(cases, devices, quick, out_dir, log=lambda s: print(s, file=sys.stderr, flush=True), extra_md=None,
            modes=None):
    """Run every (case, device, mode) (modes: see modes_to_run); write out_dir/results.{csv,json,md};
    return the Markdown and the rows. extra_md(rows) -> Markdown appended to the report (bandwidth,
    plots)."""
    _timing_malloc()
    min_run_time = 0.1 if quick else 1.0
    meta = main_meta(devices)
    work = [(c, d, m) for d in devices for c in cases for m in modes_to_run(c, quick, modes)]
    rows, skipped = [], []
    t_all = time.perf_counter()
    load_start = _load()
    if load_start is not None and load_start >= 0.5 * (os.cpu_count() or 1):
        log(f"warning: the 1-minute load average is {load_start:.2f} on {os.cpu_count()} CPUs: the "
            "machine is busy, so timings (eager multi-threaded ones most) will be noisy")
    for i, (case, device, mode) in enumerate(work, 1):
        t0 = time.perf_counter()
        label = f"[{i}/{len(work)}] {case.op} {case.shape} {mode} {device.type}"
        log(f"{label} ...")
        r, s = run_case(case, device, mode, min_run_time, meta, QUICK_LEFT_OUT if quick else None)
        rows += r
        skipped += s
        log(f"{label} done in {time.perf_counter() - t0:.1f}s, {time.perf_counter() - t_all:.0f}s in all ("
            + ", ".join(f"{x['provider']} {_ms(x['median_ms'])} ms" for x in r) + ")")
        for x in r:
            if not x["check"].startswith("ok"):
                log(f"    {x['provider']}: {x['note'] if x['note'].startswith('error') else x['check']}")
    header = (f"# vgops benchmarks\n\nmachine: {meta['common']['machine']}  \n"
              f"torch {meta['common']['torch_version']}, commit {meta['common']['git_commit']}, "
              f"{'--quick (one size per op, no torch.compile), ' if quick else ''}"
              f"modes {', '.join(modes or (QUICK_MODES if quick else MODES))}"
              f"{' (model steps: fwd+bwd only)' if quick and not modes else ''}, "
              f"min_run_time {min_run_time}s, "
              f"{meta['common']['timestamp']}, load average {load_start} at start, {_load()} at end  \n"
              "ms: median per call; x/vgops: baseline time (or peak memory) over vgops's, "
              ">1 means vgops is faster (smaller). CPU memory is an RSS approximation.\n")
    md = header + markdown_table(rows) + notes_section(rows, skipped)
    if extra_md is not None:
        md += extra_md(rows)
    write_results(rows, out_dir, md)
    log(f"all done in {time.perf_counter() - t_all:.1f}s; results in {out_dir}/results.{{csv,json,md}}")
    return md, rows
