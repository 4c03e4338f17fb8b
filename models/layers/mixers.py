"""Token mixers: the spatial half of a block, `[T, B, dim, H, W] -> [T, B, dim, H, W]`.

Each mixer names the attribute it is stored under in its block (`checkpoint_name`: `"mixer"`,
or `"attn"` for the attention mixers), as in the published checkpoints. Mixers with a membrane
shortcut (`x + branch(x)`) drop their branch by stochastic depth (`drop_path`).
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from models.layers.checkpoint_only import CheckpointOnly
from models.layers.drop_path import TimeMajorDropPath
from models.layers.spiking import ATTENTION_THRESHOLD, NeuronFactory, per_step, pool


class IdentityMixer(nn.Module):
    """No token mixing: the block is its MLP alone."""

    checkpoint_name = "mixer"

    def forward(self, x: Tensor) -> Tensor:
        return x


class PoolMixer(nn.Module):
    """3x3 stride-1 max- or average-pooling of the membrane potential (no shortcut)."""

    checkpoint_name = "mixer"

    def __init__(self, kind: str = "max") -> None:
        super().__init__()
        self.pool = pool(kind, stride=1)

    def forward(self, x: Tensor) -> Tensor:
        return per_step(x, self.pool)


class ShortcutMixer(nn.Module):
    """A mixer that adds a branch to its input: `x + drop_path(branch(x))`."""

    def __init__(self, drop_path: float = 0.0) -> None:
        super().__init__()
        self.drop_path = TimeMajorDropPath(drop_path)

    def branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.branch(x))


class DepthwiseConvMixer(ShortcutMixer):
    """Spiking depth-wise convolution: `x + BN(DWConv_k(LIF(x)))`, any odd kernel size `k`.

    Checkpoint names are `conv` / `conv_bn`, except for `k = 7`, which the published checkpoints
    store as `conv5` / `conv5_bn`.
    """

    checkpoint_name = "mixer"
    _PUBLISHED_CONV_NAMES = {7: "conv5"}

    def __init__(
        self, dim: int, neuron: NeuronFactory, kernel_size: int = 3, drop_path: float = 0.0
    ) -> None:
        super().__init__(drop_path)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self._conv_name = self._PUBLISHED_CONV_NAMES.get(kernel_size, "conv")
        self.lif = neuron()
        self.add_module(
            self._conv_name,
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim),
        )
        self.add_module(f"{self._conv_name}_bn", nn.BatchNorm2d(dim))

    def branch(self, x: Tensor) -> Tensor:
        conv = getattr(self, self._conv_name)
        bn = getattr(self, f"{self._conv_name}_bn")
        return per_step(self.lif(x), conv, bn)


def _check_heads(dim: int, num_heads: int) -> None:
    if num_heads < 1 or dim % num_heads != 0:
        raise ValueError(f"num_heads={num_heads} must be >= 1 and divide the width {dim}")


class _SpikeAttention(ShortcutMixer):
    """What SSA and QK-attention share: the input neuron `x_lif`, spike projections
    `{name}_conv`/`{name}_bn`/`{name}_lif` (1x1 conv + BN + LIF, one per name), the attention
    neuron `attn_lif` (threshold 0.5) and the output projection `proj_conv`/`proj_bn`."""

    checkpoint_name = "attn"

    def __init__(
        self, dim: int, neuron: NeuronFactory, num_heads: int, projections: str,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(drop_path)
        _check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.x_lif = neuron()
        for name in projections:
            self.add_module(f"{name}_conv", nn.Conv1d(dim, dim, 1, bias=False))
            self.add_module(f"{name}_bn", nn.BatchNorm1d(dim))
            self.add_module(f"{name}_lif", neuron())
        self.attn_lif = neuron(v_threshold=ATTENTION_THRESHOLD)
        self.proj_conv = nn.Conv1d(dim, dim, 1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def _project(self, tokens: Tensor, name: str) -> Tensor:
        """Spikes of projection `name`: `[T, B, C, N] -> [T, B, C, N]`."""
        conv, bn, neuron = (getattr(self, f"{name}_{part}") for part in ("conv", "bn", "lif"))
        return neuron(per_step(tokens, conv), norm=bn)


class SpikingSelfAttention(_SpikeAttention):
    """Spiking self-attention (SSA, Spikformer) with an optional depth-wise conv (SSA-DWC).

    Q, K, V are spike maps from 1x1 conv + BN + LIF; per head `Q (K^T V) * 0.125` is fired by a
    neuron with threshold 0.5 and projected by a 1x1 conv + BN. With `dwc_kernel_size`, that
    projection passes LIF -> depth-wise conv -> BN. The result is added to the input.
    `[T, B, dim, H, W] -> [T, B, dim, H, W]`.
    """

    scale = 0.125

    def __init__(
        self, dim: int, neuron: NeuronFactory, num_heads: int = 8,
        dwc_kernel_size: int | None = None, drop_path: float = 0.0,
    ) -> None:
        super().__init__(dim, neuron, num_heads, projections="qkv", drop_path=drop_path)
        if dwc_kernel_size is None:
            self.dwc = None
        else:
            self.dwc_neuron = neuron()
            self.dwc = nn.Conv2d(
                dim, dim, dwc_kernel_size, padding=dwc_kernel_size // 2, groups=dim
            )
            self.dwc_bn = nn.BatchNorm2d(dim)

    def _heads(self, tokens: Tensor, name: str) -> Tensor:
        """Spikes of one projection, split into heads: `[T, B, C, N] -> [T, B, h, N, C / h]`."""
        steps, batch, channels, count = tokens.shape
        spikes = self._project(tokens, name).transpose(-1, -2)
        spikes = spikes.reshape(steps, batch, count, self.num_heads, channels // self.num_heads)
        return spikes.permute(0, 1, 3, 2, 4)

    def branch(self, x: Tensor) -> Tensor:
        steps, batch, channels, height, width = x.shape
        tokens = self.x_lif(x).flatten(3)
        q, k, v = (self._heads(tokens, name) for name in "qkv")
        scores = (q @ (k.transpose(-2, -1) @ v)) * self.scale
        scores = scores.transpose(3, 4).reshape(steps, batch, channels, height * width)
        out = per_step(self.attn_lif(scores), self.proj_conv, self.proj_bn)
        out = out.reshape(steps, batch, channels, height, width)
        if self.dwc is not None:
            out = per_step(self.dwc_neuron(out), self.dwc, self.dwc_bn)
        return out


class TokenQKAttention(_SpikeAttention):
    """QK token attention (QKFormer): per head, the channel sum of Q's spikes is fired by a
    neuron with threshold 0.5 and gates K's spikes, then 1x1 conv + BN, added to the input.
    `[T, B, dim, H, W] -> [T, B, dim, H, W]`.
    """

    def __init__(
        self, dim: int, neuron: NeuronFactory, num_heads: int = 8, drop_path: float = 0.0
    ) -> None:
        super().__init__(dim, neuron, num_heads, projections="qk", drop_path=drop_path)

    def branch(self, x: Tensor) -> Tensor:
        steps, batch, channels, height, width = x.shape
        heads = (steps, batch, self.num_heads, channels // self.num_heads, height * width)
        tokens = self.x_lif(x).flatten(3)
        q = self._project(tokens, "q").reshape(heads)
        k = self._project(tokens, "k").reshape(heads)
        token_gate = self.attn_lif(torch.sum(q, dim=3, keepdim=True))
        out = (token_gate * k).flatten(2, 3)
        out = per_step(out, self.proj_conv, self.proj_bn)
        return out.reshape(steps, batch, channels, height, width)


class SpikeDrivenSelfAttention(ShortcutMixer):
    """Spike-driven self-attention (SDSA, Spike-driven Transformer): Q, K, V spike maps from
    1x1 conv + BN + LIF of `LIF(x)`; the column sums over tokens of `K * V` are fired by a
    neuron with threshold 0.5 and gate Q's spikes channel by channel, then 1x1 conv + BN, added
    to the input. `[T, B, dim, H, W] -> [T, B, dim, H, W]`.

    The heads do not change the result (every channel is gated by its own sum); they only size
    `talking_heads`, the weights of a `num_heads x num_heads` 1-D convolution the published
    code builds and never calls (`CheckpointOnly`).
    """

    checkpoint_name = "attn"

    def __init__(
        self, dim: int, neuron: NeuronFactory, num_heads: int = 8, drop_path: float = 0.0
    ) -> None:
        super().__init__(drop_path)
        _check_heads(dim, num_heads)
        self.shortcut_lif = neuron()
        for name in "qkv":
            self.add_module(f"{name}_conv", nn.Conv2d(dim, dim, 1, bias=False))
            self.add_module(f"{name}_bn", nn.BatchNorm2d(dim))
            self.add_module(f"{name}_lif", neuron())
        self.talking_heads = CheckpointOnly(
            partial(nn.Conv1d, num_heads, num_heads, 1, bias=False)
        )
        self.talking_heads_lif = neuron(v_threshold=ATTENTION_THRESHOLD)
        self.proj_conv = nn.Conv2d(dim, dim, 1)
        self.proj_bn = nn.BatchNorm2d(dim)

    def _project(self, spikes: Tensor, name: str) -> Tensor:
        """Spikes of projection `name`: `[T, B, C, H, W] -> [T, B, C, H * W]`."""
        conv, bn, neuron = (getattr(self, f"{name}_{part}") for part in ("conv", "bn", "lif"))
        return neuron(per_step(spikes, conv), norm=bn).flatten(3)

    def branch(self, x: Tensor) -> Tensor:
        spikes = self.shortcut_lif(x)
        q, k, v = (self._project(spikes, name) for name in "qkv")
        gate = self.talking_heads_lif((k * v).sum(dim=-1, keepdim=True))
        return per_step((q * gate).reshape(x.shape), self.proj_conv, self.proj_bn)


MixerFactory = Callable[[int, NeuronFactory, int, float], nn.Module]

MIXERS: dict[str, MixerFactory] = {
    "identity": lambda dim, neuron, heads, drop: IdentityMixer(),
    "max_pool": lambda dim, neuron, heads, drop: PoolMixer("max"),
    "avg_pool": lambda dim, neuron, heads, drop: PoolMixer("avg"),
    "dwc3": lambda dim, neuron, heads, drop: DepthwiseConvMixer(dim, neuron, 3, drop),
    "dwc5": lambda dim, neuron, heads, drop: DepthwiseConvMixer(dim, neuron, 5, drop),
    "dwc7": lambda dim, neuron, heads, drop: DepthwiseConvMixer(dim, neuron, 7, drop),
    "ssa": lambda dim, neuron, heads, drop: SpikingSelfAttention(
        dim, neuron, heads, drop_path=drop
    ),
    "ssa_dwc": lambda dim, neuron, heads, drop: SpikingSelfAttention(
        dim, neuron, heads, dwc_kernel_size=5, drop_path=drop
    ),
    "qk": lambda dim, neuron, heads, drop: TokenQKAttention(dim, neuron, heads, drop),
    "sdsa": lambda dim, neuron, heads, drop: SpikeDrivenSelfAttention(dim, neuron, heads, drop),
}
"""Mixer names of the model specification: name -> constructor
`(dim, neuron, num_heads, drop_path)`; mixers without a shortcut have no branch to drop."""


def create_mixer(
    name: str, dim: int, neuron: NeuronFactory, num_heads: int, drop_path: float = 0.0
) -> nn.Module:
    """Token mixer `name` (a key of `MIXERS`) of width `dim`; `num_heads` is used by attention,
    `drop_path` (stochastic depth rate of the branch) by the mixers with a shortcut."""
    if name not in MIXERS:
        raise ValueError(f"unknown token mixer {name!r}; valid: {', '.join(MIXERS)}")
    return MIXERS[name](dim, neuron, num_heads, drop_path)
