"""Building a model by its timm name for a dataset, and choosing the mixed precision."""

from __future__ import annotations

import timm
import torch
import torch.nn as nn

from models.training.config import TrainConfig
from models.training.data import DatasetInfo
from models.training.errors import UserError


def create_model(cfg: TrainConfig, info: DatasetInfo) -> nn.Module:
    """``timm.create_model(cfg.model, num_classes, in_chans, T, **cfg.model_kwargs)``.

    Importing ``models`` registers the Max-Former zoo with timm; any other timm model name
    works too (with ``T: null`` for a non-spiking one).
    """
    import models  # noqa: F401  (registers the zoo)

    kwargs = {**cfg.model_kwargs, "num_classes": info.num_classes, "in_chans": info.in_chans}
    if cfg.T is not None:
        kwargs["T"] = cfg.T
    if not timm.is_model(cfg.model):
        ours = ", ".join(timm.list_models("maxformer*") + timm.list_models("max_resnet*"))
        raise UserError(
            f"unknown model {cfg.model!r}: not in timm's registry (Max-Former models: "
            f"{ours or 'none registered'}; any timm model name also works)"
        )
    try:
        return timm.create_model(cfg.model, **kwargs)
    except TypeError as err:
        raise UserError(
            f"model {cfg.model} rejects its arguments {sorted(kwargs)}: {err} "
            f"(set T: null for a non-spiking model; check model_kwargs)"
        ) from err


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``amp`` mode: ``auto`` is bf16 on CUDA and off on the CPU."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
