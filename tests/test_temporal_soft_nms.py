import math

import pytest
import torch
from conftest import cpu_and_cuda, random_segments
from hypothesis import given, settings
from hypothesis import strategies as st

import vgops
from vgops import reference
from vgops.reference.temporal_soft_nms import compute_dtype, decay_weight

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
METHODS = ["gaussian", "linear", "hard"]


def random_problem(gen, n, dtype=torch.float64, device="cpu", span=100.0):
    segments = random_segments(gen, n, span=span, dtype=dtype, device=device)
    scores = torch.rand(n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    return segments, scores


def random_batch(gen, b, n, dtype=torch.float64, device="cpu", span=100.0, p_valid=0.8):
    segments = random_segments(gen, b, n, span=span, dtype=dtype, device=device)
    scores = torch.rand(b, n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    valid = (torch.rand(b, n, generator=gen) < p_valid).to(device)
    return segments, scores, valid


def published_soft_nms(segments, scores, method, iou_threshold, sigma, min_score, hard_ge=True):
    """A direct transcription of mmcv's softnms_cpu (mmcv/ops/csrc/pytorch/cpu/nms.cpp, offset 0)
    and ActionFormer's 1-D softnms for segments, in Python floats (float64): the working arrays
    are swapped in place, a dropped segment is replaced by the last one, the first maximum in the
    working order wins, and min_score is tested only after a decay. Returns (indices, scores at
    selection). hard_ge: mmcv's hard rule (IoU >= threshold); False: vgops's (IoU > threshold)."""
    x1 = [float(v) for v in segments[:, 0]]
    x2 = [float(v) for v in segments[:, 1]]
    sc = [float(v) for v in scores]
    areas = [b - a for a, b in zip(x1, x2)]
    inds = list(range(len(sc)))
    nboxes = len(sc)
    out_i, out_s = [], []
    i = 0
    while i < nboxes:
        max_pos = max(range(i, nboxes), key=lambda p: (sc[p], -p))  # first maximum
        for arr in (x1, x2, sc, areas, inds):
            arr[i], arr[max_pos] = arr[max_pos], arr[i]
        out_i.append(inds[i])
        out_s.append(sc[i])
        pos = i + 1
        while pos < nboxes:
            inter = max(0.0, min(x2[i], x2[pos]) - max(x1[i], x1[pos]))
            ovr = inter / (areas[i] + areas[pos] - inter)
            if method == "hard":
                weight = 0.0 if (ovr >= iou_threshold if hard_ge else ovr > iou_threshold) else 1.0
            elif method == "linear":
                weight = 1.0 - ovr if ovr >= iou_threshold else 1.0
            else:
                weight = math.exp(-(ovr * ovr) / sigma)
            sc[pos] *= weight
            if sc[pos] < min_score:
                for arr in (x1, x2, sc, areas, inds):
                    arr[pos] = arr[nboxes - 1]
                nboxes -= 1
                pos -= 1
            pos += 1
        i += 1
    return out_i, out_s


def replay(segments, scores, method, iou_threshold, sigma, min_score, idx, out, rtol):
    """Checks a selection (idx, out) computed in low precision by replaying it in float64: each
    selected segment is still remaining and has the highest current score (within rtol), its
    reported score is its current score (within rtol), and nothing remaining is left out."""
    seg = segments.double().cpu()
    cur = scores.double().cpu().clone()
    alive = cur >= min_score
    for i, s in zip(idx.tolist(), out.double().cpu().tolist()):
        assert alive[i], f"selected {i}, which is not remaining"
        best = cur[alive].max().item()
        assert cur[i].item() >= best - rtol * abs(best), (i, cur[i].item(), best)
        assert s == pytest.approx(cur[i].item(), rel=rtol, abs=1e-6)
        alive[i] = False
        iou = reference.temporal_iou(seg[i:i + 1], seg)[0]
        cur = torch.where(alive, cur * decay_weight(method, iou, iou_threshold, sigma), cur)
        alive &= cur >= min_score


def assert_same_selection(got, want, score_rtol=0.0, score_atol=0.0):
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=score_rtol, atol=score_atol)


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTemporalSoftNMS:
    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("n", [1, 2, 31, 200])
    @pytest.mark.parametrize("max_keep", [None, 0, 1, 17])
    def test_float64_against_reference(self, gen, device, method, n, max_keep):
        seg, sc = random_problem(gen, n, device=device, span=50.0)
        got = vgops.temporal_soft_nms(seg, sc, method, 0.4, 0.5, 1e-3, max_keep)
        assert got[0].dtype == torch.long and got[1].dtype == torch.float64 and got[0].device.type == device
        want = reference.temporal_soft_nms(seg, sc, method, 0.4, 0.5, 1e-3, max_keep)
        assert_same_selection(got, want, 1e-12, 1e-15)

    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("thr,sigma,min_score", [(0.3, 0.5, 1e-3), (0.7, 0.1, 0.05), (0.0, 2.0, 1e-9)])
    def test_against_published_formulas(self, gen, device, method, thr, sigma, min_score):
        # Distinct scores, the best >= min_score and min_score > 0 (so no ties at 0): the
        # divergences (tie order, the first selection's min_score test) cannot show. Hard: with
        # vgops's strict rule, and with mmcv's >= too where the threshold is > 0 (random
        # overlaps never equal it; IoU 0 is common, so at threshold 0 the rules differ).
        seg, sc = random_problem(gen, 150, device=device, span=40.0)
        sc[0] = 0.99
        idx, out = vgops.temporal_soft_nms(seg, sc, method, thr, sigma, min_score)
        want_i, want_s = published_soft_nms(seg.cpu(), sc.cpu(), method, thr, sigma, min_score, hard_ge=False)
        assert idx.tolist() == want_i
        torch.testing.assert_close(out.cpu(), torch.tensor(want_s, dtype=torch.float64), rtol=1e-12, atol=1e-15)
        if method == "hard" and thr > 0:
            want_i_ge, _ = published_soft_nms(seg.cpu(), sc.cpu(), method, thr, sigma, min_score, hard_ge=True)
            assert idx.tolist() == want_i_ge

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("method", ["linear", "hard"])
    def test_dtypes_exact(self, gen, device, dtype, method):
        # No exp in these weights: the same float32 operations as the reference, bit for bit.
        seg, sc = random_problem(gen, 250, dtype=dtype, device=device, span=60.0)
        got = vgops.temporal_soft_nms(seg, sc, method, 0.3, 0.5, 1e-3)
        assert got[1].dtype == dtype
        assert_same_selection(got, reference.temporal_soft_nms(seg, sc, method, 0.3, 0.5, 1e-3))

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtypes_gaussian(self, gen, device, dtype):
        # exp differs in the last bit between libraries: replay the selection in float64.
        seg, sc = random_problem(gen, 250, dtype=dtype, device=device, span=60.0)
        idx, out = vgops.temporal_soft_nms(seg, sc, "gaussian", 0.3, 0.5, 1e-3)
        assert out.dtype == dtype
        rtol = {torch.float16: 2e-3, torch.bfloat16: 1e-2}.get(dtype, 1e-5)
        ct = compute_dtype(dtype, dtype)
        replay(seg.to(ct), sc.to(ct), "gaussian", 0.3, 0.5, 1e-3, idx, out, rtol)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("thr", [0.0, 0.5, 0.8])
    def test_hard_equals_temporal_nms(self, gen, device, dtype, thr):
        seg, sc = random_problem(gen, 300, dtype=dtype, device=device)
        idx, out = vgops.temporal_soft_nms(seg, sc, "hard", thr, 0.5, 1e-9)
        keep = vgops.temporal_nms(seg, sc, thr)
        torch.testing.assert_close(idx, keep, rtol=0, atol=0)
        torch.testing.assert_close(out, sc[keep], rtol=0, atol=0)  # hard never changes a kept score

    def test_all_equal_scores_select_by_index(self, device):
        seg = torch.tensor([[0.0, 1.0], [5.0, 6.0], [0.0, 1.0], [9.0, 9.5], [5.0, 6.0]], device=device)
        sc = torch.full((5,), 0.5, device=device)
        idx, out = vgops.temporal_soft_nms(seg, sc, "gaussian", 0.3, 0.5, 1e-3)
        # 0, then 1 (not overlapping 0), 3 (overlapping nothing selected), then the decayed copies.
        assert idx.tolist() == [0, 1, 3, 2, 4]
        w = math.exp(-1 / 0.5)
        torch.testing.assert_close(out.cpu(), torch.tensor([0.5, 0.5, 0.5, 0.5 * w, 0.5 * w]))
        idx, out = vgops.temporal_soft_nms(seg, sc, "hard", 0.5, 0.5, 1e-3)
        assert idx.tolist() == [0, 1, 3]

    def test_min_score_and_max_keep(self, gen, device):
        seg, sc = random_problem(gen, 120, device=device, span=30.0)
        full_i, full_s = vgops.temporal_soft_nms(seg, sc, "gaussian", 0.3, 0.5, 0.2)
        assert (full_s >= 0.2).all()
        for k in (0, 1, 5, len(full_i), len(full_i) + 3):
            idx, out = vgops.temporal_soft_nms(seg, sc, "gaussian", 0.3, 0.5, 0.2, k)
            assert idx.tolist() == full_i[:k].tolist() and out.tolist() == full_s[:k].tolist()
        # Every score below min_score: nothing is selected (mmcv would return the best one).
        idx, out = vgops.temporal_soft_nms(seg, sc * 0.1, "linear", 0.3, 0.5, 0.2)
        assert idx.shape == (0,) and out.shape == (0,)

    def test_negative_min_score_keeps_everything(self, gen, device):
        seg, sc = random_problem(gen, 60, device=device, span=10.0)
        idx, _ = vgops.temporal_soft_nms(seg, sc, "hard", 0.1, 0.5, float("-inf"))
        assert sorted(idx.tolist()) == list(range(60))  # suppressed ones follow with score 0

    def test_empty(self, device):
        idx, out = vgops.temporal_soft_nms(torch.zeros(0, 2, device=device), torch.zeros(0, device=device))
        assert idx.shape == (0,) and out.shape == (0,) and idx.dtype == torch.long and out.dtype == torch.float32

    def test_non_finite_scores_rejected(self, device):
        seg = torch.tensor([[0.0, 1.0], [2.0, 3.0]], device=device)
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="scores must be finite"):
                vgops.temporal_soft_nms(seg, torch.tensor([0.5, bad], device=device))

    def test_non_contiguous_inputs(self, gen, device):
        seg, sc = random_problem(gen, 100, device=device)
        seg_t = seg.t().contiguous().t()
        sc_s = torch.stack([sc, sc], 1)[:, 0]
        assert_same_selection(vgops.temporal_soft_nms(seg_t, sc_s, "linear", 0.3),
                              reference.temporal_soft_nms(seg, sc, "linear", 0.3))

    def test_mixed_dtypes_compute_in_float64(self, gen, device):
        seg, sc = random_problem(gen, 100, device=device)
        got = vgops.temporal_soft_nms(seg.float(), sc, "gaussian")
        assert got[1].dtype == torch.float64
        assert_same_selection(got, reference.temporal_soft_nms(seg.float().double(), sc, "gaussian"), 1e-12, 1e-15)


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTemporalSoftNMSPadded:
    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("b,n", [(1, 1), (3, 9), (4, 150)])
    @pytest.mark.parametrize("max_keep", [0, 4, None])
    def test_float64_against_reference(self, gen, device, method, b, n, max_keep):
        seg, sc, valid = random_batch(gen, b, n, device=device, span=40.0)
        got = vgops.temporal_soft_nms_padded(seg, sc, method, 0.3, 0.5, 1e-3, max_keep, valid)
        want = reference.temporal_soft_nms_padded(seg, sc, method, 0.3, 0.5, 1e-3, max_keep, valid)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(got[2], want[2], rtol=0, atol=0)

    @pytest.mark.parametrize("method", METHODS)
    def test_rows_equal_unpadded(self, gen, device, method):
        seg, sc, valid = random_batch(gen, 5, 90, dtype=torch.float32, device=device, span=30.0)
        for mask in (valid, None):
            idx, out, ok = vgops.temporal_soft_nms_padded(seg, sc, method, 0.3, 0.5, 1e-3, 40, mask)
            assert idx.shape == out.shape == ok.shape == (5, 40) and out.dtype == torch.float32
            for b in range(5):
                members = torch.arange(90, device=device) if mask is None else torch.nonzero(mask[b]).flatten()
                want_i, want_s = vgops.temporal_soft_nms(seg[b, members], sc[b, members], method, 0.3, 0.5, 1e-3, 40)
                k = len(want_i)
                assert ok[b].tolist() == [True] * k + [False] * (40 - k)
                assert idx[b, :k].tolist() == members[want_i].tolist() and (idx[b, k:] == -1).all()
                torch.testing.assert_close(out[b, :k], want_s, rtol=0, atol=0)
                assert (out[b, k:] == 0).all()

    def test_masked_scores_are_not_read(self, device):
        seg = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [0.2, 1.0]]], device=device)
        sc = torch.tensor([[0.9, float("nan"), 0.8]], device=device)
        valid = torch.tensor([[True, False, True]], device=device)
        idx, out, ok = vgops.temporal_soft_nms_padded(seg, sc, "linear", 0.5, 0.5, 0.1, 3, valid)
        assert idx.tolist() == [[0, 2, -1]] and ok.tolist() == [[True, True, False]]
        torch.testing.assert_close(out.cpu(), torch.tensor([[0.9, 0.8 * 0.2, 0.0]]))

    def test_non_finite_among_valid(self, device):
        seg = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]], device=device)
        sc = torch.tensor([[0.5, float("inf"), 0.7]], device=device)
        if device == "cpu":
            with pytest.raises(ValueError, match=r"scores must be finite among the valid segments, found inf at \[0, 1\]"):
                vgops.temporal_soft_nms_padded(seg, sc, max_keep=3)
        else:  # no host synchronisation to raise with: counts as masked out
            idx, _, ok = vgops.temporal_soft_nms_padded(seg, sc, max_keep=3)
            assert idx.tolist() == [[2, 0, -1]] and ok.tolist() == [[True, True, False]]

    def test_empty(self, device):
        for b, n, k in [(0, 5, 3), (3, 0, 4), (2, 6, 0), (0, 0, None)]:
            seg = torch.zeros(b, n, 2, device=device)
            idx, out, ok = vgops.temporal_soft_nms_padded(seg, torch.zeros(b, n, device=device, dtype=torch.float16),
                                                          max_keep=k)
            want_k = n if k is None else k
            assert idx.shape == out.shape == ok.shape == (b, want_k)
            assert out.dtype == torch.float16 and not ok.any() and (idx == -1).all()


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_large_problem(gen, device):
    """Tens of thousands of segments in one problem (one CUDA block), against the CPU kernel."""
    if device == "cpu":
        pytest.skip("the CPU kernel is the oracle here")
    seg, sc = random_problem(gen, 30000, span=3000.0)
    for method in METHODS:
        want = vgops.temporal_soft_nms(seg, sc, method, 0.3, 0.5, 1e-3, 2000)
        got = vgops.temporal_soft_nms(seg.to(device), sc.to(device), method, 0.3, 0.5, 1e-3, 2000)
        assert_same_selection((got[0].cpu(), got[1].cpu()), want, 1e-12, 1e-15)
    seg_b, sc_b, valid = random_batch(gen, 4, 20000, device=device, span=2000.0)
    got = vgops.temporal_soft_nms_padded(seg_b, sc_b, "gaussian", 0.3, 0.5, 1e-3, 500, valid)
    want = vgops.temporal_soft_nms_padded(seg_b.cpu(), sc_b.cpu(), "gaussian", 0.3, 0.5, 1e-3, 500, valid.cpu())
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-12, atol=1e-15)


