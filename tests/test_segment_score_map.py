import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference

OPS = ("segment_score_map", "segment_weighted_token_loss", "segment_weighted_outside_mean",
       "segment_weighted_inside_mean")
# Tolerances against the float64 reference, relative to the magnitude of the result.
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}


def random_inputs(gen, B, Ns, Nv, device="cpu", dtype=torch.float64, masks=True, sparse=False):
    """P [B, Ns, Nv], W [B, Nv, Nv], x [B, Nv] and masks. With masks, sample 0 keeps one token and
    one clip when sparse (the all-masked-but-one case), others are random with >= 1 valid token."""
    P = torch.randn(B, Ns, Nv, generator=gen, dtype=torch.float64)
    W = torch.randn(B, Nv, Nv, generator=gen, dtype=torch.float64)
    x = torch.randn(B, Nv, generator=gen, dtype=torch.float64)
    tm = torch.ones(B, Ns, dtype=torch.bool)
    cm = torch.ones(B, Nv, dtype=torch.bool)
    if masks:
        tm = torch.rand(B, Ns, generator=gen) < 0.7
        cm = torch.rand(B, Nv, generator=gen) < 0.7
        tm[torch.arange(B), torch.randint(Ns, (B,), generator=gen)] = True
        if sparse:
            tm[0] = False
            tm[0, Ns - 1] = True
            cm[0] = False
            cm[0, Nv // 2] = True
    move = dict(device=device)
    return (P.to(dtype=dtype, **move), W.to(dtype=dtype, **move), x.to(dtype=dtype, **move), tm.to(**move),
            cm.to(**move))


def make_call(op, P, W, x, tm, cm, fn="sigmoid"):
    """(differentiable inputs, f) where f(impl, *inputs) calls op of impl (vgops or reference)."""
    if op == "segment_score_map":
        return (P,), lambda impl, p: impl.segment_score_map(p, tm, cm)
    if op == "segment_weighted_token_loss":
        return (P, W), lambda impl, p, w: impl.segment_weighted_token_loss(p, w, tm, cm, fn=fn)
    return (x, W), lambda impl, a, w: getattr(impl, op)(a, w, cm)


def call(op, P, W, x, tm, cm, fn="sigmoid", impl=vgops):
    inputs, f = make_call(op, P, W, x, tm, cm, fn)
    return f(impl, *inputs)


def check_against_reference(gen, op, P, W, x, tm, cm, fn="sigmoid", tol=1e-10, gtol=1e-9):
    """Values and gradients (float64) of vgops against the naive reference."""
    inputs, f = make_call(op, P, W, x, tm, cm, fn)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out, ref = f(vgops, *leaves), f(reference, *leaves)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert_close_rel(out, ref, tol)
    g = finite_grad(ref, gen)
    for a, b in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(ref, leaves, g)):
        assert_close_rel(a, b, gtol)


def finite_grad(out, gen):
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device)
    return torch.where(torch.isfinite(out), g.to(out.dtype), torch.zeros_like(out))


def assert_close_rel(got, want, tol):
    got, want = got.double().cpu(), want.double().cpu()
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    fin = torch.isfinite(want)
    scale = max(1.0, want[fin].abs().max().item()) if fin.any() else 1.0
    torch.testing.assert_close(got[fin], want[fin], rtol=tol, atol=tol * scale)


