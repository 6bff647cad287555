"""segment_score_map family (FSAN Eq. 7-12) at (B, Ns, Nv) = (64, 20, 64), (64, 20, 200),
(16, 20, 1024), forward and forward + backward (gradients with respect to P / x and W).

Inputs: P ~ N(0, 0.5^2); W ~ U(0, 1); x ~ N(0, 1); every sample has a random number of valid
tokens (>= Ns / 2) and of valid clips (>= 3 Nv / 4, a suffix of padding), as in a padded batch.

Two entries per op, so that every baseline gets a column in the Markdown table:

* ``<op>.vs_cumsum``: reference = ``vgops.reference.<op>_cumsum``, the best pure-PyTorch version
  (prefix sums and one broadcast per segment; the token loss still materialises
  [B, Ns, Nv, Nv]); compiled = torch.compile of it. The issue's targets are read here.
* ``<op>.vs_naive``: reference = ``vgops.reference.<op>``, the naive formula as written in the
  paper (segment sums materialised for every (s, e)); compiled = torch.compile of it. Only at
  the two smaller shapes: at Nv = 1024 the naive token loss holds several [16, 20, 1024, 1024]
  tensors (1.3 GB each in fp32) and one measured call takes minutes on a 2-core machine.
"""
import torch

import vgops
from vgops import reference

from . import harness

SHAPES = [(64, 20, 64), (64, 20, 200), (16, 20, 1024)]


def _inputs(B, Ns, Nv, seed=0):
    def make(device):
        g = harness.generator(seed)
        P = torch.randn(B, Ns, Nv, generator=g) * 0.5
        W = torch.rand(B, Nv, Nv, generator=g)
        x = torch.randn(B, Nv, generator=g)
        n_tok = Ns // 2 + torch.randint(Ns - Ns // 2 + 1, (B,), generator=g)
        n_clip = (3 * Nv) // 4 + torch.randint(Nv - (3 * Nv) // 4 + 1, (B,), generator=g)
        tm = torch.arange(Ns)[None, :] < n_tok[:, None]
        cm = torch.arange(Nv)[None, :] < n_clip[:, None]
        grad_map = torch.rand(B, Nv, Nv, generator=g)
        grad_b = torch.rand(B, generator=g)
        return {k: v.to(device) for k, v in dict(P=P, W=W, x=x, tm=tm, cm=cm, grad_map=grad_map,
                                                 grad_b=grad_b).items()}
    return make


def compare(expected, got, inputs):
    """Close relative to each output's largest magnitude (the losses sum ~Nv^2 / 2 terms)."""
    exp = expected if isinstance(expected, (tuple, list)) else (expected,)
    res = got if isinstance(got, (tuple, list)) else (got,)
    for i, (e, r) in enumerate(zip(exp, res)):
        e64, r64 = e.detach().double().cpu(), r.detach().double().cpu()
        fin = torch.isfinite(e64)
        if tuple(e64.shape) != tuple(r64.shape) or not torch.equal(fin, torch.isfinite(r64)):
            return False, f"output {i}: shape or -inf pattern differs"
        scale = e64[fin].abs().max().item() if fin.any() else 1.0
        err = (e64[fin] - r64[fin]).abs().max().item() if fin.any() else 0.0
        if err > 1e-4 * max(scale, 1.0):
            return False, f"output {i}: max abs diff {err:.3g} (scale {scale:.3g})"
    return True, ""


def _fns(op, inp, impl):
    """(function of the differentiable inputs, those inputs, upstream gradient) for op."""
    tm, cm = inp["tm"], inp["cm"]
    f = getattr(impl, op)
    if op == "segment_score_map":
        return (lambda P: f(P, tm, cm)), (inp["P"],), inp["grad_map"]
    if op == "segment_weighted_token_loss":
        return (lambda P, W: f(P, W, tm, cm)), (inp["P"], inp["W"]), inp["grad_b"]
    return (lambda x, W: f(x, W, cm)), (inp["x"], inp["W"]), inp["grad_b"]


def _providers(op, baseline):
    ref_name = op + ("_cumsum" if baseline == "cumsum" else "")

    class Impl:  # the baseline function under the op's name, so _fns can call it
        pass
    setattr(Impl, op, staticmethod(getattr(reference, ref_name)))

    def vgops_(inp, mode):
        fn, xs, g = _fns(op, inp, vgops)
        note = f"backend={harness.vgops_backend(op, *xs)}"
        return harness.forward_run(fn, *xs, mode=mode, grad_out=g, note=note)

    def reference_(inp, mode):
        fn, xs, g = _fns(op, inp, Impl)
        return harness.forward_run(fn, *xs, mode=mode, grad_out=g, note=f"reference.{ref_name}")

    def compiled_(inp, mode):
        fn, xs, g = _fns(op, inp, Impl)
        c = harness.Compiled(fn)
        return harness.forward_run(lambda *a: c(*a), *xs, mode=mode, grad_out=g,
                                   note=lambda: f"reference.{ref_name}: {c.note}")

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_}


OPS = ("segment_score_map", "segment_weighted_token_loss", "segment_weighted_outside_mean",
       "segment_weighted_inside_mean")

CASES = [
    harness.Case(f"{op}.vs_{baseline}", f"B={B} Ns={Ns} Nv={Nv} fp32", _inputs(B, Ns, Nv),
                 _providers(op, baseline), modes=harness.MODES, compare=compare,
                 quick=Nv == (200 if baseline == "cumsum" else 64))
    for baseline in ("cumsum", "naive")
    for op in OPS
    for (B, Ns, Nv) in (SHAPES if baseline == "cumsum" else SHAPES[:2])
]
