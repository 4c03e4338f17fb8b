"""One training epoch and one evaluation pass, sharing the forward/loss/accuracy step."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from models.app import modeling
from models.app.config import TrainConfig
from models.app.errors import TrainingDiverged
from models.app.event_augment import sample_frames
from models.app.training.distributed import DistContext, all_reduce_min_, all_reduce_sum
from models.fold import fold_batchnorm
from models.zoo import SpikingBackbone


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


def _mix(mixup, inputs: torch.Tensor, targets: torch.Tensor, original_cut: bool = False):
    """timm Mixup/CutMix; event clips ``[B, T, C, H, W]`` are mixed as ``[B, T*C, H, W]``,
    or with ``original_cut`` as the original event training does, handing timm the 5-D clips:
    its box, drawn for ``H x W``, then cuts dims 2 and 3 (channel and height)."""
    if inputs.ndim == 5 and not original_cut:
        b, t, c, h, w = inputs.shape
        mixed, targets = mixup(inputs.reshape(b, t * c, h, w), targets)
        return mixed.reshape(b, t, c, h, w), targets
    return mixup(inputs, targets)


def all_finite(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Whether no element of ``tensors`` is NaN or infinite: a 0-dim bool tensor (no sync)."""
    return nn.utils.get_total_norm(list(tensors), float("inf")).isfinite()


@dataclass
class TrainingState:
    """Everything a training step changes and a checkpoint keeps: the model (unwrapped), its
    optimizer and learning-rate schedule, the fp16 loss scaler and the EMA of the weights."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None = None
    ema: nn.Module | None = None

    def state_dict(self) -> dict[str, Any]:
        """The parts' state dicts under ``model``, ``optimizer``, ``scheduler``, ``scaler``
        and ``ema`` (None for a part that is not used)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], schedule: bool = True) -> None:
        """Restore :meth:`state_dict`; ``schedule=False`` keeps the new schedule (a resumed
        run that trains for another number of epochs)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if schedule:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])


@dataclass
class TrainStep:
    """One optimisation step of ``state`` through ``net`` (the model, or its
    DistributedDataParallel wrapper): mixing, frame sampling, forward in ``amp_dtype``,
    backward (through the scaler for fp16), clipping, the optimizer and the EMA update."""

    state: TrainingState
    net: nn.Module
    criterion: Callable
    mixup: Callable | None = None
    frames_per_clip: int | None = None
    amp_dtype: torch.dtype | None = None
    clip_grad: float | None = None
    original_cut: bool = False  # event CutMix over channel and height (config event_cutmix)

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Train on one batch; returns ``[loss, loss finite, weights finite]`` (a tensor on
        the device, read by the caller in its one host sync per batch)."""
        state = self.state
        if self.mixup is not None:
            inputs, targets = _mix(self.mixup, inputs, targets, self.original_cut)
        if self.frames_per_clip is not None:
            inputs = sample_frames(inputs, self.frames_per_clip)
        _, loss = forward_loss(self.net, inputs, targets, self.criterion, self.amp_dtype)
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
            state.scaler.unscale_(state.optimizer)
        else:
            loss.backward()
        if self.clip_grad is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), self.clip_grad)
        if state.scaler is not None:
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            state.optimizer.step()
        if state.ema is not None:
            state.ema.update(state.model)
        loss = loss.detach()
        return torch.stack([loss, loss.isfinite().float(),
                            all_finite(state.model.parameters()).float()])


@dataclass(frozen=True)
class EpochProgress:
    """How far this process got through an epoch: batches trained, the sum of their losses
    (each times its batch size) and their samples, and the seconds spent. A checkpoint saved
    in the middle of an epoch keeps it, so the resumed epoch's loss averages all its batches."""

    batches: int = 0
    loss_sum: float = 0.0
    samples: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class EpochResult:
    """Outcome of :func:`train_one_epoch`: this process's progress, and whether a stop was
    asked for before the loader ended."""

    progress: EpochProgress
    interrupted: bool

    def mean_loss(self) -> float:
        """Mean training loss over all ranks' samples (collective when distributed)."""
        totals = torch.tensor([self.progress.loss_sum, self.progress.samples],
                              dtype=torch.float64)
        all_reduce_sum(totals)
        return float(totals[0] / max(totals[1], 1))


