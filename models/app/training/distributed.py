"""torchrun / DistributedDataParallel helpers: process-group setup and metric reduction."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from models.app.errors import UserError
from models.app.options import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``).

    Uses nccl with one GPU per local rank on CUDA, gloo on the CPU. Without torchrun's
    variables this is a single process.
    """
    dev = resolve_device(device)
    world_size, rank, local_rank = (
        _environment_int(name, default) for name, default in
        (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    if dev.type == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, device=dev)


def _environment_int(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment variable {name}={text!r} is not an integer "
                        "(torchrun sets it)") from None


def restart_count() -> int:
    """How often torchrun has restarted this node's workers after one of them failed."""
    return _environment_int("TORCHELASTIC_RESTART_COUNT", 0)


def restarted() -> bool:
    """Whether these workers are a restart by torchrun (``--max-restarts``), collectively: the
    agent of the failed node counts the restart, the others restart their workers without."""
    return not all_ranks([restart_count() == 0])[0]


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a CPU tensor of counts/sums over all ranks, in place (a no-op in one process)."""
    if dist.is_initialized():
        reduced = values.to(_collective_device())
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        values.copy_(reduced.cpu())
    return values


def all_reduce_min_(values: torch.Tensor) -> torch.Tensor:
    """The minimum over all ranks of a 1-D tensor, in place (a no-op in one process)."""
    if dist.is_initialized():
        reduced = values.to(_collective_device())
        dist.all_reduce(reduced, op=dist.ReduceOp.MIN)
        values.copy_(reduced)
    return values


def all_ranks(flags: list[bool]) -> list[bool]:
    """For each flag, whether it holds on every rank (one collective for all flags)."""
    values = torch.tensor([1.0 if f else 0.0 for f in flags])
    return [v > 0 for v in all_reduce_min_(values).tolist()]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (collective when distributed)."""
    if not dist.is_initialized():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (collective when distributed)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]

