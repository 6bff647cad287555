import pytest
import torch
from conftest import as_boxes, cpu_and_cuda, needs_torchvision, random_segments
from hypothesis import given, settings
from hypothesis import strategies as st

import vgops
from vgops import reference

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def random_problem(gen, n, dtype=torch.float64, device="cpu", span=100.0):
    segments = random_segments(gen, n, span=span, dtype=dtype, device=device)
    scores = torch.rand(n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    return segments, scores


def check_nms_properties(segments, scores, keep, thr):
    """What greedy NMS guarantees, independent of any implementation."""
    s = scores.double().cpu()
    keep = keep.cpu()
    iou = reference.temporal_iou(segments.double().cpu(), segments.double().cpu())
    rank = torch.sort(s, descending=True, stable=True).indices
    pos = torch.empty_like(rank)
    pos[rank] = torch.arange(len(rank))
    assert torch.equal(keep, rank[torch.sort(pos[keep]).values])  # kept in rank order
    kept_mask = torch.zeros(len(s), dtype=torch.bool)
    kept_mask[keep] = True
    for i in range(len(s)):
        higher_kept = kept_mask & (pos < pos[i])
        if kept_mask[i]:  # nothing kept above it overlaps it too much
            assert not (iou[i][higher_kept] > thr + 1e-6).any()
        else:  # something kept above it suppresses it
            assert (iou[i][higher_kept] > thr - 1e-6).any()


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTemporalNMS:
    @pytest.mark.parametrize("n", [1, 2, 7, 64, 65, 130, 400])
    @pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7, 1.0])
    def test_float64_against_reference(self, gen, device, n, thr):
        seg, sc = random_problem(gen, n, device=device)
        keep = vgops.temporal_nms(seg, sc, thr)
        assert keep.dtype == torch.long and keep.device.type == device
        torch.testing.assert_close(keep, reference.temporal_nms(seg, sc, thr), rtol=0, atol=0)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtypes(self, gen, device, dtype):
        seg, sc = random_problem(gen, 300, dtype=dtype, device=device)
        keep = vgops.temporal_nms(seg, sc, 0.5)
        torch.testing.assert_close(keep, reference.temporal_nms(seg, sc, 0.5), rtol=0, atol=0)
        check_nms_properties(seg, sc, keep, 0.5)

    def test_all_equal_scores_rank_by_index(self, device):
        seg = torch.tensor([[0.0, 1.0], [0.0, 1.0], [5.0, 6.0], [5.1, 6.0], [9.0, 9.5]], device=device)
        sc = torch.full((5,), 0.25, device=device)
        assert vgops.temporal_nms(seg, sc, 0.5).tolist() == [0, 2, 4]

    def test_threshold_is_strict(self, device):
        seg = torch.tensor([[0.0, 2.0], [1.0, 3.0]], device=device, dtype=torch.float64)  # IoU 1/3
        sc = torch.tensor([0.9, 0.8], device=device)
        assert vgops.temporal_nms(seg, sc, 1 / 3).tolist() == [0, 1]  # equal is not suppressed
        assert vgops.temporal_nms(seg, sc, 0.33).tolist() == [0]

    def test_ties_by_lower_index_many(self, gen, device):
        seg, _ = random_problem(gen, 200, device=device)
        sc = torch.randint(0, 4, (200,), generator=gen).double().to(device)  # many ties
        torch.testing.assert_close(vgops.temporal_nms(seg, sc, 0.4), reference.temporal_nms(seg, sc, 0.4))

    def test_empty(self, device):
        keep = vgops.temporal_nms(torch.zeros(0, 2, device=device), torch.zeros(0, device=device), 0.5)
        assert keep.shape == (0,) and keep.dtype == torch.long

    def test_nan_scores_rejected(self, device):
        seg = torch.tensor([[0.0, 1.0], [2.0, 3.0]], device=device)
        with pytest.raises(ValueError, match="scores must not contain NaN"):
            vgops.temporal_nms(seg, torch.tensor([0.5, float("nan")], device=device), 0.5)
        with pytest.raises(ValueError, match="scores must not contain NaN"):
            vgops.batched_temporal_nms(seg, torch.tensor([0.5, float("nan")], device=device),
                                       torch.tensor([0, 1], device=device), 0.5)

    def test_non_contiguous_inputs(self, gen, device):
        seg, sc = random_problem(gen, 100, device=device)
        seg_t = seg.t().contiguous().t()  # same values, column-major
        sc_s = torch.stack([sc, sc], 1)[:, 0]
        torch.testing.assert_close(vgops.temporal_nms(seg_t, sc_s, 0.5), reference.temporal_nms(seg, sc, 0.5))


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestBatchedTemporalNMS:
    @pytest.mark.parametrize("groups,per_group", [(1, 50), (5, 40), (17, 9), (64, 30)])
    def test_float64_against_reference(self, gen, device, groups, per_group):
        seg, sc = random_problem(gen, groups * per_group, device=device, span=30.0)
        idxs = torch.randint(0, groups, (groups * per_group,), generator=gen).to(device)
        keep = vgops.batched_temporal_nms(seg, sc, idxs, 0.5)
        torch.testing.assert_close(keep, reference.batched_temporal_nms(seg, sc, idxs, 0.5), rtol=0, atol=0)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtypes_and_group_ids(self, gen, device, dtype):
        seg, sc = random_problem(gen, 240, dtype=dtype, device=device, span=30.0)
        ids = torch.tensor([-7, 0, 3, 10**12], device=device)  # arbitrary ids, any order
        idxs = ids[torch.randint(0, 4, (240,), generator=gen).to(device)].to(torch.int32 if dtype == torch.float16 else torch.long)
        keep = vgops.batched_temporal_nms(seg, sc, idxs, 0.6)
        torch.testing.assert_close(keep, reference.batched_temporal_nms(seg, sc, idxs.long(), 0.6), rtol=0, atol=0)

    def test_groups_are_independent(self, gen, device):
        seg, sc = random_problem(gen, 100, device=device)
        idxs = torch.arange(100, device=device) % 2
        keep = set(vgops.batched_temporal_nms(seg, sc, idxs, 0.5).tolist())
        for g in (0, 1):
            members = torch.nonzero(idxs == g).flatten()
            kept_g = members[vgops.temporal_nms(seg[members], sc[members], 0.5)]
            assert set(kept_g.tolist()) == {i for i in keep if idxs[i] == g}

    def test_large_coordinates_keep_precision(self, device):
        # The same two-segment problem in two groups, far from the origin: an offset trick
        # (coordinates + group * span) would round these float32 coordinates.
        base = torch.tensor([[1.0e7, 1.0e7 + 2.0], [1.0e7 + 1.0, 1.0e7 + 3.0]], dtype=torch.float32, device=device)
        seg = torch.cat([base, base])
        sc = torch.tensor([0.9, 0.8, 0.7, 0.6], device=device)
        idxs = torch.tensor([0, 0, 5, 5], device=device)
        assert vgops.batched_temporal_nms(seg, sc, idxs, 0.3).tolist() == [0, 2]  # IoU 1/3 > 0.3
        assert vgops.batched_temporal_nms(seg, sc, idxs, 0.34).tolist() == [0, 1, 2, 3]

    def test_empty_and_errors(self, device):
        z = torch.zeros(0, 2, device=device)
        keep = vgops.batched_temporal_nms(z, torch.zeros(0, device=device), torch.zeros(0, dtype=torch.long, device=device), 0.5)
        assert keep.shape == (0,)
        with pytest.raises(ValueError, match=r"idxs must be an integer tensor \[N\].*got torch.float32"):
            vgops.batched_temporal_nms(torch.rand(3, 2, device=device), torch.rand(3, device=device),
                                       torch.zeros(3, device=device), 0.5)