class TestValues:
    def test_hand_computed_score_map(self):
        P = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 4.0, 1.0]]], dtype=torch.float64)
        sc = vgops.segment_score_map(P)[0]
        # column sums [1, 6, 4], Ns = 2, column minima [0, 2, 1]
        assert sc[0, 0] == 1 / 2 - (2 + 1) / 2
        assert sc[1, 1] == 6 / 2 - (0 + 1) / 2
        assert sc[0, 2] == 11 / 6  # the whole video: outside term 0
        torch.testing.assert_close(sc[0, 1], torch.tensor(7 / 4 - 1, dtype=torch.float64))
        assert torch.isneginf(sc[1, 0]) and torch.isneginf(sc[2, 0]) and torch.isneginf(sc[2, 1])

    def test_masked_clip_inside_is_skipped(self):
        P = torch.tensor([[[1.0, 100.0, 3.0, 5.0]]], dtype=torch.float64)
        cm = torch.tensor([[True, False, True, True]])
        sc = vgops.segment_score_map(P, None, cm)[0]
        assert sc[0, 2] == (1 + 3) / 2 - 5 / 1  # clip 1 neither summed nor counted
        assert sc[0, 3] == 9 / 3  # covers every valid clip
        assert torch.isneginf(sc[0, 1]) and torch.isneginf(sc[1, 1]) and torch.isneginf(sc[1, 3])

    def test_nv1_and_weighted_means(self):
        P = torch.tensor([[[2.0], [4.0]]], dtype=torch.float64)
        assert vgops.segment_score_map(P)[0, 0, 0] == 3.0
        x = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
        W = torch.zeros(1, 3, 3, dtype=torch.float64)
        W[0, 0, 0], W[0, 1, 2], W[0, 0, 2], W[0, 2, 0] = 1.0, 2.0, 5.0, 100.0  # (2, 0) is not a segment
        assert vgops.segment_weighted_outside_mean(x, W)[0] == 1.0 * 3.0 + 2.0 * 1.0 + 5.0 * 0.0
        torch.testing.assert_close(vgops.segment_weighted_inside_mean(x, W)[0],
                                   torch.tensor(1.0 * 1.0 + 2.0 * 3.0 + 5.0 * 7 / 3, dtype=torch.float64))

    def test_token_loss_by_hand(self):
        P = torch.tensor([[[0.5, -1.0], [2.0, 0.0]]], dtype=torch.float64)
        W = torch.tensor([[[1.0, 2.0], [7.0, 3.0]]], dtype=torch.float64)
        s = torch.sigmoid
        t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        want = (1.0 * (s(t(0.5)) + s(t(2.0))) + 2.0 * (s(t(-0.5)) + s(t(2.0))) + 3.0 * (s(t(-1.0)) + s(t(0.0)))) / 2
        torch.testing.assert_close(vgops.segment_weighted_token_loss(P, W)[0], want)
        ident = vgops.segment_weighted_token_loss(P, W, fn="identity")[0]
        torch.testing.assert_close(ident, t((1.0 * 2.5 + 2.0 * 1.5 + 3.0 * -1.0) / 2))

    def test_min_tie_gradient_goes_to_first_valid_token(self):
        P = torch.tensor([[[5.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.0, 2.0, 3.0]]], dtype=torch.float64,
                         requires_grad=True)
        tm = torch.tensor([[False, True, True]])
        sc = vgops.segment_score_map(P, tm)
        (g,) = torch.autograd.grad(sc[0, 2, 2], P)  # outside clips 0 and 1: minima tied at clip 0
        want = torch.zeros(3, 3, dtype=torch.float64)
        want[1:, 2] = 1 / 2  # inside term, both valid tokens
        want[1, 0] = -1 / 2  # tie between tokens 1 and 2 at clip 0: the first valid token
        want[1, 1] = -1 / 2  # tie at clip 1 too (token 0 is masked)
        torch.testing.assert_close(g[0], want)

    def test_invalid_weights_are_ignored(self, gen):
        P, W, x, tm, cm = random_inputs(gen, 2, 3, 6)
        invalid = ~reference.segment_score_map(P, tm, cm).isfinite()
        W = W.masked_fill(invalid, float("nan")).requires_grad_()
        for op in OPS[1:]:
            out = call(op, P, W, x, tm, cm)
            assert out.isfinite().all(), op
            (gw,) = torch.autograd.grad(out.sum(), W)
            assert (gw[invalid] == 0).all() and gw.isfinite().all(), op


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("op", OPS)
    @pytest.mark.parametrize("B,Ns,Nv,masks,sparse", [(3, 5, 1, False, False), (3, 4, 2, True, False),
                                                      (4, 6, 17, True, True), (2, 7, 40, True, False),
                                                      (2, 3, 33, False, False)])
    def test_float64_values_and_gradients(self, gen, device, op, B, Ns, Nv, masks, sparse):
        P, W, x, tm, cm = random_inputs(gen, B, Ns, Nv, device, masks=masks, sparse=sparse)
        for fn in ("sigmoid", "identity") if op == "segment_weighted_token_loss" else ("sigmoid",):
            check_against_reference(gen, op, P, W, x, tm, cm, fn)

    def test_cumsum_versions_match_naive(self, gen, device):
        P, W, x, tm, cm = random_inputs(gen, 3, 5, 12, device, sparse=True)
        for op in OPS:
            a = call(op, P, W, x, tm, cm, impl=reference)
            b = getattr(reference, op + "_cumsum")(*((P, tm, cm) if op == OPS[0] else (P, W, tm, cm) if op == OPS[1]
                                                      else (x, W, cm)))
            assert_close_rel(b, a, 1e-12)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
    def test_dtypes(self, gen, device, dtype):
        P, W, x, tm, cm = random_inputs(gen, 3, 6, 24, device, dtype=dtype)
        for op in OPS:
            out = call(op, P, W, x, tm, cm)
            assert out.dtype == dtype
            ref = call(op, P.double(), W.double(), x.double(), tm, cm, impl=reference)
            assert_close_rel(out, ref, TOL[dtype])
        # the float32 backward against float64
        leaves = [P.float().requires_grad_(), W.float().requires_grad_()]
        out = vgops.segment_weighted_token_loss(*leaves, tm, cm)
        g64 = [t.double().detach().requires_grad_() for t in leaves]
        ref = reference.segment_weighted_token_loss(*g64, tm, cm)
        for a, b in zip(torch.autograd.grad(out.sum(), leaves), torch.autograd.grad(ref.sum(), g64)):
            assert_close_rel(a, b, 2e-4 if dtype == torch.float32 else TOL[dtype] * 4)

    def test_large_nv(self, gen, device):
        P, W, x, tm, cm = random_inputs(gen, 1, 3, 1024, device, masks=True)
        for op in OPS:
            check_against_reference(gen, op, P, W, x, tm, cm, tol=1e-9, gtol=1e-8)

    def test_gradcheck(self, gen, device):
        P, W, x, tm, cm = random_inputs(gen, 2, 3, 5, device, sparse=True)
        valid = reference.segment_score_map(P.cpu(), tm.cpu(), cm.cpu()).isfinite().to(device)
        P, W, x = (t.requires_grad_() for t in (P, W, x))
        assert torch.autograd.gradcheck(lambda p: vgops.segment_score_map(p, tm, cm)[valid], (P,))
        for fn in ("sigmoid", "identity"):
            assert torch.autograd.gradcheck(lambda p, w: vgops.segment_weighted_token_loss(p, w, tm, cm, fn), (P, W))
        assert torch.autograd.gradcheck(lambda a, w: vgops.segment_weighted_outside_mean(a, w, cm), (x, W))
        assert torch.autograd.gradcheck(lambda a, w: vgops.segment_weighted_inside_mean(a, w, cm), (x, W))

    def test_empty(self, device):
        P = torch.zeros(0, 3, 4, device=device)
        assert vgops.segment_score_map(P).shape == (0, 4, 4)
        assert vgops.segment_weighted_token_loss(P, torch.zeros(0, 4, 4, device=device)).shape == (0,)
        P = torch.zeros(2, 3, 0, device=device, requires_grad=True)
        W = torch.zeros(2, 0, 0, device=device, requires_grad=True)
        assert vgops.segment_score_map(P).shape == (2, 0, 0)
        loss = vgops.segment_weighted_token_loss(P, W)
        assert loss.shape == (2,) and (loss == 0).all()
        loss.sum().backward()
        assert P.grad.shape == (2, 3, 0)
        x = torch.zeros(2, 0, device=device)
        assert (vgops.segment_weighted_outside_mean(x, W.detach()) == 0).all()

    def test_no_valid_clip_gives_empty_sums(self, gen, device):
        P, W, x, tm, _ = random_inputs(gen, 2, 3, 5, device)
        cm = torch.zeros(2, 5, dtype=torch.bool, device=device)
        assert torch.isneginf(vgops.segment_score_map(P, tm, cm)).all()
        for op in OPS[1:]:
            assert (call(op, P, W, x, tm, cm) == 0).all()

    def test_backend_reference_equals_cpp(self, gen, device):
        P, W, x, tm, cm = random_inputs(gen, 2, 4, 9, device)
        for op in OPS:
            f = getattr(vgops, op)
            args = (P, tm, cm) if op == OPS[0] else (P, W, tm, cm) if op == OPS[1] else (x, W, cm)
            torch.testing.assert_close(f(*args, backend="reference"), f(*args, backend="cpp"))


