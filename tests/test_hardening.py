"""Every public op against bad, odd and large input, threads, repetition and export.

The fuzz test drives random valid and invalid inputs (wrong ranks, mismatched sizes, integer
tensors, NaN / inf, empty, non-contiguous and expanded tensors, reversed segments) through each
public function: it must return a well-formed result or raise ValueError / TypeError /
RuntimeError naming the op, never crash or hang. Each op's spec below says how to build its
arguments from drawn tensors.
"""
import concurrent.futures
import gc
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vgops

ERRORS = (ValueError, TypeError, RuntimeError)


# --------------------------------------------------------------------------------------------
# drawn tensors

@st.composite
def tensors(draw, base_shape, dtype=None):
    """A tensor near `base_shape`: sometimes the right shape, sometimes a dim dropped, added or
    resized; float (with NaN / inf / reversed values sometimes), or integer / bool; contiguous,
    transposed-then-copied, or expanded (stride 0)."""
    shape = list(base_shape)
    mutate = draw(st.sampled_from(["none"] * 6 + ["drop", "add", "resize", "empty"]))
    if mutate == "drop" and shape:
        shape.pop(draw(st.integers(0, len(shape) - 1)))
    elif mutate == "add":
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 3)))
    elif mutate == "resize" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(0, 5))
    elif mutate == "empty" and shape:
        shape[0] = 0
    dt = dtype or draw(st.sampled_from([torch.float32] * 5 + [torch.float64, torch.float16, torch.int64, torch.bool]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * 20
    special = draw(st.sampled_from(["none"] * 5 + ["nan", "inf", "neg"]))
    if special == "nan" and x.numel():
        x.view(-1)[0] = float("nan")
    elif special == "inf" and x.numel():
        x.view(-1)[-1] = float("inf")
    elif special == "neg":
        x = -x
    x = x.to(dt) if dt != torch.bool else x > 10
    layout = draw(st.sampled_from(["contiguous", "contiguous", "strided", "expanded"]))
    if layout == "strided" and x.dim() >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    elif layout == "expanded" and x.dim() >= 1 and x.shape[0] > 0:
        x = x[:1].expand(x.shape)
    return x


def seg(*lead):
    """Valid-looking segments [*lead, 2] (start <= end), before mutation."""
    return tensors((*lead, 2))


SPECS = {
    "temporal_iou": (lambda d: (d(seg(4, 5)), d(seg(4, 3))), lambda a: vgops.temporal_iou(*a)),
    "temporal_iou.aligned": (lambda d: (d(seg(6)), d(seg(6))), lambda a: vgops.temporal_iou(*a, aligned=True)),
    "temporal_nms": (lambda d: (d(seg(7)), d(tensors((7,)))), lambda a: vgops.temporal_nms(*a, 0.5)),
    "batched_temporal_nms": (lambda d: (d(seg(7)), d(tensors((7,))), d(tensors((7,), dtype=torch.int64))),
                             lambda a: vgops.batched_temporal_nms(*a, 0.5)),
    "segment_map_iou": (lambda d: (d(seg(3)), d(tensors((3,)))), lambda a: vgops.segment_map_iou(a[0], 6, a[1])),
    "recall_at_iou": (lambda d: (d(seg(3, 4)), d(seg(3))), lambda a: vgops.recall_at_iou(*a)),
    "tube_iou": (lambda d: (d(tensors((2, 5, 4))), d(seg(2)), d(tensors((2, 5, 4))), d(seg(2))),
                 lambda a: vgops.tube_iou(*a)),
    "segment_score_map": (lambda d: (d(tensors((2, 3, 6))), d(tensors((2, 3), dtype=torch.bool)),
                                     d(tensors((2, 6), dtype=torch.bool))),
                          lambda a: vgops.segment_score_map(*a)),
    "segment_weighted_token_loss": (lambda d: (d(tensors((2, 3, 5))), d(tensors((2, 5, 5)))),
                                    lambda a: vgops.segment_weighted_token_loss(*a)),
    "segment_weighted_outside_mean": (lambda d: (d(tensors((2, 5))), d(tensors((2, 5, 5))),
                                                 d(tensors((2, 5), dtype=torch.bool))),
                                      lambda a: vgops.segment_weighted_outside_mean(*a)),
    "segment_weighted_inside_mean": (lambda d: (d(tensors((2, 5))), d(tensors((2, 5, 5)))),
                                     lambda a: vgops.segment_weighted_inside_mean(*a)),
    "temporal_nms_padded": (lambda d: (d(seg(2, 6)), d(tensors((2, 6)))),
                            lambda a: vgops.temporal_nms_padded(*a, 0.5, 4)),
    "temporal_soft_nms": (lambda d: (d(seg(6)), d(tensors((6,)))), lambda a: vgops.temporal_soft_nms(*a)),
    "roi_align_clips": (lambda d: (d(tensors((1, 2, 3, 6, 6))), d(tensors((1, 2, 4)))),
                        lambda a: vgops.roi_align_clips(*a, 2, 0.5)),
    "roi_align_1d": (lambda d: (d(tensors((2, 3, 8))), d(tensors((4, 3)))), lambda a: vgops.roi_align_1d(*a, 3)),
    "cross_gate": (lambda d: tuple(d(tensors((3, 4))) for _ in range(4)), lambda a: vgops.cross_gate(*a)),
    "self_guided": (lambda d: tuple(d(tensors((3, 4))) for _ in range(3)), lambda a: vgops.self_guided(*a)),
    "calibration_gate": (lambda d: (d(tensors((3, 4))), d(tensors((3, 4))), d(tensors((8, 8))), d(tensors((8,)))),
                         lambda a: vgops.calibration_gate(*a)),
    "dual_correlation": (lambda d: (d(tensors((1, 2, 3, 4))), d(tensors((1, 5, 4))),
                                    d(tensors((1, 5), dtype=torch.bool))),
                         lambda a: vgops.dual_correlation(*a)),
    "text_correlation": (lambda d: (d(tensors((1, 5, 4))), d(tensors((1, 2, 3, 4))),
                                    d(tensors((1, 2), dtype=torch.bool))),
                         lambda a: vgops.text_correlation(*a)),
    "padded_coattention": (lambda d: (d(tensors((2, 2, 5, 3))), d(tensors((2, 2, 4, 3))), d(tensors((2, 5, 6))),
                                      d(tensors((2, 4, 6))), d(tensors((2, 3), dtype=torch.bool)),
                                      d(tensors((2, 2), dtype=torch.bool))),
                           lambda a: vgops.padded_coattention(*a, return_maps=True)),
    "additive_attention": (lambda d: (d(tensors((2, 5, 4))), d(tensors((2, 3, 4))), d(tensors((4,))),
                                      d(tensors((2, 3, 2))), d(tensors((2, 3), dtype=torch.bool))),
                           lambda a: vgops.additive_attention(*a, return_weights=True)),
}


def check_result(out):
    """A returned result is well formed: tensors (or a dict of floats) with no stray memory."""
    items = out.values() if isinstance(out, dict) else (out if isinstance(out, tuple) else (out,))
    for x in items:
        assert isinstance(x, (torch.Tensor, float)), type(x)


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_public_boundary(name, data):
    make, call = SPECS[name]
    args = make(data.draw)
    try:
        out = call(args)
    except ERRORS as e:
        op = name.split(".")[0]
        assert op in str(e), f"error does not name the op {op!r}: {e}"
        return
    check_result(out)


# --------------------------------------------------------------------------------------------
# valid inputs for the behavioural checks below

def valid_calls(seed=0, n=400):
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(n, generator=g) * 100
    segs = torch.stack([start, start + 1 + torch.rand(n, generator=g) * 20], 1)
    scores = torch.rand(n, generator=g)
    idxs = torch.randint(0, 8, (n,), generator=g)
    boxes = torch.rand(50, 20, 4, generator=g) * 50
    boxes[..., 2:] += boxes[..., :2]
    spans = torch.stack([torch.randint(0, 10, (50,), generator=g), torch.randint(10, 20, (50,), generator=g)], 1).float()
    P, W = torch.rand(4, 6, 50, generator=g), torch.rand(4, 50, 50, generator=g)
    return {
        "temporal_iou": lambda: vgops.temporal_iou(segs[:200], segs[200:]),
        "temporal_iou.backward": lambda: _iou_grad(segs),
        "temporal_nms": lambda: vgops.temporal_nms(segs, scores, 0.5),
        "batched_temporal_nms": lambda: vgops.batched_temporal_nms(segs, scores, idxs, 0.5),
        "segment_map_iou": lambda: vgops.segment_map_iou(segs[:16], 64, 130.0),
        "tube_iou": lambda: vgops.tube_iou(boxes, spans, boxes.flip(0), spans.flip(0)),
        "segment_score_map.backward": lambda: _ssm_grads(P, W),
        "padded_coattention.backward": _coattention_grads(g),
        "additive_attention.backward": _additive_grads(g),
    }


def _grads(fn, *inputs):
    xs = [x.clone().requires_grad_() for x in inputs]
    outs = fn(*xs)
    return (*outs, *torch.autograd.grad(sum(o.square().sum() for o in outs), xs))


def _coattention_grads(g):
    """A call computing padded_coattention's outputs and input gradients on fixed inputs."""
    B, H, T, N, K, d = 3, 4, 300, 20, 3, 16
    feats = (torch.randn(B, H, T + K, d, generator=g), torch.randn(B, H, N + K, d, generator=g),
             torch.randn(B, T + K, H * d, generator=g), torch.randn(B, N + K, H * d, generator=g))
    v_mask, q_mask = torch.rand(B, T, generator=g) < 0.9, torch.rand(B, N, generator=g) < 0.8
    return lambda: _grads(lambda *f: vgops.padded_coattention(*f, v_mask, q_mask, return_maps=True), *feats)


def _additive_grads(g):
    """A call computing additive_attention's outputs and input gradients on fixed inputs."""
    B, P, S, d = 2, 900, 12, 64
    feats = (torch.randn(B, P, d, generator=g), torch.randn(B, S, d, generator=g), torch.randn(d, generator=g),
             torch.randn(B, S, 8, generator=g))
    mask = torch.rand(B, S, generator=g) < 0.8
    return lambda: _grads(lambda *f: vgops.additive_attention(*f, mask, return_weights=True), *feats)


def _ssm_grads(P, W):
    P, W = P.clone().requires_grad_(), W.clone().requires_grad_()
    sc = vgops.segment_score_map(P)
    loss = vgops.segment_weighted_token_loss(P, W).sum() + sc.masked_fill(sc.isinf(), 0).square().sum()
    return torch.autograd.grad(loss, (P, W))


def _iou_grad(segs):
    a = segs[:200].clone().requires_grad_()
    b = segs[200:].clone().requires_grad_()
    return torch.autograd.grad((vgops.temporal_iou(a, b) ** 2).sum(), (a, b))


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def assert_bitwise_equal(x, y):
    for a, b in zip(as_tuple(x), as_tuple(y)):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(valid_calls()))
def test_deterministic_across_runs_and_thread_counts(name):
    call = valid_calls()[name]
    threads = torch.get_num_threads()
    try:
        first = call()
        assert_bitwise_equal(first, call())
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            assert_bitwise_equal(first, call())
    finally:
        torch.set_num_threads(threads)


def test_concurrent_calls_match_serial():
    calls = valid_calls(seed=1)
    serial = {k: f() for k, f in calls.items()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(k, pool.submit(f)) for _ in range(4) for k, f in calls.items()]
        for k, fut in futures:
            assert_bitwise_equal(serial[k], fut.result(timeout=120))


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_repeated_calls_keep_memory_flat():
    calls = valid_calls(seed=2)
    for f in calls.values():  # warm up allocator caches and lazy initialisation
        f()
    gc.collect()
    before = _rss_bytes()
    for _ in range(200):
        for f in calls.values():
            f()
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 64 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 1,200 calls"


# --------------------------------------------------------------------------------------------
# sizes past 2^31 elements

def test_fake_kernels_handle_sizes_past_int32():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        gt = torch.empty(4, 2)
        out = torch.ops.vgops.segment_map_iou(gt, 40_000, torch.empty(4))
        assert out.shape == (4, 40_000, 40_000) and out.numel() > 2**31
        a = torch.empty(1, 50_000, 2)
        assert torch.ops.vgops.temporal_iou(a, a).numel() == 2_500_000_000


@pytest.mark.skipif(os.environ.get("VGOPS_SKIP_HUGE") == "1", reason="VGOPS_SKIP_HUGE=1")
def test_kernel_writes_past_int32_elements():
    # 2 x 33,000 x 33,000 float16 map = 2.18e9 elements (4.4 GB): flat offsets pass 2^31.
    n = 33_000
    gt = torch.tensor([[0.0, 5.0], [100.0, 900.0]], dtype=torch.float16)
    out = vgops.segment_map_iou(gt, n, 1000.0)
    assert out.numel() > 2**31
    step = 1000.0 / n
    e = torch.arange(n, dtype=torch.float64)
    # Row s of the second map starts at flat offset n^2 + s n: past 2^31 for s >= 32,075.
    for s in (0, 32_600, n - 1):
        cells = torch.stack([torch.full((n,), s * step, dtype=torch.float64), (e + 1) * step], 1)
        want = vgops.reference.temporal_iou(cells, gt[1:].double())[:, 0] * (e >= s)
        torch.testing.assert_close(out[1, s].double(), want, rtol=0, atol=4e-3)
    del out


# --------------------------------------------------------------------------------------------
# export and compile of a module using the ops

class MomentHead(torch.nn.Module):
    """A tiny grounding head: IoU loss against the gt and a 2D-TAN IoU map."""

    def forward(self, pred, gt):
        loss = (1 - vgops.temporal_iou(pred, gt, aligned=True)).mean()
        return loss, vgops.segment_map_iou(gt, 16, 32.0)


def test_export_and_compile_a_module():
    pred = torch.tensor([[1.0, 5.0], [3.0, 9.0]])
    gt = torch.tensor([[2.0, 6.0], [0.0, 8.0]])
    eager = MomentHead()(pred, gt)
    exported = torch.export.export(MomentHead(), (pred, gt))
    for got, want in zip(exported.module()(pred, gt), eager):
        torch.testing.assert_close(got, want)
    compiled = torch.compile(MomentHead(), fullgraph=True)
    for got, want in zip(compiled(pred, gt), eager):
        torch.testing.assert_close(got, want)
