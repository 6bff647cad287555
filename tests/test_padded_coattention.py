"""padded_coattention (IA-Net Eq. 1-6) and vgops.nn.PaddedCoAttention."""
import math

import pytest
import torch
from conftest import cpu_and_cuda

import vgops
from vgops import reference

TOL = {torch.float64: (1e-11, 1e-11), torch.float32: (1e-4, 1e-5), torch.float16: (1e-2, 1e-2),
       torch.bfloat16: (5e-2, 5e-2)}


def _inputs(gen, B=2, H=2, T=5, N=4, K=3, d=3, Kq=None, dtype=torch.float64, device="cpu", grad=False, masked=True):
    Kq = K if Kq is None else Kq
    D = H * d

    def rand(*shape):
        t = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        return t.requires_grad_() if grad else t

    feats = (rand(B, H, T + K, d), rand(B, H, N + Kq, d), rand(B, T + K, D), rand(B, N + Kq, D))
    v_mask = torch.rand(B, T, generator=gen) < (0.7 if masked else 2)
    q_mask = torch.rand(B, N, generator=gen) < (0.7 if masked else 2)
    if masked and B > 1:
        q_mask[-1] = False  # a sentence of only padded words: clips attend to the pads alone
        v_mask[0] = False
    return feats, v_mask.to(device), q_mask.to(device)


def _check_against_reference(gen, feats, v_mask, q_mask, rtol=1e-11, atol=1e-11, **kw):
    outs = vgops.padded_coattention(*feats, v_mask, q_mask, return_maps=True, **kw)
    refs = reference.padded_coattention(*(f.double() for f in feats), v_mask, q_mask, kw.get("scale"))
    for o, r in zip(outs, refs):
        assert o.shape == r.shape and o.dtype == feats[0].dtype
        torch.testing.assert_close(o.double(), r, rtol=rtol, atol=atol)
    return outs


