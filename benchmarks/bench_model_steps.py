"""One training step (forward + loss + backward) of every python_models model, and its forward
(+ loss) and backward alone, vgops vs the
pure-PyTorch references (``VGOPS_BACKEND=reference`` set around the call), on a synthetic batch.

Sizes: B=16 (GLF and FSM also B=4, the size --quick runs), T=64 clips of 256-d features (FSM: 32 frames of SyntheticSTVG feature pyramids),
queries of 8-16 words, model widths 128 for DRN/FSAN, the paper defaults otherwise (paper-like
layouts, scaled to fit a 2-core CPU). A model whose module cannot be imported (not landed yet,
or an op it needs missing) is skipped with a printed reason.
"""
import contextlib
import os
import sys

import torch

from . import harness

B, T, DV = 16, 64, 256
FSM_FRAMES = 32  # FSM: frames per video (each with a feature pyramid)
WIDTHS = {"drn": dict(hidden=128, word_dim=128), "fsan": dict(dim=128), "ianet": {}, "glf": {}, "fsm": {}}


@contextlib.contextmanager
def _backend(name):
    old = os.environ.get("VGOPS_BACKEND")
    if name is not None:
        os.environ["VGOPS_BACKEND"] = name
    try:
        yield
    finally:
        if name is not None:
            if old is None:
                os.environ.pop("VGOPS_BACKEND", None)
            else:
                os.environ["VGOPS_BACKEND"] = old


def _inputs(name, batch):
    def make(device):
        from python_models.common import to_device
        from python_models.data import SyntheticGrounding, collate
        from python_models.registry import build_model
        torch.manual_seed(0)
        if name == "fsm":  # spatio-temporal: per-frame feature pyramids with a moving box
            from python_models.data.synthetic_stvg import SyntheticSTVG
            ds = SyntheticSTVG(batch, num_clips=FSM_FRAMES, vocab_size=200, query_len=(8, 16), seed=0)
        else:
            ds = SyntheticGrounding(batch, num_clips=T, video_dim=DV, vocab_size=200, query_len=(8, 16), seed=0,
                                    patches=(name == "glf"))
        model = build_model(name, ds.meta, **WIDTHS.get(name, {})).to(device)
        # dropout off: the two providers must compute the same loss to be compared
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
            if isinstance(m, torch.nn.MultiheadAttention):
                m.dropout = 0.0
        return {"model": model.train(), "batch": to_device(collate([ds[i] for i in range(batch)]), device)}
    return make


def _provider(backend):
    """fwd: forward + loss without autograd; bwd: the backward of one kept forward + loss graph
    (harness.backward_run); fwd+bwd: the whole step. Results compared across providers: the
    loss and the gradient of the first parameter."""
    def factory(inp, mode):
        model, batch = inp["model"], inp["batch"]
        params = [p for p in model.parameters() if p.requires_grad]
        note = "VGOPS_BACKEND=reference" if backend else "backend=auto"

        def loss():
            with _backend(backend):
                return model.loss(model(batch), batch)[0]

        def first_grad(grads):
            return grads[0].detach() if grads[0] is not None else torch.zeros_like(params[0])

        if mode == "fwd":
            def fwd():
                with torch.no_grad():
                    return (loss(),)
            return harness.Run(fwd, note=note)
        if mode == "bwd":  # the backend was chosen in the forward: the backward needs no switch
            return harness.backward_run(loss, params, allow_unused=True, note=note,
                                        convert=lambda grads: (first_grad(grads),))

        def step():
            out = loss()
            with _backend(backend):
                grads = torch.autograd.grad(out, params, allow_unused=True)
            return out.detach(), first_grad(grads)
        return harness.Run(step, note=note)
    return factory


def compare(expected, got, inputs):
    return harness.compare_tensors(expected, got, rtol=1e-4, atol=1e-5)


def _available(name):
    from python_models.registry import model_class
    try:
        model_class(name)
        return True
    except Exception as e:  # ImportError, or an op the model needs is missing
        print(f"bench_model_steps: skipping {name}: {type(e).__name__}: {e}", file=sys.stderr)
        return False


# --quick runs GLF and FSM at B=4: their B=16 steps take seconds per call on a 2-core CPU (GLF's
# alone was a fifth of a quick run); the default and --full runs have both sizes.
QUICK_B = {"glf": 4, "fsm": 4}

CASES = [
    harness.Case(f"model_step.{name}",
                 f"B={b} T={FSM_FRAMES} frames, synthetic pyramids fp32" if name == "fsm" else f"B={b} T={T} Dv={DV} fp32",
                 _inputs(name, b),
                 {"vgops": _provider(None), "reference": _provider("reference")},
                 modes=harness.MODES, quick_modes=("fwd+bwd",), compare=compare, quick=b == QUICK_B.get(name, B))
    for name in ("drn", "fsan", "ianet", "glf", "fsm") if _available(name)
    for b in sorted({B, QUICK_B.get(name, B)})
]
