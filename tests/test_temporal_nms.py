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


def random_batch(gen, b, n, dtype=torch.float64, device="cpu", span=100.0, p_valid=0.8):
    segments = random_segments(gen, b, n, span=span, dtype=dtype, device=device)
    scores = torch.rand(b, n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    valid = (torch.rand(b, n, generator=gen) < p_valid).to(device)
    return segments, scores, valid


def assert_rows_equal_temporal_nms(segments, scores, valid, thr, max_keep, idx, ok):
    """Row b of the padded output is temporal_nms of the row's valid segments, cut at max_keep."""
    b_rows, n = scores.shape
    k = n if max_keep is None or max_keep < 0 else max_keep
    assert idx.shape == (b_rows, k) and ok.shape == (b_rows, k)
    assert idx.dtype == torch.long and ok.dtype == torch.bool
    for b in range(b_rows):
        members = torch.arange(n, device=segments.device) if valid is None else torch.nonzero(valid[b]).flatten()
        want = members[vgops.temporal_nms(segments[b, members], scores[b, members], thr)][:k]
        kept = len(want)
        assert ok[b].tolist() == [True] * kept + [False] * (k - kept)
        assert idx[b, :kept].tolist() == want.tolist()
        assert (idx[b, kept:] == -1).all()


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTemporalNMSPadded:
    @pytest.mark.parametrize("b,n", [(1, 1), (3, 7), (5, 64), (4, 257), (2, 600)])
    @pytest.mark.parametrize("max_keep", [0, 1, 10, None])
    @pytest.mark.parametrize("thr", [0.0, 0.5, 0.9])
    def test_float64_against_reference(self, gen, device, b, n, max_keep, thr):
        seg, sc, valid = random_batch(gen, b, n, device=device)
        got = vgops.temporal_nms_padded(seg, sc, thr, max_keep, valid)
        want = reference.temporal_nms_padded(seg, sc, thr, max_keep, valid)
        torch.testing.assert_close(got, want, rtol=0, atol=0)

    @pytest.mark.parametrize("max_keep", [5, 300, -1])
    def test_rows_equal_temporal_nms(self, gen, device, max_keep):
        # Sparse rows (span 5000): hundreds kept per row, more than one CUDA tile of kept segments.
        seg, sc, valid = random_batch(gen, 3, 700, dtype=torch.float32, device=device, span=5000.0)
        for mask in (valid, None):
            idx, ok = vgops.temporal_nms_padded(seg, sc, 0.3, max_keep, mask)
            assert_rows_equal_temporal_nms(seg, sc, mask, 0.3, max_keep, idx, ok)
        assert ok.sum(1).min() > 256 or max_keep == 5

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtypes(self, gen, device, dtype):
        seg, sc, valid = random_batch(gen, 4, 300, dtype=dtype, device=device)
        got = vgops.temporal_nms_padded(seg, sc, 0.5, 50, valid)
        torch.testing.assert_close(got, reference.temporal_nms_padded(seg, sc, 0.5, 50, valid), rtol=0, atol=0)
        assert_rows_equal_temporal_nms(seg, sc, valid, 0.5, 50, *got)

    def test_all_equal_scores_rank_by_index(self, device):
        seg = torch.tensor([[0.0, 1.0], [0.0, 1.0], [5.0, 6.0], [5.1, 6.0], [9.0, 9.5]], device=device)
        seg = torch.stack([seg, seg.flip(0)])
        sc = torch.full((2, 5), 0.25, device=device)
        idx, ok = vgops.temporal_nms_padded(seg, sc, 0.5, 4)
        assert idx.tolist() == [[0, 2, 4, -1], [0, 1, 3, -1]]
        assert ok.tolist() == [[True, True, True, False]] * 2

    def test_valid_mask_excludes_and_ignores_padding_values(self, device):
        seg = torch.tensor([[[0.0, 10.0], [0.0, 9.0], [20.0, 21.0], [float("nan"), 5.0]]], device=device)
        sc = torch.tensor([[0.9, 0.8, 0.7, float("nan")]], device=device)
        valid = torch.tensor([[True, True, True, False]], device=device)
        idx, ok = vgops.temporal_nms_padded(seg, sc, 0.5, 3, valid)
        assert idx.tolist() == [[0, 2, -1]] and ok.tolist() == [[True, True, False]]
        valid[0, 0] = False  # without the best segment, the one it suppressed is kept
        idx, ok = vgops.temporal_nms_padded(seg, sc, 0.5, 3, valid)
        assert idx.tolist() == [[1, 2, -1]] and ok.tolist() == [[True, True, False]]

    def test_nan_among_valid(self, device):
        seg = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]], device=device)
        sc = torch.tensor([[0.5, float("nan"), 0.7]], device=device)
        if device == "cpu":
            with pytest.raises(ValueError, match=r"scores must not contain NaN among the valid segments.*\[0, 1\]"):
                vgops.temporal_nms_padded(seg, sc, 0.5, 3)
        else:  # no host synchronisation to raise with: NaN counts as masked out
            idx, ok = vgops.temporal_nms_padded(seg, sc, 0.5, 3)
            assert idx.tolist() == [[2, 0, -1]] and ok.tolist() == [[True, True, False]]

    def test_empty(self, device):
        for b, n, k in [(0, 5, 3), (3, 0, 4), (2, 6, 0), (0, 0, None)]:
            seg = torch.zeros(b, n, 2, device=device)
            idx, ok = vgops.temporal_nms_padded(seg, torch.zeros(b, n, device=device), 0.5, k)
            want_k = n if k is None else k
            assert idx.shape == (b, want_k) and ok.shape == (b, want_k)
            assert idx.dtype == torch.long and ok.dtype == torch.bool and not ok.any() and (idx == -1).all()

    def test_non_contiguous_inputs(self, gen, device):
        seg, sc, valid = random_batch(gen, 3, 90, device=device)
        seg_t = seg.permute(2, 0, 1).contiguous().permute(1, 2, 0)
        sc_t = sc.t().contiguous().t()
        valid_t = valid.t().contiguous().t()
        torch.testing.assert_close(vgops.temporal_nms_padded(seg_t, sc_t, 0.5, 20, valid_t),
                                   reference.temporal_nms_padded(seg, sc, 0.5, 20, valid), rtol=0, atol=0)


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

    def test_padded_messages(self):
        with pytest.raises(ValueError, match=r"temporal_nms_padded: segments must be a segment tensor 3-d \[\.\.\., 2\], got shape \(4, 2\)"):
            vgops.temporal_nms_padded(torch.rand(4, 2), torch.rand(4), 0.5, 3)
        with pytest.raises(ValueError, match=r"temporal_nms_padded: scores must be \[B, N\] for segments \[B, N, 2\] = \(2, 4, 2\), got shape \(2, 3\)"):
            vgops.temporal_nms_padded(torch.rand(2, 4, 2), torch.rand(2, 3), 0.5, 3)
        with pytest.raises(ValueError, match=r"valid_mask must be a bool tensor \[B, N\] = \(2, 4\), got torch.float32 of shape \(2, 4\)"):
            vgops.temporal_nms_padded(torch.rand(2, 4, 2), torch.rand(2, 4), 0.5, 3, torch.ones(2, 4))
        with pytest.raises(ValueError, match=r"max_keep must be >= 0, or None / -1 for all, got -2"):
            vgops.temporal_nms_padded(torch.rand(2, 4, 2), torch.rand(2, 4), 0.5, -2)
        with pytest.raises(TypeError, match=r"max_keep must be an int >= 0 or None, got float"):
            vgops.temporal_nms_padded(torch.rand(2, 4, 2), torch.rand(2, 4), 0.5, 3.0)
        with pytest.raises(ValueError, match="iou_threshold must not be NaN"):
            vgops.temporal_nms_padded(torch.rand(2, 4, 2), torch.rand(2, 4), float("nan"), 3)

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match="scores must be a 1-d tensor"):
            torch.ops.vgops.temporal_nms(torch.rand(4, 2), torch.rand(4, 1), 0.5)
        with pytest.raises(ValueError, match=r"valid_mask must be a bool tensor \[B, N\]"):
            torch.ops.vgops.temporal_nms_padded(torch.rand(2, 4, 2), torch.rand(2, 4), 0.5, 3, torch.ones(2, 5, dtype=torch.bool))
        with pytest.raises(ValueError, match="max_keep must be >= 0"):
            torch.ops.vgops.temporal_nms_padded(torch.rand(2, 4, 2), torch.rand(2, 4), 0.5, -3)


