"""Pure-PyTorch versions of every vgops op: the test oracle, the benchmark baseline and the
fallback backend. Readable first; float64-safe."""
from .additive_attention import additive_attention
from .calibration_gate import calibration_gate
from .dual_correlation import dual_correlation, text_correlation
from .gates import cross_gate, self_guided
from .recall_at_iou import recall_at_iou
from .padded_coattention import padded_coattention
from .segment_map_iou import segment_map_iou
from .segment_score_map import (
    segment_score_map,
    segment_score_map_cumsum,
    segment_weighted_inside_mean,
    segment_weighted_inside_mean_cumsum,
    segment_weighted_outside_mean,
    segment_weighted_outside_mean_cumsum,
    segment_weighted_token_loss,
    segment_weighted_token_loss_cumsum,
)
from .roi_align_1d import roi_align_1d
from .roi_align_clips import roi_align_clips, roi_align_clips_multiscale
from .temporal_iou import temporal_iou
from .temporal_nms import batched_temporal_nms, temporal_nms, temporal_nms_padded
from .temporal_soft_nms import temporal_soft_nms, temporal_soft_nms_padded
from .tube_iou import tube_iou

__all__ = [
    "temporal_iou",
    "temporal_nms",
    "batched_temporal_nms",
    "segment_map_iou",
    "recall_at_iou",
    "tube_iou",
    "segment_score_map",
    "segment_weighted_token_loss",
    "segment_weighted_outside_mean",
    "segment_weighted_inside_mean",
    "segment_score_map_cumsum",
    "segment_weighted_token_loss_cumsum",
    "segment_weighted_outside_mean_cumsum",
    "segment_weighted_inside_mean_cumsum",
    "roi_align_clips",
    "roi_align_clips_multiscale",
    "roi_align_1d",
    "cross_gate",
    "self_guided",
    "calibration_gate",
    "dual_correlation",
    "text_correlation",
    "temporal_nms_padded",
    "temporal_soft_nms",
    "temporal_soft_nms_padded",
    "padded_coattention",
    "additive_attention",
]
