"""Building a model by its timm name (one way for every command), and mixed precision."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

from models.app.config import TrainConfig
from models.app.datasets import DatasetInfo
from models.app.errors import UserError
from models.checkpoint import CheckpointError, load_checkpoint
from models.zoo import SpikingBackbone, zoo_model_names


def check_model_name(name: str) -> None:
    """Raise a `UserError` naming close matches and the zoo's models unless timm knows
    `name` (the zoo is registered by importing `models`)."""
    if timm.is_model(name):
        return
    ours = zoo_model_names()
    close = difflib.get_close_matches(name, dict.fromkeys(ours + timm.list_models()), n=5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"unknown model {name!r}; {hint}models of the zoo: {', '.join(ours)} "
        "(any timm model name also works)"
    )


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    T: int | None = None,
    neuron: str = "lif",
    lif_backend: str = "auto",
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """``timm.create_model(name, ...)`` with the arguments that are given (not None).

    ``neuron`` and ``lif_backend`` go to the zoo's models (``model_kwargs`` may override
    them); a model from elsewhere in timm takes neither, and ``T`` only when it is spiking.
    """
    check_model_name(name)
    ours = name.split(".")[0] in zoo_model_names()
    if not ours and neuron != "lif":
        raise UserError(f"neuron {neuron!r} applies to the zoo's models only, not to {name}")
    kwargs = {"neuron": neuron, "lif_backend": lif_backend} if ours else {}
    kwargs.update(model_kwargs or {})
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans), ("T", T)):
        if value is not None:
            kwargs[key] = value
    try:
        return timm.create_model(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"cannot build {name} with {kwargs}: {err} (set T: null for a non-spiking model; "
            "check model_kwargs)"
        ) from err


def model_for_config(cfg: TrainConfig, info: DatasetInfo) -> nn.Module:
    """The model of a training config for a dataset, with ``cfg.pack_saved_spikes`` set on
    the zoo's models."""
    model = create_model(
        cfg.model, num_classes=info.num_classes, in_chans=info.in_chans, T=cfg.T,
        neuron=cfg.neuron, lif_backend=cfg.lif_backend, model_kwargs=cfg.model_kwargs,
    )
    if isinstance(model, SpikingBackbone):
        model.pack_saved_spikes = cfg.pack_saved_spikes
    return model


def load_weights(model: nn.Module, checkpoint: Mapping[str, Any], path: Path) -> None:
    """``models.load_checkpoint(model, checkpoint, strict=True)`` for ``checkpoint`` read from
    ``path``, whose name any mismatch error starts with."""
    try:
        load_checkpoint(model, checkpoint, strict=True)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``amp`` mode: ``auto`` is bf16 on CUDA and off on the CPU."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
