"""The device and process context every stage runs in: one process or many (``torchrun``), its rank, world size and
device, and the few collectives training and inference need. Training, inference and the notebooks import it from
here (it sits with config and atomic below every stage).

``torchrun --nproc_per_node=N -m tal_kit train ...`` starts N processes and tells each its rank through the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Each process trains a
DistributedDataParallel replica on its share of every batch; gradients are averaged across processes after each
backward pass, so the replicas stay identical. NCCL connects GPUs, gloo connects CPU processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and results; the others only compute."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


class DeviceError(RuntimeError):
    """The requested device does not exist here."""


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local_rank> when a GPU is visible, else cpu; "cuda" -> cuda:<local_rank>; else as given."""
    device = requested = str(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"--device {requested}: not a device name; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {requested}: no CUDA device is visible here; use --device cpu, or auto (a GPU "
                          f"when there is one)")
    return resolved


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else describe a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved, backend=backend)


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any] | None:
    """Collect one picklable object from every rank on rank 0 (list in rank order); other ranks get None."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.is_distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shutdown(ctx: DistContext) -> None:
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
