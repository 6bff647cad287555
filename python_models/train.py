"""Training loop: AdamW, seeded, gradient clipping, tqdm progress bar, checkpoints that hold the
model name, its hyper-parameters, the dataset meta and the state dict (enough to rebuild the
model with no other file). Runs under torchrun through :mod:`python_models.distributed`."""
import itertools
import os

import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed
from .common import seed_everything, to_device
from .data import collate
from .registry import build_model

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is in requirements/common.txt; keep training usable without it
    tqdm = None


def make_loader(dataset, batch_size, shuffle, seed=0, world_size=1, rank=0, drop_last=False):
    """DataLoader with the repo's collate; a DistributedSampler when world_size > 1 (each rank
    sees its own shard; the shuffle is seeded and set per epoch by the caller)."""
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                     seed=seed, drop_last=drop_last)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                          drop_last=drop_last)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, collate_fn=collate,
                      drop_last=drop_last)


def _batches(loader):
    """Endless stream of batches; reshuffles every epoch (set_epoch for DistributedSampler)."""
    for epoch in itertools.count():
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader


def save_checkpoint(path, model, name, hparams, meta, step, metrics=None, data=None):
    """Write {"model", "hparams", "meta", "step", "metrics", "data", "state_dict"} to `path`
    (rank 0); `data` records how the training data was made (the CLI rebuilds its test split)."""
    net = model.module if hasattr(model, "module") else model
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"model": name, "hparams": dict(hparams or {}), "meta": meta, "step": step,
                "metrics": metrics or {}, "data": data or {}, "state_dict": net.state_dict()}, path)


def load_checkpoint(path, device="cpu"):
    """(model, checkpoint dict): the model rebuilt from the checkpoint's name, meta and
    hyper-parameters, with its weights loaded, in eval mode."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    for key in ("model", "hparams", "meta", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"checkpoint {path!r}: expected key {key!r} (a python_models "
                             f"checkpoint), got keys {sorted(ckpt)}")
    model = build_model(ckpt["model"], ckpt["meta"], **ckpt["hparams"]).to(device)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def train(model, dataset, steps=200, batch_size=16, lr=1e-3, weight_decay=1e-4, seed=0, device=None,
          grad_clip=5.0, progress=False, checkpoint=None, name=None, hparams=None, log=None, data=None):
    """Train `model` (an nn.Module with forward/loss/predict, or a registry name, then built from
    ``dataset.meta`` and `hparams`) for `steps` AdamW steps on `dataset`.

    Under torchrun the model is wrapped in DDP and every rank reads its shard; only rank 0 shows
    progress and writes `checkpoint`. Returns {"model": the trained (unwrapped) model,
    "losses": per-step losses, "parts": per-step loss parts}.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    rank, world, device = distributed.setup(device)
    seed_everything(seed)  # same seed on every rank: identical initial weights
    if isinstance(model, str):
        name, model = model, build_model(model, dataset.meta, **(hparams or {}))
    model = model.to(device).train()
    net = distributed.wrap(model, device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = make_loader(dataset, batch_size, shuffle=True, seed=seed, world_size=world, rank=rank,
                         drop_last=len(dataset) >= batch_size * world)
    bar = tqdm(total=steps, desc=f"train {name or type(model).__name__}", disable=not (progress and
               distributed.is_main())) if tqdm is not None else None
    losses, parts_log = [], []
    for step, batch in zip(range(steps), _batches(loader)):
        batch = to_device(batch, device)
        loss, parts = model.loss(net(batch), batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train: loss is {loss.item()} at step {step}; parts {parts}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(loss.detach().item())
        parts_log.append(parts)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if log is not None and distributed.is_main():
            log(step, losses[-1], parts)
    if bar is not None:
        bar.close()
    if checkpoint and distributed.is_main():
        save_checkpoint(checkpoint, model, name or type(model).__name__.lower(), hparams,
                        dataset.meta, steps, {"final_loss": losses[-1]}, data)
    return {"model": model, "losses": losses, "parts": parts_log}


def smoothed(losses, window):
    """Means of the first and last `window` losses (tests compare these: single steps are noisy)."""
    w = max(1, min(window, len(losses) // 2))
    return sum(losses[:w]) / w, sum(losses[-w:]) / w


__all__ = ["train", "make_loader", "save_checkpoint", "load_checkpoint", "smoothed"]
