"""dual_correlation / text_correlation (FSM Eq. 1) at FSM's setting: B=2 videos, T=100 frames,
L=7x7 and 11x11 tokens, M=30 words (a quarter of them padding), d=256, and a large one (B=4,
T=200, L=14x14); float32, forward and forward + backward (gradients of x and y).

Providers: vgops (flash-style kv_attention kernel: per (group, 128-row query tile) score
buffer, backward recomputing the weights from a saved log-sum-exp); vgops.reference (matmul,
masked softmax, matmul: keeps [B, T, L, L] / [B, T, L, M] weights for the backward) eager and
under torch.compile.
"""
import torch

import vgops
from vgops import reference

from . import harness


def _make(B, T, L, M, d):
    def make(device):
        g = harness.generator(0)
        x = torch.randn(B, T, L, d, generator=g)
        y = torch.randn(B, M, d, generator=g)
        y_mask = torch.arange(M).expand(B, M) < int(M * 0.75)
        x_mask = torch.arange(T).expand(B, T) < int(T * 0.9)
        gx = torch.randn(B, T, L, d, generator=g)
        gy = torch.randn(B, M, d, generator=g)
        return {k: v.to(device) for k, v in dict(x=x, y=y, y_mask=y_mask, x_mask=x_mask, gx=gx, gy=gy).items()}
    return make


def _providers(side):
    def run(fn, inp, mode, note=""):
        if side == "visual":
            f = (lambda x, y: fn[0](x, y, inp["y_mask"]))
            grads = (inp["gx"], inp["gx"])
        else:
            f = (lambda x, y: fn[1](y, x, inp["x_mask"], inp["y_mask"]))
            grads = (inp["gy"], inp["gy"])
        return harness.forward_run(f, inp["x"], inp["y"], mode=mode, grad_out=grads, note=note)

    def vgops_(inp, mode):
        op = "dual_correlation" if side == "visual" else "text_correlation"
        note = f"backend={harness.vgops_backend(op, inp['x'], inp['y'])}"
        return run((vgops.dual_correlation, vgops.text_correlation), inp, mode, note)

    def reference_(inp, mode):
        return run((reference.dual_correlation, reference.text_correlation), inp, mode)

    def compiled_(inp, mode):
        fs = (harness.Compiled(reference.dual_correlation), harness.Compiled(reference.text_correlation))
        f = fs[0] if side == "visual" else fs[1]
        return run(fs, inp, mode, note=lambda: f.note)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_}


def _compare(expected, got, inputs):
    # d x sums the self-attention gradient as query and as key/value and the cross-attention
    # gradient, each a float32 sum over up to d + L terms: compare at that scale (the eager and
    # compiled references differ from each other by as much).
    return harness.compare_tensors(expected, got, inputs, rtol=1e-3, atol=1e-4)


CASES = [
    harness.Case("dual_correlation", "B2 T100 L7x7 M30 d256 fp32", _make(2, 100, 49, 30, 256), _providers("visual"),
                 modes=harness.MODES, compare=_compare),
    harness.Case("dual_correlation", "B2 T100 L11x11 M30 d256 fp32", _make(2, 100, 121, 30, 256),
                 _providers("visual"), modes=harness.MODES,
                 compare=_compare, quick=False),
    harness.Case("dual_correlation", "B4 T200 L14x14 M30 d256 fp32", _make(4, 200, 196, 30, 256),
                 _providers("visual"), modes=harness.MODES, compare=_compare, quick=False),
    harness.Case("text_correlation", "B2 T100 L7x7 M30 d256 fp32", _make(2, 100, 49, 30, 256), _providers("text"),
                 modes=harness.MODES, compare=_compare),
]
# Size sweep (--full): the self-correlation is O(L^2) in the L = side x side tokens of a frame.
CASES += [harness.Case("dual_correlation", f"B2 T100 L{n}x{n} M30 d256 fp32 (sweep)", _make(2, 100, n * n, 30, 256),
                       _providers("visual"), modes=harness.MODES, compare=_compare, size=n * n)
          for n in (5, 7, 10, 14, 20)]
