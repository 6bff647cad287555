"""additive_attention (GLF Eq. 2): fused scores in O(B·P·S) memory, recomputing backward."""
import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference

TOL = {torch.float64: (1e-11, 1e-11), torch.float32: (1e-4, 1e-5), torch.float16: (1e-2, 1e-2),
       torch.bfloat16: (5e-2, 5e-2)}


def _inputs(gen, B=2, P=7, S=5, d=6, Dv=4, dtype=torch.float64, device="cpu", grad=False, masked=True):
    def rand(*shape):
        t = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        return t.requires_grad_() if grad else t

    feats = (rand(B, P, d), rand(B, S, d), rand(d), rand(B, S, Dv))
    mask = None
    if masked:
        mask = torch.rand(B, S, generator=gen) < 0.7
        mask[:, 0] = True
        if B > 1:
            mask[-1] = False  # a sentence with no valid word: zero weights, zero context
        mask = mask.to(device)
    return feats, mask


def test_equation_by_hand():
    # One patch, two words, d = 1: alpha_s = w tanh(a + b_s).
    a = torch.tensor([[[0.5]]], dtype=torch.float64)
    b = torch.tensor([[[0.1], [-2.0]]], dtype=torch.float64)
    w = torch.tensor([3.0], dtype=torch.float64)
    values = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    context, weights = vgops.additive_attention(a, b, w, values, return_weights=True)
    alpha = 3.0 * torch.tanh(torch.tensor([0.6, -1.5], dtype=torch.float64))
    torch.testing.assert_close(weights.reshape(2), torch.softmax(alpha, 0))
    torch.testing.assert_close(context.reshape(2), torch.softmax(alpha, 0))  # values are one-hot
    only_first = torch.tensor([[True, False]])
    assert vgops.additive_attention(a, b, w, values, only_first).reshape(2).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("shape", [dict(), dict(B=1, P=1, S=1, d=1, Dv=1), dict(B=3, P=300, S=20, d=33, Dv=5),
                                       dict(B=2, P=1000, S=3, d=8, Dv=2)])
    @pytest.mark.parametrize("masked", [False, True])
    def test_float64_forward_backward(self, gen, device, shape, masked):
        feats, mask = _inputs(gen, device=device, grad=True, masked=masked, **shape)
        outs = vgops.additive_attention(*feats, mask, return_weights=True)
        refs = reference.additive_attention(*feats, mask)
        for o, r in zip(outs, refs):
            assert o.shape == r.shape and o.dtype == torch.float64
            torch.testing.assert_close(o, r, rtol=1e-11, atol=1e-11)
        ws = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device) for o in outs]
        grads = torch.autograd.grad(outs, feats, ws)
        grads_ref = torch.autograd.grad(refs, feats, ws)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-10)
        if masked and shape.get("B", 2) > 1:
            assert (outs[0][-1] == 0).all() and (outs[1][-1] == 0).all()

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
    def test_dtypes(self, gen, device, dtype):
        feats, mask = _inputs(gen, B=2, P=40, S=6, d=16, Dv=8, dtype=dtype, device=device, grad=True)
        outs = vgops.additive_attention(*feats, mask, return_weights=True)
        f64 = [f.detach().double().requires_grad_() for f in feats]
        refs = reference.additive_attention(*f64, mask)
        rtol, atol = TOL[dtype]
        for o, r in zip(outs, refs):
            assert o.dtype == dtype
            torch.testing.assert_close(o.double(), r, rtol=rtol, atol=atol)
        w = torch.randn(outs[0].shape, generator=gen, dtype=torch.float64).to(device)
        grads = torch.autograd.grad(outs[0], feats, w.to(dtype))
        grads_ref = torch.autograd.grad(refs[0], f64, w)
        for g, gr in zip(grads, grads_ref):
            assert g.dtype == dtype
            # d w sums B*P*S terms: compare relative to its size.
            torch.testing.assert_close(g.double(), gr, rtol=rtol * 4, atol=atol * 4 * max(1.0, gr.abs().max().item()))

    def test_gradcheck(self, gen, device):
        feats, mask = _inputs(gen, B=2, P=3, S=3, d=2, Dv=2, device=device, grad=True)
        assert torch.autograd.gradcheck(lambda *f: vgops.additive_attention(*f, mask, True), feats)
        assert torch.autograd.gradcheck(lambda *f: vgops.additive_attention(*f, None, True), feats)

    def test_empty(self, gen, device):
        for shape in (dict(B=0), dict(P=0), dict(S=0), dict(d=0), dict(Dv=0)):
            feats, _ = _inputs(gen, device=device, grad=True, masked=False, **shape)
            context, weights = vgops.additive_attention(*feats, return_weights=True)
            ref_c, ref_w = reference.additive_attention(*feats)
            assert context.shape == ref_c.shape and weights.shape == ref_w.shape
            torch.testing.assert_close(context, ref_c)
            (context.sum() + weights.sum()).backward()
            assert all(f.grad is not None and f.grad.shape == f.shape for f in feats)

    def test_backend_reference_equals_cpp(self, gen, device):
        feats, mask = _inputs(gen, dtype=torch.float32, device=device)
        torch.testing.assert_close(vgops.additive_attention(*feats, mask, backend="cpp"),
                                   vgops.additive_attention(*feats, mask, backend="reference"))


