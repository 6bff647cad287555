"""python -m python_models: train -> checkpoint -> evaluate, on the synthetic data and on tiny
annotation + feature files; every registry name is accepted."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from python_models import MODELS, build_model
from python_models.__main__ import main
from python_models.train import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registry_names_and_errors():
    assert set(MODELS) == {"glf", "drn", "fsan", "ianet", "fsm"}
    with pytest.raises(ValueError, match="must be one of"):
        build_model("nope")


def test_train_then_evaluate_synthetic(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "drn", "--steps", "3", "--num-videos", "32", "--num-clips", "16",
               "--set", "hidden=16", "--set", "word_dim=16", "--out", str(out), "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "drn" and "R@1,IoU=0.5" in metrics["eval"] and "mIoU" in metrics["random"]
    model, ckpt = load_checkpoint(out / "drn.pt")
    assert ckpt["hparams"] == {"hidden": 16, "word_dim": 16} and ckpt["step"] == 3
    assert model.query_encoder.lstm.hidden_size == 8
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "drn.pt"), "--num-videos", "16"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["eval"]["num_queries"] == 16


def test_train_on_annotation_files(tmp_path, capsys):
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        np.save(feats / f"v{i}.npy", rng.normal(size=(20 + i, 8)).astype(np.float32))
        lines.append(f"v{i} {i}.0 {i + 3}.5##a person opens door {i}")
    ann = tmp_path / "charades_test.txt"
    ann.write_text("\n".join(lines) + "\n")
    durations = tmp_path / "durations.csv"
    durations.write_text("id,length\n" + "".join(f"v{i},{20 + i}\n" for i in range(6)))
    rc = main(["train", "--model", "fsan", "--data", str(ann), "--features", str(feats), "--durations",
               str(durations), "--steps", "2", "--batch-size", "3", "--num-clips", "16", "--set", "dim=16",
               "--set", "layers=1", "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["eval"]["num_queries"] == 6


def _stvg_files(tmp_path):
    """Two HC-STVG videos with .npz pyramids and one VidSTG video (two captions) with an .h5 one."""
    import h5py
    feats = tmp_path / "pyramids"
    feats.mkdir()
    rng = np.random.default_rng(0)
    levels = lambda n: [rng.standard_normal((n, 8, 8, 8)).astype(np.float32),  # noqa: E731
                        rng.standard_normal((n, 8, 4, 4)).astype(np.float32)]
    hc = {f"h{i}": {"English": f"the man in red walks {i}", "st_frame": 4 + i, "ed_frame": 15 + i,
                    "img_hw": [120, 160], "img_num": 24, "bbox": [[10 + j, 20, 30, 40] for j in range(12)]}
          for i in range(2)}
    for v in hc:
        l0, l1 = levels(24)
        np.savez(feats / f"{v}.npz", level0=l0, level1=l1)
    vs = [{"vid": "s0", "frame_count": 30, "width": 64, "height": 64, "temporal_gt": {"begin_fid": 5, "end_fid": 14},
           "captions": [{"description": "a dog runs", "target_id": 1}],
           "questions": [{"description": "what runs", "target_id": 2}],
           "trajectories": [[{"tid": 1, "bbox": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}},
                             {"tid": 2, "bbox": {"xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5}}]] * 30}]
    with h5py.File(feats / "s0.h5", "w") as h:
        for i, lv in enumerate(levels(30)):
            h[f"level{i}"] = lv
    (tmp_path / "hc.json").write_text(json.dumps(hc))
    (tmp_path / "vs.json").write_text(json.dumps(vs))
    return feats


@pytest.mark.parametrize("ann,fmt,n", [("hc.json", None, 2), ("vs.json", "vidstg", 2)])
def test_fsm_trains_and_evaluates_on_stvg_files(tmp_path, capsys, ann, fmt, n):
    feats = _stvg_files(tmp_path)
    run = tmp_path / "run"
    args = ["--data", str(tmp_path / ann), "--features", str(feats), "--num-clips", "8", "--batch-size", "2"]
    args += ["--format", fmt] if fmt else []
    rc = main(["train", "--model", "fsm", *args, "--steps", "2", "--set", "hidden=16", "--set", "heads=2",
               "--set", "dec_layers=1", "--out", str(run), "--no-progress"])
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval"]["num_queries"] == n and "m_vIoU" in metrics["eval"]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "fsm.pt")]) == 0   # data, features and vocab from the checkpoint
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval"]["num_queries"] == n


def test_stvg_format_errors(tmp_path):
    feats = _stvg_files(tmp_path)
    with pytest.raises(SystemExit, match="grounds moments only"):
        main(["train", "--model", "drn", "--data", str(tmp_path / "hc.json"), "--features", str(feats),
              "--format", "hcstvg", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--format must be one of hcstvg, vidstg, got 'charades'"):
        main(["train", "--model", "fsm", "--data", str(tmp_path / "hc.json"), "--features", str(feats),
              "--format", "charades", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="feature pyramids"):
        main(["train", "--model", "fsm", "--data", str(tmp_path / "hc.json"), "--out", str(tmp_path)])


def test_unknown_model_and_missing_features_fail_clearly(tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--model", "nope"])
    with pytest.raises(SystemExit, match="--features"):
        main(["train", "--model", "drn", "--data", __file__, "--out", str(tmp_path)])


def test_module_entry_point_runs():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "python_models", "train", "--help"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "{drn,fsan,fsm,glf,ianet}" in res.stdout
