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
        by = {}
        for r in rows:
            if r["device"] == dev and r["median_ms"] and r.get("size") is None:
                by.setdefault((r["op"], r["shape"], r["mode"]), {})[r["provider"]] = r["median_ms"]
        labels = [k for k, v in by.items() if "vgops" in v and len(v) > 1]
        if labels:
            baselines = [p for p in ("reference", "compiled_reference", "torchvision", "sdpa")
                         if any(p in by[k] for k in labels)]
            fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) * len(baselines) + 1.5))
            height = 0.8 / len(baselines)
            for i, p in enumerate(baselines):
                ys = [j + i * height for j in range(len(labels))]
                xs = [by[k][p] / by[k]["vgops"] if p in by[k] else 0 for k in labels]
                ax.barh(ys, xs, height=height, label=f"{p} / vgops")
            ax.set_yticks([j + 0.4 - height / 2 for j in range(len(labels))])
            ax.set_yticklabels([f"{op} {shape} {mode}" for op, shape, mode in labels], fontsize=7)
            ax.set_xscale("log")
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_xlabel("speedup of vgops (baseline time / vgops time, log scale; > 1: vgops faster)")
            ax.set_title(f"vgops speedup per op ({dev})")
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = os.path.join(out_dir, f"speedup_{dev}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
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