def test_equations_by_hand():
    # One head, d = 1, one clip, one word, K = 1 pad each: logits are products of scalars.
    v_heads = torch.tensor([1.0, 2.0], dtype=torch.float64).view(1, 1, 2, 1)  # [clip, pad]
    q_heads = torch.tensor([3.0, -1.0], dtype=torch.float64).view(1, 1, 2, 1)  # [word, pad]
    v_full = torch.tensor([[10.0], [20.0]], dtype=torch.float64).view(1, 2, 1)
    q_full = torch.tensor([[30.0], [40.0]], dtype=torch.float64).view(1, 2, 1)
    ones = torch.ones(1, 1, dtype=torch.bool)
    m_v, m_q, a_v, a_q = vgops.padded_coattention(v_heads, q_heads, v_full, q_full, ones, ones, True, scale=1.0)
    logits = torch.tensor([[3.0, -1.0], [6.0, -2.0]], dtype=torch.float64)  # v_i * q_j
    torch.testing.assert_close(a_v[0], torch.softmax(logits, 1))
    torch.testing.assert_close(a_q[0], torch.softmax(logits.t(), 1))
    torch.testing.assert_close(m_v.reshape(()), torch.softmax(logits[0], 0) @ torch.tensor([30.0, 40.0], dtype=torch.float64))
    torch.testing.assert_close(m_q.reshape(()), torch.softmax(logits[:, 0], 0) @ torch.tensor([10.0, 20.0], dtype=torch.float64))
    # Masking the only word: the clip attends to the word pad alone; the word still attends.
    m_v, m_q = vgops.padded_coattention(v_heads, q_heads, v_full, q_full, ones, ~ones, scale=1.0)
    assert m_v.item() == 40.0
    torch.testing.assert_close(m_q.reshape(()), torch.softmax(logits[:, 0], 0) @ torch.tensor([10.0, 20.0], dtype=torch.float64))


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("shape", [dict(), dict(B=3, H=4, T=1, N=1, K=3, d=2), dict(B=2, H=1, T=9, N=6, K=0, d=4),
                                       dict(B=2, H=3, T=6, N=3, K=2, Kq=1, d=5)])
    @pytest.mark.parametrize("scale", [None, 1.0])
    def test_float64_forward_backward(self, gen, device, shape, scale):
        feats, v_mask, q_mask = _inputs(gen, device=device, grad=True, **shape)
        outs = _check_against_reference(gen, feats, v_mask, q_mask, scale=scale)
        refs = reference.padded_coattention(*feats, v_mask, q_mask, scale)
        ws = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device) for o in outs]
        grads = torch.autograd.grad(outs, feats, ws)
        grads_ref = torch.autograd.grad(refs, feats, ws)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-10)
        if shape.get("K") == 0:
            # No pads: a clip of a sentence with no valid word attends to nothing.
            assert (outs[0][-1] == 0).all() and (outs[2][-1] == 0).all()

    def test_long_video(self, gen, device):
        # IA-Net on long videos: T = 4096 clips, N = 32 words.
        feats, v_mask, q_mask = _inputs(gen, B=1, H=4, T=4096, N=32, d=4, dtype=torch.float32, device=device)
        _check_against_reference(gen, feats, v_mask, q_mask, *TOL[torch.float32])

    def test_logits_in_batch_chunks(self, gen, device):
        # 3 x 8 x 4099 x 203 logits > the 2^24-element chunk: the driver works in two chunks.
        feats, v_mask, q_mask = _inputs(gen, B=3, H=8, T=4096, N=200, d=1, dtype=torch.float32, device=device,
                                        grad=True)
        outs = _check_against_reference(gen, feats, v_mask, q_mask, *TOL[torch.float32])
        grads = torch.autograd.grad(outs[0].sum() + outs[1].square().sum(), feats)
        f64 = [f.detach().double().requires_grad_() for f in feats]
        ref = reference.padded_coattention(*f64, v_mask, q_mask)
        grads_ref = torch.autograd.grad(ref[0].sum() + ref[1].square().sum(), f64)
        for g, gr in zip(grads, grads_ref):
            torch.testing.assert_close(g.double(), gr, rtol=1e-3, atol=1e-4)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
    def test_dtypes(self, gen, device, dtype):
        feats, v_mask, q_mask = _inputs(gen, B=2, H=4, T=12, N=7, d=4, dtype=dtype, device=device, grad=True)
        outs = _check_against_reference(gen, feats, v_mask, q_mask, *TOL[dtype])
        f64 = [f.detach().double().requires_grad_() for f in feats]
        refs = reference.padded_coattention(*f64, v_mask, q_mask)
        ws = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device) for o in outs[:2]]
        grads = torch.autograd.grad(outs[:2], feats, [w.to(dtype) for w in ws])
        grads_ref = torch.autograd.grad(refs[:2], f64, ws)
        rtol, atol = TOL[dtype]
        for g, gr in zip(grads, grads_ref):
            assert g.dtype == dtype
            torch.testing.assert_close(g.double(), gr, rtol=rtol * 4, atol=atol * 4)

    def test_gradcheck(self, gen, device):
        feats, v_mask, q_mask = _inputs(gen, B=2, H=2, T=3, N=2, K=2, d=2, device=device, grad=True)
        assert torch.autograd.gradcheck(lambda *f: vgops.padded_coattention(*f, v_mask, q_mask, True), feats)

    def test_empty(self, gen, device):
        for shape in (dict(B=0), dict(T=0), dict(N=0), dict(T=0, K=0)):
            feats, v_mask, q_mask = _inputs(gen, device=device, grad=True, masked=False, **shape)
            m_v, m_q, a_v, a_q = vgops.padded_coattention(*feats, v_mask, q_mask, return_maps=True)
            refs = reference.padded_coattention(*feats, v_mask, q_mask)
            for o, r in zip((m_v, m_q, a_v, a_q), refs):
                assert o.shape == r.shape
                torch.testing.assert_close(o, r)
            (m_v.sum() + m_q.sum() + a_v.sum()).backward()
            assert all(f.grad is not None and f.grad.shape == f.shape for f in feats)

    def test_backend_reference_equals_cpp(self, gen, device):
        feats, v_mask, q_mask = _inputs(gen, dtype=torch.float32, device=device)
        for a, b in zip(vgops.padded_coattention(*feats, v_mask, q_mask, True, backend="cpp"),
                        vgops.padded_coattention(*feats, v_mask, q_mask, True, backend="reference")):
            torch.testing.assert_close(a, b)


