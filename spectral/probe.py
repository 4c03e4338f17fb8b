"""Spatial spectra of the outputs (and of the neurons' inputs) of chosen modules of any
``nn.Module``, averaged over every map of every forward pass, in depth order."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from .feature import METHODS, Spectrum, SpectrumAccumulator, _check_cutoff, is_binary

__all__ = ["LayerSpectrum", "SpectrumProbe", "first_tensor", "is_spiking_neuron", "time_major"]

MembraneInput = Callable[[nn.Module, tuple, dict], Any]
"""``(module, args, kwargs) -> tensor``: what a neuron filters, from the arguments of its call."""

MAX_GRID_MISMATCH = 1.5
"""Largest ratio between the downsampling factors of a map's two axes (see `SpectrumProbe`)."""


def is_spiking_neuron(module: nn.Module) -> bool:
    """Whether ``module`` looks like a spiking neuron: it has a ``v_threshold`` attribute, as
    spikingjelly's nodes (``BaseNode``) and neurons of other libraries that follow it do."""
    return hasattr(module, "v_threshold")


def first_tensor(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The first tensor among the positional, then the keyword arguments of a call."""
    return next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)


@dataclass(frozen=True, eq=False)
class LayerSpectrum:
    """What a probed module produced, averaged over all its calls.

    ``output`` is the `Spectrum` of its output maps; for a neuron also ``input``, the spectrum
    of its membrane input (None when that is not a stack of maps). ``firing_rate`` is the mean
    of an output that was binary (0 or 1) in every call, else None. ``stage`` counts the map
    sizes met in depth order (1 = the first size; downsampling starts a new stage) and
    ``depth`` runs from 0 (first layer with map outputs) to 1 (last). ``skipped`` says why an
    output was not analysed (then ``output`` is None; ``stage`` and ``depth`` too unless the
    output was maps that were never finite), and is None otherwise. ``shape`` is the output
    shape of the first call; ``nonfinite_calls`` counts the calls whose output held nan or inf
    (left out of the averages: an exploding network).
    """

    name: str
    module_type: str
    shape: tuple[int, ...]
    calls: int
    neuron: bool
    firing_rate: float | None
    output: Spectrum | None
    input: Spectrum | None
    stage: int | None
    depth: float | None
    nonfinite_calls: int = 0
    skipped: str | None = None


class _TimeMean:
    """The sum over time of a module's maps of successive calls, until `flush` hands their
    mean (``[B, ..., H, W]``) to an accumulator."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.steps = 0

    def add(self, x: torch.Tensor, batch: int) -> None:
        """Add the steps of ``x``, maps of a batch of ``batch`` (see `time_major`)."""
        steps = time_major(x, batch)
        total = steps.double().sum(0)
        if self.total is not None and total.shape != self.total.shape:
            raise ValueError(f"maps of shape {tuple(total.shape)} cannot continue maps of shape "
                             f"{tuple(self.total.shape)} in time: call end_input() between "
                             "different inputs")
        self.total = total if self.total is None else self.total + total
        self.steps += steps.shape[0]

    def flush(self, accumulator: SpectrumAccumulator) -> None:
        if self.total is not None:
            accumulator.add(self.total / self.steps)
        self.total, self.steps = None, 0


def time_major(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Maps ``x`` of a batch of ``batch`` as ``[T, B, C, h, w]``: from ``[B, C, h, w]`` (one
    step) or frames ``[T * B, C, h, w]``, time-major ``[T, B, C, h, w]`` (preferred when
    ambiguous) or ``[B, T, C, h, w]``; ValueError for any other shape."""
    shape = tuple(x.shape)
    if x.ndim == 4 and batch >= 1 and shape[0] % batch == 0:
        return x.reshape(shape[0] // batch, batch, *shape[1:])
    if x.ndim == 5 and shape[1] == batch:
        return x
    if x.ndim == 5 and shape[0] == batch:
        return x.transpose(0, 1)
    raise ValueError(
        f"layer output of shape {shape} is not maps [B, C, h, w], [T, B, C, h, w], "
        f"[B, T, C, h, w] or [T * B, C, h, w] of a batch of {batch}"
    )


def _time_problem(x: torch.Tensor, batch: int | None) -> str | None:
    """Why ``x`` has no time axis `time_major` reads, or None if it has one."""
    try:
        time_major(x, batch or 0)
    except ValueError as err:
        return str(err)
    return None


class _Entry:
    """Running sums of one probed module at one map size."""

    def __init__(self, name: str, module: nn.Module, shape: tuple[int, ...], skipped: str | None):
        self.name, self.module_type, self.shape, self.skipped = (
            name, type(module).__name__, shape, skipped)
        self.calls = 0
        self.output = SpectrumAccumulator()
        self.input = SpectrumAccumulator()
        self.output_time = _TimeMean()
        self.input_time = _TimeMean()
        self.binary = True
        self.spikes = 0.0
        self.elements = 0
        self.nonfinite_calls = 0


class SpectrumProbe:
    """Record the spatial spectra of the outputs of chosen modules during forward passes.

    A module is probed when it is an instance of one of ``types`` or its name in
    ``model.named_modules()`` matches one of the ``fnmatch`` patterns ``names`` (e.g.
    ``"layer*.conv2"``; ``*`` also matches dots). Of a probed neuron (an instance of
    ``neuron_types``, or `is_spiking_neuron`), the membrane input is recorded as well:
    ``membrane_input(module, args, kwargs)`` of each call (default `first_tensor`).

    An output is read as a stack of maps ``[..., H, W]``, averaged over its leading axes (so
    ``[B, C, H, W]``, ``[T, B, C, H, W]`` and ``[T * B, C, H, W]`` all work), when it is a
    tensor of at least 4 axes with ``H, W >= 2`` whose grid is the model's input grid (the
    last two axes of the first tensor the model is called with) scaled down by about the same
    factor along both axes (within ``MAX_GRID_MISMATCH``). Anything else, such as tuples or
    tokens ``[T, B, C, N]`` (also where ``C == N``), is recorded as skipped, with the reason.
    Calls whose output (or membrane input) holds nan or inf are counted and left out.

    With ``time_mean``, each output (and membrane input) is first averaged over time, a
    spiking layer's firing-rate maps: its maps are read by `time_major` (a single-step
    module's ``[B, C, H, W]`` is one step), ``B`` being the first axis of the model's input
    (other outputs are skipped). Successive forward passes continue one another in time
    until `end_input` (a network run over many steps in chunks, or one step at a time);
    leaving the block and reading `results` end the input too.

    Use as a context manager: inside the ``with`` block every forward pass adds to the
    averages (hooks are removed on exit, also after an exception; entering again starts
    afresh); or call `run`. ``results`` has one `LayerSpectrum` per probed module and map size,
    in order of first call; a module called several times in a pass (a single-step neuron
    over T steps, a shared activation) is averaged over its calls.

    Example::

        probe = SpectrumProbe(model, types=(nn.ReLU, nn.MaxPool2d), neuron_types=(nn.ReLU,))
        with probe:
            for images, _ in loader:
                model(images)
        for layer in probe.results:
            print(layer.name, layer.depth, layer.output.high_frequency_ratio)
    """

    def __init__(
        self,
        model: nn.Module,
        types: type | tuple[type, ...] = (),
        names: str | Sequence[str] = (),
        neuron_types: type | tuple[type, ...] = (),
        membrane_input: MembraneInput = first_tensor,
        cutoff: float = 0.5,
        method: str = "radial",
        time_mean: bool = False,
    ) -> None:
        types = (types,) if isinstance(types, type) else tuple(types)
        neuron_types = (neuron_types,) if isinstance(neuron_types, type) else tuple(neuron_types)
        names = (names,) if isinstance(names, str) else tuple(names)
        if not all(isinstance(t, type) for t in (*types, *neuron_types)):
            raise TypeError(f"types must be classes (e.g. nn.Conv2d), got {types + neuron_types!r}")
        if not types and not names:
            raise ValueError("give module types and/or name patterns to probe, got neither")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        _check_cutoff(cutoff)
        self.model = model
        self.cutoff = cutoff
        self.method = method
        self.membrane_input = membrane_input
        self.time_mean = time_mean
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
        self.neurons = {
            name for name, module in self.modules
            if isinstance(module, neuron_types) or is_spiking_neuron(module)
        }
        self._entries: dict[tuple[str, tuple[int, int] | None], _Entry] = {}
        self._inputs: dict[str, list[torch.Tensor | None]] = {}
        self._grid: tuple[int, int] | None = None
        self._batch: int | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> SpectrumProbe:
        if self._handles:
            raise RuntimeError("this SpectrumProbe is already active")
        self._entries, self._inputs, self._grid, self._batch = {}, {}, None, None
        try:
            self._handles.append(
                self.model.register_forward_pre_hook(self._record_grid, with_kwargs=True))
            for name, module in self.modules:
                if name in self.neurons:
                    self._handles.append(module.register_forward_pre_hook(
                        partial(self._record_input, name), with_kwargs=True))
                self._handles.append(module.register_forward_hook(partial(self._record, name)))
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove_hooks()
        self.end_input()

    def end_input(self) -> None:
        """With ``time_mean``: the forward passes so far were all the time steps of their
        input; their mean maps join the averages, and the next pass starts a new input."""
        for entry in self._entries.values():
            entry.output_time.flush(entry.output)
            entry.input_time.flush(entry.input)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._inputs = {}

    def run(self, *args: Any, **kwargs: Any) -> list[LayerSpectrum]:
        """Run ``model(*args, **kwargs)`` once without gradients and return the results."""
        with self, torch.no_grad():
            self.model(*args, **kwargs)
        return self.results

    def _record_grid(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = first_tensor(module, args, kwargs)
        if self._grid is None and x is not None and x.ndim >= 2:
            self._grid = tuple(x.shape[-2:])
        if x is not None and x.ndim >= 1:
            self._batch = x.shape[0]

    def _record_input(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = self.membrane_input(module, args, kwargs)
        self._inputs.setdefault(name, []).append(
            x.detach() if isinstance(x, torch.Tensor) else None)

    def _map_problem(self, x: Any) -> str | None:
        """Why ``x`` is not a stack of maps of the input grid, or None if it is one."""
        if not isinstance(x, torch.Tensor):
            return f"output is a {type(x).__name__}"
        shape = tuple(x.shape)
        if x.ndim < 4 or shape[-2] < 2 or shape[-1] < 2:
            return f"output shape {shape} is not [..., H, W] with ndim >= 4 and H, W >= 2"
        if self._grid is not None:
            grid_h, grid_w = self._grid
            h, w = shape[-2:]
            factors = sorted((grid_h / h, grid_w / w))
            if factors[1] > MAX_GRID_MISMATCH * factors[0]:
                return (f"output shape {shape}: its last two axes are not a map grid of the "
                        f"{grid_h}x{grid_w} input (tokens?)")
            if factors[0] < 1:
                return (f"output shape {shape}: its last two axes are larger than the "
                        f"{grid_h}x{grid_w} input, not a map of it (tokens [C, N]?)")
        return None

    def _record(self, name: str, module: nn.Module, args: Any, output: Any) -> None:
        membrane = self._inputs.get(name, [None]).pop() if name in self.neurons else None
        problem = self._map_problem(output)
        if problem is None and self.time_mean:
            problem = _time_problem(output, self._batch)
        size = None if problem else tuple(output.shape[-2:])
        key = (name, size)
        if key not in self._entries:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            self._entries[key] = _Entry(name, module, shape, problem)
        entry = self._entries[key]
        entry.calls += 1
        if problem:
            return
        output = output.detach()
        if not bool(torch.isfinite(output).all()):
            entry.nonfinite_calls += 1
            return
        if self.time_mean:
            entry.output_time.add(output, self._batch)
        else:
            entry.output.add(output)
        entry.binary = entry.binary and is_binary(output)
        if entry.binary:
            entry.spikes += float(output.double().sum())
            entry.elements += output.numel()
        if membrane is None or self._map_problem(membrane) is not None or not bool(
                torch.isfinite(membrane).all()):
            return
        if not self.time_mean:
            entry.input.add(membrane)
        elif _time_problem(membrane, self._batch) is None:
            entry.input_time.add(membrane, self._batch)

    @property
    def results(self) -> list[LayerSpectrum]:
        """One `LayerSpectrum` per probed module and map size, in order of first call (with
        ``time_mean``, the input under way ends here: see `end_input`)."""
        self.end_input()
        maps = [key for key in self._entries if key[1] is not None]
        sizes = list(dict.fromkeys(size for _, size in maps))
        steps = max(len(maps) - 1, 1)
        depth = {key: i / steps for i, key in enumerate(maps)}
        return [self._result(entry, key, sizes, depth) for key, entry in self._entries.items()]

    def _result(
        self, entry: _Entry, key: tuple, sizes: list, depth: dict[tuple, float]
    ) -> LayerSpectrum:
        analysed = entry.output.maps > 0
        skipped = entry.skipped
        if skipped is None and not analysed:
            skipped = f"output had nan or inf values in all {entry.calls} calls"
        return LayerSpectrum(
            name=entry.name,
            module_type=entry.module_type,
            shape=entry.shape,
            calls=entry.calls,
            neuron=entry.name in self.neurons,
            firing_rate=entry.spikes / entry.elements if analysed and entry.binary else None,
            output=entry.output.spectrum(self.method, self.cutoff) if analysed else None,
            input=entry.input.spectrum(self.method, self.cutoff) if entry.input.maps else None,
            stage=sizes.index(key[1]) + 1 if key[1] is not None else None,
            depth=depth.get(key),
            nonfinite_calls=entry.nonfinite_calls,
            skipped=skipped,
        )
