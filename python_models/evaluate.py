"""Evaluation with the metrics the papers report: R@{1,5},IoU={0.3,0.5,0.7} and mIoU (percent,
via vgops.recall_at_iou); for spatio-temporal models also m_tIoU, m_vIoU, vIoU@{0.3,0.5} (via
vgops.tube_iou / vgops.tube_metrics). Also the random-ranking baseline the tests compare with."""
import torch

import vgops

from .common import to_device

NS, THRESHOLDS = (1, 5), (0.3, 0.5, 0.7)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def evaluate(model, loader, k=5, device=None, max_batches=None):
    """Run `model` over `loader` and return the metrics dict (values in percent)."""
    net = _unwrap(model)
    device = device or next(net.parameters()).device
    was_training = net.training
    net.eval()
    segs, gts, tious, vious = [], [], [], []
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            batch = to_device(batch, device)
            pred = net.predict(net(batch), batch, k=k)
            segs.append(pred["segments"].float().cpu())
            gts.append(batch["moment"].float().cpu())
            if "boxes" in pred:
                tiou, viou = vgops.tube_iou(pred["boxes"].float(), pred["segments"][:, 0].float(),
                                            batch["boxes"].float(), batch["moment"].float(),
                                            batch.get("video_mask"))
                tious.append(tiou.cpu())
                vious.append(viou.cpu())
    finally:
        net.train(was_training)
    if not segs:
        raise ValueError("evaluate: loader must yield at least one batch, got none")
    out = recall_at_iou_padded(segs, gts)
    if tious:
        out.update(vgops.tube_metrics(torch.cat(tious), torch.cat(vious)))
    out["num_queries"] = sum(s.shape[0] for s in segs)
    return out


def recall_at_iou_padded(segs, gts):
    """recall_at_iou over batches whose k may differ (short rows are masked, not guessed)."""
    k = max(s.shape[1] for s in segs)
    pred = torch.cat([torch.nn.functional.pad(s, (0, 0, 0, k - s.shape[1])) for s in segs])
    mask = torch.cat([torch.arange(k)[None, :].expand(s.shape[0], k) < s.shape[1] for s in segs])
    ns = tuple(n for n in NS if n <= k) or (1,)
    return vgops.recall_at_iou(pred, torch.cat(gts), pred_mask=mask, ns=ns, thresholds=THRESHOLDS)


def random_baseline(loader, k=5, seed=0):
    """Metrics of random ranking: k segments per query with start and end uniform (sorted) in
    [0, duration]. The reference point of "far above chance" in the tests."""
    g = torch.Generator().manual_seed(seed)
    segs, gts = [], []
    for batch in loader:
        dur = batch["duration"].float()
        u = torch.rand(dur.shape[0], k, 2, generator=g).sort(-1).values
        segs.append(u * dur[:, None, None])
        gts.append(batch["moment"].float())
    return recall_at_iou_padded(segs, gts)
