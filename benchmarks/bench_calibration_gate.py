"""calibration_gate (IA-Net Eq. 7-12) at (64, 200, 512): 64 videos x 200 clips, D = 512, float32,
forward and forward + backward (gradients of x, m, weight and bias).

Providers: vgops.calibration_gate (two GEMMs on x and m + one fused epilogue; fused backward
epilogue + gradient GEMMs); vgops.reference.calibration_gate (cat, F.linear, chunk, tanh,
sigmoid, blend) eager and under torch.compile. The GEMMs (3 x 13.4 GFLOP for fwd+bwd) are the
same in every provider and dominate: the fused epilogues can only save the elementwise passes.
"""
import torch

import vgops
from vgops import reference

from . import harness

B, T, D = 64, 200, 512


def _make(device):
    g = harness.generator(0)
    x = torch.randn(B, T, D, generator=g)
    m = torch.randn(B, T, D, generator=g)
    w = torch.randn(2 * D, 2 * D, generator=g) / (2 * D) ** 0.5
    b = torch.randn(2 * D, generator=g) * 0.1
    grad_out = torch.randn(B, T, D, generator=g)
    return {k: v.to(device) for k, v in dict(x=x, m=m, w=w, b=b, grad_out=grad_out).items()}


def _args(inp):
    return inp["x"], inp["m"], inp["w"], inp["b"]


def _vgops(inp, mode):
    note = f"backend={harness.vgops_backend('calibration_gate', *_args(inp))}"
    return harness.forward_run(vgops.calibration_gate, *_args(inp), mode=mode, grad_out=inp["grad_out"], note=note)


def _reference(inp, mode):
    return harness.forward_run(reference.calibration_gate, *_args(inp), mode=mode, grad_out=inp["grad_out"])


def _compiled(inp, mode):
    f = harness.Compiled(reference.calibration_gate)
    return harness.forward_run(f, *_args(inp), mode=mode, grad_out=inp["grad_out"], note=lambda: f.note)


def _compare(expected, got, inputs):
    # The weight and bias gradients sum over 12,800 rows in float32: compare at that scale.
    return harness.compare_tensors(expected, got, inputs, rtol=1e-3, atol=1e-3)


CASES = [
    harness.Case("calibration_gate", f"{B}x{T}x{D} fp32", _make,
                 {"vgops": _vgops, "reference": _reference, "compiled_reference": _compiled},
                 modes=harness.MODES, compare=_compare),
]
