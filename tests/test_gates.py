"""cross_gate (FSM Eq. 2) and self_guided (FSM Eq. 3): values, gradients, dtypes, registration."""
import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference

# Tolerances against the float64 reference, per input dtype (inputs of size ~1-10).
TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3),
       torch.bfloat16: (1.6e-2, 1.6e-2)}
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

OPS = {"cross_gate": (vgops.cross_gate, reference.cross_gate, 4),
       "self_guided": (vgops.self_guided, reference.self_guided, 3)}


def _inputs(gen, n, shape, dtype=torch.float64, device="cpu", scale=3.0, grad=False):
    ts = [(torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype=dtype, device=device)
          for _ in range(n)]
    return [t.requires_grad_() for t in ts] if grad else ts


def test_hand_computed():
    x_s, x_c = torch.tensor([2.0, -1.0]), torch.tensor([4.0, 3.0])
    g_s, g_c = torch.tensor([0.0, 100.0]), torch.tensor([0.0, -100.0])
    # sigmoid(0) = 0.5 -> 0.5 * 2 + 0.5 * 4 = 3; sigmoid(-100) ~ 0, sigmoid(100) ~ 1 -> 3.
    torch.testing.assert_close(vgops.cross_gate(x_s, x_c, g_s, g_c), torch.tensor([3.0, 3.0]))
    torch.testing.assert_close(vgops.self_guided(torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([1.0])),
                               torch.tensor([2.0]))


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", OPS)
class TestAgainstReference:
    @pytest.mark.parametrize("shape", [(7,), (2, 3, 5), (2, 100, 49, 16), (1, 33, 1)])
    def test_float64(self, gen, device, name, shape):
        fn, ref, n = OPS[name]
        xs = _inputs(gen, n, shape, device=device)
        out = fn(*xs)
        assert out.shape == shape and out.dtype == torch.float64
        torch.testing.assert_close(out, ref(*xs), rtol=1e-13, atol=1e-13)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtypes_forward_backward(self, gen, device, name, dtype):
        fn, ref, n = OPS[name]
        xs = _inputs(gen, n, (3, 50, 17), dtype=dtype, device=device, grad=True)
        out = fn(*xs)
        assert out.dtype == dtype
        xs64 = [x.detach().double().requires_grad_() for x in xs]
        out64 = ref(*xs64)
        rtol, atol = TOL[dtype]
        torch.testing.assert_close(out.double(), out64, rtol=rtol, atol=atol * 10)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(device)
        grads = torch.autograd.grad(out, xs, w.to(dtype))
        grads64 = torch.autograd.grad(out64, xs64, w)
        for g, g64 in zip(grads, grads64):
            assert g.dtype == dtype
            torch.testing.assert_close(g.double(), g64, rtol=rtol, atol=atol * 10)

    def test_gradcheck(self, gen, device, name):
        fn, _, n = OPS[name]
        xs = _inputs(gen, n, (2, 3, 4), device=device, scale=1.5, grad=True)
        assert torch.autograd.gradcheck(fn, xs)

    def test_non_contiguous_and_empty(self, gen, device, name):
        fn, ref, n = OPS[name]
        xs = [t.transpose(0, 1) for t in _inputs(gen, n, (6, 5), device=device)]
        torch.testing.assert_close(fn(*xs), ref(*xs), rtol=1e-13, atol=1e-13)
        empty = [torch.zeros(0, 3, device=device, requires_grad=True) for _ in range(n)]
        out = fn(*empty)
        assert out.shape == (0, 3)
        out.sum().backward()
        assert all(e.grad.shape == (0, 3) for e in empty)

    def test_backend_reference_equals_cpp(self, gen, device, name):
        fn, _, n = OPS[name]
        xs = _inputs(gen, n, (4, 9), dtype=torch.float32, device=device)
        torch.testing.assert_close(fn(*xs, backend="cpp"), fn(*xs, backend="reference"))


@pytest.mark.parametrize("name", OPS)
class TestRegistration:
    def test_opcheck(self, gen, name):
        _, _, n = OPS[name]
        op = getattr(torch.ops.vgops, name).default
        xs = _inputs(gen, n, (3, 4), grad=True)
        torch.library.opcheck(op, tuple(xs))
        torch.library.opcheck(op, tuple(x.detach().float() for x in xs))
        g = torch.randn(3, 4, generator=gen, dtype=torch.float64)
        backward = getattr(torch.ops.vgops, f"_{name}_backward").default
        torch.library.opcheck(backward, (g, *[x.detach() for x in xs[: (4 if n == 4 else 2)]]))

    def test_compile_fullgraph(self, gen, name):
        fn, ref, n = OPS[name]

        def f(*xs):
            return fn(*xs).square().mean()

        compiled = torch.compile(f, fullgraph=True)
        xs = _inputs(gen, n, (4, 8), dtype=torch.float32, grad=True)
        loss = compiled(*xs)
        grads = torch.autograd.grad(loss, xs)
        loss_ref = ref(*xs).square().mean()
        grads_ref = torch.autograd.grad(loss_ref, xs)
        torch.testing.assert_close(loss, loss_ref)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g, gr)

    def test_autocast_and_mixed_dtypes(self, gen, name):
        fn, ref, n = OPS[name]
        xs = _inputs(gen, n, (5, 6), dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(*xs)
        assert out.dtype == torch.float32  # autocast does not change the op's dtype
        torch.testing.assert_close(out, ref(*xs))
        mixed = [xs[0].bfloat16()] + xs[1:]  # e.g. a gate logit from a bf16 linear layer
        out = fn(*mixed)
        assert out.dtype == torch.float32  # inputs promote to a common dtype
        torch.testing.assert_close(out, ref(*[m.float() for m in mixed]))


class TestErrors:
    def test_messages(self):
        a = torch.rand(3, 4)
        with pytest.raises(ValueError, match=r"cross_gate: g_c must have the shape of x_s \(3, 4\) \(no broadcasting\), got \(4,\)"):
            vgops.cross_gate(a, a, a, torch.rand(4))
        with pytest.raises(TypeError, match=r"self_guided: residual must be a floating-point tensor, got dtype torch.int64"):
            vgops.self_guided(a, a, torch.zeros(3, 4, dtype=torch.long))
        with pytest.raises(TypeError, match="h_gate must be a torch.Tensor"):
            vgops.self_guided(1.0, a, a)

    def test_kernel_checks_direct_calls(self):
        a = torch.rand(3, 4)
        with pytest.raises(ValueError, match="must have the shape of"):
            torch.ops.vgops.cross_gate(a, a, a, torch.rand(3, 5))
        with pytest.raises(ValueError, match="same dtype"):
            torch.ops.vgops.self_guided(a, a, a.double())
