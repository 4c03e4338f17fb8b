"""Blocks of the spiking MetaFormer family (a token mixer, then a spiking MLP), and the
sequence of blocks of one stage."""

import contextlib
from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from models.layers.mixers import create_mixer
from models.layers.mlp import SpikingMLP
from models.layers.spiking import NeuronFactory


class SpikingBlock(nn.Module):
    """Token mixer then spiking MLP, each with its own membrane shortcut.

    `[T, B, dim, H, W] -> [T, B, dim, H, W]`. The mixer is stored under its `checkpoint_name`
    (`mixer` or `attn`), as in the published checkpoints. `drop_path`: stochastic depth rate of
    the shortcut branches.
    """

    def __init__(
        self, dim: int, mixer: str, neuron: NeuronFactory, num_heads: int = 8,
        mlp_ratio: float = 4.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        token_mixer = create_mixer(mixer, dim, neuron, num_heads, drop_path)
        self._mixer_name = token_mixer.checkpoint_name
        self.add_module(self._mixer_name, token_mixer)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio), neuron, drop_path)

    @property
    def token_mixer(self) -> nn.Module:
        return getattr(self, self._mixer_name)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.token_mixer(x))


class BlockSequence(nn.Sequential):
    """The blocks of one stage, run in order: `[T, B, C, H, W] -> [T, B, C', H', W']`.

    With `grad_checkpointing` (and gradients enabled), each block keeps only its input for
    backward and runs again there. The recomputation normalises with the same batch statistics
    but leaves BatchNorm's running statistics alone, and drop path draws the same masks, so
    outputs, gradients and running statistics are those of a run without checkpointing.
    """

    grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        for block in self:
            x = self.run_block(block, x)
        return x

    def run_block(self, block: nn.Module, x: Tensor) -> Tensor:
        """One of the blocks, `block`, with the sequence's gradient checkpointing."""
        return run_checkpointed(block, x, block, self.grad_checkpointing)


def run_checkpointed(
    fn: Callable[[Tensor], Tensor], x: Tensor, module: nn.Module, enabled: bool = True
) -> Tensor:
    """`fn(x)`; when `enabled` (and gradients are), keeping only `x` for backward and running
    `fn` again there, with the running statistics of `module`'s norms (the module `fn`
    belongs to) left as they are by the recomputation, so outputs, gradients and statistics
    are those of a plain run."""
    if not (enabled and torch.is_grad_enabled()):
        return fn(x)
    if torch.compiler.is_compiling():  # the compiler applies BatchNorm's updates once
        return checkpoint(fn, x, use_reentrant=False)
    return checkpoint(fn, x, use_reentrant=False, context_fn=partial(_recompute, module))


def _recompute(block: nn.Module) -> tuple[contextlib.AbstractContextManager, ...]:
    """Contexts of a checkpointed block's forward (none) and of its recomputation (running
    statistics frozen)."""
    return contextlib.nullcontext(), _running_stats_frozen(block)


@contextlib.contextmanager
def _running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Within, the norms of `module` that track running statistics run the same operations as
    before (the same tensors saved for backward) with a running-average factor of 0, so their
    statistics stay as they are; the counts of batches seen are put back on exit."""
    norms = [m for m in module.modules() if getattr(m, "track_running_stats", False)]
    before = [(norm.momentum, norm.num_batches_tracked.clone()) for norm in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, (momentum, count) in zip(norms, before, strict=True):
            norm.momentum = momentum
            norm.num_batches_tracked.copy_(count)
