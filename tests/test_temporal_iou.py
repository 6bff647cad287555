import pytest
import torch
from conftest import cpu_and_cuda, needs_torchvision, random_segments

import vgops
from vgops import reference

# Tolerances against the float64 reference, per input dtype (IoU lies in [0, 1]).
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}


class TestValues:
    def test_hand_computed(self):
        a = torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.0, 4.0], [2.0, 2.0]], dtype=torch.float64)
        b = torch.tensor([[1.0, 3.0], [2.0, 3.0], [1.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
        # overlap 1 of union 3; disjoint; [1,2] inside [0,4]; two empty segments (union 0)
        expected = torch.tensor([1 / 3, 0.0, 0.25, 0.0], dtype=torch.float64)
        torch.testing.assert_close(vgops.temporal_iou(a, b, aligned=True), expected, rtol=0, atol=1e-15)
        pair = vgops.temporal_iou(a, b)
        assert pair.shape == (4, 4)
        torch.testing.assert_close(pair.diagonal(), expected, rtol=0, atol=1e-15)
        assert pair[0, 1] == 0  # [0, 2] and [2, 3] only touch
        assert pair[2, 0] == 0.5  # [1, 3] inside [0, 4]
    def test_touching_and_identical(self):
        a = torch.tensor([[0.0, 2.0], [5.0, 7.5]])
        b = torch.tensor([[2.0, 3.0], [5.0, 7.5]])
        torch.testing.assert_close(vgops.temporal_iou(a, b, aligned=True), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("lead_a,lead_b", [((), ()), ((3,), (3,)), ((2, 3), (3,)), ((4, 1), (1, 5))])
    def test_pairwise_float64(self, gen, device, lead_a, lead_b):
        a = random_segments(gen, *lead_a, 17, device=device)
        b = random_segments(gen, *lead_b, 9, device=device)
        out = vgops.temporal_iou(a, b)
        ref = reference.temporal_iou(a, b)
        assert out.shape == ref.shape == torch.broadcast_shapes(lead_a, lead_b) + (17, 9)
        torch.testing.assert_close(out, ref, rtol=0, atol=TOL[torch.float64])
        assert (out > 0).any() and (out == 0).any()  # the inputs exercise overlap and disjointness

    def test_aligned_float64_broadcast(self, gen, device):
        a = random_segments(gen, 5, 40, span=20.0, device=device)
        b = random_segments(gen, 40, span=20.0, device=device)
        out = vgops.temporal_iou(a, b, aligned=True)
        assert out.shape == (5, 40)
        torch.testing.assert_close(out, reference.temporal_iou(a, b, aligned=True), rtol=0, atol=TOL[torch.float64])

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
    def test_dtypes(self, gen, device, dtype):
        a = random_segments(gen, 2, 33, span=10.0, max_len=5.0, dtype=dtype, device=device)
        b = random_segments(gen, 2, 21, span=10.0, max_len=5.0, dtype=dtype, device=device)
        out = vgops.temporal_iou(a, b)
        assert out.dtype == dtype
        ref = reference.temporal_iou(a.double(), b.double())
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=TOL[dtype])
        ref_same = reference.temporal_iou(a, b)  # the reference also computes half in float32
        torch.testing.assert_close(out, ref_same, rtol=0, atol=TOL[dtype] if dtype != torch.float64 else 0)

    def test_mixed_dtypes_promote(self, gen, device):
        a = random_segments(gen, 6, dtype=torch.float32, device=device)
        b = random_segments(gen, 4, dtype=torch.float64, device=device)
        assert vgops.temporal_iou(a, b).dtype == torch.float64

    @pytest.mark.parametrize("aligned", [False, True])
    def test_gradients_match_reference(self, gen, device, aligned):
        a = random_segments(gen, 3, 12, span=20.0, device=device).requires_grad_()
        b = random_segments(gen, 3, 12 if aligned else 7, span=20.0, device=device).requires_grad_()
        out = vgops.temporal_iou(a, b, aligned=aligned)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(device)
        ga, gb = torch.autograd.grad((out * w).sum(), (a, b))
        ra, rb = torch.autograd.grad((reference.temporal_iou(a, b, aligned) * w).sum(), (a, b))
        torch.testing.assert_close(ga, ra, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gb, rb, rtol=1e-10, atol=1e-12)
        assert ga.abs().sum() > 0

    def test_subgradients_at_ties_and_touching(self, device):
        """Where IoU has no derivative: tied starts split the gradient of max(s1, s2) evenly;
        touching segments (overlap exactly 0) get none (minimum-norm subgradient). A 4000 x 4000
        float32 benchmark hit one touching pair among 16M and showed a 0.0186 gradient gap."""
        f64 = dict(dtype=torch.float64, device=device)
        a = torch.tensor([[0.0, 2.0], [0.0, 2.0], [57.859, 80.127]], **f64).requires_grad_()
        b = torch.tensor([[0.0, 3.0], [2.0, 3.0], [45.712, 57.859]], **f64).requires_grad_()
        ga, gb = torch.autograd.grad(vgops.temporal_iou(a, b, aligned=True).sum(), (a, b))
        # [0, 2] vs [0, 3]: inter 2, union 3; d IoU/d inter = (u + i) / u^2 = 5/9, d IoU/d len = -2/9.
        expected_a = torch.tensor([[2 / 9 - 5 / 18, -2 / 9 + 5 / 9], [0, 0], [0, 0]], **f64)
        expected_b = torch.tensor([[2 / 9 - 5 / 18, -2 / 9], [0, 0], [0, 0]], **f64)
        torch.testing.assert_close(ga, expected_a, rtol=0, atol=1e-15)
        torch.testing.assert_close(gb, expected_b, rtol=0, atol=1e-15)
        ra, rb = torch.autograd.grad(reference.temporal_iou(a, b, aligned=True).sum(), (a, b))
        torch.testing.assert_close((ra, rb), (expected_a, expected_b), rtol=0, atol=1e-15)
        w = torch.arange(9, **f64).view(3, 3)  # pairwise: [0, 2] also touches [2, 3] off the diagonal
        got = torch.autograd.grad((vgops.temporal_iou(a, b) * w).sum(), (a, b))
        ref = torch.autograd.grad((reference.temporal_iou(a, b) * w).sum(), (a, b))
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-14)

    @pytest.mark.parametrize("aligned", [False, True])
    def test_gradcheck(self, gen, device, aligned):
        a = random_segments(gen, 2, 6, span=8.0, device=device).requires_grad_()
        b = random_segments(gen, 2, 6 if aligned else 5, span=8.0, device=device).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, y: vgops.temporal_iou(x, y, aligned=aligned), (a, b))

    def test_empty(self, device):
        e = torch.zeros(0, 2, device=device)
        s = torch.tensor([[0.0, 1.0]], device=device)
        assert vgops.temporal_iou(e, s).shape == (0, 1)
        assert vgops.temporal_iou(s, e).shape == (1, 0)
        assert vgops.temporal_iou(torch.zeros(0, 3, 2, device=device), torch.zeros(0, 4, 2, device=device)).shape == (0, 3, 4)
        assert vgops.temporal_iou(e, e, aligned=True).shape == (0,)
        a = e.clone().requires_grad_()
        vgops.temporal_iou(a, s).sum().backward()
        assert a.grad.shape == (0, 2)

    def test_backend_reference_equals_cpp(self, gen, device):
        a = random_segments(gen, 11, device=device)
        b = random_segments(gen, 13, device=device)
        torch.testing.assert_close(vgops.temporal_iou(a, b, backend="reference"), vgops.temporal_iou(a, b, backend="cpp"))


class TestRegistration:
    @pytest.mark.parametrize("aligned", [False, True])
    def test_opcheck(self, gen, aligned):
        a = random_segments(gen, 2, 5, dtype=torch.float64).requires_grad_()
        b = random_segments(gen, 2, 5 if aligned else 4, dtype=torch.float64).requires_grad_()
        torch.library.opcheck(torch.ops.vgops.temporal_iou.default, (a, b, aligned))
        torch.library.opcheck(torch.ops.vgops.temporal_iou.default, (a.detach().float(), b.detach().float(), aligned))

    def test_compile_fullgraph_forward_backward(self, gen):
        def iou_loss(pred, gt):
            return (1 - vgops.temporal_iou(pred, gt, aligned=True)).mean()

        compiled = torch.compile(iou_loss, fullgraph=True, backend="aot_eager")
        pred = random_segments(gen, 4, 8, span=10.0).requires_grad_()
        gt = random_segments(gen, 4, 8, span=10.0)
        loss = compiled(pred, gt)
        (g,) = torch.autograd.grad(loss, pred)
        (g_ref,) = torch.autograd.grad(iou_loss(pred, gt), pred)
        torch.testing.assert_close(loss, iou_loss(pred, gt))
        torch.testing.assert_close(g, g_ref)

    def test_compile_fullgraph_inductor_pairwise(self, gen):
        compiled = torch.compile(lambda x, y: vgops.temporal_iou(x, y).amax(-1), fullgraph=True)
        a, b = random_segments(gen, 3, 10, dtype=torch.float32), random_segments(gen, 3, 6, dtype=torch.float32)
        torch.testing.assert_close(compiled(a, b), reference.temporal_iou(a, b).amax(-1))

    def test_autocast_keeps_input_dtype(self, gen):
        a, b = random_segments(gen, 5, dtype=torch.float32), random_segments(gen, 6, dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = vgops.temporal_iou(a, b)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, reference.temporal_iou(a, b))


class TestErrors:
    def test_bad_shapes_and_dtypes(self):
        seg = torch.rand(4, 2)
        with pytest.raises(ValueError, match=r"temporal_iou: a must be a segment tensor .*got shape \(4, 3\)"):
            vgops.temporal_iou(torch.rand(4, 3), seg)
        with pytest.raises(ValueError, match=r"temporal_iou: b must be a floating-point tensor, got dtype torch.int64"):
            vgops.temporal_iou(seg, torch.zeros(4, 2, dtype=torch.long))
        with pytest.raises(ValueError, match=r"leading dims .* must broadcast, got \(2, 4, 2\) and \(3, 4, 2\)"):
            vgops.temporal_iou(torch.rand(2, 4, 2), torch.rand(3, 4, 2))
        with pytest.raises(ValueError, match=r"aligned=True needs broadcastable"):
            vgops.temporal_iou(torch.rand(4, 2), torch.rand(5, 2), aligned=True)
        with pytest.raises(TypeError, match="must be a torch.Tensor, got list"):
            vgops.temporal_iou([[0.0, 1.0]], seg)

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match="same batch size"):
            torch.ops.vgops.temporal_iou(torch.rand(2, 3, 2), torch.rand(3, 3, 2))
        with pytest.raises(ValueError, match="3-d tensor"):
            torch.ops.vgops.temporal_iou(torch.rand(3, 2), torch.rand(3, 2))

    def test_backend_selection(self, monkeypatch):
        a = torch.rand(3, 2)
        with pytest.raises(ValueError, match=r"backend must be one of .*got 'cuda'"):
            vgops.temporal_iou(a, a, backend="cuda")
        monkeypatch.setenv("VGOPS_BACKEND", "reference")
        torch.testing.assert_close(vgops.temporal_iou(a, a), reference.temporal_iou(a, a))
        monkeypatch.setenv("VGOPS_BACKEND", "nope")
        with pytest.raises(ValueError, match="got 'nope'"):
            vgops.temporal_iou(a, a)

    def test_forced_backend_that_cannot_serve(self, monkeypatch):
        from vgops import _backend

        monkeypatch.setattr(_backend, "HAS_EXTENSION", False)
        a = torch.rand(3, 2)
        with pytest.raises(RuntimeError, match=r"backend 'cpp' cannot serve these inputs: the C\+\+ extension"):
            vgops.temporal_iou(a, a, backend="cpp")
        torch.testing.assert_close(vgops.temporal_iou(a, a), reference.temporal_iou(a, a))  # auto falls back