class TestRegistration:
    def test_deterministic_across_thread_counts(self, gen):
        P, W, x, tm, cm = random_inputs(gen, 4, 6, 70, dtype=torch.float32)
        results = []
        old = torch.get_num_threads()
        try:
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                outs = []
                for op in OPS:
                    inputs, f = make_call(op, P, W, x, tm, cm)
                    leaves = [t.detach().clone().requires_grad_() for t in inputs]
                    out = f(vgops, *leaves)
                    g = torch.where(out.isfinite(), 1.0, 0.0).to(out.dtype)
                    outs += [out.detach(), *torch.autograd.grad(out, leaves, g)]
                results.append(outs)
        finally:
            torch.set_num_threads(old)
        for other in results[1:]:
            for a, b in zip(results[0], other):
                assert torch.equal(a, b)

    def test_opcheck(self, gen):
        P, W, x, tm, cm = random_inputs(gen, 2, 3, 6, sparse=True)
        P, W, x = (t.requires_grad_() for t in (P, W, x))
        ops = torch.ops.vgops
        for args in [(P, tm, cm), (P.detach().float(), tm, cm)]:
            torch.library.opcheck(ops.segment_score_map.default, args,
                                  test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
        for fn in ("sigmoid", "identity"):
            torch.library.opcheck(ops.segment_weighted_token_loss.default, (P, W, tm, cm, fn))
        torch.library.opcheck(ops.segment_weighted_outside_mean.default, (x, W, cm))
        torch.library.opcheck(ops.segment_weighted_inside_mean.default, (x, W, cm))

    def test_compile_fullgraph_forward_backward(self, gen):
        P, W, x, tm, cm = random_inputs(gen, 2, 4, 8, dtype=torch.float32)

        def fsan_like(P, x):
            sc = vgops.segment_score_map(P, tm, cm)
            weights = torch.where(sc.isfinite(), sc, 0.0).detach()
            return (vgops.segment_score_map(P, tm, cm).flatten(1).amax(1).sum()
                    - vgops.segment_weighted_token_loss(P, weights, tm, cm).sum()
                    - vgops.segment_weighted_outside_mean(x, weights, cm).sum()
                    + vgops.segment_weighted_inside_mean(x, weights, cm).sum())

        compiled = torch.compile(fsan_like, fullgraph=True, backend="aot_eager")
        Pc, xc = P.clone().requires_grad_(), x.clone().requires_grad_()
        got = compiled(Pc, xc)
        grads = torch.autograd.grad(got, (Pc, xc))
        want = fsan_like(Pc, xc)
        torch.testing.assert_close(got, want)
        for a, b in zip(grads, torch.autograd.grad(want, (Pc, xc))):
            torch.testing.assert_close(a, b)

    def test_compile_inductor(self, gen):
        P, W, x, tm, cm = random_inputs(gen, 2, 4, 8, dtype=torch.float32)
        f = torch.compile(lambda p, w: vgops.segment_weighted_token_loss(p, w, tm, cm) * 2, fullgraph=True)
        torch.testing.assert_close(f(P, W), 2 * reference.segment_weighted_token_loss(P, W, tm, cm))

    def test_autocast_keeps_input_dtype(self, gen):
        P, W, x, tm, cm = random_inputs(gen, 2, 3, 5, dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert vgops.segment_score_map(P, tm, cm).dtype == torch.float32
            assert vgops.segment_weighted_token_loss(P, W, tm, cm).dtype == torch.float32


class TestErrors:
    def test_bad_inputs(self):
        P, W = torch.rand(2, 3, 4), torch.rand(2, 4, 4)
        with pytest.raises(ValueError, match=r"segment_score_map: P must be a 3-d tensor \[B, Ns, Nv\], got shape \(3, 4\)"):
            vgops.segment_score_map(torch.rand(3, 4))
        with pytest.raises(TypeError, match="P must be a floating-point tensor"):
            vgops.segment_score_map(torch.zeros(2, 3, 4, dtype=torch.long))
        with pytest.raises(ValueError, match=r"token_mask must be a bool tensor \[B, Ns\] = \[2, 3\], got torch.float32"):
            vgops.segment_score_map(P, torch.ones(2, 3))
        with pytest.raises(ValueError, match=r"clip_mask must be a bool tensor \[B, Nv\] = \[2, 4\]"):
            vgops.segment_score_map(P, None, torch.ones(2, 5, dtype=torch.bool))
        with pytest.raises(ValueError, match=r"W must be \[B, Nv, Nv\] = \[2, 4, 4\], got shape \(2, 4, 3\)"):
            vgops.segment_weighted_token_loss(P, torch.rand(2, 4, 3))
        with pytest.raises(ValueError, match="fn must be one of"):
            vgops.segment_weighted_token_loss(P, W, fn="tanh")
        with pytest.raises(ValueError, match=r"x must be a 2-d tensor \[B, Nv\]"):
            vgops.segment_weighted_outside_mean(P, W)

    def test_sample_without_valid_token(self):
        P = torch.rand(3, 2, 4)
        tm = torch.tensor([[True, False], [False, False], [True, True]])
        with pytest.raises(ValueError, match=r"at least one valid token .* samples \[1\] have none"):
            vgops.segment_score_map(P, tm)
        with pytest.raises(ValueError, match="at least one valid token"):
            vgops.segment_weighted_token_loss(P, torch.rand(3, 4, 4), tm)
        with pytest.raises(ValueError, match="Ns = 0"):
            vgops.segment_score_map(torch.rand(2, 0, 4))
        # the kernel itself (no check, as on a GPU): that sample is NaN, the others are unaffected
        out = torch.ops.vgops.segment_score_map(P, tm, torch.ones(3, 4, dtype=torch.bool))
        upper = torch.ones(4, 4, dtype=torch.bool).triu()
        assert out[1][upper].isnan().all() and out[[0, 2]][:, upper].isfinite().all()

    def test_kernel_checks_direct_calls(self):
        P = torch.rand(2, 3, 4)
        with pytest.raises(ValueError, match="clip_mask must be a bool tensor"):
            torch.ops.vgops.segment_score_map(P, torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4))
        with pytest.raises(ValueError, match='fn must be "sigmoid" or "identity"'):
            torch.ops.vgops.segment_weighted_token_loss(P, torch.rand(2, 4, 4), torch.ones(2, 3, dtype=torch.bool),
                                                        torch.ones(2, 4, dtype=torch.bool), "relu")
        with pytest.raises(ValueError, match="W must be"):
            torch.ops.vgops.segment_weighted_outside_mean(torch.rand(2, 4), torch.rand(2, 4, 5),
                                                          torch.ones(2, 4, dtype=torch.bool))