class TestErrors:
    def test_messages(self):
        seg, sc = torch.rand(4, 2), torch.rand(4)
        with pytest.raises(ValueError, match=r"temporal_soft_nms: method must be one of \('gaussian', 'linear', 'hard'\), got 'soft'"):
            vgops.temporal_soft_nms(seg, sc, "soft")
        with pytest.raises(TypeError, match="temporal_soft_nms: method must be a str"):
            vgops.temporal_soft_nms(seg, sc, 2)
        with pytest.raises(ValueError, match="sigma must be a finite number > 0 for method='gaussian', got 0.0"):
            vgops.temporal_soft_nms(seg, sc, "gaussian", sigma=0.0)
        vgops.temporal_soft_nms(seg, sc, "linear", sigma=0.0)  # sigma is unused there
        with pytest.raises(ValueError, match="min_score must not be NaN"):
            vgops.temporal_soft_nms(seg, sc, min_score=float("nan"))
        with pytest.raises(TypeError, match="min_score must be a float, got str"):
            vgops.temporal_soft_nms(seg, sc, min_score="0.1")
        with pytest.raises(ValueError, match=r"temporal_soft_nms: scores must be \[N\] for segments \[N, 2\] = \(4, 2\), got shape \(3,\)"):
            vgops.temporal_soft_nms(seg, torch.rand(3))
        with pytest.raises(ValueError, match=r"max_keep must be >= 0, or None / -1 for all, got -5"):
            vgops.temporal_soft_nms(seg, sc, max_keep=-5)
        with pytest.raises(ValueError, match=r"temporal_soft_nms_padded: valid_mask must be a bool tensor \[B, N\] = \(1, 4\), got torch.bool of shape \(4,\)"):
            vgops.temporal_soft_nms_padded(seg[None], sc[None], valid_mask=torch.ones(4, dtype=torch.bool))
        with pytest.raises(ValueError, match=r"temporal_soft_nms_padded: segments must be a segment tensor 3-d"):
            vgops.temporal_soft_nms_padded(seg, sc)

    def test_kernel_checks_direct_calls(self):
        seg, sc = torch.rand(4, 2), torch.rand(4)
        with pytest.raises(ValueError, match='method must be "gaussian", "linear" or "hard", got "box"'):
            torch.ops.vgops.temporal_soft_nms(seg, sc, "box", 0.3, 0.5, 1e-3, -1)
        with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
            torch.ops.vgops.temporal_soft_nms(seg, sc, "gaussian", 0.3, -1.0, 1e-3, -1)
        with pytest.raises(ValueError, match=r"scores must be a 2-d tensor \[B, N\]"):
            torch.ops.vgops.temporal_soft_nms_padded(seg[None], sc, "linear", 0.3, 0.5, 1e-3, 2, None)


