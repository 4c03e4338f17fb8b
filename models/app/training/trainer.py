"""The training run: model, data, timm optimizer/scheduler/mixup/EMA, epochs, checkpoints.

What a run promises (see docs/reliability.md): its folder is never one that holds another
run; a checkpoint is written only when every weight and optimizer state is finite; a run
stopped anywhere (SIGINT/SIGTERM, mid-epoch included) and resumed ends with the metrics and
weights of an uninterrupted one, bit for bit on the same machine.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, distribute_bn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from models.app.config import RESUMABLE_CHANGES, TrainConfig, build_config, dataset_defaults
from models.app.data import build_datasets, eval_batch_size, eval_loader, train_loader
from models.app.errors import RunInterrupted, TrainingDiverged, UserError
from models.app.modeling import amp_dtype, check_input, model_for_config
from models.app.training import distributed
from models.app.training.batch_augment import batch_augment
from models.app.training.checkpointing import (
    ResumePoint,
    atomic_save,
    load_resume_point,
    position,
    repair_best,
    rng_state,
    set_rng_state,
)
from models.app.training.engine import (
    EpochProgress,
    EpochResult,
    TrainingState,
    TrainStep,
    evaluate,
    evaluation_options,
    train_one_epoch,
)
from models.app.training.loggers import MetricsLogger, open_loggers
from models.app.training.run_files import BEST, LAST, RunFolder
from models.app.training.stage_stats import stage_statistics
from models.checkpoint import non_finite_tensors

LISTED_TENSORS = 3
"""How many non-finite tensors a divergence message names."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the summary, the trained model, and the run folder."""

    summary: dict[str, Any]
    model: nn.Module
    output: Path | None


class StopSignals:
    """While active, the first SIGINT/SIGTERM asks the run to stop after the batch in flight.

    A second signal acts as usual (interrupts at once). Nested (a study's cell inside the
    study), the inner one shares the outer one's request: a signal the run did not act on
    (one after its last batch) still stops the caller.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    _installed: StopSignals | None = None
    """The outermost active one, whose handlers are installed."""

    def __init__(self) -> None:
        self._signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._outer: StopSignals | None = None

    def _handle(self, signum, frame) -> None:
        if self._signum is not None:
            signal.signal(signum, self._previous[signum])
            signal.raise_signal(signum)
            return
        self._signum = signum

    @property
    def signum(self) -> int | None:
        """The signal that asked to stop, if any."""
        return self._outer.signum if self._outer is not None else self._signum

    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopSignals:
        if StopSignals._installed is not None:
            self._outer = StopSignals._installed
        elif threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            StopSignals._installed = self
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if StopSignals._installed is self:
            StopSignals._installed = None


def _check_changes(saved: dict[str, Any], values: dict[str, Any]) -> None:
    changed = sorted(k for k, v in values.items() if saved.get(k) != v)
    fixed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if fixed:
        raise UserError(
            f"cannot change {', '.join(fixed)} when resuming a run; keys that may change: "
            f"{', '.join(RESUMABLE_CHANGES)}"
        )


def resume_config(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run to resume, with only machine-side keys or ``epochs`` changed."""
    _check_changes(saved, overrides)
    return build_config(saved, overrides)


def _restart_point(cfg: TrainConfig, output: Path | None,
                   resume: ResumePoint | None, restarted: bool) -> ResumePoint | None:
    """After a restart (torchrun restarting the workers, or ``train(restart=True)``), the last
    checkpoint of the run folder being written, if it has one: the same command continues
    where the run stopped. A ``resume`` that is that checkpoint is taken as it is, not read
    again."""
    if restarted:
        folder = output
        if folder is None and resume is not None and resume.continues_in(None):
            folder = resume.folder
        if folder is not None and (Path(folder) / LAST).is_file():
            given = resume is not None and resume.continues_in(folder)
            point = resume if given else load_resume_point(folder)
            _check_changes(point.checkpoint["config"], cfg.to_dict())
            return point
    return resume


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def mixup_active(cfg: TrainConfig, epoch: int) -> bool:
    """Whether mixup/CutMix mixes the batches of epoch ``epoch`` (0-based): until
    ``mixup_off_epoch`` (0: always)."""
    return not (cfg.mixup_off_epoch and epoch >= cfg.mixup_off_epoch)


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - LISTED_TENSORS} more" if len(names) > LISTED_TENSORS else ""
    return ", ".join(names[:LISTED_TENSORS]) + more


