"""Spikformer's encoder block: spiking self-attention and a spiking MLP whose outputs are spikes,
each added to its input. `[T, B, dim, H, W] -> [T, B, dim, H, W]`."""

from functools import partial

from torch import Tensor, nn

from models.layers.checkpoint_only import CheckpointOnly
from models.layers.spiking import ATTENTION_THRESHOLD, NeuronFactory, per_step

PROJECTIONS = ("linear", "conv")
"""How a Spikformer projects tokens: "linear" (its CIFAR code: `nn.Linear` on tokens and
`BatchNorm1d`) or "conv" (its ImageNet code: 1x1 `Conv1d` in attention, 1x1 `Conv2d` +
`BatchNorm2d` in the MLP). The two compute the same maps; they differ in checkpoint names,
weight shapes and biases."""


def _token_layer(layer: nn.Module, x: Tensor) -> Tensor:
    """A linear or 1x1 conv layer on time-major tokens `[T, B, C, N] -> [T, B, C', N]`."""
    if isinstance(layer, nn.Linear):
        return per_step(x, lambda y: layer(y.transpose(1, 2)).transpose(1, 2))
    return per_step(x, layer)


class SpikformerAttention(nn.Module):
    """Spiking self-attention of Spikformer: Q, K, V spike maps from projection + BN + LIF of
    the input; per head `Q K^T V * 0.125` fired at threshold 0.5, then projection + BN + LIF.
    The output is spikes (no shortcut here: the block adds it)."""

    scale = 0.125

    def __init__(self, dim: int, neuron: NeuronFactory, num_heads: int, projection: str) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide the width {dim}")
        self.num_heads = num_heads
        self._kind = projection
        for name in "qkv":
            if projection == "linear":
                layer = nn.Linear(dim, dim)
            else:
                layer = nn.Conv1d(dim, dim, 1, bias=False)
            self.add_module(f"{name}_{projection}", layer)
            self.add_module(f"{name}_bn", nn.BatchNorm1d(dim))
            self.add_module(f"{name}_lif", neuron())
        self.attn_lif = neuron(v_threshold=ATTENTION_THRESHOLD)
        proj = nn.Linear(dim, dim) if projection == "linear" else nn.Conv1d(dim, dim, 1)
        self.add_module(f"proj_{projection}", proj)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = neuron()

    def _fire(self, tokens: Tensor, name: str) -> Tensor:
        """Projection + BN + LIF of `name`: `[T, B, C, N] -> [T, B, C, N]`."""
        layer = getattr(self, f"{name}_{self._kind}")
        return getattr(self, f"{name}_lif")(
            _token_layer(layer, tokens), norm=getattr(self, f"{name}_bn")
        )

    def forward(self, x: Tensor) -> Tensor:
        steps, batch, channels = x.shape[:3]
        tokens = x.flatten(3)
        heads = (steps, batch, self.num_heads, channels // self.num_heads, tokens.shape[-1])
        q, k, v = (self._fire(tokens, name).reshape(heads).transpose(-1, -2) for name in "qkv")
        scores = (q @ (k.transpose(-2, -1) @ v)) * self.scale  # [T, B, h, N, C / h]
        scores = scores.transpose(-1, -2).reshape(tokens.shape)
        return self._fire(self.attn_lif(scores), "proj").reshape(x.shape)


class SpikformerMLP(nn.Module):
    """Projection + BN + LIF twice (width `hidden_dim`, then `dim`); the output is spikes."""

    def __init__(self, dim: int, hidden_dim: int, neuron: NeuronFactory, projection: str) -> None:
        super().__init__()
        self._kind = projection
        for name, (n_in, n_out) in (("fc1", (dim, hidden_dim)), ("fc2", (hidden_dim, dim))):
            if projection == "linear":
                layer, norm = nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out)
            else:
                layer, norm = nn.Conv2d(n_in, n_out, 1), nn.BatchNorm2d(n_out)
            self.add_module(f"{name}_{projection}", layer)
            self.add_module(f"{name}_bn", norm)
            self.add_module(f"{name}_lif", neuron())

    def forward(self, x: Tensor) -> Tensor:
        y = x.flatten(3) if self._kind == "linear" else x
        for name in ("fc1", "fc2"):
            layer = getattr(self, f"{name}_{self._kind}")
            fire, norm = getattr(self, f"{name}_lif"), getattr(self, f"{name}_bn")
            y = fire(_token_layer(layer, y), norm=norm)
        return y.reshape(x.shape)


class SpikformerBlock(nn.Module):
    """`x + attn(x)`, then `+ mlp(.)`. `norm1` and `norm2` are the weights of LayerNorms the
    published code builds and never calls (`CheckpointOnly`)."""

    def __init__(
        self, dim: int, neuron: NeuronFactory, num_heads: int, mlp_ratio: float = 4.0,
        projection: str = "linear", norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if projection not in PROJECTIONS:
            raise ValueError(f"unknown projection {projection!r}; valid: {', '.join(PROJECTIONS)}")
        self.norm1 = CheckpointOnly(partial(nn.LayerNorm, dim, eps=norm_eps))
        self.attn = SpikformerAttention(dim, neuron, num_heads, projection)
        self.norm2 = CheckpointOnly(partial(nn.LayerNorm, dim, eps=norm_eps))
        self.mlp = SpikformerMLP(dim, int(dim * mlp_ratio), neuron, projection)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)
