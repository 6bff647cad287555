import math

import pytest
import torch
from conftest import cpu_and_cuda, needs_torchvision

import vgops
from vgops import reference

TOL = {torch.float64: dict(rtol=0, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5),
       torch.float16: dict(rtol=2e-3, atol=2e-3), torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}


def random_segments(gen, K, B, length, dtype=torch.float64, device="cpu"):
    """[K, 3] rows (batch index, start, end): most inside [0, length), some partly or wholly
    outside, about 10% degenerate (start == end) and 5% reversed."""
    start = torch.rand(K, generator=gen, dtype=torch.float64) * length * 1.5 - length * 0.25
    span = torch.rand(K, generator=gen, dtype=torch.float64) * length * 0.6
    kind = torch.rand(K, generator=gen, dtype=torch.float64)
    span = torch.where(kind < 0.1, torch.zeros_like(span), span)
    span = torch.where((kind >= 0.1) & (kind < 0.15), -0.3 * span, span)
    batch = torch.randint(0, max(B, 1), (K,), generator=gen).double()
    return torch.stack([batch, start, start + span], 1).to(dtype=dtype, device=device)


def random_features(gen, *shape, dtype=torch.float64, device="cpu"):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def naive_roi_align_1d(features, segment, L, scale, sampling_ratio, aligned):
    """One segment, transliterated from the definition with Python loops (checks the oracle)."""
    B, C, T = features.shape
    b, s, e = int(segment[0]), float(segment[1]), float(segment[2])
    offset = 0.5 if aligned else 0.0
    start = s * scale - offset
    length = e * scale - offset - start
    if not aligned:
        length = max(length, 1.0)
    bin_size = length / L
    grid = sampling_ratio if sampling_ratio > 0 else max(math.ceil(length / L), 0)
    out = torch.zeros(C, L, dtype=torch.float64)
    for p in range(L):
        for i in range(grid):
            x = start + p * bin_size + (i + 0.5) * bin_size / grid
            if x < -1 or x > T:
                continue
            x = max(x, 0.0)
            lo = int(x)
            if lo >= T - 1:
                lo = hi = T - 1
                x = float(lo)
            else:
                hi = lo + 1
            frac = x - lo
            out[:, p] += (1 - frac) * features[b, :, lo] + frac * features[b, :, hi]
        out[:, p] /= max(grid, 1)
    return out


