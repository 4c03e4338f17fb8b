"""Grad-CAM (Selvaraju et al., ICCV 2017) of any ``nn.Module``, spiking or not.

Spiking networks get their gradients through the neurons' surrogate, as in training.
Imports torch and `spectral` only, so it serves any network (timm, spikingjelly, the zoo).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral import time_major

__all__ = ["grad_cam", "last_map_layer", "min_max"]


def _is_map(x: object) -> bool:
    return isinstance(x, Tensor) and x.ndim >= 4 and x.shape[-2] >= 2 and x.shape[-1] >= 2


def grad_cam(
    model: nn.Module, images: Tensor, layer: nn.Module, classes: Tensor | None = None,
    every_call: bool = False,
) -> tuple[Tensor, Tensor]:
    """Grad-CAM heat maps of ``layer`` for ``images``.

    Args:
        model: returns logits ``[B, K]`` for ``images`` (put it in eval mode first; reset
            stateful neurons first if it has any).
        images: the model's input, batch first: ``[B, C, H, W]`` (or ``[B, T, C, H, W]``).
        layer: a module of ``model`` whose output is maps ``[B, C, h, w]``, ``[T, B, C, h, w]``
            or frames ``[T * B, C, h, w]``; if it runs several times, its last call counts,
            or with ``every_call`` all its calls, as successive time steps (a network run
            over many steps in chunks).
        classes: ``[B]`` class per image (default: the predicted class).

    Returns:
        ``(heat, classes)``: heat maps ``[B, H, W]`` in ``[0, 1]``, and the classes ``[B]``.
        Channel weights are the gradients of each image's class logit averaged over time and
        space; the map is ``ReLU(sum_c weight_c * A_c)`` of the time-averaged output ``A``,
        upsampled bilinearly to the image size, then scaled to [0, 1] by its minimum and
        maximum (:func:`min_max`, as pytorch-grad-cam and the original Grad-CAM code display
        it; a map with no contrast stays 0; one whose layer output or gradient held nan or
        inf, as in an exploding network, is nan).
    """
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        with torch.enable_grad():
            logits = model(images.detach().requires_grad_(True))
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"the {type(layer).__name__} layer did not run in the forward pass")
    batch = images.shape[0]
    if not isinstance(logits, Tensor) or logits.shape[:1] != (batch,) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits [B, K] = [{batch}, K], got {shape}")
    activations = captured if every_call else captured[-1:]
    for activation in activations:
        if not isinstance(activation, Tensor):
            raise ValueError(f"the layer's output is a {type(activation).__name__}, not a "
                             "tensor")
    if classes is None:
        classes = logits.argmax(1)
    score = logits.gather(1, classes.reshape(batch, 1).to(logits.device)).sum()
    grads = torch.autograd.grad(score, activations)
    grad = torch.cat([time_major(g, batch) for g in grads])
    activation = torch.cat([time_major(a.detach(), batch) for a in activations])
    weights = grad.mean(dim=(0, 3, 4))  # [B, C]
    heat = torch.relu((weights[:, :, None, None] * activation.mean(0)).sum(1))  # [B, h, w]
    heat = F.interpolate(heat[:, None].float(), size=tuple(images.shape[-2:]), mode="bilinear",
                         align_corners=False)[:, 0]
    return min_max(heat), classes


def min_max(maps: Tensor) -> Tensor:
    """Each map of ``maps`` ``[B, h, w]`` scaled to ``[0, 1]``: ``(m - min) / (max - min)`` (a
    constant map is 0; a map holding nan or inf is nan)."""
    low = maps.flatten(1).amin(1)[:, None, None]
    span = maps.flatten(1).amax(1)[:, None, None] - low
    scaled = (maps - low) / torch.where(span > 0, span, 1.0)
    finite = maps.flatten(1).isfinite().all(1)[:, None, None]
    return torch.where(finite, scaled, torch.nan)


def last_map_layer(model: nn.Module, images: Tensor) -> str:
    """The name of the submodule whose output is the last map ``[..., C, h, w]`` (``h, w >= 2``)
    of a forward pass of ``images`` (the outermost one where several end with it)."""
    finished: list[str] = []
    handles = [
        module.register_forward_hook(
            lambda module, args, output, name=name: finished.append(name)
            if _is_map(output) else None)
        for name, module in model.named_modules() if name
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    if not finished:
        raise ValueError(f"no submodule of the {type(model).__name__} outputs maps of 2x2 or more")
    return finished[-1]