class Checkpoints:
    """Writes the run's checkpoints (rank 0) after checking that every tensor is finite, and
    knows the last good one, which every divergence message names."""

    def __init__(self, cfg: TrainConfig, state: TrainingState, run: RunFolder | None,
                 resume: ResumePoint | None) -> None:
        self.cfg, self.state, self.run = cfg, state, run
        self.last_good = resume.describe() if resume is not None else None
        self.resumed_from = resume.path if resume is not None else None

    def kept(self) -> str:
        if self.last_good is None:
            return "no checkpoint was written yet"
        return f"last good checkpoint: {self.last_good}"

    def diverged(self, problem: str) -> TrainingDiverged:
        return TrainingDiverged(f"{problem}; the run stops here (lower lr, enable clip_grad); "
                                f"{self.kept()}")

    def save(self, epochs_done: int, progress: EpochProgress, best: dict[str, Any],
             is_best: bool) -> None:
        """Save after ``epochs_done`` epochs and ``progress`` into the next one (collective:
        every rank's RNG state and epoch progress go into the file)."""
        parts = self.state.state_dict()
        bad = non_finite_tensors({k: parts[k] for k in ("model", "optimizer", "ema")})
        if bad:
            raise self.diverged(f"NaN or infinity in {_listed(bad)} before saving a checkpoint")
        checkpoint = {
            **parts,
            "epoch": epochs_done,
            "batches_done": progress.batches,
            "best_acc1": best["acc1"],
            "best_epoch": best["epoch"],
            "rng": distributed.gather(rng_state()),
            "epoch_progress": distributed.gather(asdict(progress)),
            "config": self.cfg.to_dict(),
        }
        if self.run is None:
            return
        atomic_save(checkpoint, self.run.file(LAST))
        if is_best:
            atomic_save(checkpoint, self.run.file(BEST))
        self.last_good = f"{self.run.file(LAST)} ({position(epochs_done, progress.batches)})"


def scaled_lr(cfg: TrainConfig, world_size: int) -> float:
    """The peak LR: ``lr``, or with ``lr_base_batch`` ``lr x global batch / lr_base_batch``
    (the original ImageNet's ``blr x batch x GPUs / 256``)."""
    if cfg.lr_base_batch is None:
        return cfg.lr
    return cfg.lr * cfg.batch_size * world_size / cfg.lr_base_batch


def _build_state(cfg: TrainConfig, model: nn.Module, device: torch.device,
                 world_size: int = 1, updates_per_epoch: int = 0):
    """The training state of ``model`` for ``cfg``, and the number of epochs it schedules.

    With ``sched_per_step`` the LR is set at every one of the ``updates_per_epoch`` updates:
    a linear warm-up from ``warmup_lr`` over ``warmup_epochs``, then the schedule over the
    remaining ``epochs - warmup_epochs`` (the original ImageNet's ``adjust_learning_rate``)."""
    if cfg.sched_per_step and cfg.warmup_epochs >= cfg.epochs:
        raise UserError(f"sched_per_step needs warmup_epochs {cfg.warmup_epochs} below epochs "
                        f"{cfg.epochs} (the schedule runs over the epochs after the warm-up)")
    lr = scaled_lr(cfg, world_size)
    optimizer = create_optimizer_v2(model, cfg.opt, lr=lr, weight_decay=cfg.weight_decay)
    per_step = cfg.sched_per_step
    scheduler, total_epochs = create_scheduler_v2(
        optimizer,
        sched=cfg.sched,
        num_epochs=cfg.epochs - cfg.warmup_epochs if per_step else cfg.epochs,
        min_lr=cfg.min_lr,
        warmup_lr=cfg.warmup_lr,
        warmup_epochs=cfg.warmup_epochs,
        warmup_prefix=per_step,
        cooldown_epochs=cfg.cooldown_epochs,
        step_on_epochs=not per_step,
        updates_per_epoch=updates_per_epoch,
    )
    scaler = torch.amp.GradScaler(device.type) if amp_dtype(cfg.amp, device) == torch.float16 \
        else None
    ema = ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema else None
    return TrainingState(model, optimizer, scheduler, scaler, ema), total_epochs


