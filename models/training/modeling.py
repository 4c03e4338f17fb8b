"""Building a model by its timm name for a dataset, and choosing the mixed precision."""

from __future__ import annotations

import difflib

import timm
import torch
import torch.nn as nn

from models.training.config import TrainConfig
from models.training.data import DatasetInfo
from models.training.errors import UserError
from models.zoo.backbone import SpikingBackbone

ZOO_PATTERNS = ("maxformer*", "ms_qkformer*", "max_resnet*")
"""timm names of our model zoo, offered when a model name is unknown."""


def check_model_name(name: str) -> None:
    """Raise a `UserError` naming close matches and the zoo's models unless timm knows
    `name` (after `import models` has registered the zoo)."""
    import models  # noqa: F401  (registers the zoo)

    if timm.is_model(name):
        return
    ours = [n for pattern in ZOO_PATTERNS for n in timm.list_models(pattern)]
    close = difflib.get_close_matches(name, dict.fromkeys(ours + timm.list_models()), n=5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"unknown model {name!r}; {hint}models of the zoo: {', '.join(ours)} "
        "(any timm model name also works)"
    )


def create_model(cfg: TrainConfig, info: DatasetInfo) -> nn.Module:
    """``timm.create_model(cfg.model, num_classes, in_chans, T, **cfg.model_kwargs)``, with
    ``cfg.pack_saved_spikes`` set on the zoo's models.

    Importing ``models`` registers the Max-Former zoo with timm; any other timm model name
    works too (with ``T: null`` for a non-spiking one).
    """
    check_model_name(cfg.model)
    kwargs = {**cfg.model_kwargs, "num_classes": info.num_classes, "in_chans": info.in_chans}
    if cfg.T is not None:
        kwargs["T"] = cfg.T
    try:
        model = timm.create_model(cfg.model, **kwargs)
    except TypeError as err:
        raise UserError(
            f"model {cfg.model} rejects its arguments {sorted(kwargs)}: {err} "
            f"(set T: null for a non-spiking model; check model_kwargs)"
        ) from err
    if isinstance(model, SpikingBackbone):
        model.pack_saved_spikes = cfg.pack_saved_spikes
    return model


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``amp`` mode: ``auto`` is bf16 on CUDA and off on the CPU."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