class TestValues:
    def test_linear_sequence_gives_bin_centres(self):
        features = (torch.arange(20, dtype=torch.float64) * 2 + 1).expand(1, 3, 20) * torch.tensor([[[1.0], [-1.0], [0.5]]],
                                                                                                     dtype=torch.float64)
        seg = torch.tensor([[0.0, 3.0, 11.0]], dtype=torch.float64)
        out = vgops.roi_align_1d(features, seg, 4, sampling_ratio=3)
        centres = 2.5 + 2 * torch.arange(4, dtype=torch.float64) + 1  # start 3 - 0.5, bins of 2
        expected = (centres * 2 + 1)[None] * torch.tensor([[1.0], [-1.0], [0.5]], dtype=torch.float64)
        torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("aligned", [True, False])
    @pytest.mark.parametrize("sampling_ratio", [-1, 1, 3])
    def test_reference_and_kernel_match_the_definition(self, gen, aligned, sampling_ratio):
        features = random_features(gen, 3, 4, 17)
        seg = random_segments(gen, 12, 3, 20.0)
        seg[0, 1:] = torch.tensor([5.0, 5.0])
        seg[1, 1:] = torch.tensor([-40.0, -25.0])
        args = (5, 0.8, sampling_ratio, aligned)
        naive = torch.stack([naive_roi_align_1d(features, s, *args) for s in seg])
        torch.testing.assert_close(reference.roi_align_1d(features, seg, *args), naive, rtol=0, atol=1e-12)
        torch.testing.assert_close(vgops.roi_align_1d(features, seg, *args), naive, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("aligned", [True, False])
    @pytest.mark.parametrize("sampling_ratio", [-1, 2])
    def test_float64_values_and_gradients(self, gen, device, aligned, sampling_ratio):
        features = random_features(gen, 3, 6, 40, device=device).requires_grad_()
        seg = random_segments(gen, 50, 3, 40.0 / 0.5, device=device)
        args = (8, 0.5, sampling_ratio, aligned)
        out = vgops.roi_align_1d(features, seg, *args)
        ref = reference.roi_align_1d(features, seg, *args)
        assert out.shape == (50, 6, 8) and out.is_contiguous()
        torch.testing.assert_close(out, ref, **TOL[torch.float64])
        assert (out != 0).any() and (out == 0).any()
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(device)
        (g,) = torch.autograd.grad((out * w).sum(), features)
        (g_ref,) = torch.autograd.grad((ref * w).sum(), features)
        torch.testing.assert_close(g, g_ref, **TOL[torch.float64])

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
    def test_dtypes(self, gen, device, dtype):
        features = random_features(gen, 2, 8, 30, dtype=dtype, device=device)
        seg = random_segments(gen, 20, 2, 30.0, dtype=dtype, device=device)
        out = vgops.roi_align_1d(features, seg, 6)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), reference.roi_align_1d(features.double(), seg.double(), 6), **TOL[dtype])

    def test_gradcheck(self, gen, device):
        features = random_features(gen, 2, 3, 9, device=device).requires_grad_()
        seg = random_segments(gen, 6, 2, 9.0, device=device)
        assert torch.autograd.gradcheck(lambda f: vgops.roi_align_1d(f, seg, 3), (features,))
        assert torch.autograd.gradcheck(lambda f: vgops.roi_align_1d(f, seg, 2, 1.0, 2, False), (features,))

    def test_non_contiguous(self, gen, device):
        base = random_features(gen, 3, 50, 7, device=device)
        features = base.transpose(1, 2)  # [B, C=7, T=50], time-major storage
        seg = random_segments(gen, 40, 3, 50.0, device=device)
        seg_view = seg.t().contiguous().t()  # the same values, column-major
        assert not features.is_contiguous() and not seg_view.is_contiguous()
        f = features.detach().requires_grad_()
        out = vgops.roi_align_1d(f, seg_view, 5)
        fc = features.contiguous().requires_grad_()
        out_c = vgops.roi_align_1d(fc, seg, 5)
        torch.testing.assert_close(out, out_c, rtol=0, atol=0)
        (g,) = torch.autograd.grad(out.square().sum(), f)
        (g_c,) = torch.autograd.grad(out_c.square().sum(), fc)
        torch.testing.assert_close(g, g_c, rtol=0, atol=0)

    @pytest.mark.parametrize("shape,K", [((0, 4, 10), 0), ((2, 4, 10), 0), ((2, 0, 10), 5), ((2, 4, 0), 5)])
    def test_empty(self, gen, device, shape, K):
        features = random_features(gen, *shape, device=device).requires_grad_()
        seg = random_segments(gen, K, shape[0], 10.0, device=device)
        out = vgops.roi_align_1d(features, seg, 3)
        assert out.shape == (K, shape[1], 3)
        assert (out == 0).all()
        out.sum().backward()
        assert features.grad.shape == features.shape and (features.grad == 0).all()

    def test_extreme_segments_are_safe(self, gen, device):
        features = random_features(gen, 1, 2, 12, device=device)
        nan, inf = float("nan"), float("inf")
        seg = torch.tensor([[0, nan, 3.0], [0, 0.0, inf], [0, -inf, inf], [0, 0.0, 1e30], [0, 2.0, 9.0]],
                           dtype=torch.float64, device=device)
        out = vgops.roi_align_1d(features, seg, 3)
        assert torch.isfinite(out).all() and (out[:4] == 0).all()
        torch.testing.assert_close(out[4:], reference.roi_align_1d(features, seg[4:], 3))
        long = torch.tensor([[0, -3.0, 2000.0]], dtype=torch.float64, device=device)  # 667 samples per bin
        torch.testing.assert_close(vgops.roi_align_1d(features, long, 3), reference.roi_align_1d(features, long, 3),
                                   **TOL[torch.float64])

    def test_backward_is_deterministic(self, gen, device):
        features = random_features(gen, 4, 32, 64, dtype=torch.float32, device=device).requires_grad_()
        seg = random_segments(gen, 300, 4, 64.0, device=device).float()
        grad_out = torch.randn(300, 32, 8, generator=gen).to(device)

        def grad():
            return torch.autograd.grad(vgops.roi_align_1d(features, seg, 8), features, grad_out)[0]

        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        try:
            torch.use_deterministic_algorithms(True)
            first = grad()
            assert torch.equal(grad(), first)
            torch.set_num_threads(1)
            assert torch.equal(grad(), first)
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)
        if device == "cpu":
            assert torch.equal(grad(), first)
        else:
            torch.testing.assert_close(grad(), first, rtol=1e-5, atol=1e-5)

    def test_backend_reference_equals_cpp(self, gen, device):
        features = random_features(gen, 2, 3, 20, device=device)
        seg = random_segments(gen, 9, 2, 20.0, device=device)
        torch.testing.assert_close(vgops.roi_align_1d(features, seg, 4, backend="reference"),
                                   vgops.roi_align_1d(features, seg, 4, backend="cpp"), **TOL[torch.float64])