def _resume(state: TrainingState, cfg: TrainConfig, resume: ResumePoint | None, rank: int):
    """Restore ``resume`` into ``state`` and this rank's random state; returns the epochs
    done, the progress into the next one, and the best accuracy so far."""
    if resume is None:
        return 0, EpochProgress(), {"acc1": -1.0, "epoch": 0}
    checkpoint = resume.checkpoint
    if resume.epoch > cfg.epochs + cfg.cooldown_epochs:
        raise UserError(f"{resume.describe()} has trained more epochs than epochs "
                        f"{cfg.epochs} (+ cooldown_epochs {cfg.cooldown_epochs}); give at least "
                        f"--epochs {resume.epoch - cfg.cooldown_epochs}")
    state.load_state_dict(checkpoint, schedule=checkpoint["config"]["epochs"] == cfg.epochs)
    states = checkpoint["rng"]
    set_rng_state(states[rank % len(states)])
    progress = EpochProgress()
    if resume.batches:
        saved = checkpoint.get("epoch_progress")
        if not saved or len(saved) != len(states):
            raise UserError(f"{resume.path} stopped inside an epoch but holds no epoch progress "
                            "for every rank; resume it with as many processes as wrote it")
        progress = EpochProgress(**saved[rank])
    best = {"acc1": checkpoint["best_acc1"], "epoch": checkpoint["best_epoch"]}
    return resume.epoch, progress, best


def _open_run(cfg: TrainConfig, ctx: distributed.DistContext, output: Path | None,
              resume: ResumePoint | None, restarted: bool) -> RunFolder | None:
    """Rank 0 claims the run folder (a new one, one a run left without a checkpoint, or the
    resumed run's own, whose best checkpoint is checked); a refusal is raised on every rank."""
    run, problem = None, None
    if ctx.is_main:
        try:
            if resume is not None and resume.continues_in(output):
                run = RunFolder.reopen(resume.folder, resume.epoch)
                repair_best(resume)
            else:
                history = resume.history() if resume is not None else ()
                run = RunFolder.create(output, cfg, history)
            run.write_config(cfg)
            run.write_metrics()
        except UserError as err:
            problem = str(err)
            if run is not None:
                run.close()
        else:
            _say_where(run, resume, restarted)
    problem = distributed.broadcast(problem)
    if problem is not None:
        raise UserError(problem)
    return run


def _say_where(run: RunFolder, resume: ResumePoint | None, restarted: bool) -> None:
    """Tell (stderr) where a resumed run continues."""
    if resume is None:
        return
    if restarted:
        print(f"the same run again after a stop: continuing from {resume.describe()}",
              file=sys.stderr)
    elif run.path != resume.folder:
        print(f"continuing from {resume.describe()} in a new run folder {run.path} (the "
              f"checkpoints and metrics in {resume.folder} stay as they are)", file=sys.stderr)


def train(
    cfg: TrainConfig,
    *,
    output: Path | None = None,
    resume: ResumePoint | None = None,
    progress: bool = False,
    device: str = "auto",
    log: Sequence[str] = (),
    restart: bool = False,
) -> TrainResult:
    """Train ``cfg`` (continuing ``resume`` when given); rank 0 writes the run folder.

    ``output``: the run folder (default ``runs/<model>-<dataset>-<time>``); a resumed run
    continues in its own folder when it resumes that folder's last checkpoint, else in
    ``output`` or a new folder. ``log``: also send each epoch's metrics to these loggers
    (``tensorboard``, ``wandb``). ``restart``: this is the same command again after a stop
    (as after a torchrun restart): the run in ``output`` continues from its last checkpoint,
    or starts over where the folder holds run files but no checkpoint yet. Raises
    :class:`RunInterrupted` after SIGINT/SIGTERM (a resumable checkpoint is saved),
    :class:`TrainingDiverged` when the loss or the weights become NaN or infinite (the last
    good checkpoint is kept and named).
    """
    ctx = distributed.setup(device)
    try:
        with StopSignals() as stop:
            return _train(cfg, ctx, stop, output, resume, progress and ctx.is_main, log,
                          restart)
    finally:
        distributed.cleanup()


