import numpy as np
import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference


def tubedetr_eval(pred_boxes, pred_sted, gt_boxes, gt_sted, frame_ids):
    """TubeDETR's per-video evaluation, transcribed (numpy box IoU, half-open frame spans)."""
    def np_box_iou(a, b):
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
        lt, rb = np.maximum(a[:, None, :2], b[:, :2]), np.minimum(a[:, None, 2:], b[:, 2:])
        wh = (rb - lt).clip(min=0)
        inter = wh[:, :, 0] * wh[:, :, 1]
        return inter / (area(a)[:, None] + area(b) - inter)
    max_start, min_end = max(gt_sted[0], pred_sted[0]), min(gt_sted[1], pred_sted[1])
    min_start, max_end = min(gt_sted[0], pred_sted[0]), max(gt_sted[1], pred_sted[1])
    if min_end <= max_start:
        tiou = 0.0
    else:
        inter = min_end - max_start
        tiou = inter / ((gt_sted[1] - gt_sted[0]) + (pred_sted[1] - pred_sted[0]) - inter)
    union_predgt = [f for f in frame_ids if min_start <= f < max_end]
    inter_predgt = set(f for f in frame_ids if max_start <= f < min_end)
    viou = 0.0
    for f in inter_predgt:
        viou += np_box_iou(np.array([pred_boxes[f]]), np.array([gt_boxes[f]]))[0][0]
    return tiou, viou / max(len(union_predgt), 1)


def random_tubes(gen, b, t, dtype=torch.float64):
    def boxes():
        xy = torch.rand(b, t, 2, generator=gen, dtype=torch.float64) * 200
        wh = 10 + torch.rand(b, t, 2, generator=gen, dtype=torch.float64) * 100
        return torch.cat([xy, xy + wh], -1).to(dtype)
    def span():
        s = torch.randint(0, t, (b,), generator=gen)
        return torch.stack([s, s + torch.randint(1, t, (b,), generator=gen)], 1).clamp(max=t).to(dtype)
    return boxes(), span(), boxes(), span()


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTubeIoU:
    def test_against_tubedetr_transcription(self, gen, device):
        pb, ps, gb, gs = random_tubes(gen, 40, 30)
        mask = torch.rand(40, 30, generator=gen) < 0.9
        tiou, viou = vgops.tube_iou(pb.to(device), ps.to(device), gb.to(device), gs.to(device), mask.to(device))
        for i in range(40):
            frames = [f for f in range(30) if mask[i, f]]
            want_t, want_v = tubedetr_eval(pb[i].numpy(), ps[i].tolist(), gb[i].numpy(), gs[i].tolist(), frames)
            assert float(tiou[i]) == pytest.approx(want_t, abs=1e-12)
            assert float(viou[i]) == pytest.approx(want_v, abs=1e-12)
        assert (viou > 0).any() and (tiou > 0).any()  # the random tubes overlap somewhere

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
    def test_against_reference(self, gen, device, dtype):
        pb, ps, gb, gs = random_tubes(gen, 16, 12)
        pb, gb = pb / 4, gb / 4  # in half's comfortable range
        args = [x.to(device, dtype) for x in (pb, ps, gb, gs)]
        tiou, viou = vgops.tube_iou(*args)
        rt, rv = reference.tube_iou(*[x.double() for x in args])
        tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}[dtype]
        torch.testing.assert_close(tiou.double(), rt, rtol=0, atol=tol)
        torch.testing.assert_close(viou.double(), rv, rtol=0, atol=tol)

    def test_hand_computed(self, device):
        box = torch.tensor([0.0, 0.0, 10.0, 10.0])
        half = torch.tensor([0.0, 0.0, 10.0, 5.0])
        pb = torch.stack([box, box, box, box])[None].to(device)
        gb = torch.stack([box, half, box, box])[None].to(device)
        # pred frames [0, 2), gt frames [1, 4): both = {1}, either = {0, 1, 2, 3}
        tiou, viou = vgops.tube_iou(pb, torch.tensor([[0, 2]], device=device), gb, torch.tensor([[1, 4]], device=device))
        assert tiou.tolist() == [0.25] and viou.tolist() == [0.5 / 4]

    def test_empty(self, device):
        z = torch.zeros(0, 5, 4, device=device)
        tiou, viou = vgops.tube_iou(z, torch.zeros(0, 2, device=device), z, torch.zeros(0, 2, device=device))
        assert tiou.shape == viou.shape == (0,)


class TestSummaryAndRegistration:
    def test_tube_metrics(self):
        out = vgops.tube_metrics(torch.tensor([0.5, 1.0]), torch.tensor([0.3, 0.6]))
        assert out == {"m_tIoU": 75.0, "m_vIoU": pytest.approx(45.0), "vIoU@0.3": 50.0, "vIoU@0.5": 50.0}

    def test_opcheck_and_compile(self, gen):
        pb, ps, gb, gs = random_tubes(gen, 4, 6, dtype=torch.float32)
        mask = torch.rand(4, 6, generator=gen) < 0.7
        torch.library.opcheck(torch.ops.vgops.tube_iou.default, (pb, ps, gb, gs, mask))
        compiled = torch.compile(lambda *a: vgops.tube_iou(*a), fullgraph=True)
        for got, want in zip(compiled(pb, ps, gb, gs, mask), reference.tube_iou(pb, ps, gb, gs, mask)):
            torch.testing.assert_close(got, want)

    def test_errors(self):
        b = torch.rand(2, 3, 4)
        with pytest.raises(ValueError, match=r"tube_iou: pred_span must be a real tensor \[B, 2\] = \[2, 2\] of frame indices, got torch.float32 of shape \(2, 3\)"):
            vgops.tube_iou(b, torch.rand(2, 3), b, torch.rand(2, 2))
        with pytest.raises(ValueError, match=r"frame_mask must be a bool tensor \[B, T\] = \[2, 3\]"):
            vgops.tube_iou(b, torch.rand(2, 2), b, torch.rand(2, 2), torch.ones(2, 3))
        with pytest.raises(ValueError, match=r"gt_boxes must have pred_boxes' shape \(2, 3, 4\), got \(2, 4, 4\)"):
            vgops.tube_iou(b, torch.rand(2, 2), torch.rand(2, 4, 4), torch.rand(2, 2))
