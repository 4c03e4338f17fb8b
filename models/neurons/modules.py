"""``nn.Module`` wrappers of the multi-step neurons (no parameters, no buffers, no state), the
ANN twins' activations (ReLU; QCFS with a trained clip) and the IF neuron of a converted ANN
(a threshold buffer; membrane carried across calls on request)."""

from __future__ import annotations

import torch
from torch import nn

from .dynamics import NeuronSpec
from .functional import BACKENDS, neuron_multistep
from .norm_fire import norm_per_step, norm_then_fire


class MultiStepNeuron(nn.Module):
    """The base class of the multi-step neurons: spikes ``[T, ...]`` of input ``[T, ...]``; the
    membrane starts at ``v_reset`` every call. Other packages find a model's neurons by this
    class (``isinstance(module, MultiStepNeuron)``)."""

    def __init__(self, spec: NeuronSpec, backend: str) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid choices: {list(BACKENDS)}")
        self.spec = spec
        self.backend = backend

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
        """Spikes of ``x`` ``[T, ...]``; with ``norm`` (a BatchNorm applied per time step), of
        ``norm(x)``, whose output is then recomputed in backward instead of kept."""
        if norm is not None:
            return norm_then_fire(x, norm, self.spec, self.backend)
        return neuron_multistep(x, self.spec, self.backend)[0]

    def extra_repr(self) -> str:
        s = self.spec
        head = f"tau={s.tau}, " if s.is_lif else ""
        tail = f", decay_input={s.decay_input}" if s.is_lif else ""
        return (
            f"{head}v_threshold={s.v_threshold}, v_reset={s.v_reset}, "
            f"detach_reset={s.detach_reset}, surrogate={s.surrogate}(alpha={s.alpha})"
            f"{tail}, backend={self.backend}"
        )


class MultiStepLIF(MultiStepNeuron):
    """Multi-step LIF neurons; arguments as :func:`models.neurons.lif_multistep`."""

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = True,
        surrogate: str = "sigmoid",
        alpha: float | None = None,
        backend: str = "auto",
    ) -> None:
        spec = NeuronSpec(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha)
        super().__init__(spec, backend)


class MultiStepIF(MultiStepNeuron):
    """Multi-step IF neurons; arguments as :func:`models.neurons.if_multistep`."""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = True,
        surrogate: str = "sigmoid",
        alpha: float | None = None,
        backend: str = "auto",
    ) -> None:
        spec = NeuronSpec(None, v_threshold, v_reset, True, detach_reset, surrogate, alpha)
        super().__init__(spec, backend)


class MultiStepReLU(nn.Module):
    """ReLU where a network has a spiking neuron (its ANN twin): ``[T, ...] -> [T, ...]``,
    called like a neuron (with ``norm``, a BatchNorm applied per time step first)."""

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
        return torch.relu(x if norm is None else norm_per_step(x, norm))


class MultiStepQCFS(nn.Module):
    """The quantisation-clip-floor-shift activation (Bu et al., ICLR 2022), an ANN twin trained
    for conversion: ``threshold * clip(floor(x L / threshold + 1/2), 0, L) / L`` with a trained
    ``threshold`` (lambda) and ``levels`` (L) steps; the floor passes gradients straight
    through. ``[T, ...] -> [T, ...]``, called like a neuron."""

    def __init__(self, levels: int = 8, threshold: float = 1.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = levels
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
        x = x if norm is None else norm_per_step(x, norm)
        clipped = torch.clamp(x / self.threshold, 0.0, 1.0)
        steps = torch.floor(clipped * self.levels + 0.5) / self.levels
        return (clipped + (steps - clipped).detach()) * self.threshold

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


class ConvertedIF(MultiStepNeuron):
    """The IF neuron of a converted ANN: soft reset at ``threshold`` (a buffer), the membrane
    starting at ``threshold / 2``; spikes 0/1, whose rate times ``threshold`` approximates the
    activation it replaces (conversion folds ``threshold`` into the layers that read them).
    ``[T, ...] -> [T, ...]``.

    While ``carry`` is set, each call starts from the membrane the previous one ended with
    (a long sequence fed in chunks); ``state`` holds it (``None``: not started), gradients
    flowing through it."""

    def __init__(self, threshold: float = 1.0, backend: str = "auto") -> None:
        spec = NeuronSpec(None, 1.0, None, True, True, "sigmoid", None)
        super().__init__(spec, backend)
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.carry = False
        self.state: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
        x = x if norm is None else norm_per_step(x, norm)
        threshold = self.threshold.to(x.dtype)
        v_init = self.state if self.carry and self.state is not None else None
        if v_init is None:
            v_init = torch.full(x.shape[1:], 0.5, dtype=x.dtype, device=x.device)
        spikes, v_final = neuron_multistep(x / threshold, self.spec, self.backend, v_init,
                                           return_state=self.carry)
        if self.carry:
            self.state = v_final
        return spikes

    def extra_repr(self) -> str:
        return f"threshold={float(self.threshold):.4g}, soft reset, backend={self.backend}"