def train_one_epoch(
    step: TrainStep,
    loader,
    ctx: DistContext,
    start: EpochProgress = EpochProgress(),
    stop_requested: Callable[[], bool] = lambda: False,
    bar: tqdm | None = None,
    first_update: int | None = None,
) -> EpochResult:
    """Train ``step`` over ``loader`` (which begins after the ``start.batches`` already
    trained) until it ends or a stop is asked for on some rank.

    Per batch, one host sync reads the loss, whether it and the weights are finite, and (one
    collective when distributed) whether every rank goes on. A stop takes effect after the
    batch in flight has been trained, so the state saved then is that of a finished batch.
    Raises :class:`TrainingDiverged` after a batch whose loss, or the weights after its step,
    hold NaN or infinity on any rank (nothing of that batch may be saved).
    With ``first_update``, the scheduler's LR is set per update (``step_update``) before each
    batch, counting updates from it.
    """
    step.net.train()
    began = time.perf_counter()
    sums = torch.tensor([start.loss_sum, start.samples], dtype=torch.float64, device=ctx.device)
    batches = start.batches
    for inputs, targets in loader:
        if first_update is not None:
            step.state.scheduler.step_update(first_update + batches - start.batches)
        inputs = inputs.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        report = step(inputs, targets)
        sums[0] += report[0].double() * len(inputs)
        sums[1] += len(inputs)
        status = torch.cat([report, torch.full((1,), float(not stop_requested()),
                                               device=report.device)])
        all_reduce_min_(status[1:])  # finite loss, finite weights, go on: on every rank
        loss, loss_finite, weights_finite, go_on = status.tolist()
        batches += 1
        if not loss_finite:
            here = math.isfinite(loss)
            raise TrainingDiverged(
                f"the loss became {'non-finite on another rank' if here else loss} at batch "
                f"{batches}"
            )
        if not weights_finite:
            raise TrainingDiverged(
                f"the weights became NaN or infinite in the optimizer step of batch {batches}"
            )
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update()
        if not go_on:
            break
    totals = sums.tolist()
    progress = replace(start, batches=batches, loss_sum=totals[0], samples=int(totals[1]),
                       seconds=start.seconds + time.perf_counter() - began)
    return EpochResult(progress, interrupted=batches < start.batches + len(loader))


def evaluation_options(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The keywords of :func:`evaluate` that ``cfg`` sets: autocast in its ``amp`` dtype
    unless ``eval_amp`` is false, ``eval_fold_bn`` and ``eval_loss_mean``."""
    return {"amp_dtype": modeling.amp_dtype(cfg.amp, device) if cfg.eval_amp else None,
            "fold_bn": cfg.eval_fold_bn, "loss_mean": cfg.eval_loss_mean}


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    ctx: DistContext,
    *,
    amp_dtype: torch.dtype | None = None,
    fold_bn: bool = True,
    loss_mean: str = "image",
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%), mean cross-entropy and images/s over all ranks' shards, of
    ``model`` in eval mode (with ``fold_bn``, a zoo model's BatchNorms folded into their
    convolutions).

    Images whose logits hold NaN or infinity are counted (``non_finite``) and left out of the
    accuracy and the loss, which are over the ``finite`` ones only (nan when there are none):
    a top-k of NaN logits is no prediction. ``loss_mean`` "image" averages the loss over
    images; "batch" averages each batch's mean over all ranks' batches (a short last batch
    weighs as much as a full one).
    """
    model.eval()
    if fold_bn and isinstance(model, SpikingBackbone):
        model = fold_batchnorm(model)
    criterion = nn.CrossEntropyLoss(reduction="sum")
    # loss sum, top-1, top-5, finite, images, sum of batch means, batches with a finite row
    totals = torch.zeros(7, dtype=torch.float64)
    start = time.perf_counter()
    for inputs, targets in tqdm(loader, desc=desc, leave=False, disable=not progress):
        inputs = inputs.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        with autocast(inputs.device, amp_dtype):
            logits = model(inputs).float()
        finite = logits.isfinite().all(1)
        logits, kept = logits[finite], targets[finite]
        top1, top5 = topk_correct(logits, kept) if len(kept) else (0, 0)
        loss = criterion(logits, kept).item() if len(kept) else 0.0
        batch_mean = loss / len(kept) if len(kept) else 0.0
        totals += torch.tensor([loss, top1, top5, len(kept), len(targets), batch_mean,
                                len(kept) > 0], dtype=torch.float64)
    seconds = time.perf_counter() - start
    rate = torch.tensor([totals[4] / max(seconds, 1e-9)], dtype=torch.float64)
    all_reduce_sum(totals)
    all_reduce_sum(rate)
    n = float(totals[3]) if totals[3] > 0 else math.nan
    batches = float(totals[6]) if totals[6] > 0 else math.nan
    return {
        "loss": float(totals[0]) / n if loss_mean == "image" else float(totals[5]) / batches,
        "acc1": 100.0 * float(totals[1]) / n,
        "acc5": 100.0 * float(totals[2]) / n,
        "images": int(totals[4]),
        "finite": int(totals[3]),
        "non_finite": int(totals[4] - totals[3]),
        "images_per_sec": float(rate[0]),
    }
