"""One training epoch and one evaluation pass, sharing the forward/loss/accuracy step."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm import tqdm

from models.app.errors import TrainingDiverged
from models.app.event_augment import sample_frames
from models.app.training.distributed import DistContext, all_ranks, all_reduce_sum


@dataclass
class EpochResult:
    """Outcome of :func:`train_one_epoch` (sums are over all ranks)."""

    loss: float
    batches: int  # batches done in this epoch, counting those skipped on resume
    interrupted: bool
    seconds: float


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for ``dtype`` (bf16 / fp16), or a null context when None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_loss(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    criterion: Callable,
    amp_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[B, classes]`` and the scalar loss (fp32) of one batch."""
    with autocast(inputs.device, amp_dtype):
        logits = model(inputs)
    logits = logits.float()
    return logits, criterion(logits, targets)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many of ``targets`` ``[B]`` are among the top-k of ``logits`` ``[B, classes]``."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == targets[:, None]
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


def _mix(mixup, inputs: torch.Tensor, targets: torch.Tensor):
    """timm Mixup/CutMix; event clips ``[B, T, C, H, W]`` are mixed as ``[B, T*C, H, W]``."""
    if inputs.ndim == 5:
        b, t, c, h, w = inputs.shape
        mixed, targets = mixup(inputs.reshape(b, t * c, h, w), targets)
        return mixed.reshape(b, t, c, h, w), targets
    return mixup(inputs, targets)


def train_one_epoch(
    model: nn.Module,
    loader,
    criterion: Callable,
    optimizer: torch.optim.Optimizer,
    ctx: DistContext,
    *,
    mixup=None,
    frames_per_clip: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    clip_grad: float | None = None,
    ema=None,
    stop_requested: Callable[[], bool] = lambda: False,
    done_batches: int = 0,
    progress: bool = False,
    desc: str = "train",
) -> EpochResult:
    """Train over ``loader`` until it ends or ``stop_requested()`` holds on some rank.

    ``frames_per_clip``: train event clips ``[B, T, C, H, W]`` on that many of their frames,
    drawn per batch after mixing. ``done_batches``: batches of this epoch already trained
    before a resume (the loader's sampler starts after them). Raises :class:`TrainingDiverged`
    at the first non-finite loss on any rank, before the optimizer applies it; a stop leaves
    the current batch untrained.
    """
    model.train()
    start = time.perf_counter()
    totals = torch.zeros(2, dtype=torch.float64)  # loss sum, samples
    batches = done_batches
    total = done_batches + len(loader)
    bar = tqdm(total=total, initial=done_batches, desc=desc, leave=False, disable=not progress)
    for inputs, targets in loader:
        inputs = inputs.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        if mixup is not None:
            inputs, targets = _mix(mixup, inputs, targets)
        if frames_per_clip is not None:
            inputs = sample_frames(inputs, frames_per_clip)
        _, loss = forward_loss(model, inputs, targets, criterion, amp_dtype)
        finite = bool(torch.isfinite(loss).item())
        all_finite, go_on = all_ranks([finite, not stop_requested()])
        if not all_finite:
            bar.close()
            raise TrainingDiverged(
                f"loss became {loss.item() if not finite else 'non-finite on another rank'} "
                f"at batch {batches} of {desc}; the run stops here (lower lr, enable clip_grad)"
            )
        if not go_on:
            break
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if ema is not None:
            ema.update(model)
        totals += torch.tensor([loss.item() * len(inputs), len(inputs)], dtype=torch.float64)
        batches += 1
        bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.update()
    bar.close()
    all_reduce_sum(totals)
    return EpochResult(
        loss=float(totals[0] / max(totals[1], 1)),
        batches=batches,
        interrupted=batches < total,
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    ctx: DistContext,
    *,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%), mean cross-entropy and images/s over all ranks' shards."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top-1, top-5, samples
    start = time.perf_counter()
    for inputs, targets in tqdm(loader, desc=desc, leave=False, disable=not progress):
        inputs = inputs.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        logits, loss = forward_loss(model, inputs, targets, criterion, amp_dtype)
        top1, top5 = topk_correct(logits, targets)
        totals += torch.tensor([loss.item(), top1, top5, len(targets)], dtype=torch.float64)
    seconds = time.perf_counter() - start
    rate = torch.tensor([totals[3] / max(seconds, 1e-9)], dtype=torch.float64)
    all_reduce_sum(totals)
    all_reduce_sum(rate)
    n = max(float(totals[3]), 1.0)
    return {
        "loss": float(totals[0]) / n,
        "acc1": 100.0 * float(totals[1]) / n,
        "acc5": 100.0 * float(totals[2]) / n,
        "images": int(totals[3]),
        "images_per_sec": float(rate[0]),
    }
