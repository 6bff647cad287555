import os
import random

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

try:  # torchvision only imports beside a matching torch (the CUDA build in CI's second step)
    import torchvision  # noqa: F401
    HAS_TORCHVISION = True
except Exception:
    HAS_TORCHVISION = False

needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
needs_torchvision = pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not importable beside this torch")


def cpu_and_cuda():
    """Device parameters: cpu always, cuda marked to skip where no GPU is present."""
    return ("cpu", pytest.param("cuda", marks=[needs_cuda, pytest.mark.cuda]))


@pytest.fixture
def gen():
    """A fresh random generator per test; the seed is printed so a failure can be replayed
    (VGOPS_TEST_SEED=<seed>)."""
    seed = int(os.environ.get("VGOPS_TEST_SEED", random.randrange(2**31)))
    print(f"VGOPS_TEST_SEED={seed}")
    return torch.Generator().manual_seed(seed)


def random_segments(gen, *shape, span=100.0, max_len=30.0, dtype=torch.float64, device="cpu"):
    """Segments [*shape, 2]: starts uniform in [0, span), lengths uniform in [0.5, max_len)."""
    start = torch.rand(*shape, generator=gen, dtype=torch.float64) * span
    length = 0.5 + torch.rand(*shape, generator=gen, dtype=torch.float64) * (max_len - 0.5)
    return torch.stack([start, start + length], -1).to(dtype=dtype, device=device)


def as_boxes(segments):
    """1-D segments embedded as torchvision boxes (x1=start, y1=0, x2=end, y2=1)."""
    zeros, ones = torch.zeros_like(segments[:, 0]), torch.ones_like(segments[:, 0])
    return torch.stack([segments[:, 0], zeros, segments[:, 1], ones], 1)