def _train(cfg, ctx, stop, output, resume, progress, log, restart) -> TrainResult:
    cfg = dataset_defaults(cfg)  # classes and channels saved as found
    restarted = distributed.restarted() or restart
    resume = _restart_point(cfg, output, resume, restarted)
    _seed(cfg.seed + ctx.rank)
    train_set, val_set, info = build_datasets(cfg)
    model = model_for_config(cfg, info).to(ctx.device)
    check_input(model, val_set[0][0], f"{cfg.dataset} at img_size {cfg.img_size}")
    train_dl = train_loader(train_set, cfg, ctx)
    state, total_epochs = _build_state(cfg, model, ctx.device, ctx.world_size, len(train_dl))
    start_epoch, epoch_progress, best = _resume(state, cfg, resume, ctx.rank)
    state.scheduler.step(start_epoch)
    net = model
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    mixup = _mixup(cfg, info.num_classes)
    autocast = amp_dtype(cfg.amp, ctx.device)
    step = TrainStep(state, net, _criterion(cfg, mixup), batch_augment(cfg, mixup, ctx.device),
                     cfg.T_train, autocast, cfg.clip_grad,
                     cfg.event_cutmix == "original")
    run = _open_run(cfg, ctx, output, resume, restarted)
    loggers: list[MetricsLogger] = []
    try:
        if run is not None:
            loggers = open_loggers(log, run, cfg)
        epochs = Epochs(cfg, ctx, stop, step, train_dl,
                        eval_loader(val_set, eval_batch_size(cfg), cfg.workers, ctx),
                        Checkpoints(cfg, state, run, resume), loggers, progress, best)
        val = epochs.run(range(start_epoch, total_epochs), epoch_progress)
        summary = {
            "model": cfg.model, "dataset": cfg.dataset, "epochs": total_epochs,
            "best_acc1": epochs.best["acc1"], "best_epoch": epochs.best["epoch"],
            "final_acc1": val["acc1"], "final_acc5": val["acc5"], "final_loss": val["loss"],
            "world_size": ctx.world_size, "output": str(run.path) if run is not None else None,
            # what amp resolved to on this device (auto means different things on CPU and GPU)
            "autocast": str(autocast).removeprefix("torch.") if autocast else "off",
            "resumed_from": str(resume.path) if resume is not None else None,
        }
        if run is not None:
            run.write_summary(summary)
    except BaseException:
        if run is not None:
            run.remove_unfinished()
        raise
    finally:
        for logger in loggers:
            logger.close()
        if run is not None:
            run.close()
    return TrainResult(summary=summary, model=model, output=run.path if run else None)


