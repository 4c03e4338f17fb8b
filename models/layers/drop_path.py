"""Stochastic depth for time-major tensors: a residual branch dropped per sample, at every step."""

from timm.layers import drop_path
from torch import Tensor, nn


class TimeMajorDropPath(nn.Module):
    """timm's drop path (stochastic depth) on a residual branch `[T, B, ...]`: while training,
    each sample's branch is zeroed with probability `drop_prob` at all time steps together, and
    kept ones are scaled by `1 / (1 - drop_prob)`. The identity (the same tensor) at rate 0 and
    in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        return drop_path(x.transpose(0, 1), self.drop_prob, training=True).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