class TestRegistration:
    def test_opcheck(self, gen):
        feats, mask = _inputs(gen, B=2, P=5, S=4, d=3, Dv=2, grad=True)
        op = torch.ops.vgops.additive_attention.default
        torch.library.opcheck(op, (*feats, mask))
        torch.library.opcheck(op, (*feats, None))
        detached = [f.detach() for f in feats]
        context, weights = op(*detached, mask)
        torch.library.opcheck(torch.ops.vgops._additive_attention_backward.default,
                              (torch.randn_like(context), torch.randn_like(weights), *detached, weights))
        torch.library.opcheck(torch.ops.vgops._additive_scores.default, tuple(detached[:3]))
        torch.library.opcheck(torch.ops.vgops._additive_scores_backward.default,
                              (torch.randn_like(weights), *detached[:3]))

    def test_compile_fullgraph(self, gen):
        feats, mask = _inputs(gen, dtype=torch.float32, grad=True)

        def f(a, b, w, v):
            context, weights = vgops.additive_attention(a, b, w, v, mask, return_weights=True)
            return context.square().mean() + weights[..., 0].mean()

        loss = torch.compile(f, fullgraph=True)(*feats)
        grads = torch.autograd.grad(loss, feats)
        c, wts = reference.additive_attention(*feats, mask)
        loss_ref = c.square().mean() + wts[..., 0].mean()
        torch.testing.assert_close(loss, loss_ref)
        for g, gr in zip(grads, torch.autograd.grad(loss_ref, feats)):
            torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-5)

    def test_deterministic_across_threads(self, gen):
        feats, mask = _inputs(gen, B=2, P=700, S=7, d=24, Dv=3, dtype=torch.float32, grad=True)
        results = []
        before = torch.get_num_threads()
        try:
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                out = vgops.additive_attention(*feats, mask)
                results.append((out, *torch.autograd.grad(out.square().sum(), feats)))
        finally:
            torch.set_num_threads(before)
        for r in results[1:]:
            assert all(torch.equal(a, b) for a, b in zip(results[0], r))


class TestErrors:
    def test_messages(self, gen):
        (a, b, w, v), mask = _inputs(gen)
        with pytest.raises(ValueError, match=r"additive_attention: a must be \[B, P, d\], got shape \(7, 6\)"):
            vgops.additive_attention(a[0], b, w, v)
        with pytest.raises(ValueError, match=r"b must be \[B, S, d\] = \[2, S, 6\] for a \(2, 7, 6\), got \(2, 5, 4\)"):
            vgops.additive_attention(a, b[..., :4], w, v)
        with pytest.raises(ValueError, match=r"w must be \[d\] = \[6\], got \(5,\)"):
            vgops.additive_attention(a, b, w[:5], v)
        with pytest.raises(ValueError, match=r"values must be \[B, S, Dv\] = \[2, 5, Dv\], got \(2, 4, 4\)"):
            vgops.additive_attention(a, b, w, v[:, :4])
        with pytest.raises(ValueError, match=r"s_mask must be a bool tensor \[B, S\] = \[2, 5\], got torch.float32"):
            vgops.additive_attention(a, b, w, v, mask.float())
        with pytest.raises(TypeError, match="w must be a floating-point tensor"):
            vgops.additive_attention(a, b, w.long(), v)
        if torch.cuda.is_available():
            with pytest.raises(ValueError, match="one device"):
                vgops.additive_attention(a, b, w.cuda(), v)

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match=r"w must be \[d\] = \[3\]"):
            torch.ops.vgops._additive_scores(torch.rand(1, 2, 3), torch.rand(1, 4, 3), torch.rand(2))
        with pytest.raises(ValueError, match=r"grad_alpha must be \[1, 2, 4\]"):
            torch.ops.vgops._additive_scores_backward(torch.rand(1, 2, 5), torch.rand(1, 2, 3), torch.rand(1, 4, 3),
                                                      torch.rand(3))
