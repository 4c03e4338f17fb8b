"""What the training step does to a whole batch before the forward: timm's Mixup/CutMix, and
with ``erase_after_mix`` random erasing of the mixed images (the original CIFAR training's
order: its collate function mixed, its GPU prefetcher then erased)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing

from models.app.config import TrainConfig


class MixThenErase:
    """``mixup`` (timm's Mixup/CutMix; None: no mixing), then ``erasing`` (timm's
    RandomErasing, each image with its probability) of the mixed batch ``[B, C, H, W]``, so
    erased pixels keep the erasing's values instead of being mixed with another image."""

    def __init__(self, mixup: Mixup | None, erasing: RandomErasing) -> None:
        self.mixup, self.erasing = mixup, erasing

    @property
    def mixup_enabled(self) -> bool:
        return self.mixup is not None and self.mixup.mixup_enabled

    @mixup_enabled.setter
    def mixup_enabled(self, enabled: bool) -> None:
        if self.mixup is not None:
            self.mixup.mixup_enabled = enabled

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed then erased ``inputs`` ``[B, C, H, W]`` and the targets (soft after mixing)."""
        if self.mixup is not None:
            inputs, targets = self.mixup(inputs, targets)
        return self.erasing(inputs), targets


def batch_augment(
    cfg: TrainConfig, mixup: Mixup | None, device: torch.device
) -> Callable | None:
    """The batch augmentation of ``cfg``: ``mixup`` alone, or with ``erase_after_mix`` (and
    ``reprob`` > 0) :class:`MixThenErase` erasing on ``device`` as ``reprob`` and ``remode``
    say (the per-image transform then erases nothing, :func:`models.app.data.image_transform`)."""
    if not (cfg.erase_after_mix and cfg.reprob > 0):
        return mixup
    erasing = RandomErasing(cfg.reprob, mode=cfg.remode, device=str(device))
    return MixThenErase(mixup, erasing)
