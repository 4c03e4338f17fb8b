"""A converted network run over many time steps in chunks, its state carried between them,
so memory is that of one chunk (plus the state at each chunk's start when gradients flow)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from models.conversion.convert import GatedMaxPool
from models.neurons import ConvertedIF

STATEFUL = (ConvertedIF, GatedMaxPool)
"""The modules of a converted network that carry state from one call to the next."""

DEFAULT_CHUNK = 32
"""Time steps per call of :func:`forward_in_chunks`."""

State = tuple[Tensor | None, ...]


def stateful_modules(model: nn.Module) -> list[nn.Module]:
    """The IF neurons and gated max-pools of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, STATEFUL)]


def run_chunk(model: nn.Module, x: Tensor, steps: int, state: State) -> tuple[Tensor, State]:
    """Logits `[B, classes]` of `model` run `steps` time steps on `x` (images `[B, C, H, W]`
    or clips `[B, steps, C, H, W]`) from `state` (one entry per :func:`stateful_modules`;
    None: fresh), and the state it ends in: a pure function of its arguments, so it can be
    recomputed (gradients flow through the IF membranes of `state`)."""
    modules = stateful_modules(model)
    steps_before = model.T
    try:
        for module, value in zip(modules, state, strict=True):
            module.carry, module.state = True, value
        model.T = steps
        logits = model(x)
        return logits, tuple(m.state for m in modules)
    finally:
        model.T = steps_before
        for module in modules:
            module.carry, module.state = False, None


def forward_in_chunks(model: nn.Module, x: Tensor, T: int, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Logits `[B, classes]` of a converted zoo network run `T` steps on images `[B, C, H, W]`
    (each step the same image) or clips `[B, T, C, H, W]`, `chunk` steps at a time: the same
    as one call at `T` steps (the logits of a chunk weighted by its share of the steps).

    With gradients enabled each chunk is checkpointed (`torch.utils.checkpoint`): backward
    recomputes it from its input and starting state, so gradients are those of one call at
    `T` steps while memory holds one chunk's graph and the state at each chunk's start."""
    if T < 1 or chunk < 1:
        raise ValueError(f"T and chunk must be >= 1, got T={T}, chunk={chunk}")
    state: State = (None,) * len(stateful_modules(model))
    total = None
    for start in range(0, T, chunk):
        steps = min(chunk, T - start)
        part = x[:, start:start + steps] if x.dim() == 5 else x
        if torch.is_grad_enabled():
            logits, *rest = checkpoint(_chunk_outputs, model, part, steps, *state,
                                       use_reentrant=False)
            state = tuple(rest)
        else:
            logits, state = run_chunk(model, part, steps, state)
        logits = logits * (steps / T)
        total = logits if total is None else total + logits
    return total


def _chunk_outputs(model: nn.Module, x: Tensor, steps: int, *state: Tensor | None
                   ) -> tuple[Tensor | None, ...]:
    """:func:`run_chunk` with its state flattened, as `checkpoint` takes and gives tensors."""
    logits, state = run_chunk(model, x, steps, state)
    return (logits, *state)


class ChunkedNetwork(nn.Module):
    """`net` (a converted zoo network) run `T` steps in chunks of `chunk`: images `[B, C, H,
    W]` -> logits `[B, classes]` (:func:`forward_in_chunks`)."""

    def __init__(self, net: nn.Module, T: int, chunk: int = DEFAULT_CHUNK) -> None:
        super().__init__()
        self.net, self.T, self.chunk = net, T, chunk

    def forward(self, x: Tensor) -> Tensor:
        return forward_in_chunks(self.net, x, self.T, self.chunk)
