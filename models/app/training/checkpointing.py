"""Training checkpoints: whole writes, RNG states as tensors, the point a run resumes from.

A checkpoint holds plain containers and tensors only, so it loads with
``torch.load(path, weights_only=True)``; the model weights are under ``"model"``.
"""

from __future__ import annotations

import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.app.config import check_saved_config
from models.app.errors import UserError
from models.app.files import atomic_write
from models.app.training.run_files import BEST, CONFIG_YAML, LAST, METRICS_CSV, Row, read_metrics
from models.checkpoint import read_checkpoint

__all__ = ["BEST", "LAST", "ResumePoint", "atomic_save", "load_resume_point", "position",
           "repair_best", "rng_state", "set_rng_state"]

TRAINING_KEYS = ("model", "optimizer", "scheduler", "epoch", "batches_done", "best_acc1",
                 "best_epoch", "rng", "config")
"""What a checkpoint of ``maxformer train`` holds (besides scaler, EMA and epoch progress)."""


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` whole or not at all (:func:`models.app.files.atomic_write`): a crash at
    any moment leaves the previous file or the new one, never a torn file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict[str, torch.Tensor]:
    """The python, numpy, torch (and CUDA) random states of this process, as tensors."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": torch.tensor([version, *words], dtype=torch.int64),
        "python_gauss": torch.tensor(
            [float("nan") if gauss is None else gauss], dtype=torch.float64
        ),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_extra": torch.tensor([pos, has_gauss, cached], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore states captured by :func:`rng_state`."""
    words = state["python"].tolist()
    gauss = state["python_gauss"].item()
    random.setstate((words[0], tuple(words[1:]), None if gauss != gauss else gauss))
    pos, has_gauss, cached = state["numpy_extra"].tolist()
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint of ``maxformer train`` to continue from, and the file it was read from."""

    path: Path
    checkpoint: dict[str, Any]

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def epoch(self) -> int:
        """Epochs the checkpoint completed."""
        return int(self.checkpoint["epoch"])

    @property
    def batches(self) -> int:
        """Batches of the next epoch it trained before a stop (0 at an epoch's end)."""
        return int(self.checkpoint["batches_done"])

    def continues_in(self, output: Path | None) -> bool:
        """Whether the run goes on in the checkpoint's own folder: the checkpoint is that
        folder's ``checkpoint-last.pt`` (nothing was trained after it) and ``output`` is None
        or that folder. From any other checkpoint (``checkpoint-best.pt``, a copy) the run
        continues in a new folder, leaving the later checkpoints and metrics where they are."""
        in_place = self.path.name == LAST
        return in_place and (output is None or _same(output, self.folder))

    def history(self) -> list[Row]:
        """The rows of the checkpoint folder's ``metrics.csv`` of the epochs it completed."""
        metrics = self.folder / METRICS_CSV
        if not metrics.is_file():
            return []
        return [row for row in read_metrics(metrics) if int(row["epoch"]) <= self.epoch]

    def describe(self) -> str:
        return f"{self.path} ({position(self.epoch, self.batches)})"


def position(epochs_done: int, batches: int) -> str:
    """Where a checkpoint stands: ``epoch 3`` (its end) or ``epoch 4, batch 17``."""
    return f"epoch {epochs_done}" if not batches else f"epoch {epochs_done + 1}, batch {batches}"


def _same(a: Path, b: Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def resume_path(source: str | Path) -> Path:
    """The checkpoint to resume from: a checkpoint file, or a run folder's last checkpoint."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        early = path.name == LAST and (path.parent / CONFIG_YAML).is_file()
        hint = (": the run stopped before its first checkpoint; start it again with the same "
                f"command (--output {path.parent} is taken)") if early else ""
        raise UserError(f"cannot resume from {source}: no checkpoint file at {path}{hint}")
    return path


def load_resume_point(source: str | Path) -> ResumePoint:
    """The checkpoint of a run folder (its last one) or a checkpoint file, read and checked:
    every key a resume needs, and a complete saved config."""
    path = resume_path(source)
    checkpoint = read_checkpoint(path)
    missing = [key for key in TRAINING_KEYS if key not in checkpoint]
    if missing:
        raise UserError(
            f"{path} is not a checkpoint of maxformer train: it lacks {', '.join(missing)}"
        )
    check_saved_config(checkpoint["config"], str(path))
    return ResumePoint(path, checkpoint)


def _saved_epoch(path: Path) -> int | None:
    """The ``epoch`` a checkpoint file records, or None when there is none to read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # missing, torn or foreign: no epoch to trust
        return None


def repair_best(point: ResumePoint) -> None:
    """Make the folder's ``checkpoint-best.pt`` the epoch that ``point`` (the folder's
    ``checkpoint-last.pt``) names as best.

    A run writes ``checkpoint-last.pt`` (which records the new best epoch) before
    ``checkpoint-best.pt``: a kill or a failed write between the two leaves the best file an
    epoch behind, and only when the best epoch is the last file's own epoch. Then the last
    file is the best one, and is copied over it (whole or not at all)."""
    best_epoch = int(point.checkpoint["best_epoch"])
    best = point.folder / BEST
    if best_epoch == 0:  # no epoch finished yet: no best file
        return
    held = _saved_epoch(best)
    if held == best_epoch:
        return
    if best_epoch == point.epoch and point.batches == 0:
        with open(point.path, "rb") as source:
            atomic_write(best, lambda f: shutil.copyfileobj(source, f))
        return
    found = "does not exist or cannot be read" if held is None else f"holds epoch {held}"
    print(f"warning: {best} {found}, but {point.path} records epoch {best_epoch} as the best; "
          "it is left as it is", file=sys.stderr)