@needs_torchvision
def test_matches_torchvision_box_iou(gen):
    import torchvision
    from conftest import as_boxes

    a, b = random_segments(gen, 50, dtype=torch.float32), random_segments(gen, 40, dtype=torch.float32)
    torch.testing.assert_close(vgops.temporal_iou(a, b), torchvision.ops.box_iou(as_boxes(a), as_boxes(b)))


@needs_torchvision
def test_gradients_match_torchvision_box_iou_at_ties_and_touching():
    """box_iou's gradient (autograd through torch.max/min and clamp(min=0)) on tied and touching
    segments, which random inputs never produce: vgops gives the minimum-norm subgradient, and so
    does torch from 2.14 on (earlier clamp passed the gradient at 0)."""
    import torchvision
    from conftest import as_boxes

    probe = torch.zeros(1, requires_grad=True)
    probe.clamp(min=0).sum().backward()
    if probe.grad.item() != 0:
        pytest.skip(f"torch {torch.__version__}'s clamp(min=0) passes the gradient at 0 (changed in 2.14)")
    a = torch.tensor([[0.0, 2.0], [0.0, 2.0], [1.0, 4.0], [3.0, 5.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.0, 3.0], [2.0, 3.0], [1.0, 4.0], [0.0, 3.0]], dtype=torch.float64, requires_grad=True)
    w = torch.linspace(-1, 1, 16, dtype=torch.float64).view(4, 4)
    got = torch.autograd.grad((vgops.temporal_iou(a, b) * w).sum(), (a, b))
    tv = torch.autograd.grad((torchvision.ops.box_iou(as_boxes(a), as_boxes(b)) * w).sum(), (a, b))
    torch.testing.assert_close(got, tv, rtol=0, atol=1e-14)