class TestErrors:
    def test_messages(self):
        with pytest.raises(ValueError, match=r"temporal_nms: segments must be a segment tensor \[N, 2\], got shape \(2, 3, 2\)"):
            vgops.temporal_nms(torch.rand(2, 3, 2), torch.rand(2), 0.5)
        with pytest.raises(ValueError, match=r"temporal_nms: scores must be \[N\] for segments \[N, 2\] = \(4, 2\), got shape \(3,\)"):
            vgops.temporal_nms(torch.rand(4, 2), torch.rand(3), 0.5)
        with pytest.raises(ValueError, match="scores must be a floating-point tensor"):
            vgops.temporal_nms(torch.rand(4, 2), torch.arange(4), 0.5)
        with pytest.raises(ValueError, match="iou_threshold must not be NaN"):
            vgops.temporal_nms(torch.rand(4, 2), torch.rand(4), float("nan"))

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match="scores must be a 1-d tensor"):
            torch.ops.vgops.temporal_nms(torch.rand(4, 2), torch.rand(4, 1), 0.5)


class TestRegistration:
    def test_opcheck(self, gen):
        seg, sc = random_problem(gen, 40)
        idxs = torch.randint(0, 3, (40,), generator=gen)
        torch.library.opcheck(torch.ops.vgops.temporal_nms.default, (seg, sc, 0.5))
        torch.library.opcheck(torch.ops.vgops.batched_temporal_nms.default, (seg.float(), sc.float(), idxs, 0.5))

    def test_compile_fullgraph(self, gen):
        def top_moments(segments, scores):
            keep = vgops.temporal_nms(segments, scores, 0.5)
            return segments[keep], scores[keep]

        compiled = torch.compile(top_moments, fullgraph=True, backend="aot_eager")
        seg, sc = random_problem(gen, 60, dtype=torch.float32)
        for got, want in zip(compiled(seg, sc), top_moments(seg, sc)):
            torch.testing.assert_close(got, want)

    def test_compile_fullgraph_batched_inductor(self, gen):
        compiled = torch.compile(lambda s, c, i: vgops.batched_temporal_nms(s, c, i, 0.4), fullgraph=True)
        seg, sc = random_problem(gen, 80, dtype=torch.float32)
        idxs = torch.randint(0, 4, (80,), generator=gen)
        torch.testing.assert_close(compiled(seg, sc, idxs), reference.batched_temporal_nms(seg, sc, idxs, 0.4))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 80), thr=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1),
       ties=st.booleans(), groups=st.integers(1, 5))
