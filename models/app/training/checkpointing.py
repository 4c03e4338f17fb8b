"""Training checkpoints: atomic writes, RNG states as tensors, locating a run to resume.

A checkpoint holds plain containers and tensors only, so it loads with
``torch.load(path, weights_only=True)``; the model weights are under ``"model"``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.app.errors import UserError
from models.checkpoint import read_checkpoint

LAST, BEST = "checkpoint-last.pt", "checkpoint-best.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync it, then ``os.replace``.

    A crash at any moment leaves either the previous file or the new one, never a torn file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


def resume_path(source: str | Path) -> Path:
    """The checkpoint to resume from: a checkpoint file, or a run folder's last checkpoint."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise UserError(f"cannot resume from {source}: no checkpoint file at {path}")
    return path


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by training (weights-only unpickling)."""
    ckpt = read_checkpoint(path)
    required = {"model", "optimizer", "epoch", "config"}
    if not isinstance(ckpt, dict) or not required <= set(ckpt):
        raise UserError(
            f"{path} is not a training checkpoint: expected keys {', '.join(sorted(required))}"
        )
    return ckpt