class TestRegistration:
    def test_opcheck(self, gen):
        seg, sc = random_problem(gen, 40)
        for method in METHODS:
            torch.library.opcheck(torch.ops.vgops.temporal_soft_nms.default, (seg, sc, method, 0.3, 0.5, 1e-3, -1))
        torch.library.opcheck(torch.ops.vgops.temporal_soft_nms.default, (seg.float(), sc.half(), "linear", 0.3, 0.5,
                                                                         1e-3, 5))
        seg_b, sc_b, valid = random_batch(gen, 3, 30)
        torch.library.opcheck(torch.ops.vgops.temporal_soft_nms_padded.default,
                              (seg_b, sc_b, "gaussian", 0.3, 0.5, 1e-3, 10, valid))
        torch.library.opcheck(torch.ops.vgops.temporal_soft_nms_padded.default,
                              (seg_b.float(), sc_b.float(), "hard", 0.3, 0.5, 1e-3, -1, None))

    def test_compile_fullgraph(self, gen):
        def top_moments(segments, scores):
            idx, decayed = vgops.temporal_soft_nms(segments, scores, "gaussian", 0.3, 0.5, 1e-3, 20)
            return segments[idx], decayed

        compiled = torch.compile(top_moments, fullgraph=True, backend="aot_eager")
        seg, sc = random_problem(gen, 60, dtype=torch.float32)
        for got, want in zip(compiled(seg, sc), top_moments(seg, sc)):
            torch.testing.assert_close(got, want)

    def test_compile_fullgraph_padded_inductor(self, gen):
        def rescored(segments, scores, valid):
            idx, decayed, ok = vgops.temporal_soft_nms_padded(segments, scores, "linear", 0.3, 0.5, 1e-3, 12, valid)
            picked = torch.gather(segments, 1, idx.clamp(min=0).unsqueeze(-1).expand(-1, -1, 2))
            return picked * ok.unsqueeze(-1), decayed.softmax(-1), idx

        compiled = torch.compile(rescored, fullgraph=True)
        for b, n in [(4, 50), (6, 80)]:
            seg, sc, valid = random_batch(gen, b, n, dtype=torch.float32)
            torch.testing.assert_close(compiled(seg, sc, valid), rescored(seg, sc, valid))


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 60), method=st.sampled_from(METHODS), thr=st.floats(0.0, 1.0),
       sigma=st.floats(0.05, 5.0), min_score=st.sampled_from([0.0, 1e-3, 0.1, 0.5, -0.5]),
       max_keep=st.one_of(st.none(), st.integers(0, 70)), ties=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_property_soft_nms(n, method, thr, sigma, min_score, max_keep, ties, seed):
    gen = torch.Generator().manual_seed(seed)
    seg, sc = random_problem(gen, n, span=25.0)
    if ties:
        sc = torch.randint(1, 4, (n,), generator=gen).double() / 4
    got = vgops.temporal_soft_nms(seg, sc, method, thr, sigma, min_score, max_keep)
    assert_same_selection(got, reference.temporal_soft_nms(seg, sc, method, thr, sigma, min_score, max_keep),
                          1e-12, 1e-15)
    assert (got[1] >= min_score).all()
    # Distinct scores, no ties at 0 (min_score > 0) and the best >= min_score: the published
    # algorithm agrees.
    if not ties and min_score > 0:
        if n and sc.max() >= min_score:
            want_i, _ = published_soft_nms(seg, sc, method, thr, sigma, min_score, hard_ge=False)
            assert got[0].tolist() == want_i[:len(got[0])]
