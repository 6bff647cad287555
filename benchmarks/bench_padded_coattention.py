"""padded_coattention (IA-Net Eq. 1-6) at IA-Net's settings: (B, T, N, D, H, K) =
(64, 200, 20, 512, 4, 3) and a long video (8, 4096, 32, 512, 4, 3); float32, forward and
forward + backward (gradients of the four feature tensors).

Providers: vgops (one logits GEMM per head serving both directions, fused masked row/column
softmaxes + head average, backward recomputing the logits); vgops.reference eager and under
torch.compile (keeps two per-head [B, H, T+K, N+K] softmaxes for the backward); sdpa: the same
maps through F.scaled_dot_product_attention per head, once per direction (the shared values
make mean_h(A^h) V = mean_h(A^h V)).
"""
import torch
import torch.nn.functional as F

import vgops
from vgops import reference

from . import harness


def _make(B, T, N, D, H, K):
    def make(device):
        g = harness.generator(0)
        d = D // H
        inp = dict(v_heads=torch.randn(B, H, T + K, d, generator=g), q_heads=torch.randn(B, H, N + K, d, generator=g),
                   v_full=torch.randn(B, T + K, D, generator=g), q_full=torch.randn(B, N + K, D, generator=g),
                   v_mask=torch.arange(T).expand(B, T) < int(T * 0.9),
                   q_mask=torch.arange(N).expand(B, N) < int(N * 0.75),
                   g_v=torch.randn(B, T, D, generator=g), g_q=torch.randn(B, N, D, generator=g))
        return {k: v.to(device) for k, v in inp.items()}
    return make


def _sdpa(v_heads, q_heads, v_full, q_full, v_mask, q_mask):
    B, H, Tk, _ = v_heads.shape
    Nk, T, N = q_heads.shape[2], v_mask.shape[1], q_mask.shape[1]
    ones = v_mask.new_ones
    q_keys = torch.cat([q_mask, ones(B, Nk - N)], 1)[:, None, None, :]
    v_keys = torch.cat([v_mask, ones(B, Tk - T)], 1)[:, None, None, :]
    m_v = F.scaled_dot_product_attention(v_heads, q_heads, q_full.unsqueeze(1).expand(B, H, Nk, -1), attn_mask=q_keys)
    m_q = F.scaled_dot_product_attention(q_heads, v_heads, v_full.unsqueeze(1).expand(B, H, Tk, -1), attn_mask=v_keys)
    return m_v.mean(1)[:, :T], m_q.mean(1)[:, :N]


def _providers():
    def run(f, inp, mode, note=""):
        g = lambda *x: f(*x, inp["v_mask"], inp["q_mask"])[:2]  # noqa: E731
        return harness.forward_run(g, inp["v_heads"], inp["q_heads"], inp["v_full"], inp["q_full"], mode=mode,
                                   grad_out=(inp["g_v"], inp["g_q"]), note=note)

    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('padded_coattention', inp['v_heads'])}"
        return run(vgops.padded_coattention, inp, mode, note)

    def reference_(inp, mode):
        return run(reference.padded_coattention, inp, mode)

    def compiled_(inp, mode):
        f = harness.Compiled(reference.padded_coattention)
        return run(f, inp, mode, note=lambda: f.note)

    def sdpa_(inp, mode):
        return run(_sdpa, inp, mode, "F.scaled_dot_product_attention per head and direction")

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_, "sdpa": sdpa_}


def _compare(expected, got, inputs):
    return harness.compare_tensors(expected, got, inputs, rtol=1e-3, atol=1e-4)


CASES = [
    harness.Case("padded_coattention", f"B{B} T{T} N{N} D{D} H{H} K{K} fp32", _make(B, T, N, D, H, K), _providers(),
                 modes=harness.MODES, compare=_compare, quick=T == 200)
    for B, T, N, D, H, K in ((64, 200, 20, 512, 4, 3), (8, 4096, 32, 512, 4, 3))
]

# Size sweep (--full): co-attention is O(T N) per head; T grows, N = 32 words.
CASES += [harness.Case("padded_coattention", f"B8 T{t} N32 D512 H4 K3 fp32 (sweep)", _make(8, t, 32, 512, 4, 3),
                       _providers(), modes=harness.MODES, compare=_compare, size=t) for t in (256, 512, 1024, 2048, 4096)]
