"""vgops: accelerated PyTorch operators for video grounding.

Every op is a ``torch.ops.vgops.*`` custom op (C++ on the CPU, CUDA on the GPU) wrapped by a
public function here that checks its inputs and picks a backend; all work with autograd,
torch.compile and torch.library.opcheck.
"""
from ._loader import build_info
from .ops.additive_attention import additive_attention
from .ops.calibration_gate import calibration_gate
from .ops.dual_correlation import dual_correlation, text_correlation
from .ops.gates import cross_gate, self_guided
from .ops.padded_coattention import padded_coattention
from .ops.recall_at_iou import recall_at_iou
from .ops.segment_map_iou import segment_map_iou
from .ops.segment_score_map import (
    segment_score_map,
    segment_weighted_inside_mean,
    segment_weighted_outside_mean,
    segment_weighted_token_loss,
)
from .ops.roi_align_1d import RoIAlign1d, roi_align_1d
from .ops.roi_align_clips import MultiScaleRoIAlignClips, RoIAlignClips, roi_align_clips, roi_align_clips_multiscale
from .ops.temporal_iou import temporal_iou
from .ops.temporal_nms import batched_temporal_nms, temporal_nms, temporal_nms_padded
from .ops.temporal_soft_nms import temporal_soft_nms, temporal_soft_nms_padded
from .ops.tube_iou import tube_iou, tube_metrics

from . import nn  # noqa: E402 (modules use the functions above)

__version__ = "0.1.0"

__all__ = [
    "build_info",
    "temporal_iou",
    "temporal_nms",
    "batched_temporal_nms",
    "segment_map_iou",
    "recall_at_iou",
    "tube_iou",
    "tube_metrics",
    "segment_score_map",
    "segment_weighted_token_loss",
    "segment_weighted_outside_mean",
    "segment_weighted_inside_mean",
    "roi_align_clips",
    "roi_align_clips_multiscale",
    "roi_align_1d",
    "RoIAlignClips",
    "MultiScaleRoIAlignClips",
    "RoIAlign1d",
    "cross_gate",
    "self_guided",
    "calibration_gate",
    "dual_correlation",
    "text_correlation",
    "nn",
    "temporal_nms_padded",
    "temporal_soft_nms",
    "temporal_soft_nms_padded",
    "padded_coattention",
    "additive_attention",
]