def test_property_greedy_nms(n, thr, seed, ties, groups):
    gen = torch.Generator().manual_seed(seed)
    seg, sc = random_problem(gen, n, span=40.0)
    if ties:
        sc = torch.randint(0, 3, (n,), generator=gen).double()
    keep = vgops.temporal_nms(seg, sc, thr)
    torch.testing.assert_close(keep, reference.temporal_nms(seg, sc, thr), rtol=0, atol=0)
    check_nms_properties(seg, sc, keep, thr)
    idxs = torch.randint(0, groups, (n,), generator=gen)
    torch.testing.assert_close(vgops.batched_temporal_nms(seg, sc, idxs, thr),
                               reference.batched_temporal_nms(seg, sc, idxs, thr), rtol=0, atol=0)


@needs_torchvision
@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTorchvisionEquality:
    @pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
    def test_nms(self, gen, device, thr):
        import torchvision

        seg, sc = random_problem(gen, 2000, dtype=torch.float32, device=device)
        torch.testing.assert_close(vgops.temporal_nms(seg, sc, thr), torchvision.ops.nms(as_boxes(seg), sc, thr))

    @pytest.mark.parametrize("groups", [3, 64])
    def test_batched_nms(self, gen, device, groups):
        import torchvision

        seg, sc = random_problem(gen, groups * 80, dtype=torch.float32, device=device, span=50.0)
        idxs = torch.randint(0, groups, (groups * 80,), generator=gen).to(device)
        torch.testing.assert_close(vgops.batched_temporal_nms(seg, sc, idxs, 0.5),
                                   torchvision.ops.batched_nms(as_boxes(seg), sc, idxs, 0.5))
