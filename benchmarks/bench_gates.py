"""cross_gate (FSM Eq. 2) and self_guided (FSM Eq. 3) at FSM's setting: B=2 videos, T=100 frames,
L=7x7 tokens, d=256 (2.5M elements), float32, forward and forward + backward.

Providers: vgops.cross_gate / vgops.self_guided (one fused pass each way);
vgops.reference eager (sigmoid, mul, add as separate kernels) and under torch.compile.
"""
import torch

import vgops
from vgops import reference

from . import harness

SHAPE = (2, 100, 49, 256)


def _inputs(n, seed=0):
    def make(device):
        g = harness.generator(seed)
        xs = {f"x{i}": torch.randn(SHAPE, generator=g) * 2 for i in range(n)}
        xs["grad_out"] = torch.randn(SHAPE, generator=g)
        return {k: v.to(device) for k, v in xs.items()}
    return make


def _providers(name, n):
    fn, ref = getattr(vgops, name), getattr(reference, name)

    def args(inp):
        return [inp[f"x{i}"] for i in range(n)]

    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend(name, *args(inp))}"
        return harness.forward_run(fn, *args(inp), mode=mode, grad_out=inp["grad_out"], note=note)

    def reference_(inp, mode):
        return harness.forward_run(ref, *args(inp), mode=mode, grad_out=inp["grad_out"])

    def compiled_(inp, mode):
        f = harness.Compiled(ref)
        return harness.forward_run(f, *args(inp), mode=mode, grad_out=inp["grad_out"], note=lambda: f.note)

    return {"vgops": vgops_, "reference": reference_, "compiled_reference": compiled_}


def _bytes(n):  # elementwise: n float32 inputs read, one output written
    return lambda inp: 4 * (n + 1) * inp["x0"].numel()


CASES = [
    harness.Case("cross_gate", "2x100x49x256 fp32", _inputs(4), _providers("cross_gate", 4), modes=harness.MODES,
                 bytes_moved=_bytes(4)),
    harness.Case("self_guided", "2x100x49x256 fp32", _inputs(3), _providers("self_guided", 3), modes=harness.MODES,
                 bytes_moved=_bytes(3)),
]
