"""dual_correlation / text_correlation (FSM Eq. 1) on the kv_attention kernel."""
import math

import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference

TOL = {torch.float64: (1e-11, 1e-11), torch.float32: (1e-4, 1e-5), torch.float16: (1e-2, 1e-2),
       torch.bfloat16: (5e-2, 5e-2)}
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _inputs(gen, B=2, T=3, L=5, M=4, d=8, dtype=torch.float64, device="cpu", grad=False):
    x = torch.randn(B, T, L, d, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    y = torch.randn(B, M, d, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    if grad:
        x.requires_grad_()
        y.requires_grad_()
    return x, y


def _masks(gen, B, T, M, device):
    y_mask = torch.rand(B, M, generator=gen) < 0.7
    y_mask[:, 0] = True
    y_mask[-1] = False  # one sentence with no valid word: x_c = 0 there
    x_mask = torch.rand(B, T, generator=gen) < 0.7
    x_mask[:, 0] = True
    return x_mask.to(device), y_mask.to(device)


def test_equations_by_hand():
    # One frame of 2 tokens, one word, d = 1, scale = 1.
    x = torch.tensor([[[[1.0], [2.0]]]], dtype=torch.float64)
    y = torch.tensor([[[3.0]]], dtype=torch.float64)
    x_s, x_c = vgops.dual_correlation(x, y, scale=1.0)
    w = torch.softmax(torch.tensor([[1.0, 2.0], [2.0, 4.0]], dtype=torch.float64), -1)
    torch.testing.assert_close(x_s.reshape(2), w @ torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(x_c.reshape(2), torch.tensor([3.0, 3.0], dtype=torch.float64))  # one word
    y_s, y_c = vgops.text_correlation(y, x, scale=1.0)
    torch.testing.assert_close(y_s.reshape(1), torch.tensor([3.0], dtype=torch.float64))
    torch.testing.assert_close(y_c.reshape(()), torch.softmax(torch.tensor([3.0, 6.0], dtype=torch.float64), 0)
                               @ torch.tensor([1.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("masked", [False, True])
    @pytest.mark.parametrize("scale", [None, 1.0])
    @pytest.mark.parametrize("shape", [dict(), dict(B=1, T=2, L=49, M=30, d=40), dict(B=2, T=1, L=300, M=3, d=33)])
    def test_float64_forward_backward(self, gen, device, masked, scale, shape):
        x, y = _inputs(gen, device=device, grad=True, **shape)
        B, T, _, _ = x.shape
        x_mask, y_mask = _masks(gen, B, T, y.shape[1], device) if masked else (None, None)
        outs = vgops.dual_correlation(x, y, y_mask, scale) + vgops.text_correlation(y, x, x_mask, y_mask, scale)
        refs = reference.dual_correlation(x, y, y_mask, scale) + reference.text_correlation(y, x, x_mask, y_mask, scale)
        ws = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device) for o in outs]
        for o, r in zip(outs, refs):
            assert o.shape == r.shape and o.dtype == torch.float64
            torch.testing.assert_close(o, r, rtol=1e-11, atol=1e-11)
        grads = torch.autograd.grad(outs, (x, y), ws)
        grads_ref = torch.autograd.grad(refs, (x, y), ws)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-10)
        if masked:
            assert (outs[1][-1] == 0).all()  # the sentence with no valid word

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtypes(self, gen, device, dtype):
        x, y = _inputs(gen, B=2, T=4, L=9, M=6, d=16, dtype=dtype, device=device, grad=True)
        x_mask, y_mask = _masks(gen, 2, 4, 6, device)
        outs = vgops.dual_correlation(x, y, y_mask) + vgops.text_correlation(y, x, x_mask, y_mask)
        x64, y64 = (t.detach().double().requires_grad_() for t in (x, y))
        refs = reference.dual_correlation(x64, y64, y_mask) + reference.text_correlation(y64, x64, x_mask, y_mask)
        rtol, atol = TOL[dtype]
        ws = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device) for o in outs]
        for o, r in zip(outs, refs):
            assert o.dtype == dtype
            torch.testing.assert_close(o.double(), r, rtol=rtol, atol=atol)
        grads = torch.autograd.grad(outs, (x, y), [w.to(dtype) for w in ws])
        grads_ref = torch.autograd.grad(refs, (x64, y64), ws)
        for g, gr in zip(grads, grads_ref):
            assert g.dtype == dtype
            torch.testing.assert_close(g.double(), gr, rtol=rtol, atol=atol * 4)

    def test_gradcheck(self, gen, device):
        x, y = _inputs(gen, B=2, T=2, L=3, M=3, d=4, device=device, grad=True)
        x_mask, y_mask = _masks(gen, 2, 2, 3, device)
        assert torch.autograd.gradcheck(lambda a, b: vgops.dual_correlation(a, b, y_mask), (x, y))
        assert torch.autograd.gradcheck(lambda a, b: vgops.text_correlation(b, a, x_mask, y_mask, 1.0), (x, y))

    def test_empty(self, gen, device):
        x, y = _inputs(gen, B=2, T=0, L=4, M=3, d=4, device=device, grad=True)
        x_s, x_c = vgops.dual_correlation(x, y)
        y_s, y_c = vgops.text_correlation(y, x)
        assert x_s.shape == x_c.shape == (2, 0, 4, 4) and y_s.shape == y_c.shape == (2, 3, 4)
        assert (y_c == 0).all()  # no visual token to attend to
        (x_s.sum() + x_c.sum() + y_s.sum() + y_c.sum()).backward()
        assert x.grad.shape == x.shape and y.grad.shape == y.shape

    def test_backend_reference_equals_cpp(self, gen, device):
        x, y = _inputs(gen, dtype=torch.float32, device=device)
        for a, b in zip(vgops.dual_correlation(x, y, backend="cpp"), vgops.dual_correlation(x, y, backend="reference")):
            torch.testing.assert_close(a, b)


class TestRegistration:
    def test_opcheck(self, gen):
        q = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        k = torch.randn(3, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        mask = torch.rand(3, 6, generator=gen) < 0.6
        op = torch.ops.vgops.kv_attention.default
        torch.library.opcheck(op, (q, k, mask, 0.5))
        torch.library.opcheck(op, (q, k, None, 1.0))
        torch.library.opcheck(op, (q.detach().float(), k.detach().float(), mask, 0.5))
        out, lse = op(q.detach(), k.detach(), mask, 0.5)
        torch.library.opcheck(torch.ops.vgops._kv_attention_backward.default,
                              (torch.randn_like(out), q.detach(), k.detach(), mask, out, lse, 0.5))

    def test_compile_fullgraph(self, gen):
        x, y = _inputs(gen, dtype=torch.float32, grad=True)
        _, y_mask = _masks(gen, 2, 3, 4, "cpu")

        def f(x, y):
            x_s, x_c = vgops.dual_correlation(x, y, y_mask)
            y_s, y_c = vgops.text_correlation(y, x, None, y_mask)
            return x_s.square().mean() + x_c.mean() + y_s.mean() + y_c.square().mean()

        def f_ref(x, y):
            x_s, x_c = reference.dual_correlation(x, y, y_mask)
            y_s, y_c = reference.text_correlation(y, x, None, y_mask)
            return x_s.square().mean() + x_c.mean() + y_s.mean() + y_c.square().mean()

        loss = torch.compile(f, fullgraph=True)(x, y)
        grads = torch.autograd.grad(loss, (x, y))
        loss_ref = f_ref(x, y)
        grads_ref = torch.autograd.grad(loss_ref, (x, y))
        torch.testing.assert_close(loss, loss_ref)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-5)

    def test_autocast(self, gen):
        x, y = _inputs(gen, dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_s, x_c = vgops.dual_correlation(x, y)
        assert x_s.dtype == x_c.dtype == torch.float32
        torch.testing.assert_close(x_s, reference.dual_correlation(x, y)[0])
        x_s, _ = vgops.dual_correlation(x.bfloat16(), y)  # mixed: promoted to float32
        assert x_s.dtype == torch.float32


class TestErrors:
    def test_messages(self):
        x, y = torch.rand(2, 3, 4, 8), torch.rand(2, 5, 8)
        with pytest.raises(ValueError, match=r"dual_correlation: x must be \[B, T, L, d\], got shape \(2, 3, 8\)"):
            vgops.dual_correlation(torch.rand(2, 3, 8), y)
        with pytest.raises(ValueError, match=r"y must be \[B, M, d\] = \[2, M, 8\]"):
            vgops.dual_correlation(x, torch.rand(2, 5, 7))
        with pytest.raises(ValueError, match=r"y_mask must be a bool tensor \[2, 5\], got torch.int64"):
            vgops.dual_correlation(x, y, torch.ones(2, 5, dtype=torch.long))
        with pytest.raises(ValueError, match=r"text_correlation: x_mask must be a bool tensor \[2, 3\]"):
            vgops.text_correlation(y, x, torch.ones(2, 4, dtype=torch.bool))
        with pytest.raises(ValueError, match="scale must be a finite float"):
            vgops.dual_correlation(x, y, scale=math.inf)

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match="key_mask must be a bool tensor"):
            torch.ops.vgops.kv_attention(torch.rand(2, 3, 4), torch.rand(2, 5, 4), torch.ones(2, 4, dtype=torch.bool), 1.0)
        with pytest.raises(ValueError, match="float32 or float64"):
            torch.ops.vgops.kv_attention(torch.rand(2, 3, 4).half(), torch.rand(2, 5, 4).half(), None, 1.0)


class TestGatedCorrelationModule:
    def test_matches_equations(self, gen):
        torch.manual_seed(0)
        mod = vgops.nn.GatedCorrelation(8, 16).double()
        x, y = _inputs(gen, B=2, T=3, L=4, M=5, d=8)
        x_mask, y_mask = _masks(gen, 2, 3, 5, "cpu")
        x_g, y_g = mod(x, y, x_mask, y_mask)
        # Eq. 1-3 written out with the reference attentions and plain torch.
        x_s, x_c = reference.dual_correlation(x, y, y_mask)
        v = mod.visual
        x_a = torch.sigmoid(v.ffn1(x_c)) * x_s + torch.sigmoid(v.ffn2(x_s)) * x_c
        torch.testing.assert_close(x_g, torch.sigmoid(v.ffn3(x_a)) * v.ffn4(x_a) + x)
        y_s, y_c = reference.text_correlation(y, x, x_mask, y_mask)
        t = mod.text
        y_a = torch.sigmoid(t.ffn1(y_c)) * y_s + torch.sigmoid(t.ffn2(y_s)) * y_c
        torch.testing.assert_close(y_g, torch.sigmoid(t.ffn3(y_a)) * t.ffn4(y_a) + y)
        (x_g.sum() + y_g.sum()).backward()
        assert all(p.grad is not None for p in mod.parameters())
        assert "ffn_dim=16" in repr(mod)

    def test_compile_fullgraph(self, gen):
        mod = vgops.nn.GatedCorrelation(8, 16)
        x, y = _inputs(gen, B=1, T=2, L=4, M=3, d=8, dtype=torch.float32)
        x_g, y_g = torch.compile(mod, fullgraph=True)(x, y)
        rx, ry = mod(x, y)
        torch.testing.assert_close(x_g, rx)
        torch.testing.assert_close(y_g, ry)
