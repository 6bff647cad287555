import math

import pytest
import torch
from conftest import cpu_and_cuda, needs_torchvision

import vgops
from vgops import reference

# Tolerances against the float64 reference, per dtype (outputs are O(1): averages of N(0, 1)
# features). float16/bfloat16 are computed in float32 and rounded once: about one ulp.
TOL = {torch.float64: dict(rtol=0, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5),
       torch.float16: dict(rtol=2e-3, atol=2e-3), torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}


def random_boxes(gen, *lead, image=64.0, dtype=torch.float64, device="cpu"):
    """Boxes (x1, y1, x2, y2) in image pixels [*lead, 4]: most inside the image, some partly or
    wholly outside, about 10% degenerate (zero width and height) and 5% reversed (x2 < x1)."""
    xy = torch.rand(*lead, 2, generator=gen, dtype=torch.float64) * image * 1.5 - image * 0.25
    wh = torch.rand(*lead, 2, generator=gen, dtype=torch.float64) * image * 0.6
    kind = torch.rand(*lead, 1, generator=gen, dtype=torch.float64)
    wh = torch.where(kind < 0.1, torch.zeros_like(wh), wh)
    wh = torch.where((kind >= 0.1) & (kind < 0.15), -0.3 * wh, wh)
    return torch.cat([xy, xy + wh], -1).to(dtype=dtype, device=device)


def random_features(gen, *shape, dtype=torch.float64, device="cpu"):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def naive_roi_align(frame, box, oh, ow, scale, sampling_ratio, aligned):
    """RoIAlign of one box on one frame [C, H, W], transliterated from the definition (torchvision's
    CPU kernel) with Python loops: the check of the oracle itself."""
    C, H, W = frame.shape
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = x1 * scale - offset, y1 * scale - offset
    rw, rh = x2 * scale - offset - sx, y2 * scale - offset - sy
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bh, bw = rh / oh, rw / ow
    gh = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rh / oh), 0)
    gw = sampling_ratio if sampling_ratio > 0 else max(math.ceil(rw / ow), 0)
    count = max(gh * gw, 1)
    out = torch.zeros(C, oh, ow, dtype=torch.float64)
    for ph in range(oh):
        for pw in range(ow):
            acc = torch.zeros(C, dtype=torch.float64)
            for iy in range(gh):
                y = sy + ph * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = sx + pw * bw + (ix + 0.5) * bw / gw
                    if y < -1 or y > H or x < -1 or x > W:
                        continue
                    y, x = max(y, 0.0), max(x, 0.0)
                    yl, xl = int(y), int(x)
                    if yl >= H - 1:
                        yl = yh = H - 1
                        y = float(yl)
                    else:
                        yh = yl + 1
                    if xl >= W - 1:
                        xl = xh = W - 1
                        x = float(xl)
                    else:
                        xh = xl + 1
                    ly, lx = y - yl, x - xl
                    hy, hx = 1 - ly, 1 - lx
                    acc += (hy * hx * frame[:, yl, xl] + hy * lx * frame[:, yl, xh]
                            + ly * hx * frame[:, yh, xl] + ly * lx * frame[:, yh, xh])
            out[:, ph, pw] = acc / count
    return out


