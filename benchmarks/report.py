"""What the benchmark report adds to the tables: the achieved bandwidth of memory-bound ops
against the measured copy bandwidth, PNG plots, and the comparison with an earlier run."""
import json
import os

import torch
import torch.utils.benchmark as tbench

REGRESSION_TOLERANCE = 0.15  # a vgops median more than 15 % slower than before is flagged


def copy_bandwidth(device, nbytes=256 << 20):
    """Bytes per second of a device-to-device copy of `nbytes` (read + write counted): the
    practical ceiling of a memory-bound kernel that moves as many bytes. A working set that fits
    in the CPU's caches copies faster than one that must go to DRAM, so each op is compared with a
    copy of its own size, and the 256 MiB copy (DRAM) is shown beside it."""
    src = torch.empty(max(nbytes // 4, 1), dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = tbench.Timer("dst.copy_(src)", globals={"dst": dst, "src": src},
                     num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=0.5)
    return 2 * src.numel() * 4 / t.median


def bandwidth_section(rows):
    """Markdown table: achieved bytes/s of each memory-bound vgops forward and its fraction of the
    bandwidth of a copy moving the same bytes on the device it ran on (and of a DRAM-sized copy)."""
    mem_rows = [r for r in rows if r["provider"] == "vgops" and r.get("bytes_moved") and r["median_ms"]]
    if not mem_rows:
        return ""
    out = ["\n### Achieved bandwidth of memory-bound ops (forward)\n",
           "Ceiling: a tensor copy that moves the same bytes (read + write) on the same device; "
           "the 256 MiB copy shows the DRAM bandwidth (a smaller working set may be served from cache).\n",
           "| op | shape | device | bytes moved | vgops ms | achieved GB/s | copy GB/s, same bytes | fraction of copy "
           "| copy GB/s, 256 MiB |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    dram = {}
    for r in mem_rows:
        if r["device"] not in dram:
            dram[r["device"]] = copy_bandwidth(torch.device(r["device"]))
        achieved = r["bytes_moved"] / (r["median_ms"] / 1e3)
        ceil = copy_bandwidth(torch.device(r["device"]), r["bytes_moved"] // 2)
        out.append(f"| {r['op']} | {r['shape']} | {r['device']} | {r['bytes_moved'] / 2**20:.1f} MiB | "
                   f"{r['median_ms']:.3g} | {achieved / 1e9:.1f} | {ceil / 1e9:.1f} | {100 * achieved / ceil:.0f}% | "
                   f"{dram[r['device']] / 1e9:.1f} |")
    return "\n".join(out) + "\n"


def plots(rows, out_dir):
    """PNG plots: the speedup of vgops over each baseline for every case (one figure per device),
    and time versus problem size for the size sweeps. Returns the written paths."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for dev in dict.fromkeys(r["device"] for r in rows):
        path = _speedup_plot(plt, [r for r in rows if r["device"] == dev], dev, out_dir)
        if path:
            paths.append(path)
        sweeps = {}
        for r in rows:
            if r["device"] == dev and r["median_ms"] and r.get("size") is not None:
                sweeps.setdefault((r["op"], r["mode"]), {}).setdefault(r["provider"], []).append((r["size"], r["median_ms"]))
        for (op, mode), provs in sweeps.items():
            fig, ax = plt.subplots(figsize=(6, 4))
            for p, pts in provs.items():
                pts.sort()
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=p)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xticks(sorted({x for pts in provs.values() for x, _ in pts}))
            ax.set_xlabel("problem size (the swept dimension of the shape: N, T or L)")
            ax.set_ylabel("median ms")
            ax.set_title(f"{op} {mode} ({dev}): time versus size")
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = os.path.join(out_dir, f"scaling_{op}_{mode.replace('+', '_')}_{dev}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


_BASELINE_STYLE = {"reference": ("o", "tab:blue"), "compiled_reference": ("s", "tab:orange"),
                   "torchvision": ("D", "tab:green"), "sdpa": ("^", "tab:red")}


def _speedup_plot(plt, rows, dev, out_dir):
    """One row per case (op and shape), one panel per mode (fwd, bwd, fwd+bwd), a marker per
    baseline at its time over vgops's (log scale). Returns the path, or None with nothing to plot."""
    by = {}
    for r in rows:
        if r["median_ms"] and r.get("size") is None:
            by.setdefault((r["op"], r["shape"]), {}).setdefault(r["mode"], {})[r["provider"]] = r["median_ms"]
    cases = [k for k, modes in by.items() if any("vgops" in v and len(v) > 1 for v in modes.values())]
    if not cases:
        return None
    modes = [m for m in ("fwd", "bwd", "fwd+bwd") if any(m in by[k] for k in cases)]
    baselines = [p for p in _BASELINE_STYLE if any(p in v for k in cases for v in by[k].values())]
    fig, axes = plt.subplots(1, len(modes), sharey=True, squeeze=False, layout="constrained",
                             figsize=(3.6 * len(modes) + 4.2, 0.24 * len(cases) + 1.6))
    ys = range(len(cases))
    for ax, mode in zip(axes[0], modes):
        for p in baselines:
            pts = [(by[k][mode][p] / by[k][mode]["vgops"], y) for y, k in zip(ys, cases)
                   if p in by[k].get(mode, {}) and "vgops" in by[k][mode]]
            marker, color = _BASELINE_STYLE[p]
            ax.scatter([x for x, _ in pts], [y for _, y in pts], marker=marker, color=color, s=22,
                       label=f"{p} / vgops", zorder=3)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.grid(axis="y", color="0.9", zorder=0)
        ax.grid(axis="x", which="major", color="0.85", linestyle=":", zorder=0)
        ax.set_title(mode)
        ax.set_xlabel("baseline time / vgops time")
    axes[0][0].set_yticks(list(ys))
    axes[0][0].set_yticklabels([f"{op}  {shape}" for op, shape in cases], fontsize=7)
    axes[0][0].set_ylim(len(cases) - 0.5, -0.5)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.suptitle(f"vgops speedup per op ({dev}; log scale, > 1: vgops faster)", fontsize=10)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    path = os.path.join(out_dir, f"speedup_{dev}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def compare(rows, old_path, tolerance=REGRESSION_TOLERANCE):
    """Markdown comparing vgops medians with an earlier results.json; returns (markdown,
    number of regressions). Rows are matched on (op, shape, mode, device)."""
    with open(old_path) as f:
        old = {(r["op"], r["shape"], r["mode"], r["device"]): r for r in json.load(f) if r["provider"] == "vgops"}
    out = [f"\n### Against {old_path} (regression: > {tolerance:.0%} slower)\n",
           "| op | shape | mode | device | before ms | now ms | now / before | |", "|---|---|---|---|---:|---:|---:|---|"]
    regressions = 0
    for r in rows:
        key = (r["op"], r["shape"], r["mode"], r["device"])
        if r["provider"] != "vgops" or key not in old or not r["median_ms"] or not old[key]["median_ms"]:
            continue
        ratio = r["median_ms"] / old[key]["median_ms"]
        flag = "**REGRESSION**" if ratio > 1 + tolerance else ("faster" if ratio < 1 - tolerance else "")
        regressions += flag.startswith("**")
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {old[key]['median_ms']:.3g} | "
                   f"{r['median_ms']:.3g} | {ratio:.2f} | {flag} |")
    out.append(f"\n{regressions} regression(s).\n")
    return "\n".join(out), regressions
