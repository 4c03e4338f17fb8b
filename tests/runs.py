"""Helpers of the tests that train: a tiny recipe, metrics rows, faults at a chosen batch."""

import contextlib
import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from models.app.config import TrainConfig, build_config, read_recipe
from models.app.training.checkpointing import load_resume_point
from models.app.training.trainer import TrainResult, resume_config, train
from models.zoo import SpikingBackbone

TINY = {"model_kwargs": {"embed_dims": 16}, "T": 1, "img_size": 8, "batch_size": 16,
        "lr": 5e-3, "warmup_epochs": 0, "smoothing": 0.0, "workers": 0}
"""A Max-Former small enough for the CPU tests: 8x8 digits, 16 channels, one time step."""
TINY_ARGS = ["--no-progress", "--set", "model_kwargs={embed_dims: 16}", "--T", "1",
             "--img-size", "8", "--batch-size", "16"]
"""The same on the command line (with the digits recipe's other values)."""


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """The leaves of nested dicts, lists and tuples (a checkpoint), by their dotted path."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {prefix: value}
    return {path: leaf for key, item in items
            for path, leaf in flatten(item, f"{prefix}.{key}").items()}


def tiny(**overrides) -> TrainConfig:
    """The digits recipe at :data:`TINY`, with ``overrides``."""
    return build_config(read_recipe("digits"), {**TINY, **overrides})


def rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run folder's ``metrics.csv``."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_timings(table: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in table]


def straight_and_resumed(cfg: TrainConfig, folder: Path) -> tuple[TrainResult, TrainResult]:
    """Train ``cfg`` (``epochs`` >= 2) into ``folder/straight``, and into ``folder/resumed``
    stopped after epoch 1 then resumed; assert the two runs' metrics rows and weights are
    equal, and return ``(straight, resumed)``."""
    straight = train(cfg, output=folder / "straight")
    first = train(build_config(cfg.to_dict(), {"epochs": 1}), output=folder / "resumed")
    assert first.summary["epochs"] == 1
    point = load_resume_point(folder / "resumed")
    resumed = train(resume_config(point.checkpoint["config"], {"epochs": cfg.epochs}),
                    resume=point)
    assert without_timings(rows(folder / "straight")) == without_timings(
        rows(folder / "resumed"))
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    return straight, resumed


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One CPU thread inside (for module-scoped fixtures; tests use ``one_thread``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_run(folder: Path, **overrides) -> Path:
    """Train :func:`tiny` (one epoch unless ``overrides`` say otherwise) on one thread into
    ``folder``; returns it."""
    with single_thread():
        train(tiny(**{"epochs": 1, **overrides}), output=folder)
    return folder


@contextlib.contextmanager
def at_training_forward(number: int, action: Callable[[nn.Module], None]) -> Iterator[None]:
    """Call ``action(model)`` when a zoo model starts its ``number``-th forward pass in
    training mode (that batch is then in flight)."""
    count = 0

    def hook(module: nn.Module, args: tuple) -> None:
        nonlocal count
        if isinstance(module, SpikingBackbone) and module.training:
            count += 1
            if count == number:
                action(module)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