class TestRegistration:
    def test_opcheck(self, gen):
        features = random_features(gen, 2, 3, 16).requires_grad_()
        seg = random_segments(gen, 7, 2, 16.0)
        op = torch.ops.vgops.roi_align_1d.default
        torch.library.opcheck(op, (features, seg, 4, 1.0, -1, True))
        quick = ("test_schema", "test_faketensor")  # other dtypes, and the backward op: schema and fake kernel
        torch.library.opcheck(op, (features.detach().float(), seg.float(), 3, 0.5, 2, False), test_utils=quick)
        torch.library.opcheck(op, (features.detach().bfloat16(), seg, 3), test_utils=quick)
        torch.library.opcheck(torch.ops.vgops._roi_align_1d_backward.default,
                              (random_features(gen, 7, 3, 4), seg, 2, 16, 1.0, -1, True), test_utils=quick)

    def test_compile_fullgraph_forward_backward(self, gen):
        def proposal_loss(features, seg):
            return vgops.roi_align_1d(features, seg, 4, 0.5).mean(-1).square().sum()

        compiled = torch.compile(proposal_loss, fullgraph=True, backend="aot_eager")
        features = random_features(gen, 2, 5, 24).requires_grad_()
        seg = random_segments(gen, 10, 2, 48.0)
        loss = compiled(features, seg)
        (g,) = torch.autograd.grad(loss, features)
        (g_ref,) = torch.autograd.grad(proposal_loss(features, seg), features)
        torch.testing.assert_close(loss, proposal_loss(features, seg))
        torch.testing.assert_close(g, g_ref)

    def test_compile_fullgraph_inductor(self, gen):
        compiled = torch.compile(lambda f, s: vgops.roi_align_1d(f, s, 4).amax(-1), fullgraph=True)
        features = random_features(gen, 2, 5, 24, dtype=torch.float32)
        seg = random_segments(gen, 10, 2, 24.0, dtype=torch.float32)
        torch.testing.assert_close(compiled(features, seg), reference.roi_align_1d(features, seg, 4).amax(-1))

    def test_autocast_keeps_input_dtype(self, gen):
        features = random_features(gen, 2, 3, 12, dtype=torch.float32)
        seg = random_segments(gen, 5, 2, 12.0, dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = vgops.roi_align_1d(features, seg, 3)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, vgops.roi_align_1d(features, seg, 3), rtol=0, atol=0)

    def test_module(self, gen):
        features = random_features(gen, 2, 3, 12)
        seg = random_segments(gen, 5, 2, 12.0)
        m = vgops.RoIAlign1d(4, temporal_scale=0.5, sampling_ratio=2, aligned=False)
        assert "output_len=4, temporal_scale=0.5, sampling_ratio=2, aligned=False" in repr(m)
        torch.testing.assert_close(m(features, seg), vgops.roi_align_1d(features, seg, 4, 0.5, 2, False))


