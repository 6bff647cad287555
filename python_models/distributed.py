"""Multi-process training under ``torchrun --nproc_per_node=N``: DistributedDataParallel with
gloo on the CPU and NCCL on GPUs, a DistributedSampler per rank, logging and checkpoints on rank
0 only. Outside torchrun (no WORLD_SIZE in the environment) everything is single-process."""
import os

import torch
import torch.distributed as dist


def is_launched():
    """True when started by torchrun (it sets WORLD_SIZE, RANK and LOCAL_RANK)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device=None):
    """Initialise the process group if launched by torchrun; return (rank, world_size, device).
    NCCL needs one GPU per process, so each rank takes cuda:LOCAL_RANK."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if not is_launched():
        return 0, 1, device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def wrap(model, device):
    """DDP-wrap `model` when a process group is up; the model itself otherwise.
    find_unused_parameters: some heads (e.g. a second-stage IoU head) get no gradient on
    some steps, which DDP otherwise reports as an error."""
    if not (dist.is_available() and dist.is_initialized()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def is_main():
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
