"""vgops: accelerated PyTorch operators for video grounding.

Every op is a ``torch.ops.vgops.*`` custom op (C++ on the CPU, CUDA on the GPU) wrapped by a
public function here that checks its inputs and picks a backend; all work with autograd,
torch.compile and torch.library.opcheck.
"""
from ._loader import build_info
from .ops.temporal_iou import temporal_iou
from .ops.temporal_nms import batched_temporal_nms, temporal_nms, temporal_nms_padded
from .ops.temporal_soft_nms import temporal_soft_nms, temporal_soft_nms_padded

__version__ = "0.1.0"

__all__ = ["build_info", "temporal_iou", "temporal_nms", "batched_temporal_nms", "temporal_nms_padded",
           "temporal_soft_nms", "temporal_soft_nms_padded"]