class TestValues:
    def test_linear_map_gives_bin_centres(self):
        # Bilinear sampling of a linear map is exact and the samples of a bin are symmetric about
        # its centre, so every bin of a box inside the map equals the map at the bin centre.
        H = W = 12
        hh, ww = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                                indexing="ij")
        frame = torch.stack([2 * hh + 3 * ww + 1, -hh + 0.5 * ww])  # [C=2, H, W]
        features = frame.expand(1, 1, 2, H, W)
        boxes = torch.tensor([[[2.0, 3.0, 10.0, 7.0]]], dtype=torch.float64)
        out = vgops.roi_align_clips(features, boxes, (2, 4), spatial_scale=1.0, sampling_ratio=2, aligned=True)
        assert out.shape == (1, 1, 2, 2, 4)
        cy = 2.5 + 2 * torch.arange(2, dtype=torch.float64) + 1  # start 3 - 0.5, bin 2: centres 3.5, 5.5
        cx = 1.5 + 2 * torch.arange(4, dtype=torch.float64) + 1
        expected = torch.stack([2 * cy[:, None] + 3 * cx[None, :] + 1, -cy[:, None] + 0.5 * cx[None, :]])
        torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-12)

    def test_box_outside_the_map_gives_zeros_and_edge_reads_edge(self):
        features = torch.arange(16, dtype=torch.float64).reshape(1, 1, 1, 4, 4) + 1
        far = torch.tensor([[[10.0, 10.0, 14.0, 14.0]]], dtype=torch.float64)
        assert vgops.roi_align_clips(features, far, 2).abs().max() == 0
        # A box within half a pixel left of the map: every sample lies in [-1, 0] and reads column 0.
        edge = torch.tensor([[[-0.9, 1.0, -0.1, 2.0]]], dtype=torch.float64)
        out = vgops.roi_align_clips(features, edge, 1, aligned=False, sampling_ratio=2)
        # x: the box is stretched to 1 pixel, samples at -0.65 and -0.15 read column 0; y: samples
        # at 1.25 and 1.75 average rows 1 and 2 equally: (f[1, 0] + f[2, 0]) / 2 = (5 + 9) / 2.
        torch.testing.assert_close(out.flatten(), torch.tensor([7.0], dtype=torch.float64), rtol=0, atol=1e-14)

    @pytest.mark.parametrize("aligned", [True, False])
    @pytest.mark.parametrize("sampling_ratio", [-1, 1, 3])
    def test_reference_and_kernel_match_the_definition(self, gen, aligned, sampling_ratio):
        features = random_features(gen, 1, 6, 3, 7, 9)
        boxes = random_boxes(gen, 1, 6, 2, image=20.0)
        boxes[0, 0, 1] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # degenerate
        boxes[0, 1, 0] = torch.tensor([-30.0, -30.0, -12.0, -8.0])  # wholly outside
        boxes[0, 2, 1] = torch.tensor([6.0, 5.0, 1.0, 2.0])  # reversed
        args = ((3, 2), 0.5, sampling_ratio, aligned)
        naive = torch.stack([torch.stack([naive_roi_align(features[0, t], boxes[0, t, r], 3, 2, 0.5, sampling_ratio,
                                                          aligned) for r in range(2)]) for t in range(6)])[None]
        torch.testing.assert_close(reference.roi_align_clips(features, boxes, *args), naive, rtol=0, atol=1e-12)
        torch.testing.assert_close(vgops.roi_align_clips(features, boxes, *args), naive, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestAgainstReference:
    @pytest.mark.parametrize("aligned", [True, False])
    @pytest.mark.parametrize("sampling_ratio", [-1, 2])
    @pytest.mark.parametrize("per_frame", [None, 3])
    def test_float64(self, gen, device, aligned, sampling_ratio, per_frame):
        B, T, C, H, W = 2, 5, 4, 11, 13
        features = random_features(gen, B, T, C, H, W, device=device)
        lead = (B, T) if per_frame is None else (B, T, per_frame)
        boxes = random_boxes(gen, *lead, image=64.0, device=device)
        out = vgops.roi_align_clips(features, boxes, (3, 5), 0.2, sampling_ratio, aligned)
        ref = reference.roi_align_clips(features, boxes, (3, 5), 0.2, sampling_ratio, aligned)
        assert out.shape == ref.shape == lead + (C, 3, 5)
        assert out.is_contiguous()
        torch.testing.assert_close(out, ref, **TOL[torch.float64])
        assert (out != 0).any() and (out == 0).any()  # boxes on and off the map

    @pytest.mark.parametrize("output_size,scale", [(1, 1.0), ((2, 7), 0.125), (7, 0.25)])
    def test_output_sizes_and_scales(self, gen, device, output_size, scale):
        features = random_features(gen, 1, 3, 2, 16, 16, device=device)
        boxes = random_boxes(gen, 1, 3, 4, image=16 / scale, device=device)
        torch.testing.assert_close(vgops.roi_align_clips(features, boxes, output_size, scale),
                                   reference.roi_align_clips(features, boxes, output_size, scale),
                                   **TOL[torch.float64])

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
    def test_dtypes(self, gen, device, dtype):
        features = random_features(gen, 2, 3, 8, 10, 12, dtype=dtype, device=device)
        boxes = random_boxes(gen, 2, 3, dtype=dtype, device=device)
        out = vgops.roi_align_clips(features, boxes, 4, 0.25)
        assert out.dtype == dtype
        # Float32 compute of the rounded inputs, rounded once: compare with float64 of the same inputs.
        ref = reference.roi_align_clips(features.double(), boxes.double(), 4, 0.25)
        torch.testing.assert_close(out.double(), ref, **TOL[dtype])

    def test_boxes_of_another_dtype(self, gen, device):
        features = random_features(gen, 2, 3, 4, 9, 9, dtype=torch.float16, device=device)
        boxes = random_boxes(gen, 2, 3, image=36.0, dtype=torch.float64, device=device)
        out = vgops.roi_align_clips(features, boxes, 3, 0.25)  # float32 compute keeps the float64 boxes' precision
        ref = reference.roi_align_clips(features.double(), boxes.float().double(), 3, 0.25)
        assert out.dtype == torch.float16
        torch.testing.assert_close(out.double(), ref, **TOL[torch.float16])
        f32 = features.float()
        torch.testing.assert_close(vgops.roi_align_clips(f32, boxes, 3, 0.25),
                                   vgops.roi_align_clips(f32, boxes.float(), 3, 0.25), rtol=0, atol=0)

    def test_valid_mask(self, gen, device):
        features = random_features(gen, 2, 4, 3, 8, 8, device=device).requires_grad_()
        boxes = random_boxes(gen, 2, 4, 2, image=32.0, device=device)
        valid = torch.tensor([[True, False, True, True], [False, False, True, False]], device=device)
        out = vgops.roi_align_clips(features, boxes, 2, 0.25, valid=valid)
        ref = reference.roi_align_clips(features, boxes, 2, 0.25, valid=valid)
        torch.testing.assert_close(out, ref, **TOL[torch.float64])
        assert (out[~valid] == 0).all()
        (g,) = torch.autograd.grad(out.square().sum(), features)
        assert (g[~valid] == 0).all() and g[valid].abs().sum() > 0

    @pytest.mark.parametrize("aligned", [True, False])
    @pytest.mark.parametrize("sampling_ratio", [-1, 2])
    def test_gradients_match_reference(self, gen, device, aligned, sampling_ratio):
        features = random_features(gen, 2, 3, 4, 9, 11, device=device).requires_grad_()
        boxes = random_boxes(gen, 2, 3, 3, image=44.0, device=device)
        out = vgops.roi_align_clips(features, boxes, (3, 2), 0.25, sampling_ratio, aligned)
        w = random_features(gen, *out.shape, device=device)
        (g,) = torch.autograd.grad((out * w).sum(), features)
        (g_ref,) = torch.autograd.grad((reference.roi_align_clips(features, boxes, (3, 2), 0.25, sampling_ratio,
                                                                  aligned) * w).sum(), features)
        torch.testing.assert_close(g, g_ref, **TOL[torch.float64])
        assert g.abs().sum() > 0

    def test_gradcheck(self, gen, device):
        features = random_features(gen, 1, 2, 2, 5, 6, device=device).requires_grad_()
        boxes = random_boxes(gen, 1, 2, 2, image=24.0, device=device)
        valid = torch.tensor([[True, False]], device=device)
        assert torch.autograd.gradcheck(lambda f: vgops.roi_align_clips(f, boxes, 2, 0.25, valid=valid), (features,))
        assert torch.autograd.gradcheck(lambda f: vgops.roi_align_clips(f, boxes, (2, 3), 0.5, 2, False), (features,))

    def test_non_contiguous_and_channels_last(self, gen, device):
        B, T, C, H, W = 2, 6, 5, 7, 9
        base = random_features(gen, B, T, H, W, C, device=device)
        channels_last = base.permute(0, 1, 4, 2, 3)  # frames stored H, W, C
        strided = random_features(gen, B, 2 * T, C, H, W + 3, device=device)[:, ::2, :, :, 1:W + 1]
        boxes_t = random_boxes(gen, 2, B, T, image=36.0, device=device).permute(1, 2, 0, 3)  # [B, T, 2, 4] view
        for f in (channels_last, strided):
            assert not f.is_contiguous()
            f = f.detach().requires_grad_()
            out = vgops.roi_align_clips(f, boxes_t, 3, 0.25)
            fc = f.detach().contiguous().requires_grad_()
            out_c = vgops.roi_align_clips(fc, boxes_t.contiguous(), 3, 0.25)
            torch.testing.assert_close(out, out_c, rtol=0, atol=0)
            w = torch.randn_like(out)
            (g,) = torch.autograd.grad((out * w).sum(), f)
            (g_c,) = torch.autograd.grad((out_c * w).sum(), fc)
            torch.testing.assert_close(g, g_c, rtol=0, atol=0)

    @pytest.mark.parametrize("shape,box_lead", [((0, 3, 2, 5, 5), (0, 3)), ((2, 0, 2, 5, 5), (2, 0)),
                                                ((2, 3, 2, 5, 5), (2, 3, 0)), ((2, 3, 0, 5, 5), (2, 3)),
                                                ((2, 3, 2, 0, 5), (2, 3, 1)), ((1, 2, 3, 4, 0), (1, 2))])
    def test_empty(self, gen, device, shape, box_lead):
        features = random_features(gen, *shape, device=device).requires_grad_()
        boxes = random_boxes(gen, *box_lead, device=device)
        out = vgops.roi_align_clips(features, boxes, (2, 3))
        assert out.shape == box_lead + (shape[2], 2, 3)
        assert out.numel() == 0 or (out == 0).all()  # H or W = 0: nothing to sample
        out.sum().backward()
        assert features.grad.shape == features.shape and (features.grad == 0).all()
        torch.testing.assert_close(out, reference.roi_align_clips(features, boxes, (2, 3)))

    def test_extreme_boxes_are_safe(self, gen, device):
        features = random_features(gen, 1, 6, 2, 8, 8, device=device).requires_grad_()
        nan, inf = float("nan"), float("inf")
        boxes = torch.tensor([[[nan, 0.0, 4.0, 4.0], [0.0, 0.0, inf, 4.0], [-inf, -inf, inf, inf],
                               [0.0, 0.0, 1e30, 1e30], [-1e30, 2.0, 3.0, 5.0], [1.0, 1.0, 5.0, 5.0]]],
                             dtype=torch.float64, device=device)
        out = vgops.roi_align_clips(features, boxes, 3, sampling_ratio=-1)  # adaptive grids up to the cap
        assert torch.isfinite(out).all()
        assert (out[0, :5] == 0).all()  # non-finite boxes pool to 0, and so do these (no sample on the map)
        torch.testing.assert_close(out[0, 5], reference.roi_align_clips(features[:, 5:], boxes[:, 5:], 3)[0, 0])
        out.sum().backward()
        assert torch.isfinite(features.grad).all()
        # A box 1000 pixels wide on an 8 x 8 map: 500 x 500 samples per bin, as the reference.
        big = torch.tensor([[[-2.0, 3.0, 998.0, 1000.0]]], dtype=torch.float64, device=device)
        f1 = features[:, :1].detach()
        torch.testing.assert_close(vgops.roi_align_clips(f1, big, 2), reference.roi_align_clips(f1, big, 2),
                                   **TOL[torch.float64])

    def test_backend_reference_equals_cpp(self, gen, device):
        features = random_features(gen, 2, 3, 4, 9, 9, device=device)
        boxes = random_boxes(gen, 2, 3, image=36.0, device=device)
        torch.testing.assert_close(vgops.roi_align_clips(features, boxes, 3, 0.25, backend="reference"),
                                   vgops.roi_align_clips(features, boxes, 3, 0.25, backend="cpp"),
                                   **TOL[torch.float64])

    def test_backward_is_deterministic(self, gen, device):
        features = random_features(gen, 2, 8, 16, 12, 12, dtype=torch.float32, device=device).requires_grad_()
        boxes = random_boxes(gen, 2, 8, 4, image=48.0, device=device)
        grad_out = torch.randn(2, 8, 4, 16, 3, 3, generator=gen).to(device)

        def grad():
            out = vgops.roi_align_clips(features, boxes, 3, 0.25)
            return torch.autograd.grad(out, features, grad_out)[0]

        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        try:
            torch.use_deterministic_algorithms(True)  # CUDA: the gather kernel
            first = grad()
            assert torch.equal(grad(), first)
            torch.set_num_threads(1)
            assert torch.equal(grad(), first)
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)
        if device == "cpu":  # the CPU kernel is deterministic in every mode
            assert torch.equal(grad(), first)
        else:  # the default CUDA kernel (atomics) agrees up to the order of the sums
            torch.testing.assert_close(grad(), first, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", cpu_and_cuda())
class TestMultiscale:
    SIZES = ((16, 20), (8, 10), (4, 5), (2, 3))
    SCALES = [1 / 4, 1 / 8, 1 / 16, 1 / 32]

    @pytest.mark.parametrize("per_frame", [None, 2])
    def test_equals_stacked_levels(self, gen, device, per_frame):
        levels = [random_features(gen, 2, 3, 4, h, w, device=device).requires_grad_() for h, w in self.SIZES]
        lead = (2, 3) if per_frame is None else (2, 3, per_frame)
        boxes = random_boxes(gen, *lead, image=72.0, device=device)
        valid = torch.tensor([[True, True, False], [True, False, True]], device=device)
        out = vgops.roi_align_clips_multiscale(levels, boxes, (2, 3), self.SCALES, valid=valid)
        assert out.shape == lead + (4, 4, 2, 3)
        stacked = torch.stack([vgops.roi_align_clips(f, boxes, (2, 3), s, valid=valid)
                               for f, s in zip(levels, self.SCALES)], dim=-4)
        torch.testing.assert_close(out, stacked, rtol=0, atol=0)
        ref = reference.roi_align_clips_multiscale(levels, boxes, (2, 3), self.SCALES, valid=valid)
        torch.testing.assert_close(out, ref, **TOL[torch.float64])
        w = torch.randn_like(out)
        grads = torch.autograd.grad((out * w).sum(), levels)
        grads_ref = torch.autograd.grad((ref * w).sum(), levels)
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, **TOL[torch.float64])

    def test_gradcheck(self, gen, device):
        levels = [random_features(gen, 1, 2, 2, h, h, device=device).requires_grad_() for h in (6, 3)]
        boxes = random_boxes(gen, 1, 2, image=24.0, device=device)
        assert torch.autograd.gradcheck(lambda a, b: vgops.roi_align_clips_multiscale([a, b], boxes, 2, [0.25, 0.125]),
                                        tuple(levels))

    def test_one_level_and_empty(self, gen, device):
        f = random_features(gen, 2, 0, 3, 4, 4, device=device)
        out = vgops.roi_align_clips_multiscale([f], random_boxes(gen, 2, 0, device=device), 2, [0.5])
        assert out.shape == (2, 0, 1, 3, 2, 2)


