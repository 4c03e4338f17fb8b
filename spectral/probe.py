"""Spatial spectra of the outputs of chosen modules of any ``nn.Module``, in forward order."""

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from .feature import (
    _check_cutoff,
    _delta_log_amplitude,
    _high_frequency_ratio,
    _spectra,
    is_binary,
)

__all__ = ["LayerSpectrum", "SpectrumProbe"]


@dataclass(frozen=True, eq=False)
class LayerSpectrum:
    """Spectrum of one module output.

    ``delta_log_amplitude`` is the relative log amplitude at the highest radial bin (the
    corner of the spectrum), ``profile`` the whole curve at ``radii`` (see
    `spectral.delta_log_amplitude`); ``firing_rate`` is the mean of a binary output (all
    values 0 or 1) and None otherwise. ``skipped`` says why an output was not analysed
    (then the numbers are nan and the arrays empty), and is None otherwise.
    """

    name: str
    shape: tuple[int, ...]
    delta_log_amplitude: float
    high_frequency_ratio: float
    firing_rate: float | None
    radii: np.ndarray = field(repr=False)
    profile: np.ndarray = field(repr=False)
    skipped: str | None = None


class SpectrumProbe:
    """Record the spatial spectra of the outputs of chosen modules during a forward pass.

    A module is probed when it is an instance of one of ``types`` or its name in
    ``model.named_modules()`` matches one of the ``fnmatch`` patterns ``names`` (e.g.
    ``"layer*.conv2"``; ``*`` also matches dots). Outputs are read as stacks of maps
    ``[..., H, W]`` with spectra averaged over the leading axes, so both ``[B, C, H, W]`` and
    ``[T, B, C, H, W]`` work. Outputs that are not tensors of at least 4 dimensions with
    ``H, W >= 2`` (tuples, tokens ``[B, N, C]``) are recorded as skipped. Token tensors
    ``[T, B, C, N]`` have 4 dimensions and would be read as maps ``C x N``: do not select such
    modules.

    Use as a context manager (hooks live inside the ``with`` block and are removed on exit,
    also after an exception), or call `run`. ``results`` holds one `LayerSpectrum` per call
    of a probed module, in forward order.

    Example::

        probe = SpectrumProbe(model, types=(nn.Conv2d,), names="stage*.mlp")
        for layer in probe.run(images):
            print(layer.name, layer.delta_log_amplitude, layer.high_frequency_ratio)
    """

    def __init__(
        self,
        model: nn.Module,
        types: type | tuple[type, ...] = (),
        names: str | Sequence[str] = (),
        cutoff: float = 0.5,
    ) -> None:
        types = (types,) if isinstance(types, type) else tuple(types)
        names = (names,) if isinstance(names, str) else tuple(names)
        if not all(isinstance(t, type) for t in types):
            raise TypeError(f"types must be classes (e.g. nn.Conv2d), got {types!r}")
        if not types and not names:
            raise ValueError("give module types and/or name patterns to probe, got neither")
        _check_cutoff(cutoff)
        self.model = model
        self.cutoff = cutoff
        self.modules = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, types) or any(fnmatch.fnmatchcase(name, p) for p in names)
        ]
        if not self.modules:
            available = [name for name, _ in model.named_modules() if name][:20]
            raise ValueError(
                f"no module of the {type(model).__name__} matches types={types!r} or "
                f"names={names!r}; its modules include {available}"
            )
        self.results: list[LayerSpectrum] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "SpectrumProbe":
        if self._handles:
            raise RuntimeError("this SpectrumProbe is already active")
        self.results = []
        try:
            for name, module in self.modules:
                self._handles.append(module.register_forward_hook(partial(self._record, name)))
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def run(self, *args: Any, **kwargs: Any) -> list[LayerSpectrum]:
        """Run ``model(*args, **kwargs)`` without gradients and return the results."""
        with self, torch.no_grad():
            self.model(*args, **kwargs)
        return self.results

    def _record(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            self.results.append(_skipped(name, (), f"output is a {type(output).__name__}"))
            return
        shape = tuple(output.shape)
        if output.ndim < 4 or shape[-2] < 2 or shape[-1] < 2:
            reason = f"output shape {shape} is not [..., H, W] with ndim >= 4 and H, W >= 2"
            self.results.append(_skipped(name, shape, reason))
            return
        output = output.detach()
        binary = is_binary(output)
        power, amplitude = _spectra(output, average=True)
        radii, profile = _delta_log_amplitude(amplitude)
        self.results.append(
            LayerSpectrum(
                name=name,
                shape=shape,
                delta_log_amplitude=float(profile[-1]),
                high_frequency_ratio=float(_high_frequency_ratio(power, self.cutoff)),
                firing_rate=float(output.float().mean()) if binary else None,
                radii=radii,
                profile=profile,
            )
        )


def _skipped(name: str, shape: tuple[int, ...], reason: str) -> LayerSpectrum:
    empty = np.empty(0)
    return LayerSpectrum(name, shape, math.nan, math.nan, None, empty, empty, skipped=reason)
