"""The ``spikingjelly`` backend: spikingjelly's own multi-step ``LIFNode``/``IFNode`` (baseline)."""

from __future__ import annotations

import torch

from .dynamics import NeuronSpec
from .surrogate import SURROGATES


def node(spec: NeuronSpec):
    """spikingjelly's multi-step node computing ``spec`` (its surrogate from the one table)."""
    from spikingjelly.activation_based import neuron, surrogate

    surrogate_class = getattr(surrogate, SURROGATES[spec.surrogate].spikingjelly)
    common = dict(
        v_threshold=spec.v_threshold,
        v_reset=spec.v_reset,
        surrogate_function=surrogate_class(alpha=spec.alpha),
        detach_reset=spec.detach_reset,
        step_mode="m",
    )
    if spec.is_lif:
        return neuron.LIFNode(tau=float(spec.tau), decay_input=spec.decay_input, **common)
    return neuron.IFNode(**common)


def multistep(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, ...]`` and final membrane ``[...]`` of ``x`` ``[T, ...]`` by spikingjelly."""
    lif = node(spec)
    if v_init is not None:
        lif.v = v_init
    spikes = lif(x)
    return spikes, lif.v