class TestRegistration:
    def test_opcheck(self, gen):
        features = random_features(gen, 2, 3, 4, 7, 8).requires_grad_()
        boxes = random_boxes(gen, 2, 3, 2, image=32.0)
        valid = torch.tensor([[True, False, True], [True, True, True]])
        op = torch.ops.vgops.roi_align_clips.default
        torch.library.opcheck(op, (features, boxes, 3, 2, 0.25, -1, True, valid))
        levels = [random_features(gen, 2, 3, 4, h, h).requires_grad_() for h in (8, 4)]
        torch.library.opcheck(torch.ops.vgops.roi_align_clips_multiscale.default,
                              (levels, boxes, 2, 2, [0.25, 0.125], -1, True, valid))
        # Other dtypes and the backward ops (no autograd of their own): schema and fake kernels.
        quick = ("test_schema", "test_faketensor")
        torch.library.opcheck(op, (features.detach().float(), boxes.float(), 2, 2, 0.5, 2, False, None),
                              test_utils=quick)
        torch.library.opcheck(op, (features.detach().half(), boxes, 2, 2, 0.5), test_utils=quick)
        grad = random_features(gen, 2, 3, 2, 4, 3, 2)
        torch.library.opcheck(torch.ops.vgops._roi_align_clips_backward.default,
                              (grad, boxes, 7, 8, 0.25, -1, True, valid), test_utils=quick)
        torch.library.opcheck(torch.ops.vgops._roi_align_clips_multiscale_backward.default,
                              (random_features(gen, 2, 3, 2, 2, 4, 2, 2), boxes, [8, 4], [8, 4], [0.25, 0.125], -1,
                               True, None), test_utils=quick)

    def test_compile_fullgraph_forward_backward(self, gen):
        def pooled_loss(features, boxes, valid):
            return vgops.roi_align_clips(features, boxes, 3, 0.25, valid=valid).square().mean()

        compiled = torch.compile(pooled_loss, fullgraph=True, backend="aot_eager")
        features = random_features(gen, 2, 3, 4, 8, 8).requires_grad_()
        boxes = random_boxes(gen, 2, 3, image=32.0)
        valid = torch.tensor([[True, False, True], [True, True, True]])
        loss = compiled(features, boxes, valid)
        (g,) = torch.autograd.grad(loss, features)
        (g_ref,) = torch.autograd.grad(pooled_loss(features, boxes, valid), features)
        torch.testing.assert_close(loss, pooled_loss(features, boxes, valid))
        torch.testing.assert_close(g, g_ref)

    def test_compile_fullgraph_inductor_multiscale(self, gen):
        def pooled(levels, boxes):
            return vgops.roi_align_clips_multiscale(levels, boxes, 2, [0.25, 0.125]).flatten(-4, -3).amax(-1)

        compiled = torch.compile(pooled, fullgraph=True)
        levels = [random_features(gen, 1, 2, 3, h, h, dtype=torch.float32) for h in (8, 4)]
        boxes = random_boxes(gen, 1, 2, image=32.0, dtype=torch.float32)
        torch.testing.assert_close(compiled(levels, boxes), pooled(levels, boxes))

    def test_autocast_keeps_input_dtype(self, gen):
        features = random_features(gen, 1, 2, 3, 6, 6, dtype=torch.float32)
        boxes = random_boxes(gen, 1, 2, image=24.0, dtype=torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = vgops.roi_align_clips(features, boxes, 2, 0.25)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, vgops.roi_align_clips(features, boxes, 2, 0.25), rtol=0, atol=0)

    def test_modules(self, gen):
        features = random_features(gen, 1, 2, 3, 6, 6)
        boxes = random_boxes(gen, 1, 2, image=24.0)
        m = vgops.RoIAlignClips((2, 3), spatial_scale=0.25, sampling_ratio=2)
        assert "output_size=(2, 3), spatial_scale=0.25, sampling_ratio=2, aligned=True" in repr(m)
        torch.testing.assert_close(m(features, boxes), vgops.roi_align_clips(features, boxes, (2, 3), 0.25, 2))
        ms = vgops.MultiScaleRoIAlignClips(2, [0.25, 0.5])
        assert "spatial_scales=[0.25, 0.5]" in repr(ms)
        assert ms([features, features], boxes).shape == (1, 2, 2, 3, 2, 2)