class TestRegistration:
    def test_opcheck(self, gen):
        feats, v_mask, q_mask = _inputs(gen, B=2, H=2, T=4, N=3, K=2, d=3, grad=True)
        torch.library.opcheck(torch.ops.vgops.padded_coattention.default, (*feats, v_mask, q_mask, 0.5))
        f32 = [f.detach().float().requires_grad_() for f in feats]
        torch.library.opcheck(torch.ops.vgops.padded_coattention.default, (*f32, v_mask, q_mask, 1.0))
        detached = [f.detach() for f in feats]
        outs = torch.ops.vgops.padded_coattention(*detached, v_mask, q_mask, 0.5)
        grads = (torch.randn_like(outs[0]), torch.randn_like(outs[1]), torch.randn_like(outs[2]), None)
        torch.library.opcheck(torch.ops.vgops._padded_coattention_backward.default,
                              (*grads, *detached, v_mask, q_mask, *outs[2:], 0.5))
        vk = torch.cat([v_mask, torch.ones(2, 2, dtype=torch.bool)], 1)
        qk = torch.cat([q_mask, torch.ones(2, 2, dtype=torch.bool)], 1)
        logits = torch.randn(2, 2, 6, 5, generator=gen, dtype=torch.float64)
        torch.library.opcheck(torch.ops.vgops._coattention_softmax.default, (logits, vk, qk, 0.7))
        _, _, rl, cl = torch.ops.vgops._coattention_softmax(logits, vk, qk, 0.7)
        g = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
        torch.library.opcheck(torch.ops.vgops._coattention_softmax_backward.default, (logits, vk, qk, rl, cl, g, g * 2, 0.7, 0.35))

    def test_compile_fullgraph(self, gen):
        mod = vgops.nn.PaddedCoAttention(8, heads=2, num_pads=3)
        v = torch.randn(2, 6, 8, generator=gen)
        q = torch.randn(2, 4, 8, generator=gen)
        v_mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
        q_mask = torch.tensor([[True] * 4, [True, True, False, False]])
        out = torch.compile(mod, fullgraph=True)(v, q, v_mask, q_mask)
        ref = mod(v, q, v_mask, q_mask)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b)
        sum(o.sum() for o in out).backward()
        assert all(p.grad is not None for p in mod.parameters())

    def test_autocast(self, gen):
        feats, v_mask, q_mask = _inputs(gen, dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m_v, m_q = vgops.padded_coattention(*feats, v_mask, q_mask)
        assert m_v.dtype == m_q.dtype == torch.float32  # not on autocast's lists: runs as given


class TestModule:
    def test_matches_equations(self, gen):
        torch.manual_seed(0)
        mod = vgops.nn.PaddedCoAttention(8, heads=4, num_pads=3).double()
        v = torch.randn(2, 5, 8, generator=gen, dtype=torch.float64)
        q = torch.randn(2, 3, 8, generator=gen, dtype=torch.float64)
        v_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
        q_mask = torch.tensor([[True, True, True], [True, False, False]])
        m_v, m_q = mod(v, q, v_mask, q_mask)
        # Eq. 1-6 with plain torch: pads appended, heads projected, maps averaged over heads.
        vt = torch.cat([v, mod.pad_v.expand(2, -1, -1)], 1)
        qt = torch.cat([q, mod.pad_q.expand(2, -1, -1)], 1)
        vh = mod.proj_v(vt).view(2, 8, 4, 2).transpose(1, 2)
        qh = mod.proj_q(qt).view(2, 6, 4, 2).transpose(1, 2)
        logits = vh @ qh.transpose(-1, -2) / math.sqrt(2)
        q_keys = torch.cat([q_mask, torch.ones(2, 3, dtype=torch.bool)], 1)[:, None, None, :]
        v_keys = torch.cat([v_mask, torch.ones(2, 3, dtype=torch.bool)], 1)[:, None, None, :]
        a_v = torch.softmax(logits.masked_fill(~q_keys, -math.inf), -1).mean(1)
        a_q = torch.softmax(logits.transpose(-1, -2).masked_fill(~v_keys, -math.inf), -1).mean(1)
        torch.testing.assert_close(m_v, (a_v @ qt)[:, :5])
        torch.testing.assert_close(m_q, (a_q @ vt)[:, :3])

    def test_state_dict_round_trip(self, gen, tmp_path):
        mod = vgops.nn.PaddedCoAttention(8, heads=2, num_pads=2)
        torch.save(mod.state_dict(), tmp_path / "m.pt")
        other = vgops.nn.PaddedCoAttention(8, heads=2, num_pads=2)
        other.load_state_dict(torch.load(tmp_path / "m.pt"))
        v, q = torch.randn(1, 4, 8, generator=gen), torch.randn(1, 2, 8, generator=gen)
        for a, b in zip(mod(v, q), other(v, q)):
            assert torch.equal(a, b)
        assert "num_pads=2" in repr(mod)

    def test_bad_config(self):
        with pytest.raises(ValueError, match="dim must be divisible by heads"):
            vgops.nn.PaddedCoAttention(10, heads=4)


class TestErrors:
    def test_messages(self, gen):
        (vh, qh, vf, qf), vm, qm = _inputs(gen)
        with pytest.raises(ValueError, match=r"padded_coattention: v_heads must be \[B, H, T\+K, d\], got shape \(2, 8, 3\)"):
            vgops.padded_coattention(vh[:, 0], qh, vf, qf, vm, qm)
        with pytest.raises(ValueError, match=r"q_heads must be \[B, H, N\+K, d\] = \[2, 2, N\+K, 3\]"):
            vgops.padded_coattention(vh, qh[..., :2], vf, qf, vm, qm)
        with pytest.raises(ValueError, match=r"q_full must be \[B, N\+K, D\] = \[2, 7, 6\], got \(2, 7, 5\)"):
            vgops.padded_coattention(vh, qh, vf, qf[..., :5], vm, qm)
        with pytest.raises(ValueError, match=r"v_mask must be a bool tensor \[B, T\] with B = 2 and T <= T\+K = 8, got torch.int64"):
            vgops.padded_coattention(vh, qh, vf, qf, vm.long(), qm)
        with pytest.raises(ValueError, match=r"q_mask must be .* got torch.bool \(2, 9\)"):
            vgops.padded_coattention(vh, qh, vf, qf, vm, torch.ones(2, 9, dtype=torch.bool))
        with pytest.raises(TypeError, match="q_full must be a floating-point tensor"):
            vgops.padded_coattention(vh, qh, vf, qf.long(), vm, qm)
        with pytest.raises(ValueError, match="scale must be a finite float"):
            vgops.padded_coattention(vh, qh, vf, qf, vm, qm, scale=math.nan)

    def test_kernel_checks_direct_calls(self):
        with pytest.raises(ValueError, match=r"q_keys must be bool \[1, 3\]"):
            torch.ops.vgops._coattention_softmax(torch.rand(1, 2, 4, 3), torch.ones(1, 4, dtype=torch.bool),
                                                 torch.ones(1, 2, dtype=torch.bool), 1.0)
        with pytest.raises(ValueError, match="v_mask must be a bool"):
            torch.ops.vgops.padded_coattention(torch.rand(1, 1, 3, 2), torch.rand(1, 1, 2, 2), torch.rand(1, 3, 2),
                                               torch.rand(1, 2, 2), torch.ones(1, 4, dtype=torch.bool),
                                               torch.ones(1, 1, dtype=torch.bool), 1.0)
