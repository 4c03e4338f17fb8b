"""The hierarchical spiking transformer family of Max-Former and MS-QKFormer.

Each stage is a patch embedding followed by blocks (token mixer + spiking MLP); the head fires a
LIF neuron on the spatially averaged features, averages the spikes over time and classifies them.
Which embedding and which mixer each stage uses is configuration (see `models.layers.EMBEDDINGS`
and `models.layers.MIXERS`), so the published networks and the paper's ablations are all
instances of `SpikingFormer`.
"""

import math
from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from models.checkpoint import checkpoint_filter_fn
from models.layers import (
    BlockSequence,
    SpikingBlock,
    create_embedding,
    embedding_stride,
    has_stem_level,
    neuron_factory,
    per_step,
    run_checkpointed,
)
from models.zoo.backbone import SpikingBackbone, Stage, factory_device
from models.zoo.build import drop_path_rates, stage_widths

# timm's convention: a model's module offers the filter its checkpoints load through.
__all__ = ["SpikingFormer", "checkpoint_filter_fn"]


WEIGHT_INITS: dict[str, tuple[type[nn.Module], ...]] = {
    "linear": (nn.Linear,),
    "conv2d": (nn.Conv2d,),
}
"""`weight_init` of `SpikingFormer`: the layers that get truncated-normal weights (std 0.02)
and zero biases, as the original code initialises its networks: "linear" (the CIFAR and event
networks: their classifier) or "conv2d" (the ImageNet networks: their 2-D convolutions)."""