class TestErrors:
    def test_bad_inputs(self):
        f = torch.rand(2, 3, 4, 5, 5)
        b = torch.rand(2, 3, 4)
        with pytest.raises(ValueError, match=r"roi_align_clips: features must be a 5-d tensor \[B, T, C, H, W\], "
                                             r"got shape \(3, 4, 5, 5\)"):
            vgops.roi_align_clips(f[0], b, 2)
        with pytest.raises(TypeError, match=r"roi_align_clips: features must be a floating-point tensor, got dtype "
                                            r"torch.int64"):
            vgops.roi_align_clips(f.long(), b, 2)
        with pytest.raises(ValueError, match=r"boxes must be \[B, T, 4\] or \[B, T, R, 4\] with \(B, T\) = \(2, 3\) "
                                             r"of features .*got shape \(3, 3, 4\)"):
            vgops.roi_align_clips(f, torch.rand(3, 3, 4), 2)
        with pytest.raises(ValueError, match=r"got shape \(2, 3, 5\)"):
            vgops.roi_align_clips(f, torch.rand(2, 3, 5), 2)
        with pytest.raises(TypeError, match="boxes must be a floating-point tensor"):
            vgops.roi_align_clips(f, b.long(), 2)
        with pytest.raises(ValueError, match=r"valid must be a bool tensor \[B, T\] = \[2, 3\], got torch.int64 of "
                                             r"shape \(2, 3\)"):
            vgops.roi_align_clips(f, b, 2, valid=torch.ones(2, 3, dtype=torch.long))
        with pytest.raises(ValueError, match=r"got torch.bool of shape \(3, 2\)"):
            vgops.roi_align_clips(f, b, 2, valid=torch.ones(3, 2, dtype=torch.bool))
        with pytest.raises(ValueError, match=r"output_size must be positive, got \(0, 2\)"):
            vgops.roi_align_clips(f, b, (0, 2))
        with pytest.raises(TypeError, match=r"output_size must be an int or a pair of ints \(h, w\), got 2.5"):
            vgops.roi_align_clips(f, b, 2.5)
        with pytest.raises(ValueError, match=r"spatial_scale must be a finite number > 0, got -0.5"):
            vgops.roi_align_clips(f, b, 2, spatial_scale=-0.5)
        with pytest.raises(TypeError, match="sampling_ratio must be an int, got float"):
            vgops.roi_align_clips(f, b, 2, sampling_ratio=2.0)
        with pytest.raises(TypeError, match="aligned must be a bool, got int"):
            vgops.roi_align_clips(f, b, 2, aligned=1)
        with pytest.raises(ValueError, match=r"all tensors must be on one device, got features on cpu, boxes on meta"):
            vgops.roi_align_clips(f, b.to("meta"), 2)

    def test_multiscale_bad_inputs(self):
        b = torch.rand(2, 3, 4)
        levels = [torch.rand(2, 3, 4, 8, 8), torch.rand(2, 3, 4, 4, 4)]
        with pytest.raises(TypeError, match=r"features must be a non-empty list"):
            vgops.roi_align_clips_multiscale([], b, 2, [])
        with pytest.raises(ValueError, match=r"every level must share B, T, C and dtype with level 0, got features\[1\]"):
            vgops.roi_align_clips_multiscale([levels[0], torch.rand(2, 3, 5, 4, 4)], b, 2, [0.5, 0.25])
        with pytest.raises(ValueError, match=r"spatial_scales must be a list with one scale per level \(2\), got 1"):
            vgops.roi_align_clips_multiscale(levels, b, 2, [0.5])
        with pytest.raises(ValueError, match=r"spatial_scales\[1\] must be a finite number > 0"):
            vgops.roi_align_clips_multiscale(levels, b, 2, [0.5, 0.0])

    def test_kernel_checks_direct_calls(self):
        f, b = torch.rand(2, 3, 4, 5, 5), torch.rand(2, 3, 1, 4)
        with pytest.raises(ValueError, match=r"boxes must be \[B, T, R, 4\]"):
            torch.ops.vgops.roi_align_clips(f, b[:, :, 0], 2, 2)
        with pytest.raises(ValueError, match="must match features"):
            torch.ops.vgops.roi_align_clips(f, b[:1], 2, 2)
        with pytest.raises(ValueError, match="output size must be positive"):
            torch.ops.vgops.roi_align_clips(f, b, 0, 2)
        with pytest.raises(ValueError, match="one spatial scale per level"):
            torch.ops.vgops.roi_align_clips_multiscale([f, f], b, 2, 2, [0.5])
        with pytest.raises(ValueError, match="grad must be"):
            torch.ops.vgops._roi_align_clips_backward(torch.rand(2, 3, 2, 4, 2, 2), b, 5, 5, 1.0, -1, True, None)

    def test_forced_backend_that_cannot_serve(self, monkeypatch):
        from vgops import _backend

        monkeypatch.setattr(_backend, "HAS_EXTENSION", False)
        f, b = torch.rand(1, 2, 3, 4, 4), torch.rand(1, 2, 4) * 4
        with pytest.raises(RuntimeError, match=r"backend 'cpp' cannot serve these inputs"):
            vgops.roi_align_clips(f, b, 2, backend="cpp")
        torch.testing.assert_close(vgops.roi_align_clips(f, b, 2), reference.roi_align_clips(f, b, 2))


