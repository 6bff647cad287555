"""recall_at_iou on 2,000 and 10,000 queries x 10 ranked predictions (R@{1,5}, IoU={0.3,0.5,0.7}, mIoU)
against the straightforward per-query Python evaluation loop (vgops.reference.recall_at_iou,
the way evaluation scripts are written). Target: >= 20x."""
import torch

import vgops
from vgops import reference

from . import harness


def _inputs(b, k, seed=0):
    def make(device):
        g = harness.generator(seed)
        return {"pred": harness.segments(k, g, b).to(device), "gt": harness.segments(1, g, b)[:, 0].to(device)}
    return make


def _compare(expected, got, inputs):
    if expected.keys() != got.keys():
        return False, f"keys {sorted(got)} != {sorted(expected)}"
    bad = [k for k in expected if abs(expected[k] - got[k]) > 1e-6]
    return (not bad), (f"differ at {bad}" if bad else "")


def _providers():
    def vgops_(inp, mode):
        note = f"backend={harness.vgops_backend('temporal_iou', inp['pred'])}"
        return harness.Run(lambda: vgops.recall_at_iou(inp["pred"], inp["gt"]), note=note)

    def reference_(inp, mode):
        return harness.Run(lambda: reference.recall_at_iou(inp["pred"], inp["gt"]))

    return {"vgops": vgops_, "reference": reference_}


# --quick runs the 2,000-query case: the reference loop takes seconds per call at 10,000.
CASES = [harness.Case("recall_at_iou", f"{b} queries x 10 preds", _inputs(b, 10), _providers(),
                      compare=_compare, quick=b == 2_000)
         for b in (2_000, 10_000)]
