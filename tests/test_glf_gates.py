"""vgops.nn.TextualGate (GLF Eq. 3) and vgops.nn.MultiScaleGatedFusion (GLF Eq. 9): float64
references written like the equations, both backends, gradcheck, state_dict round trip."""
import io

import pytest
import torch

import vgops
from vgops.nn import MultiScaleGatedFusion, TextualGate

BACKENDS = ["auto", "reference"]


def _ref_textual(mod, p, r):
    g = torch.sigmoid(r @ mod.gate.weight.T + mod.gate.bias)       # g = sigmoid(W r + b)
    return torch.cat([p * g, r], -1)                                # [p ⊙ g ; r]


def _ref_fusion(mod, x):
    S = x.shape[1]
    xs = [x[:, j] for j in range(S)]
    g1 = [torch.sigmoid(xs[j] @ mod.w_distil[j] + mod.b_distil[j]) for j in range(S)]
    g2 = [torch.sigmoid(xs[j] @ mod.w_reset[j] + mod.b_reset[j]) for j in range(S)]
    out = []
    for j in range(S):
        m = sum((mod.eta[k, j] * g1[k] * xs[k] for k in range(S) if k != j), torch.zeros_like(xs[j]))
        out.append((1 + g2[j]) * xs[j] + (1 - g2[j]) * m)
    return torch.stack(out, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_textual_gate_matches_equation(gen, backend, monkeypatch):
    monkeypatch.setenv("VGOPS_BACKEND", backend)
    mod = TextualGate(8).double()
    p = torch.randn(2, 5, 3, 8, generator=gen, dtype=torch.float64)
    r = torch.randn(2, 5, 3, 8, generator=gen, dtype=torch.float64)
    out = mod(p, r)
    assert out.shape == (2, 5, 3, 16)
    torch.testing.assert_close(out, _ref_textual(mod, p, r), rtol=1e-12, atol=1e-12)


def test_textual_gate_by_hand():
    mod = TextualGate(2).double()
    with torch.no_grad():
        mod.gate.weight.zero_()
        mod.gate.bias.copy_(torch.tensor([100.0, -100.0]))         # gate open on channel 0, shut on 1
    p, r = torch.tensor([[3.0, 4.0]], dtype=torch.float64), torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(mod(p, r), torch.tensor([[3.0, 0.0, 1.0, 2.0]], dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 3, 8), (2, 1, 4, 8), (3, 2, 2, 3, 8)])
def test_fusion_matches_equation(gen, backend, shape, monkeypatch):
    monkeypatch.setenv("VGOPS_BACKEND", backend)
    mod = MultiScaleGatedFusion(8, shape[1]).double()
    with torch.no_grad():
        mod.eta.copy_(torch.rand(shape[1], shape[1], generator=gen, dtype=torch.float64) * 2 - 0.5)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    out = mod(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, _ref_fusion(mod, x), rtol=1e-12, atol=1e-12)


def test_fusion_single_scale_is_reset_gate_only(gen):
    # S = 1: nothing to receive, y = (1 + g2) x.
    mod = MultiScaleGatedFusion(4, 1).double()
    x = torch.randn(2, 1, 5, 4, generator=gen, dtype=torch.float64)
    g2 = torch.sigmoid(x[:, 0] @ mod.w_reset[0] + mod.b_reset[0])
    torch.testing.assert_close(mod(x)[:, 0], (1 + g2) * x[:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(gen, backend, monkeypatch):
    monkeypatch.setenv("VGOPS_BACKEND", backend)
    tg = TextualGate(4).double()
    p = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, r, w, b: torch.func.functional_call(
        tg, {"gate.weight": w, "gate.bias": b}, (p, r)), (p, r, tg.gate.weight, tg.gate.bias))
    mf = MultiScaleGatedFusion(4, 3).double()
    x = torch.randn(2, 3, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in mf.named_parameters()]
    assert torch.autograd.gradcheck(
        lambda x, *ps: torch.func.functional_call(mf, dict(zip(names, ps)), (x,)),
        (x, *mf.parameters()))


def test_backends_agree_float32(gen, monkeypatch):
    mf = MultiScaleGatedFusion(16, 3)
    x = torch.randn(2, 3, 7, 16, generator=gen)
    a = mf(x)
    monkeypatch.setenv("VGOPS_BACKEND", "reference")
    torch.testing.assert_close(a, mf(x), rtol=1e-5, atol=1e-5)


def test_state_dict_round_trip(gen):
    for make in (lambda: TextualGate(6), lambda: MultiScaleGatedFusion(6, 3)):
        a, b = make(), make()
        buf = io.BytesIO()
        torch.save(a.state_dict(), buf)
        buf.seek(0)
        b.load_state_dict(torch.load(buf, weights_only=True))
        assert "off_diagonal" not in a.state_dict()                  # a derived buffer, not saved
        x = torch.randn(2, 3, 4, 6, generator=gen)
        args = (x, torch.randn_like(x)) if isinstance(a, TextualGate) else (x,)
        torch.testing.assert_close(a(*args), b(*args))


def test_errors():
    with pytest.raises(ValueError, match="dim"):
        TextualGate(0)
    with pytest.raises(ValueError, match=r"p and r must both be \[..., 4\]"):
        TextualGate(4)(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"x must be \[B, S=3"):
        MultiScaleGatedFusion(4, 3)(torch.zeros(2, 2, 5, 4))


def test_exported_from_vgops_nn():
    assert vgops.nn.TextualGate is TextualGate and vgops.nn.MultiScaleGatedFusion is MultiScaleGatedFusion
