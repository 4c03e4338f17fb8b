"""The training run: model, data, timm optimizer/scheduler/mixup/EMA, epochs, checkpoints."""

from __future__ import annotations

import random
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, distribute_bn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from models.app.config import TrainConfig, build_config
from models.app.data import build_datasets, eval_loader, train_loader
from models.app.errors import RunInterrupted, TrainingDiverged, UserError
from models.app.modeling import amp_dtype, model_for_config
from models.app.training import distributed
from models.app.training.checkpointing import BEST, LAST, atomic_save, rng_state, set_rng_state
from models.app.training.engine import evaluate, train_one_epoch
from models.app.training.run_files import RunFolder, default_run_dir
from models.app.training.stage_stats import stage_statistics

RESUMABLE_CHANGES = ("epochs", "data_dir", "download", "workers")


@dataclass
class TrainResult:
    """What :func:`train` returns: the summary, the trained model, and the run folder."""

    summary: dict[str, Any]
    model: nn.Module
    output: Path | None


class StopSignals:
    """While active, the first SIGINT/SIGTERM asks the run to stop at the next batch.

    A second signal acts as usual (interrupts at once).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            signal.signal(signum, self._previous[signum])
            signal.raise_signal(signum)
            return
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def resume_config(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run to resume, with only machine-side keys or ``epochs`` changed."""
    changed = sorted(k for k, v in overrides.items() if saved.get(k) != v)
    fixed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if fixed:
        raise UserError(
            f"cannot change {', '.join(fixed)} when resuming a run; keys that may change: "
            f"{', '.join(RESUMABLE_CHANGES)}"
        )
    return build_config(saved, overrides)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _gather_rng() -> list[dict[str, torch.Tensor]]:
    """Every rank's RNG states, in rank order (collective when distributed)."""
    state = rng_state()
    if not dist.is_initialized():
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def _criterion(cfg: TrainConfig, mixup: Mixup | None) -> nn.Module:
    if mixup is not None:
        return SoftTargetCrossEntropy()
    if cfg.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
    return nn.CrossEntropyLoss()


def _mixup(cfg: TrainConfig, num_classes: int) -> Mixup | None:
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=cfg.mixup_prob,
        switch_prob=cfg.mixup_switch_prob,
        mode=cfg.mixup_mode,
        label_smoothing=cfg.smoothing,
        num_classes=num_classes,
    )


def train(
    cfg: TrainConfig,
    *,
    output: Path | None = None,
    checkpoint: dict[str, Any] | None = None,
    progress: bool = False,
    device: str = "auto",
) -> TrainResult:
    """Train ``cfg`` (continuing ``checkpoint`` when given); rank 0 writes the run folder.

    Raises :class:`RunInterrupted` after SIGINT/SIGTERM (a resumable checkpoint is saved),
    :class:`TrainingDiverged` on a non-finite loss (the last good checkpoint is kept).
    """
    ctx = distributed.setup(device)
    try:
        with StopSignals() as stop:
            return _train(cfg, output, checkpoint, progress and ctx.is_main, ctx, stop)
    finally:
        distributed.cleanup()


