"""Where else each epoch's metrics go (``maxformer train --log``): TensorBoard or Weights & Biases.

Both are optional packages (``pip install tensorboard`` / ``pip install wandb``, or the
``log`` extra); asking for a missing one is a one-line error before training starts. The
run folder's ``metrics.csv`` and ``metrics.png`` are written in any case.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

from models.app.config import TrainConfig
from models.app.errors import UserError
from models.app.training.run_files import RunFolder

LOGGERS: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb"}
"""``--log`` choice -> the package it needs."""


class MetricsLogger(Protocol):
    def log(self, row: dict[str, Any]) -> None:
        """Record one ``metrics.csv`` row (its ``epoch`` is the step)."""

    def close(self) -> None: ...


def _require(choice: str) -> Any:
    package = LOGGERS[choice]
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise UserError(
            f"--log {choice} needs the {package} package, which is not installed: "
            f"pip install {package}"
        ) from err


class TensorBoardLogger:
    """Scalars under ``RUN/tensorboard`` (``tensorboard --logdir RUN``)."""

    def __init__(self, run: RunFolder) -> None:
        _require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.file("tensorboard")))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, float(value), int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run named after the run folder, its files under ``RUN/wandb``; a
    resumed run continues the same W&B run."""

    def __init__(self, run: RunFolder, cfg: TrainConfig) -> None:
        wandb = _require("wandb")
        self.run = wandb.init(project="maxformer", name=run.path.name, id=run.path.name,
                              dir=str(run.path), config=cfg.to_dict(), resume="allow")

    def log(self, row: dict[str, Any]) -> None:
        self.run.log({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))

    def close(self) -> None:
        self.run.finish()


def check_loggers(choices: Sequence[str]) -> None:
    """Raise a :class:`UserError` for an unknown choice or a logger whose package is missing
    (every rank, before training)."""
    unknown = [c for c in choices if c not in LOGGERS]
    if unknown:
        raise UserError(f"unknown --log {', '.join(unknown)}; choose from {', '.join(LOGGERS)}")
    for choice in choices:
        _require(choice)


def open_loggers(choices: Sequence[str], run: RunFolder,
                 cfg: TrainConfig) -> list[MetricsLogger]:
    """The loggers of ``choices`` (keys of :data:`LOGGERS`) for ``run``."""
    check_loggers(choices)
    return [TensorBoardLogger(run) if c == "tensorboard" else WandbLogger(run, cfg)
            for c in dict.fromkeys(choices)]
