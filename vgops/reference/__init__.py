"""Pure-PyTorch versions of every vgops op: the test oracle, the benchmark baseline and the
fallback backend. Readable first; float64-safe."""
from .roi_align_1d import roi_align_1d
from .roi_align_clips import roi_align_clips, roi_align_clips_multiscale
from .temporal_iou import temporal_iou
from .temporal_nms import batched_temporal_nms, temporal_nms

__all__ = ["temporal_iou", "temporal_nms", "batched_temporal_nms", "roi_align_clips", "roi_align_clips_multiscale",
           "roi_align_1d"]
