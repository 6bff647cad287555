"""calibration_gate (IA-Net Eq. 7-12) and vgops.nn.CalibrationGate."""
import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference

# Tolerances against the float64 reference, per input dtype (D up to 64, unit-scale weights / sqrt(2D)).
TOL = {torch.float64: (1e-11, 1e-11), torch.float32: (1e-4, 1e-4), torch.float16: (1e-2, 1e-2),
       torch.bfloat16: (6e-2, 6e-2)}
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _inputs(gen, lead, d, dtype=torch.float64, device="cpu", grad=False):
    def r(*shape, scale=1.0):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype=dtype, device=device)
    ts = [r(*lead, d), r(*lead, d), r(2 * d, 2 * d, scale=(2 * d) ** -0.5 * 2), r(2 * d)]
    return [t.requires_grad_() for t in ts] if grad else ts


def test_equations_by_hand():
    # D = 1, W = [[1, 0], [0, 1]] (r = x, z_pre = m), b = 0: out = s(m) x + (1 - s(m)) tanh(x).
    x, m = torch.tensor([[0.5], [2.0]], dtype=torch.float64), torch.tensor([[0.0], [-1.0]], dtype=torch.float64)
    w, b = torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    z = torch.sigmoid(m)
    torch.testing.assert_close(vgops.calibration_gate(x, m, w, b), z * x + (1 - z) * torch.tanh(x))


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("lead,d", [((5,), 3), ((2, 7), 16), ((3, 4, 5), 8), ((1,), 1)])
    def test_float64_forward_backward(self, gen, device, lead, d):
        xs = _inputs(gen, lead, d, device=device, grad=True)
        out, ref = vgops.calibration_gate(*xs), reference.calibration_gate(*xs)
        assert out.shape == (*lead, d)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(device)
        for g, gr in zip(torch.autograd.grad(out, xs, w), torch.autograd.grad(ref, xs, w)):
            torch.testing.assert_close(g, gr, rtol=1e-11, atol=1e-11)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_dtypes(self, gen, device, dtype):
        xs = _inputs(gen, (4, 30), 64, dtype=dtype, device=device, grad=True)
        out = vgops.calibration_gate(*xs)
        assert out.dtype == dtype
        xs64 = [x.detach().double().requires_grad_() for x in xs]
        out64 = reference.calibration_gate(*xs64)
        rtol, atol = TOL[dtype]
        torch.testing.assert_close(out.double(), out64, rtol=rtol, atol=atol)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(device)
        grads = torch.autograd.grad(out, xs, w.to(dtype))
        grads64 = torch.autograd.grad(out64, xs64, w)
        for name, g, g64 in zip(("x", "m", "weight", "bias"), grads, grads64):
            assert g.dtype == dtype
            scale = g64.abs().max().item()  # weight/bias gradients sum over 120 rows
            torch.testing.assert_close(g.double(), g64, rtol=rtol, atol=atol * max(1.0, scale), msg=name)

    def test_gradcheck(self, gen, device):
        xs = _inputs(gen, (2, 3), 4, device=device, grad=True)
        assert torch.autograd.gradcheck(vgops.calibration_gate, xs)

    def test_gradient_through_pre(self, gen, device):
        # The raw op returns (out, pre); a gradient reaching pre is added in the fused backward.
        x, m, w, b = _inputs(gen, (6,), 3, device=device, grad=True)
        assert torch.autograd.gradcheck(lambda *a: torch.ops.vgops.calibration_gate(*a), (x, m, w, b))

    def test_empty_and_non_contiguous(self, gen, device):
        x, m, w, b = _inputs(gen, (0,), 4, device=device, grad=True)
        out = vgops.calibration_gate(x, m, w, b)
        assert out.shape == (0, 4)
        out.sum().backward()
        assert w.grad.shape == (8, 8) and (w.grad == 0).all() and x.grad.shape == (0, 4)
        x, m, w, b = _inputs(gen, (4, 5), 6, device=device)
        args = (x.transpose(0, 1), m.transpose(0, 1), w.t(), b)
        torch.testing.assert_close(vgops.calibration_gate(*args), reference.calibration_gate(*args), rtol=1e-12, atol=1e-12)


