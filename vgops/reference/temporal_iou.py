import torch


def compute_dtype(dtype):
    """IoU is computed in float32 for half and bfloat16 inputs, in the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def temporal_iou(a, b, aligned=False):
    """IoU of 1-D segments: a [..., N, 2] with b [..., M, 2] -> [..., N, M] (leading dims
    broadcast), or elementwise for aligned=True: a, b [..., 2] -> [...].

    IoU = inter / (len_a + len_b - inter), 0 where the union is <= 0. Gradients where IoU has no
    derivative: tied endpoints split it evenly (torch.minimum/maximum), touching segments get none.
    """
    dtype = torch.promote_types(a.dtype, b.dtype)
    ct = compute_dtype(dtype)
    a, b = a.to(ct), b.to(ct)
    if not aligned:
        a, b = a.unsqueeze(-2), b.unsqueeze(-3)  # [..., N, 1, 2] against [..., 1, M, 2]
    s1, e1 = a.unbind(-1)
    s2, e2 = b.unbind(-1)
    w = torch.minimum(e1, e2) - torch.maximum(s1, s2)
    # Not clamp(min=0): its gradient at exactly 0 (touching segments) changed in torch 2.14 (1 ->
    # 0). where(w > 0) gives the minimum-norm subgradient 0 under every torch version.
    inter = torch.where(w > 0, w, torch.zeros_like(w))
    union = (e1 - s1) + (e2 - s2) - inter
    positive = union > 0
    # Divide by 1 where the union is not positive so no NaN reaches the gradient through where.
    iou = torch.where(positive, inter / torch.where(positive, union, torch.ones_like(union)),
                      torch.zeros_like(union))
    return iou.to(dtype)