class TestRegistration:
    def test_opcheck(self, gen):
        seg, sc = random_problem(gen, 40)
        idxs = torch.randint(0, 3, (40,), generator=gen)
        torch.library.opcheck(torch.ops.vgops.temporal_nms.default, (seg, sc, 0.5))
        torch.library.opcheck(torch.ops.vgops.batched_temporal_nms.default, (seg.float(), sc.float(), idxs, 0.5))

    def test_opcheck_padded(self, gen):
        seg, sc, valid = random_batch(gen, 3, 40)
        torch.library.opcheck(torch.ops.vgops.temporal_nms_padded.default, (seg, sc, 0.5, 10, valid))
        torch.library.opcheck(torch.ops.vgops.temporal_nms_padded.default, (seg.float(), sc.float(), 0.3, -1, None))

    def test_compile_fullgraph_padded_inductor(self, gen):
        def top_moments(segments, scores, valid):
            idx, ok = vgops.temporal_nms_padded(segments, scores, 0.5, 16, valid)
            picked = torch.gather(segments, 1, idx.clamp(min=0).unsqueeze(-1).expand(-1, -1, 2))
            return picked * ok.unsqueeze(-1), torch.gather(scores, 1, idx.clamp(min=0)) * ok, idx

        compiled = torch.compile(top_moments, fullgraph=True)
        for b, n in [(4, 50), (6, 80)]:  # a second shape: the graph has no data-dependent size
            seg, sc, valid = random_batch(gen, b, n, dtype=torch.float32)
            torch.testing.assert_close(compiled(seg, sc, valid), top_moments(seg, sc, valid))

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


