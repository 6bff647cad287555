"""Multi-process training: torchrun --nproc_per_node=2 on the CPU (gloo). Both ranks train, see
different shards, and end with identical parameters (DDP averaged their gradients)."""
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from python_models.data import SyntheticGrounding
    from python_models.train import train
    out = sys.argv[1]
    seen = []
    ds = SyntheticGrounding(64, num_clips=16, video_dim=16, seed=0)
    res = train("drn", ds, steps=4, batch_size=4, seed=0, hparams=dict(hidden=16, word_dim=16),
                checkpoint=os.path.join(out, "drn.pt"), device="cpu",
                log=lambda step, loss, parts: seen.append(step))
    import torch.distributed as dist
    rank, world = dist.get_rank(), dist.get_world_size()
    flat = torch.cat([p.detach().flatten() for p in res["model"].parameters()])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world": world, "losses": res["losses"], "logged": seen,
                   "params": flat.double().tolist()[:2000], "norm": flat.double().norm().item()}, f)
    dist.destroy_process_group()
""")


def test_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and {r0["rank"], r1["rank"]} == {0, 1}
    assert len(r0["losses"]) == len(r1["losses"]) == 4
    assert r0["losses"] != r1["losses"]            # each rank trained on its own shard
    assert r0["params"] == r1["params"] and abs(r0["norm"] - r1["norm"]) < 1e-9   # DDP kept them in sync
    assert r0["logged"] == [0, 1, 2, 3] and r1["logged"] == []   # logging on rank 0 only
    assert (tmp_path / "drn.pt").exists()