@needs_torchvision
@pytest.mark.parametrize("device", cpu_and_cuda())
class TestTorchvision:
    """Frame by frame, vgops equals torchvision.ops.roi_align on the same frame with the same box."""

    @staticmethod
    def torchvision_per_frame(features, boxes, output_size, scale, sampling_ratio, aligned):
        from torchvision.ops import roi_align

        B, T, R = boxes.shape[:3]
        frames = torch.arange(B * T, dtype=boxes.dtype, device=boxes.device).repeat_interleave(R)
        rois = torch.cat([frames[:, None], boxes.reshape(-1, 4)], 1)
        out = roi_align(features.flatten(0, 1), rois, output_size, scale, sampling_ratio, aligned)
        return out.reshape(B, T, R, *out.shape[1:])

    @pytest.mark.parametrize("aligned", [True, False])
    @pytest.mark.parametrize("sampling_ratio", [-1, 1, 2])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_forward_and_backward(self, gen, device, aligned, sampling_ratio, dtype):
        features = random_features(gen, 2, 4, 3, 13, 17, dtype=dtype, device=device).requires_grad_()
        boxes = random_boxes(gen, 2, 4, 3, image=68.0, dtype=dtype, device=device)
        boxes[0, 0, 0] = torch.tensor([20.0, 20.0, 20.0, 20.0])  # degenerate
        boxes[0, 0, 1] = torch.tensor([-40.0, -40.0, -10.0, -10.0])  # wholly outside
        boxes[0, 1, 0] = torch.tensor([-10.0, 50.0, 30.0, 90.0])  # partly outside
        args = ((3, 4), 0.25, sampling_ratio, aligned)
        out = vgops.roi_align_clips(features, boxes, *args)
        tv = self.torchvision_per_frame(features, boxes, *args)
        tol = TOL[torch.float64] if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out, tv, **tol)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        (g,) = torch.autograd.grad((out * w).sum(), features)
        (g_tv,) = torch.autograd.grad((tv * w).sum(), features)
        torch.testing.assert_close(g, g_tv, **tol)

    def test_one_box_per_frame_and_half(self, gen, device):
        features = random_features(gen, 3, 5, 8, 14, 14, dtype=torch.float32, device=device)
        boxes = random_boxes(gen, 3, 5, image=224.0, dtype=torch.float32, device=device)
        out = vgops.roi_align_clips(features, boxes, 7, 1 / 16)
        tv = self.torchvision_per_frame(features, boxes[:, :, None], 7, 1 / 16, -1, True)[:, :, 0]
        torch.testing.assert_close(out, tv, rtol=1e-5, atol=1e-6)
        # float16: vgops accumulates in float32, torchvision (on the CPU) in float16; both against
        # float64 on the same float16 inputs, vgops is within one rounding and never worse.
        fh, bh = features.half(), boxes.half()
        half = vgops.roi_align_clips(fh, bh, 7, 1 / 16)
        tv_half = self.torchvision_per_frame(fh, bh[:, :, None], 7, 1 / 16, -1, True)[:, :, 0]
        exact = self.torchvision_per_frame(fh.double(), bh.double()[:, :, None], 7, 1 / 16, -1, True)[:, :, 0]
        err, err_tv = (half.double() - exact).abs().max(), (tv_half.double() - exact).abs().max()
        assert err <= 2e-3 * max(1.0, exact.abs().max().item()) and err <= err_tv, (err, err_tv)


def test_cuda_kernels_registered():
    for op in ("roi_align_clips", "_roi_align_clips_backward", "roi_align_clips_multiscale",
               "_roi_align_clips_multiscale_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"vgops::{op}", "CPU"), op
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"vgops::{op}", "CUDA") == vgops.build_info()["cuda"]