@dataclass
class Epochs:
    """The epoch loop of a run: train, stop or diverge, evaluate, log, save."""

    cfg: TrainConfig
    ctx: distributed.DistContext
    stop: StopSignals
    step: TrainStep
    train_dl: Any
    val_dl: Any
    checkpoints: Checkpoints
    loggers: list[MetricsLogger]
    progress: bool
    best: dict[str, Any]
    """Top-1 and epoch of the best held-out accuracy so far (updated by :meth:`finish`)."""

    def run(self, epochs: range, epoch_progress: EpochProgress) -> dict[str, float]:
        """Train ``epochs`` (the first one from ``epoch_progress`` on); returns the held-out
        metrics after the last one."""
        val: dict[str, float] = {}
        for epoch in tqdm(epochs, desc="epochs", initial=epochs.start, total=epochs.stop,
                          disable=not self.progress):
            if not distributed.all_ranks([not self.stop.requested()])[0]:
                raise self.interrupted(f"before epoch {epoch + 1}")
            lr = self.step.state.optimizer.param_groups[0]["lr"]
            result = self.train(epoch, epochs.stop, epoch_progress)
            epoch_progress = EpochProgress()
            val = self.finish(epoch, epochs.stop, lr, result)
        if not val:  # resumed after the last epoch: nothing left to train
            val = self.evaluate(self.step.state.model)
        return val

    def train(self, epoch: int, total: int, start: EpochProgress) -> EpochResult:
        """Epoch ``epoch`` (0-based) from ``start`` on; a stop saves and raises."""
        self.train_dl.sampler.set_epoch(epoch)
        self.train_dl.sampler.start = start.batches * self.cfg.batch_size
        if self.step.mixup is not None:
            self.step.mixup.mixup_enabled = mixup_active(self.cfg, epoch)
        bar = tqdm(total=start.batches + len(self.train_dl), initial=start.batches,
                   desc=f"epoch {epoch + 1}/{total}", leave=False, disable=not self.progress)
        per_epoch = start.batches + len(self.train_dl)
        first_update = epoch * per_epoch + start.batches if self.cfg.sched_per_step else None
        try:
            result = train_one_epoch(self.step, self.train_dl, self.ctx, start,
                                     self.stop.requested, bar, first_update)
        except TrainingDiverged as err:
            raise self.checkpoints.diverged(f"{err} of epoch {epoch + 1}") from err
        finally:
            bar.close()
        if result.interrupted:
            self.checkpoints.save(epoch, result.progress, self.best, False)
            raise self.interrupted(f"in epoch {epoch + 1} after {result.progress.batches} "
                                   "batches")
        return result

    def finish(self, epoch: int, total: int, lr: float, result: EpochResult) -> dict[str, float]:
        """After epoch ``epoch``: schedule, evaluate, write the metrics row, save."""
        state, run = self.step.state, self.checkpoints.run
        train_loss = result.mean_loss()
        if self.ctx.distributed and self.cfg.distribute_bn:  # every rank, the same BN statistics
            distribute_bn(state.model, self.ctx.world_size, reduce=True)
            if state.ema is not None:
                distribute_bn(state.ema.module, self.ctx.world_size, reduce=True)
        state.scheduler.step(epoch + 1)
        val = self.evaluate(state.model)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "val_loss": val["loss"],
               "val_acc1": val["acc1"], "val_acc5": val["acc5"]}
        if state.ema is not None:
            row["ema_acc1"] = self.evaluate(state.ema.module)["acc1"]
        if self.cfg.log_stage_stats and run is not None:
            batch = next(iter(self.val_dl))[0].to(self.ctx.device)
            row.update(stage_statistics(state.model, batch, self.cfg.T))
        row["epoch_seconds"] = round(result.progress.seconds, 3)
        is_best = val["acc1"] > self.best["acc1"]
        if is_best:
            self.best = {"acc1": val["acc1"], "epoch": epoch + 1}
        if run is not None:  # the row first: a resumed run drops rows past its checkpoint
            run.append_metrics(row)
            for logger in self.loggers:
                logger.log(row)
        self.checkpoints.save(epoch + 1, EpochProgress(), self.best, is_best)
        if run is not None:
            tqdm.write(
                f"epoch {epoch + 1}/{total}  lr {lr:.2e}  train loss {train_loss:.4f}  "
                f"val loss {val['loss']:.4f}  acc1 {val['acc1']:.2f}%  acc5 {val['acc5']:.2f}%  "
                f"({result.progress.seconds:.1f} s)"
            )
        return val

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return evaluate(model, self.val_dl, self.ctx, progress=self.progress,
                        **evaluation_options(self.cfg, self.ctx.device))

    def interrupted(self, where: str) -> RunInterrupted:
        signum = self.stop.signum or signal.SIGINT
        run = self.checkpoints.run
        folder = run.path if run is not None else "the run folder"
        saved = run is None or run.file(LAST).exists()
        if saved:
            then = f"saved a resumable checkpoint; continue with: maxformer train --resume {folder}"
        else:
            source = self.checkpoints.resumed_from
            then = (f"nothing was saved yet (the run files in {folder} are removed); "
                    + ("run the same command again" if source is None else
                       f"continue from {source} again with the same command"))
        return RunInterrupted(f"interrupted by {signal.Signals(signum).name} {where}; {then}",
                              signum)
