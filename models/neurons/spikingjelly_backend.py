"""The ``spikingjelly`` backend: spikingjelly's own multi-step ``LIFNode``/``IFNode`` (baseline)."""

from __future__ import annotations

import torch

from .dynamics import NeuronSpec


def multistep(
    x: torch.Tensor, v_init: torch.Tensor | None, spec: NeuronSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, ...]`` and final membrane ``[...]`` of ``x`` ``[T, ...]`` by spikingjelly."""
    from spikingjelly.activation_based import neuron, surrogate

    surrogates = {"sigmoid": surrogate.Sigmoid, "atan": surrogate.ATan}
    common = dict(
        v_threshold=spec.v_threshold,
        v_reset=spec.v_reset,
        surrogate_function=surrogates[spec.surrogate](alpha=spec.alpha),
        detach_reset=spec.detach_reset,
        step_mode="m",
    )
    if spec.is_lif:
        node = neuron.LIFNode(tau=float(spec.tau), decay_input=spec.decay_input, **common)
    else:
        node = neuron.IFNode(**common)
    if v_init is not None:
        node.v = v_init
    spikes = node(x)
    return spikes, node.v