@settings(max_examples=40, deadline=None)
@given(b=st.integers(0, 4), n=st.integers(0, 40), thr=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1),
       ties=st.booleans(), max_keep=st.one_of(st.none(), st.integers(0, 45)), masked=st.booleans())
def test_property_padded_nms(b, n, thr, seed, ties, max_keep, masked):
    gen = torch.Generator().manual_seed(seed)
    seg, sc, valid = random_batch(gen, b, n, span=40.0)
    if ties:
        sc = torch.randint(0, 3, (b, n), generator=gen).double()
    valid = valid if masked else None
    got = vgops.temporal_nms_padded(seg, sc, thr, max_keep, valid)
    torch.testing.assert_close(got, reference.temporal_nms_padded(seg, sc, thr, max_keep, valid), rtol=0, atol=0)
    assert_rows_equal_temporal_nms(seg, sc, valid, thr, max_keep, *got)


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestLargeInputs:
    """The GPU kernels process rows in bands (bounded memory): sizes over one band (4096 rows)
    and the 200,000-segment case of the issue, against the CPU kernel."""

    @pytest.mark.parametrize("n", [4097, 20000])
    def test_many_segments(self, gen, device, n):
        if device == "cpu":
            pytest.skip("the CPU kernel is the oracle here")
        seg, sc = random_problem(gen, n, dtype=torch.float32, span=n / 5.0)
        want = vgops.temporal_nms(seg, sc, 0.5)
        torch.testing.assert_close(vgops.temporal_nms(seg.to(device), sc.to(device), 0.5).cpu(), want,
                                   rtol=0, atol=0)

    @pytest.mark.slow
    def test_200k_segments(self, gen, device):
        if device == "cpu":
            pytest.skip("the CPU kernel is the oracle here")
        n = 200_000
        seg, sc = random_problem(gen, n, dtype=torch.float32, span=20000.0)
        sc = (sc * 1000).round() / 1000  # many tied scores
        for thr in (0.3, 0.7):
            want = vgops.temporal_nms(seg, sc, thr)
            got = vgops.temporal_nms(seg.to(device), sc.to(device), thr).cpu()
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        # Batched: one group of 150,000 next to 50,000 small groups.
        idxs = torch.cat([torch.zeros(150_000, dtype=torch.long), torch.arange(1, 50_001)])
        idxs = idxs[torch.randperm(n, generator=gen)]
        want = vgops.batched_temporal_nms(seg, sc, idxs, 0.5)
        got = vgops.batched_temporal_nms(seg.to(device), sc.to(device), idxs.to(device), 0.5).cpu()
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def assert_same_keep(got, want, scores):
    """Equal kept indices, except that torchvision's (unstable) score sort may order equal scores
    differently: vgops keeps ties by lower index. float32 scores drawn at random do tie (seed
    533970967 gives two of 0.9130 in batched_nms with 64 groups)."""
    if torch.equal(got.cpu(), want.cpu()):
        return
    s = scores.cpu()
    assert torch.equal(got.cpu().sort().values, want.cpu().sort().values), "different kept sets"
    assert torch.equal(s[got.cpu()], s[want.cpu()]), "kept in a different order beyond ties"


@needs_torchvision
@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTorchvisionEquality:
    @pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
    def test_nms(self, gen, device, thr):
        import torchvision

        seg, sc = random_problem(gen, 2000, dtype=torch.float32, device=device)
        assert_same_keep(vgops.temporal_nms(seg, sc, thr), torchvision.ops.nms(as_boxes(seg), sc, thr), sc)

    @pytest.mark.parametrize("groups", [3, 64])
    def test_batched_nms(self, gen, device, groups):
        import torchvision

        seg, sc = random_problem(gen, groups * 80, dtype=torch.float32, device=device, span=50.0)
        idxs = torch.randint(0, groups, (groups * 80,), generator=gen).to(device)
        assert_same_keep(vgops.batched_temporal_nms(seg, sc, idxs, 0.5),
                         torchvision.ops.batched_nms(as_boxes(seg), sc, idxs, 0.5), sc)

    @pytest.mark.parametrize("max_keep", [10, None])
    def test_padded_nms_rows(self, gen, device, max_keep):
        import torchvision

        seg, sc, _ = random_batch(gen, 8, 300, dtype=torch.float32, device=device)
        idx, ok = vgops.temporal_nms_padded(seg, sc, 0.5, max_keep)
        for b in range(8):
            want = torchvision.ops.nms(as_boxes(seg[b]), sc[b], 0.5)[:max_keep]
            torch.testing.assert_close(idx[b][ok[b]], want)