def _train(cfg, output, checkpoint, progress, ctx, stop) -> TrainResult:
    _seed(cfg.seed + ctx.rank)
    train_set, val_set, info = build_datasets(cfg)
    train_dl = train_loader(train_set, cfg, ctx)
    val_dl = eval_loader(val_set, cfg.batch_size, cfg.workers, ctx)
    model = model_for_config(cfg, info).to(ctx.device)
    optimizer = create_optimizer_v2(model, cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler, total_epochs = create_scheduler_v2(
        optimizer,
        sched=cfg.sched,
        num_epochs=cfg.epochs,
        min_lr=cfg.min_lr,
        warmup_lr=cfg.warmup_lr,
        warmup_epochs=cfg.warmup_epochs,
        cooldown_epochs=cfg.cooldown_epochs,
    )
    dtype = amp_dtype(cfg.amp, ctx.device)
    scaler = torch.amp.GradScaler(ctx.device.type) if dtype == torch.float16 else None
    ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema else None
    mixup = _mixup(cfg, info.num_classes)
    criterion = _criterion(cfg, mixup)

    start_epoch, done_batches, best = 0, 0, {"acc1": -1.0, "epoch": 0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint["config"]["epochs"] == cfg.epochs:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        if ema is not None and checkpoint.get("ema"):
            ema.load_state_dict(checkpoint["ema"])
        start_epoch, done_batches = checkpoint["epoch"], checkpoint.get("batches_done", 0)
        best = {"acc1": checkpoint["best_acc1"], "epoch": checkpoint["best_epoch"]}
        states = checkpoint["rng"]
        set_rng_state(states[ctx.rank % len(states)])
    scheduler.step(start_epoch)
    net = model
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)

    run = RunFolder(output or default_run_dir(cfg)) if ctx.is_main else None
    if run is not None:
        run.write_config(cfg)
        run.start_metrics(start_epoch)

    def save(epoch_done: int, batches_done: int, is_best: bool) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch_done,
            "batches_done": batches_done,
            "best_acc1": best["acc1"],
            "best_epoch": best["epoch"],
            "rng": _gather_rng(),
            "config": cfg.to_dict(),
        }
        if run is not None:
            atomic_save(state, run.file(LAST))
            if is_best:
                atomic_save(state, run.file(BEST))

    val: dict[str, float] = {}
    epochs_bar = tqdm(
        range(start_epoch, total_epochs), desc="epochs", initial=start_epoch,
        total=total_epochs, disable=not progress,
    )
    for epoch in epochs_bar:
        train_dl.sampler.set_epoch(epoch)
        train_dl.sampler.start = done_batches * cfg.batch_size
        if mixup is not None and cfg.mixup_off_epoch and epoch >= cfg.mixup_off_epoch:
            mixup.mixup_enabled = False
        lr = optimizer.param_groups[0]["lr"]
        try:
            result = train_one_epoch(
                net, train_dl, criterion, optimizer, ctx, mixup=mixup,
                frames_per_clip=cfg.T_train, scaler=scaler,
                amp_dtype=dtype, clip_grad=cfg.clip_grad, ema=ema,
                stop_requested=stop.requested, done_batches=done_batches,
                progress=progress, desc=f"epoch {epoch + 1}/{total_epochs}",
            )
        except TrainingDiverged as err:
            if run is None:
                raise
            last = run.file(LAST)
            kept = f"last good checkpoint: {last}" if last.exists() else "no checkpoint yet"
            raise TrainingDiverged(f"{err}. {kept}") from err
        if result.interrupted:
            save(epoch, result.batches, False)
            name = signal.Signals(stop.signum or signal.SIGINT).name
            where = run.path if run is not None else "the run folder"
            raise RunInterrupted(
                f"interrupted by {name} in epoch {epoch + 1} after {result.batches} batches; "
                f"saved a resumable checkpoint; continue with: maxformer train --resume {where}",
                stop.signum or signal.SIGINT,
            )
        done_batches = 0
        if ctx.distributed:  # average BatchNorm statistics so every rank holds the same model
            distribute_bn(model, ctx.world_size, reduce=True)
            if ema is not None:
                distribute_bn(ema.module, ctx.world_size, reduce=True)
        scheduler.step(epoch + 1)
        val = evaluate(model, val_dl, ctx, amp_dtype=dtype, progress=progress)
        row = {
            "epoch": epoch + 1, "lr": lr, "train_loss": result.loss, "val_loss": val["loss"],
            "val_acc1": val["acc1"], "val_acc5": val["acc5"],
        }
        if ema is not None:
            ema_val = evaluate(ema.module, val_dl, ctx, amp_dtype=dtype, progress=progress)
            row["ema_acc1"] = ema_val["acc1"]
        if cfg.log_stage_stats and run is not None:
            row.update(stage_statistics(model, next(iter(val_dl))[0].to(ctx.device), cfg.T))
        row["epoch_seconds"] = round(result.seconds, 3)
        is_best = val["acc1"] > best["acc1"]
        if is_best:
            best = {"acc1": val["acc1"], "epoch": epoch + 1}
        if run is not None:  # the row first: a resumed run drops rows past its checkpoint
            run.append_metrics(row)
        save(epoch + 1, 0, is_best)
        if run is not None:
            tqdm.write(
                f"epoch {epoch + 1}/{total_epochs}  lr {lr:.2e}  train loss {result.loss:.4f}  "
                f"val loss {val['loss']:.4f}  acc1 {val['acc1']:.2f}%  acc5 {val['acc5']:.2f}%  "
                f"({result.seconds:.1f} s)"
            )
    if not val:  # resumed after the last epoch: nothing left to train
        val = evaluate(model, val_dl, ctx, amp_dtype=dtype, progress=progress)
    summary = {
        "model": cfg.model, "dataset": cfg.dataset, "epochs": total_epochs,
        "best_acc1": best["acc1"], "best_epoch": best["epoch"],
        "final_acc1": val["acc1"], "final_acc5": val["acc5"], "final_loss": val["loss"],
        "world_size": ctx.world_size, "output": str(run.path) if run is not None else None,
    }
    if run is not None:
        run.write_summary(summary)
    return TrainResult(summary=summary, model=model, output=run.path if run else None)
