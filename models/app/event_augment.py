"""Augmentation of event-frame clips as the original event training does it.

Per clip ``[T, C, H, W]``: one operation drawn at random, applied alike to every frame
(TrivialAugment-Wide style, the original's ``SNNAugmentWide``): identity, a shear along x, a
translation along x or y, a rotation (each with a magnitude drawn from 31 evenly spaced
values, sign at random; nearest-neighbour sampling, zeros outside), or cutting out a square.
During training a batch may also keep a random, ordered subset of its frames
(``sample_frames``, the original's ``T_train``).
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

OPERATIONS = ("identity", "shear_x", "translate_x", "translate_y", "rotate", "cutout")
MAGNITUDE_BINS = 31
LARGEST = {"shear_x": 0.3, "translate_x": 5.0, "translate_y": 5.0, "rotate": 30.0}
"""Largest magnitude of each operation: radians of shear, pixels, degrees."""
CUTOUT_AREA = (0.001, 0.11)
"""Share of the frame a cut-out square covers, drawn uniformly."""


def _randint(high: int) -> int:
    return int(torch.randint(high, ()).item())


def affine(frames: torch.Tensor, operation: str, magnitude: float) -> torch.Tensor:
    """``frames`` ``[..., H, W]`` sheared (``magnitude`` radians), translated (pixels) or
    rotated clockwise (degrees); nearest-neighbour, zeros where nothing maps."""
    kwargs = dict(angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0])
    if operation == "shear_x":
        kwargs["shear"] = [math.degrees(magnitude), 0.0]
    elif operation == "translate_x":
        kwargs["translate"] = [int(magnitude), 0]
    elif operation == "translate_y":
        kwargs["translate"] = [0, int(magnitude)]
    elif operation == "rotate":
        kwargs["angle"] = magnitude
    else:
        raise ValueError(f"unknown operation {operation!r}; valid: {sorted(LARGEST)}")
    return TF.affine(frames, interpolation=InterpolationMode.NEAREST, fill=0.0, **kwargs)


def cutout(frames: torch.Tensor, area: float) -> torch.Tensor:
    """``frames`` ``[..., H, W]`` with a square covering ``area`` of each frame (same place in
    all of them) set to zero."""
    height, width = frames.shape[-2:]
    side = max(1, min(height, width, round(math.sqrt(area * height * width))))
    top, left = _randint(height - side + 1), _randint(width - side + 1)
    frames = frames.clone()
    frames[..., top : top + side, left : left + side] = 0
    return frames


def augment_clip(frames: torch.Tensor) -> torch.Tensor:
    """One random operation of ``OPERATIONS`` on the clip ``[T, C, H, W]``."""
    operation = OPERATIONS[_randint(len(OPERATIONS))]
    if operation == "identity":
        return frames
    if operation == "cutout":
        low, high = CUTOUT_AREA
        return cutout(frames, low + (high - low) * float(torch.rand(())))
    magnitude = LARGEST[operation] * (2 * _randint(MAGNITUDE_BINS) / (MAGNITUDE_BINS - 1) - 1)
    if _randint(2):
        magnitude = -magnitude
    return affine(frames, operation, magnitude)


def sample_frames(clips: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` frames of the batch ``[B, T, C, H, W]``, drawn without replacement and kept
    in time order (the same frames for the whole batch): ``[B, count, C, H, W]``."""
    steps = clips.shape[1]
    if not 1 <= count <= steps:
        raise ValueError(f"count must be between 1 and the clips' {steps} frames, got {count}")
    chosen = torch.randperm(steps)[:count].sort().values
    return clips[:, chosen.to(clips.device)]
