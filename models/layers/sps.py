"""Spiking patch splitting (SPS): the embedding of Spikformer and of the Spike-driven
Transformer, `[T, B, C_in, H, W] -> [T, B, dim, H / s, W / s]`."""

from torch import Tensor, nn

from models.layers.spiking import NeuronFactory, per_step, pool


class SpikingPatchSplitting(nn.Module):
    """Four 3x3 conv + BN + LIF layers (widths `dim/8, dim/4, dim/2, dim`), each optionally
    followed by a 3x3 stride-2 max-pool, then a relative position embedding (3x3 conv + BN).

    `pools`: one "0"/"1" per layer, "1" where a max-pool follows it ("0011" on CIFAR, "1111"
    on ImageNet); the stride is `2**pools.count("1")`.
    `spike_driven=False` (Spikformer): the output is `LIF(BN(rpe_conv(s))) + s`, two spike maps
    added (`s` the pooled spikes of the fourth layer). `spike_driven=True` (Spike-driven
    Transformer): the fourth layer pools its membrane potential `u` and outputs
    `u + BN(rpe_conv(LIF(u)))`, a membrane potential.
    """

    def __init__(
        self, in_chans: int, dim: int, neuron: NeuronFactory, pools: str = "1111",
        spike_driven: bool = False,
    ) -> None:
        super().__init__()
        if len(pools) != 4 or set(pools) - {"0", "1"}:
            raise ValueError(f"pools must be four '0'/'1' characters, got {pools!r}")
        self.pools = pools
        self.spike_driven = spike_driven
        self.stride = 2 ** pools.count("1")
        widths = [in_chans, dim // 8, dim // 4, dim // 2, dim]
        for i, suffix in enumerate(("", "1", "2", "3")):
            self.add_module(
                f"proj_conv{suffix}",
                nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False),
            )
            self.add_module(f"proj_bn{suffix}", nn.BatchNorm2d(widths[i + 1]))
            self.add_module(f"proj_lif{suffix}", neuron())
            self.add_module(
                f"maxpool{suffix}", pool("max", stride=2) if pools[i] == "1" else nn.Identity()
            )
        self.rpe_conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)
        if not spike_driven:
            self.rpe_lif = neuron()

    def forward(self, x: Tensor) -> Tensor:
        for suffix in ("", "1", "2"):
            x = self._layer(x, suffix)
        if self.spike_driven:
            membrane = per_step(x, self.proj_conv3, self.proj_bn3, self.maxpool3)
            return membrane + per_step(self.proj_lif3(membrane), self.rpe_conv, self.rpe_bn)
        spikes = self._layer(x, "3")
        return spikes + self.rpe_lif(per_step(spikes, self.rpe_conv), norm=self.rpe_bn)

    def _layer(self, x: Tensor, suffix: str) -> Tensor:
        """Conv + BN + LIF (+ max-pool) of layer `suffix`: spikes `[T, B, C', H', W']`."""
        conv, bn, neuron, maxpool = (
            getattr(self, f"{part}{suffix}") for part in ("proj_conv", "proj_bn", "proj_lif",
                                                           "maxpool")
        )
        return per_step(neuron(per_step(x, conv), norm=bn), maxpool)
