"""The masked softmax the attention references share."""
import torch


def masked_softmax(logits, valid, dim):
    """softmax over `dim` of the entries where `valid` (broadcastable bool) is True; a slice with
    no valid entry gets all zeros (instead of softmax's NaN)."""
    weights = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=dim)
    return torch.where(valid.any(dim, keepdim=True), weights, torch.zeros_like(weights))
