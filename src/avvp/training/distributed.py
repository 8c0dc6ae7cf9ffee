"""DistributedDataParallel setup for runs launched with ``torchrun`` (never a home-made launcher).

``torchrun --nproc_per_node=N -m avvp.cli train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; everything
else runs as a single process. CPU runs use the gloo backend, CUDA runs nccl.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return device


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