class TestModule:
    def test_module_matches_linear_formulation(self, gen):
        torch.manual_seed(0)
        gate = vgops.nn.CalibrationGate(8).double()
        linear = torch.nn.Linear(16, 16).double()
        linear.load_state_dict(gate.state_dict())
        x, m = _inputs(gen, (3, 5), 8)[:2]
        r, z_pre = linear(torch.cat([x, m], -1)).chunk(2, -1)
        z = torch.sigmoid(z_pre)
        torch.testing.assert_close(gate(x, m), z * x + (1 - z) * torch.tanh(r))
        assert "dim=8" in repr(gate)
        out = gate(x, m).sum()
        out.backward()
        assert gate.weight.grad.shape == (16, 16) and gate.bias.grad.shape == (16,)


class TestRegistration:
    def test_opcheck(self, gen):
        xs = _inputs(gen, (5,), 3, grad=True)
        torch.library.opcheck(torch.ops.vgops.calibration_gate.default, tuple(xs))
        torch.library.opcheck(torch.ops.vgops.calibration_gate.default, tuple(x.detach().float() for x in xs))
        x, m, w, b = (t.detach() for t in xs)
        _, pre = torch.ops.vgops.calibration_gate(x, m, w, b)
        g = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        torch.library.opcheck(torch.ops.vgops._calibration_gate_epilogue.default, (x, pre))
        torch.library.opcheck(torch.ops.vgops._calibration_gate_epilogue_backward.default, (g, x, pre))
        torch.library.opcheck(torch.ops.vgops._calibration_gate_backward.default, (g, None, x, m, w, pre))

    def test_compile_fullgraph(self, gen):
        gate = vgops.nn.CalibrationGate(16)

        def f(x, m):
            return gate(x, m).square().mean()

        compiled = torch.compile(f, fullgraph=True)
        x, m = (t.float().requires_grad_() for t in _inputs(gen, (2, 10), 16)[:2])
        loss = compiled(x, m)
        grads = torch.autograd.grad(loss, (x, m, gate.weight, gate.bias))
        loss_ref = reference.calibration_gate(x, m, gate.weight, gate.bias).square().mean()
        grads_ref = torch.autograd.grad(loss_ref, (x, m, gate.weight, gate.bias))
        torch.testing.assert_close(loss, loss_ref)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-5)

    def test_autocast(self, gen):
        gate = vgops.nn.CalibrationGate(8)
        x, m = (t.float() for t in _inputs(gen, (4,), 8)[:2])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = gate(x, m)
            out_mixed = gate(x.bfloat16(), m.bfloat16())  # bf16 activations, float32 parameters
        assert out.dtype == torch.float32 and out_mixed.dtype == torch.float32
        torch.testing.assert_close(out, reference.calibration_gate(x, m, gate.weight, gate.bias))


class TestErrors:
    def test_messages(self):
        x = torch.rand(3, 4)
        w, b = torch.rand(8, 8), torch.rand(8)
        with pytest.raises(ValueError, match=r"weight must be \[2D, 2D\] = \[8, 8\] for x \[..., 4\], got \(4, 8\)"):
            vgops.calibration_gate(x, x, torch.rand(4, 8), b)
        with pytest.raises(ValueError, match=r"bias must be \[2D\] = \[8\]"):
            vgops.calibration_gate(x, x, w, torch.rand(4))
        with pytest.raises(ValueError, match=r"m must have the shape of x"):
            vgops.calibration_gate(x, torch.rand(1, 4), w, b)
        with pytest.raises(ValueError, match="CalibrationGate: dim must be >= 1"):
            vgops.nn.CalibrationGate(0)

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match=r"weight must be \[2D, 2D\]"):
            torch.ops.vgops.calibration_gate(torch.rand(3, 4), torch.rand(3, 4), torch.rand(8, 4), torch.rand(8))
        with pytest.raises(ValueError, match=r"pre must be \[N, 2D\]"):
            torch.ops.vgops._calibration_gate_epilogue(torch.rand(3, 4), torch.rand(3, 4))
