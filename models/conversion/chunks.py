"""A converted network run over many time steps in chunks, its state carried between them,
so memory is that of one chunk."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import Tensor, nn

from models.conversion.convert import GatedMaxPool
from models.neurons import ConvertedIF

STATEFUL = (ConvertedIF, GatedMaxPool)


@contextlib.contextmanager
def carried_state(model: nn.Module) -> Iterator[None]:
    """Within, successive calls of `model` continue one another in time (the IF membranes
    and gated max-pools' sums carry over); the state starts fresh and is dropped on exit."""
    stateful = [m for m in model.modules() if isinstance(m, STATEFUL)]
    for module in stateful:
        module.carry, module.state = True, None
    try:
        yield
    finally:
        for module in stateful:
            module.carry, module.state = False, None


def forward_in_chunks(model: nn.Module, x: Tensor, T: int, chunk: int = 32) -> Tensor:
    """Logits `[B, classes]` of a converted zoo network run `T` steps on images `[B, C, H, W]`
    (each step the same image) or clips `[B, T, C, H, W]`, `chunk` steps at a time: the same
    as one call at `T` steps (the logits of a chunk weighted by its share of the steps)."""
    if T < 1 or chunk < 1:
        raise ValueError(f"T and chunk must be >= 1, got T={T}, chunk={chunk}")
    steps_before = model.T
    total = None
    try:
        with carried_state(model):
            for start in range(0, T, chunk):
                steps = min(chunk, T - start)
                model.T = steps
                part = x[:, start:start + steps] if x.dim() == 5 else x
                logits = model(part) * (steps / T)
                total = logits if total is None else total + logits
    finally:
        model.T = steps_before
    return total


class ChunkedNetwork(nn.Module):
    """`net` (a converted zoo network) run `T` steps in chunks of `chunk`: images `[B, C, H,
    W]` -> logits `[B, classes]`."""

    def __init__(self, net: nn.Module, T: int, chunk: int = 32) -> None:
        super().__init__()
        self.net, self.T, self.chunk = net, T, chunk

    def forward(self, x: Tensor) -> Tensor:
        return forward_in_chunks(self.net, x, self.T, self.chunk)