class TestErrors:
    def test_bad_inputs(self):
        f, s = torch.rand(2, 3, 10), torch.tensor([[0.0, 1.0, 4.0]])
        with pytest.raises(ValueError, match=r"roi_align_1d: features must be a 3-d tensor \[B, C, T\], got shape "
                                             r"\(3, 10\)"):
            vgops.roi_align_1d(f[0], s, 2)
        with pytest.raises(ValueError, match=r"segments must be \[K, 3\] rows of \(batch index, start, end\), got "
                                             r"shape \(1, 2\)"):
            vgops.roi_align_1d(f, s[:, 1:], 2)
        with pytest.raises(TypeError, match="segments must be a floating-point tensor, got dtype torch.int64"):
            vgops.roi_align_1d(f, s.long(), 2)
        with pytest.raises(ValueError, match="output_len must be positive, got 0"):
            vgops.roi_align_1d(f, s, 0)
        with pytest.raises(TypeError, match="output_len must be an int, got float"):
            vgops.roi_align_1d(f, s, 2.0)
        with pytest.raises(ValueError, match="temporal_scale must be a finite number > 0, got inf"):
            vgops.roi_align_1d(f, s, 2, temporal_scale=float("inf"))
        with pytest.raises(ValueError, match=r"all tensors must be on one device"):
            vgops.roi_align_1d(f, s.to("meta"), 2)

    @pytest.mark.parametrize("index,shown", [(2.0, "2.0"), (-1.0, "-1.0"), (0.5, "0.5"), (float("nan"), "nan")])
    def test_batch_index_out_of_range_is_rejected(self, index, shown):
        f = torch.rand(2, 3, 10)
        s = torch.tensor([[0.0, 1.0, 4.0], [index, 2.0, 5.0]])
        with pytest.raises(ValueError, match=rf"segments\[:, 0\] must hold batch indices, integers in \[0, 2\) for "
                                             rf"features \[B=2, C, T\], got {shown} at row 1"):
            vgops.roi_align_1d(f, s, 2)
        # Direct calls of the op (no Python check) are rejected by the CPU kernel, never read out of bounds.
        with pytest.raises(ValueError, match=r"integers in \[0, 2\), got .* at row 1"):
            torch.ops.vgops.roi_align_1d(f, s, 2)
        with pytest.raises(ValueError, match=r"integers in \[0, 2\)"):
            torch.ops.vgops._roi_align_1d_backward(torch.rand(2, 3, 2), s, 2, 10, 1.0, -1, True)

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match=r"features must be 3-d \[B, C, T\]"):
            torch.ops.vgops.roi_align_1d(torch.rand(3, 10), torch.rand(1, 3), 2)
        with pytest.raises(ValueError, match="output_len must be positive"):
            torch.ops.vgops.roi_align_1d(torch.rand(1, 3, 10), torch.zeros(1, 3), 0)
        with pytest.raises(ValueError, match=r"grad must be \[K, C, L\] for segments \[K, 3\]"):
            torch.ops.vgops._roi_align_1d_backward(torch.rand(2, 3, 2), torch.zeros(3, 3), 1, 10, 1.0, -1, True)


@needs_torchvision
@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_matches_torchvision_on_one_row_maps(gen, device, aligned, sampling_ratio):
    """roi_align_1d equals torchvision.ops.roi_align on features [B, C, 1, T] with boxes
    (start, 0, end, 1) and output size (1, L)."""
    from torchvision.ops import roi_align

    features = random_features(gen, 3, 4, 30, dtype=torch.float32, device=device).requires_grad_()
    seg = random_segments(gen, 25, 3, 30.0, dtype=torch.float32, device=device)
    out = vgops.roi_align_1d(features, seg, 6, 1.0, sampling_ratio, aligned)
    zeros, ones = torch.zeros_like(seg[:, 0]), torch.ones_like(seg[:, 0])
    rois = torch.stack([seg[:, 0], seg[:, 1], zeros, seg[:, 2], ones], 1)
    tv = roi_align(features[:, :, None], rois, (1, 6), 1.0, sampling_ratio, aligned)[:, :, 0]
    torch.testing.assert_close(out, tv, rtol=1e-5, atol=1e-6)
    w = torch.randn(out.shape, generator=gen).to(device)
    (g,) = torch.autograd.grad((out * w).sum(), features)
    (g_tv,) = torch.autograd.grad((tv * w).sum(), features)
    torch.testing.assert_close(g, g_tv, rtol=1e-5, atol=1e-6)


def test_cuda_kernels_registered():
    for op in ("roi_align_1d", "_roi_align_1d_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"vgops::{op}", "CPU"), op
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"vgops::{op}", "CUDA") == vgops.build_info()["cuda"]
