import numpy as np
import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference

TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}


def tan2d_map_iou(gt, num_clips, duration):
    """2D-TAN's target construction, transcribed: for every (s, e) with s <= e, the moment
    [s, e + 1) * duration / N against the gt window (its iou() uses the hull as the union)."""
    out = np.zeros((num_clips, num_clips))
    for s in range(num_clips):
        for e in range(s, num_clips):
            cs, ce = s * duration / num_clips, (e + 1) * duration / num_clips
            inter = max(0.0, min(ce, gt[1]) - max(cs, gt[0]))
            union = max(0.0, max(ce, gt[1]) - min(cs, gt[0]))
            out[s, e] = inter / union if union > 0 else 0.0
    return out


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestSegmentMapIoU:
    def test_against_2dtan_transcription(self, gen, device):
        duration = torch.rand(4, generator=gen, dtype=torch.float64) * 50 + 10
        start = torch.rand(4, generator=gen, dtype=torch.float64) * duration * 0.7
        gt = torch.stack([start, start + torch.rand(4, generator=gen, dtype=torch.float64) * (duration - start)], 1)
        out = vgops.segment_map_iou(gt.to(device), 16, duration.to(device))
        for b in range(4):
            want = tan2d_map_iou(gt[b].tolist(), 16, float(duration[b]))
            np.testing.assert_allclose(out[b].cpu().numpy(), want, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
    def test_against_reference(self, gen, device, dtype):
        gt = torch.sort(torch.rand(5, 2, generator=gen, dtype=torch.float64) * 32, -1).values
        out = vgops.segment_map_iou(gt.to(device, dtype), 32)
        assert out.shape == (5, 32, 32) and out.dtype == dtype
        ref = reference.segment_map_iou(gt.to(dtype).double(), 32)  # the same (rounded) inputs in float64
        torch.testing.assert_close(out.double().cpu(), ref, rtol=0, atol=TOL[dtype])
        assert (out.double().cpu().tril(-1) == 0).all()

    def test_duration_forms_agree(self, gen, device):
        gt = torch.tensor([[2.0, 7.5], [0.0, 30.0]], dtype=torch.float64, device=device)
        a = vgops.segment_map_iou(gt, 10, 30.0)
        b = vgops.segment_map_iou(gt, 10, torch.tensor([30.0, 30.0], dtype=torch.float64, device=device))
        torch.testing.assert_close(a, b)
        assert a[1, 0, 9] == 1.0  # the whole video
        # clip units: cell (2, 4) is [2, 5)
        torch.testing.assert_close(vgops.segment_map_iou(torch.tensor([[2.0, 5.0]], device=device), 8)[0, 2, 4],
                                   torch.tensor(1.0, device=device))

    def test_empty(self, device):
        assert vgops.segment_map_iou(torch.zeros(0, 2, device=device), 8).shape == (0, 8, 8)
        assert vgops.segment_map_iou(torch.tensor([[0.0, 1.0]], device=device), 0).shape == (1, 0, 0)


class TestRegistration:
    def test_opcheck_and_compile(self, gen):
        gt = torch.sort(torch.rand(3, 2, generator=gen) * 20, -1).values
        torch.library.opcheck(torch.ops.vgops.segment_map_iou.default, (gt, 12, torch.full((3,), 20.0)))
        compiled = torch.compile(lambda g, d: vgops.segment_map_iou(g, 12, d), fullgraph=True)
        torch.testing.assert_close(compiled(gt, torch.full((3,), 20.0)), reference.segment_map_iou(gt, 12, 20.0))

    def test_errors(self):
        with pytest.raises(ValueError, match=r"segment_map_iou: num_clips must be an int >= 0, got -1"):
            vgops.segment_map_iou(torch.rand(2, 2), -1)
        with pytest.raises(ValueError, match=r"duration must be a float or a tensor \[B\] = \[2\], got shape \(3,\)"):
            vgops.segment_map_iou(torch.rand(2, 2), 4, torch.ones(3))
        with pytest.raises(ValueError, match=r"gt must be a segment tensor \[N, 2\], got shape \(2, 1, 2\)"):
            vgops.segment_map_iou(torch.rand(2, 1, 2), 4)

    def test_gt_is_a_target(self, gen):
        gt = torch.sort(torch.rand(2, 2, generator=gen) * 8, -1).values.requires_grad_()
        assert not vgops.segment_map_iou(gt, 8).requires_grad
