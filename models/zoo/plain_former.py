"""Non-hierarchical spiking transformers (Spikformer, the Spike-driven Transformer): one
spiking patch splitting, a stack of blocks at one resolution and a linear head."""

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from models.checkpoint import checkpoint_filter_fn
from models.layers import BlockSequence, NeuronFactory, neuron_factory, per_step
from models.layers.sps import SpikingPatchSplitting
from models.zoo.backbone import SpikingBackbone, Stage, factory_device
from models.zoo.spiking_former import check_time_steps_and_init, init_truncated_normal

# timm's convention: a model's module offers the filter its checkpoints load through.
__all__ = ["BlockFactory", "PlainSpikingTransformer", "checkpoint_filter_fn"]

BlockFactory = Callable[[int, NeuronFactory], nn.Module]
"""Constructor of one block: `(dim, neuron) -> [T, B, dim, H, W] -> [T, B, dim, H, W]`."""


class PlainSpikingTransformer(SpikingBackbone):
    """`patch_embed` (SPS, the first feature level), `block` (`depth` blocks, each a feature
    level), an optional head neuron `head_lif` on the token-averaged features, the average over
    time and the classifier `head`; the state dict's names are those of the published code.

    Args:
        block: constructor of each block (see `BlockFactory`).
        depth: number of blocks.
        embed_dims: width of the blocks.
        pools: max-pools of the SPS (see `SpikingPatchSplitting`).
        spike_driven: SPS of the Spike-driven Transformer (membrane output) instead of
            Spikformer's (spike output).
        head_neuron: fire a neuron on the pooled features before the classifier (SDT).
        in_chans, num_classes, T, neuron, lif_backend, drop_rate, global_pool, device, dtype:
            as in `SpikingFormer`.
        weight_init: the layers with truncated-normal weights (std 0.02) and zero biases (a key
            of `WEIGHT_INITS`).
    """

    def __init__(
        self,
        block: BlockFactory,
        depth: int,
        embed_dims: int,
        pools: str = "1111",
        spike_driven: bool = False,
        head_neuron: bool = False,
        in_chans: int = 3,
        num_classes: int = 1000,
        T: int | None = 4,
        neuron: str = "lif",
        lif_backend: str = "auto",
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        weight_init: str = "linear",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_time_steps_and_init(T, weight_init)
        self.weight_init = weight_init
        self.in_chans = in_chans
        self.T = T
        self.neuron = neuron
        self.num_features = embed_dims
        self.grad_checkpointing = False
        make_neuron = neuron_factory(neuron, lif_backend)
        with factory_device(device):
            self.patch_embed = SpikingPatchSplitting(
                in_chans, embed_dims, make_neuron, pools, spike_driven
            )
            self.block = BlockSequence(*(block(embed_dims, make_neuron) for _ in range(depth)))
            self.head_lif = make_neuron() if head_neuron else None
            self._init_head(num_classes, global_pool, drop_rate)
        self.stride = self.patch_embed.stride
        self.feature_info = [
            {"num_chs": embed_dims, "reduction": self.stride, "module": name}
            for name in ["patch_embed", *(f"block.{i}" for i in range(depth))]
        ]
        self._init_weights()
        if dtype is not None:
            self.to(dtype=dtype)

    def _levels(self) -> list[Stage]:
        """The patch splitting's output (a stem level, as timm counts a ResNet's stem), then
        one level per block, as timm's vision transformers have them."""
        blocks = [partial(self.block.run_block, block) for block in self.block]
        return [self.patch_embed, *blocks]

    def _level_module_names(self, index: int) -> list[str]:
        return ["patch_embed"] if index == 0 else [f"block.{index - 1}"]

    def _pool_and_fire(self, x: Tensor) -> Tensor:
        pooled = per_step(x, self.global_pool)
        return pooled if self.head_lif is None else self.head_lif(pooled)

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^patch_embed\.", "blocks": r"^block\.(\d+)\."}

    def _init_weights(self) -> None:
        init_truncated_normal(self, self.weight_init)
