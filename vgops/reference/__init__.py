"""Pure-PyTorch versions of every vgops op: the test oracle, the benchmark baseline and the
fallback backend. Readable first; float64-safe."""
from .temporal_iou import temporal_iou
from .temporal_nms import batched_temporal_nms, temporal_nms, temporal_nms_padded
from .temporal_soft_nms import temporal_soft_nms, temporal_soft_nms_padded

__all__ = ["temporal_iou", "temporal_nms", "batched_temporal_nms", "temporal_nms_padded", "temporal_soft_nms",
           "temporal_soft_nms_padded"]
