"""FSM (spatio-temporal grounding) on the synthetic moving-box task: forward/backward, Hungarian
matching, backends, learning, and the HC-STVG / VidSTG readers."""
import json

import numpy as np
import pytest
import torch

import vgops
from python_models import fsm
from python_models.data import collate
from python_models.data.stvg_readers import STVGDataset, read_hcstvg, read_vidstg
from python_models.data.synthetic_stvg import SyntheticSTVG
from python_models.evaluate import evaluate, random_baseline
from python_models.train import make_loader, smoothed, train

SMALL = dict(hidden=32, heads=4, dec_layers=2, dropout=0.0)


def _model(meta, seed=0):
    torch.manual_seed(seed)
    return fsm.FSM.from_dataset(meta, **SMALL)


@pytest.fixture(scope="module")
def trained():
    train_set = SyntheticSTVG(2048, num_clips=16, seed=0)
    test_set = SyntheticSTVG(64, num_clips=16, seed=1)
    result = train(_model(train_set.meta), train_set, steps=200, batch_size=16, lr=3e-3, seed=0)
    return result, test_set


def test_forward_backward_shapes():
    ds = SyntheticSTVG(4, num_clips=16, seed=3)
    m = _model(ds.meta)
    batch = collate([ds[i] for i in range(4)])
    out = m(batch)
    assert out["boxes"].shape == (4, 5, 16, 4) and out["conf"].shape == (4, 5)
    assert out["start"].shape == out["end"].shape == out["frame"].shape == (4, 5, 16)
    loss, parts = m.loss(out, batch)
    assert torch.isfinite(loss) and set(parts) == {"l1", "giou", "kl_se", "frame", "attn", "contrast", "conf"}
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert m.proj[0].weight.grad.abs().sum() > 0              # the RoI anchors reach the finest level
    pred = m.predict(m(batch), batch, k=5)
    seg = pred["segments"]
    assert seg.shape == (4, 5, 2) and pred["boxes"].shape == (4, 16, 4)
    assert (seg[..., 0] < seg[..., 1]).all() and (seg[..., 1] <= batch["duration"][:, None]).all()
    assert (pred["scores"][:, :-1] >= pred["scores"][:, 1:]).all()


def test_linear_assignment_lap_and_scipy_agree(monkeypatch):
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(5, 2, generator=g).numpy()
    a = fsm.linear_assignment(cost)
    monkeypatch.setattr(fsm, "lap", None)
    b = fsm.linear_assignment(cost)
    assert torch.equal(a, b)
    from itertools import permutations
    best = min(permutations(range(5), 2), key=lambda p: cost[p[0], 0] + cost[p[1], 1])
    assert tuple(a.tolist()) == best


def test_match_takes_the_cheapest_tube():
    ds = SyntheticSTVG(2, num_clips=16, seed=4)
    m = _model(ds.meta).eval()
    batch = collate([ds[i] for i in range(2)])
    out = m(batch)
    out["boxes"] = out["boxes"].clone()
    out["boxes"][0, 3] = batch["boxes"][0]                   # plant the exact tube in query 3
    assert int(m.match(out, batch)[0]) == 3


def test_reference_backend_same_loss(monkeypatch):
    ds = SyntheticSTVG(4, num_clips=16, seed=5)
    m = _model(ds.meta).eval()
    batch = collate([ds[i] for i in range(4)])
    with torch.no_grad():
        a = m.loss(m(batch), batch)[0]
        monkeypatch.setenv("VGOPS_BACKEND", "reference")
        b = m.loss(m(batch), batch)[0]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_learns_the_synthetic_task(trained):
    result, test_set = trained
    first, last = smoothed(result["losses"], 20)
    assert last < 0.6 * first, (first, last)                  # measured: 9.9 -> 4.0
    loader = make_loader(test_set, 16, shuffle=False)
    metrics = evaluate(result["model"], loader)
    chance = random_baseline(loader)
    # measured (200 steps, seed 0): R@1,IoU=0.5 73.4 vs 6.25 random; m_vIoU 40.2 vs 0.8 random
    assert metrics["R@1,IoU=0.5"] >= 40.0 and metrics["R@1,IoU=0.5"] >= chance["R@1,IoU=0.5"] + 25.0, metrics
    g = torch.Generator().manual_seed(0)
    vious = []
    for batch in loader:                                       # random tubes: random span, random boxes
        B, T = batch["video_mask"].shape
        xy = torch.rand(B, T, 2, 2, generator=g).sort(2).values * test_set.meta["image_size"]
        span = torch.rand(B, 2, generator=g).sort(1).values * batch["duration"][:, None]
        vious.append(vgops.tube_iou(xy.transpose(2, 3).reshape(B, T, 4), span, batch["boxes"], batch["moment"],
                                    batch["video_mask"])[1])
    random_viou = 100 * torch.cat(vious).mean().item()
    assert metrics["m_vIoU"] >= 20.0 and metrics["m_vIoU"] >= 5 * random_viou, (metrics, random_viou)


def _write_features(tmp_path, video, frames=20):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / f"{video}.npz", level0=rng.standard_normal((frames, 8, 8, 8)).astype(np.float32),
             level1=rng.standard_normal((frames, 8, 4, 4)).astype(np.float32))


def test_readers_to_model(tmp_path):
    hc = {"v1": {"English": "The man in red walks.", "st_frame": 10, "ed_frame": 29, "img_hw": [120, 160],
                 "img_num": 40, "bbox": [[10 + i, 20, 30, 40] for i in range(20)]}}
    (tmp_path / "hc.json").write_text(json.dumps(hc))
    vs = [{"vid": "v2", "frame_count": 30, "width": 64, "height": 64,
           "temporal_gt": {"begin_fid": 5, "end_fid": 14},
           "captions": [{"description": "a dog runs", "target_id": 1}],
           "trajectories": [[{"tid": 1, "bbox": {"xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}},
                             {"tid": 2, "bbox": {"xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5}}]] * 30}]
    (tmp_path / "vs.json").write_text(json.dumps(vs))
    recs = read_hcstvg(tmp_path / "hc.json") + read_vidstg(tmp_path / "vs.json")
    assert recs[0]["start"] == 10 and recs[0]["end"] == 30 and recs[0]["boxes"][10] == (10, 20, 40, 60)
    assert recs[1]["boxes"][5] == (1, 2, 30, 40) and len(recs[1]["boxes"]) == 10
    for v in ("v1", "v2"):
        _write_features(tmp_path, v)
    ds = STVGDataset(recs, str(tmp_path), num_frames=16, image_size=64)
    assert ds.meta["strides"] == (8, 16)
    s = ds[0]
    assert s["box_mask"].sum() == s["moment"][1] - s["moment"][0] and s["moment"][0] == 4  # frames 10..29 of 40
    torch.testing.assert_close(s["boxes"][4], torch.tensor([10 * 0.4, 20 * 64 / 120, 40 * 0.4, 60 * 64 / 120]))  # frame 10.4 -> 10
    batch = collate([ds[0], ds[1]])
    m = fsm.FSM.from_dataset(ds.meta, **SMALL)
    loss, _ = m.loss(m(batch), batch)
    assert torch.isfinite(loss)
