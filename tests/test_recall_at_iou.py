import numpy as np
import pytest
import torch
from conftest import random_segments
from hypothesis import given, settings
from hypothesis import strategies as st

import vgops
from vgops import reference


def moment_detr_r1(pred_windows, gt_windows_per_query, thd):
    """moment_detr's standalone_eval compute_mr_r1, transcribed: the top-1 window against the
    ground-truth window it overlaps most (union = max(end) - min(start)); positive if IoU >= thd."""
    def cross_iou(p, gts):
        inter = np.maximum(0, np.minimum(p[1], gts[:, 1]) - np.maximum(p[0], gts[:, 0]))
        union = np.maximum(p[1], gts[:, 1]) - np.minimum(p[0], gts[:, 0])
        return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)
    hits = []
    for p, gts in zip(pred_windows, gt_windows_per_query):
        gts = np.asarray(gts, dtype=float)
        best = gts[np.argmax(cross_iou(p, gts))]
        hits.append(cross_iou(p, best[None])[0] >= thd)
    return float(np.mean(hits) * 100)


def tan2d_recall(pred_per_query, gt_per_query, tious, recalls):
    """2D-TAN's eval() after NMS, transcribed: (overlap > t)[:r].any() per query, mean over queries."""
    result = np.zeros((len(tious), len(recalls)))
    for seg, gt in zip(pred_per_query, gt_per_query):
        seg, gt = np.asarray(seg, dtype=float), np.asarray([gt], dtype=float)
        inter = np.maximum(0.0, np.minimum(seg[:, 1, None], gt[None, :, 1]) - np.maximum(seg[:, 0, None], gt[None, :, 0]))
        union = np.maximum(0.0, np.maximum(seg[:, 1, None], gt[None, :, 1]) - np.minimum(seg[:, 0, None], gt[None, :, 0]))
        overlap = (inter / union)[:, 0]
        for i, t in enumerate(tious):
            for j, r in enumerate(recalls):
                result[i, j] += (overlap > t)[:r].any()
    return result / len(pred_per_query) * 100


def quantized_problem(gen, b, k, g=1, step=0.5):
    """Predictions and ground truth on a 0.5 s grid (as annotations are), so many IoUs land exactly
    on thresholds like 0.5 and the >= / > rules really differ."""
    def seg(*shape):
        s = torch.randint(0, 40, shape, generator=gen).double() * step
        return torch.stack([s, s + torch.randint(1, 20, shape, generator=gen).double() * step], -1)
    return seg(b, k), seg(b, g)


class TestAgainstEvaluationScripts:
    def test_moment_detr_r1_multiple_gt_windows(self, gen):
        pred, gt = quantized_problem(gen, 300, 5, g=3)
        out = vgops.recall_at_iou(pred, gt, ns=(1,), thresholds=(0.5, 0.7))
        for m in (0.5, 0.7):
            assert out[f"R@1,IoU={m}"] == pytest.approx(moment_detr_r1(pred[:, 0].numpy(), gt.numpy(), m), abs=1e-9)

    def test_2dtan_strict_recall(self, gen):
        pred, gt = quantized_problem(gen, 300, 6)
        out = vgops.recall_at_iou(pred, gt[:, 0], ns=(1, 5), thresholds=(0.3, 0.5, 0.7), strict=True)
        want = tan2d_recall(pred.numpy(), gt[:, 0].numpy(), (0.3, 0.5, 0.7), (1, 5))
        for i, m in enumerate((0.3, 0.5, 0.7)):
            for j, n in enumerate((1, 5)):
                assert out[f"R@{n},IoU={m}"] == pytest.approx(want[i, j], abs=1e-9)

    def test_strict_differs_on_exact_thresholds(self):
        pred = torch.tensor([[[0.0, 2.0]]])
        gt = torch.tensor([[1.0, 2.0]])  # IoU exactly 0.5
        assert vgops.recall_at_iou(pred, gt, ns=(1,), thresholds=(0.5,))["R@1,IoU=0.5"] == 100.0
        assert vgops.recall_at_iou(pred, gt, ns=(1,), thresholds=(0.5,), strict=True)["R@1,IoU=0.5"] == 0.0


class TestBehaviour:
    def test_hand_computed(self):
        pred = torch.tensor([[[0.0, 1.0], [5.0, 9.0]], [[2.0, 4.0], [0.0, 1.0]]])
        gt = torch.tensor([[5.0, 10.0], [2.0, 4.0]])
        out = vgops.recall_at_iou(pred, gt, ns=(1, 2), thresholds=(0.5,))
        assert out == {"R@1,IoU=0.5": 50.0, "R@2,IoU=0.5": 100.0, "mIoU": pytest.approx(50.0)}

    def test_masks(self):
        pred = torch.tensor([[[0.0, 1.0], [5.0, 9.0], [5.0, 10.0]]])
        gt = torch.tensor([[[5.0, 10.0], [0.0, 1.0]]])
        gt_mask = torch.tensor([[True, False]])
        pred_mask = torch.tensor([[False, True, True]])
        out = vgops.recall_at_iou(pred, gt, gt_mask=gt_mask, pred_mask=pred_mask, ns=(1,), thresholds=(0.9,))
        assert out["R@1,IoU=0.9"] == 0.0 and out["mIoU"] == pytest.approx(80.0)  # top-1 valid is [5, 9]
        out = vgops.recall_at_iou(pred, gt, gt_mask=gt_mask, ns=(1,), thresholds=(0.9,))
        assert out["mIoU"] == 0.0  # [0, 1] only matches the masked-out window

    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 12), k=st.integers(1, 6), g=st.integers(1, 3),
           strict=st.booleans())
    def test_property_against_loop_reference(self, seed, b, k, g, strict):
        gen = torch.Generator().manual_seed(seed)
        pred, gt = random_segments(gen, b, k, span=20.0), random_segments(gen, b, g, span=20.0)
        gt_mask = torch.rand(b, g, generator=gen) < 0.8
        pred_mask = torch.rand(b, k, generator=gen) < 0.8
        got = vgops.recall_at_iou(pred, gt, gt_mask, pred_mask, ns=(1, 3), strict=strict)
        want = reference.recall_at_iou(pred, gt, gt_mask, pred_mask, ns=(1, 3), strict=strict)
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key], abs=1e-9), key

    def test_empty_and_errors(self):
        out = vgops.recall_at_iou(torch.zeros(0, 5, 2), torch.zeros(0, 2))
        assert all(v == 0.0 for v in out.values())
        with pytest.raises(ValueError, match=r"gt must be \[B, 2\] or \[B, G, 2\] with B = 2 as in pred, got shape \(3, 2\)"):
            vgops.recall_at_iou(torch.rand(2, 5, 2), torch.rand(3, 2))
        with pytest.raises(ValueError, match=r"pred_mask must be a bool tensor of shape \(2, 5\), got torch.int64"):
            vgops.recall_at_iou(torch.rand(2, 5, 2), torch.rand(2, 2), pred_mask=torch.ones(2, 5, dtype=torch.long))
        with pytest.raises(ValueError, match="ns must be positive ints"):
            vgops.recall_at_iou(torch.rand(2, 5, 2), torch.rand(2, 2), ns=(0,))