class SpikingFormer(SpikingBackbone):
    """Hierarchical spiking transformer with a configurable embedding and mixer per stage.

    Args:
        embeds: embedding name per stage (keys of `models.layers.EMBEDDINGS`).
        mixers: token mixer name per stage (keys of `models.layers.MIXERS`).
        depths: number of blocks per stage.
        embed_dims: width of the last stage (stage `i` of `n` has `embed_dims // 2**(n-1-i)`),
            or one width per stage.
        num_heads: attention heads, for all stages or per stage (used by attention mixers).
        mlp_ratio: hidden width of the spiking MLP relative to the stage width.
        in_chans: input channels (3 for images, 2 for event polarities).
        num_classes: classes of the linear head; 0 for no head.
        T: time steps a static image `[B, C, H, W]` is repeated for; `[B, T, C, H, W]` input
            must have this many steps (any number when `T` is None or with `event_input`).
        event_input: the model's data are event clips `[B, T', C, H, W]` of any length `T'`
            (a static frame `[B, C, H, W]` is repeated `T` times).
        neuron: "lif" (the published networks), "if" (IF neurons) or "relu" (the ANN twin);
            the twins have the same state dict, so one set of weights runs as all three.
        lif_backend: backend of every neuron: "auto", "torch", "triton" or "spikingjelly".
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the blocks' shortcut branches, rising linearly
            from 0 at the first block to this rate at the last.
        global_pool: timm's pooling of the head ("avg", "max", "avgmax", "catavgmax", or ""
            for none).
        weight_init: the layers with truncated-normal weights (a key of `WEIGHT_INITS`:
            "linear" as the original CIFAR and event code, "conv2d" as its ImageNet code);
            every other layer keeps PyTorch's default initialisation.
        device, dtype: where and in which precision the parameters are made.
    """

    stem_level: bool
    """Whether the first embedding's stem is a feature level of its own, before the stages
    (Embed-Max+: `forward_stem`)."""

    def __init__(
        self,
        embeds: Sequence[str] = ("orig", "max", "max"),
        mixers: Sequence[str] = ("identity", "dwc3", "ssa"),
        depths: Sequence[int] = (1, 1, 2),
        embed_dims: int | Sequence[int] = 384,
        num_heads: int | Sequence[int] = 8,
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
        num_classes: int = 10,
        T: int | None = 4,
        event_input: bool = False,
        neuron: str = "lif",
        lif_backend: str = "auto",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        weight_init: str = "linear",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_stages = len(depths)
        if len(embeds) != num_stages or len(mixers) != num_stages:
            raise ValueError(
                f"embeds {tuple(embeds)}, mixers {tuple(mixers)} and depths {tuple(depths)} "
                "need the same number of stages"
            )
        dims = stage_widths(embed_dims, num_stages)
        heads = [num_heads] * num_stages if isinstance(num_heads, int) else list(num_heads)
        if len(heads) != num_stages:
            raise ValueError(f"num_heads needs one value per stage ({num_stages}), got {num_heads}")
        check_time_steps_and_init(T, weight_init)
        self.weight_init = weight_init
        self.in_chans = in_chans
        self.T = T
        self.neuron = neuron
        self.event_input = event_input
        self.stem_level = has_stem_level(embeds[0])
        self.stride = math.prod(embedding_stride(name) for name in embeds)
        self.num_features = dims[-1]
        self.grad_checkpointing = False

        make_neuron = neuron_factory(neuron, lif_backend)
        rates = drop_path_rates(drop_path_rate, depths)
        self.feature_info = []
        reduction = 1
        with factory_device(device):
            for i in range(num_stages):
                in_dim = in_chans if i == 0 else dims[i - 1]
                reduction *= embedding_stride(embeds[i])
                embed = create_embedding(embeds[i], in_dim, dims[i], make_neuron)
                self.add_module(f"patch_embed{i + 1}", embed)
                if i == 0 and self.stem_level:
                    self.feature_info.append({
                        "num_chs": embed.stem_chans,
                        "reduction": embed.stem_stride,
                        "module": f"patch_embed1.{embed.stem_modules[-1]}",
                    })
                blocks = [
                    SpikingBlock(
                        dims[i], mixers[i], make_neuron, num_heads=heads[i],
                        mlp_ratio=mlp_ratio, drop_path=rate,
                    )
                    for rate in rates[i]
                ]
                self.add_module(f"stage{i + 1}", BlockSequence(*blocks))
                self.feature_info.append(
                    {"num_chs": dims[i], "reduction": reduction, "module": f"stage{i + 1}"}
                )
            self.head_lif = make_neuron()
            self._init_head(num_classes, global_pool, drop_rate)
        self._init_weights()
        if dtype is not None:
            self.to(dtype=dtype)

    def _levels(self) -> list[Stage]:
        """Each stage's embedding then its blocks; with grad checkpointing, the embeddings
        are checkpointed as the blocks are (they keep as much for backward as the blocks)."""
        stem = self.stem_level
        levels = []
        for i in range(len(self.feature_info) - stem):
            module = getattr(self, f"patch_embed{i + 1}")
            embed = module.forward_after_stem if stem and i == 0 else module
            levels.append(partial(self._embed_then_blocks, embed, module,
                                  getattr(self, f"stage{i + 1}")))
        if stem:
            levels.insert(0, partial(run_checkpointed, self.patch_embed1.forward_stem,
                                     module=self.patch_embed1, enabled=self.grad_checkpointing))
        return levels

    def _embed_then_blocks(self, embed: Stage, module: nn.Module, blocks: nn.Module,
                           x: Tensor) -> Tensor:
        return blocks(run_checkpointed(embed, x, module, self.grad_checkpointing))

    def _level_module_names(self, index: int) -> list[str]:
        if not self.stem_level:
            return [f"patch_embed{index + 1}", f"stage{index + 1}"]
        stem_modules = self.patch_embed1.stem_modules
        if index == 0:
            return [f"patch_embed1.{name}" for name in stem_modules]
        if index == 1:
            rest = [n for n, _ in self.patch_embed1.named_children() if n not in stem_modules]
            return [f"patch_embed1.{name}" for name in rest] + ["stage1"]
        return [f"patch_embed{index}", f"stage{index}"]

    def _pool_and_fire(self, x: Tensor) -> Tensor:
        """Pools the membrane potential, then fires the head's neurons on it."""
        return self.head_lif(per_step(x, self.global_pool))

    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^patch_embed1\.",
            "blocks": r"^(?:patch_embed|stage)(\d+)\." if coarse else [
                (r"^patch_embed(\d+)\.", (-1,)),  # a stage's embedding precedes its blocks
                (r"^stage(\d+)\.(\d+)\.", None),
            ],
        }

    def _init_weights(self) -> None:
        """Truncated-normal weights (std 0.02) and zero biases for the layers `weight_init`
        names; the others keep PyTorch's defaults."""
        init_truncated_normal(self, self.weight_init)


def check_time_steps_and_init(T: int | None, weight_init: str) -> None:
    """Refuse ``T`` < 1 and a ``weight_init`` that is not a key of :data:`WEIGHT_INITS`."""
    if T is not None and T < 1:
        raise ValueError(f"T must be >= 1 or None, got {T}")
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"unknown weight_init {weight_init!r}; valid: {', '.join(WEIGHT_INITS)}")


def init_truncated_normal(model: nn.Module, weight_init: str) -> None:
    """Truncated-normal weights (std 0.02) and zero biases for the layers of `model` that
    `weight_init` (a key of `WEIGHT_INITS`) names."""
    layers = WEIGHT_INITS[weight_init]
    for module in model.modules():
        if isinstance(module, layers):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


