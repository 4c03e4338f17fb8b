"""Spikformer presets (Zhou et al., ICLR 2023; github.com/ZK-Zhou/spikformer), registered with
timm: SPS, `depth` blocks of spiking self-attention with spike outputs, a linear head on the
token- and time-averaged spikes. State-dict names and shapes are those of the published code
(CIFAR: linear projections; ImageNet: 1x1 convolutions)."""

from functools import partial
from typing import Any

from timm.models import generate_default_cfgs, register_model

from models.layers.spikformer_block import SpikformerBlock
from models.zoo.build import build_spiking_model, cifar_cfg, imagenet_cfg
from models.zoo.plain_former import PlainSpikingTransformer

default_cfgs = generate_default_cfgs(
    {
        "spikformer_4_384.untrained": cifar_cfg(first_conv="patch_embed.proj_conv"),
        "spikformer_8_384.untrained": imagenet_cfg(first_conv="patch_embed.proj_conv"),
        "spikformer_8_512.untrained": imagenet_cfg(first_conv="patch_embed.proj_conv"),
        "spikformer_8_768.untrained": imagenet_cfg(first_conv="patch_embed.proj_conv"),
    }
)


def build_spikformer(
    variant: str, pretrained: bool, depth: int, embed_dims: int, num_heads: int,
    mlp_ratio: float = 4.0, projection: str = "conv", norm_eps: float = 1e-6, **kwargs: Any,
) -> PlainSpikingTransformer:
    """A Spikformer: `projection` "linear" (CIFAR code) or "conv" (ImageNet code); `norm_eps`
    of the unused LayerNorms (1e-5 on CIFAR, 1e-6 on ImageNet); `pools` "0011" on CIFAR."""
    block = partial(
        _block, num_heads=num_heads, mlp_ratio=mlp_ratio, projection=projection,
        norm_eps=norm_eps,
    )
    kwargs = {"pools": "1111", "weight_init": "linear", **kwargs}
    return build_spiking_model(
        PlainSpikingTransformer, variant, pretrained, block=block, depth=depth,
        embed_dims=embed_dims, **kwargs,
    )


def _block(dim: int, neuron: Any, **kwargs: Any) -> SpikformerBlock:
    return SpikformerBlock(dim, neuron, **kwargs)


@register_model
def spikformer_4_384(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spikformer-4-384 (CIFAR, 12 heads, T 4): SPS with max-pools after its last two layers."""
    kwargs = {"num_classes": 10, "depth": 4, "embed_dims": 384, "num_heads": 12,
              "projection": "linear", "norm_eps": 1e-5, "pools": "0011", **kwargs}
    return build_spikformer("spikformer_4_384", pretrained, **kwargs)


@register_model
def spikformer_8_384(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spikformer-8-384 (ImageNet, 8 heads, T 4)."""
    kwargs = {"depth": 8, "embed_dims": 384, "num_heads": 8, **kwargs}
    return build_spikformer("spikformer_8_384", pretrained, **kwargs)


@register_model
def spikformer_8_512(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spikformer-8-512 (ImageNet, 8 heads, T 4)."""
    kwargs = {"depth": 8, "embed_dims": 512, "num_heads": 8, **kwargs}
    return build_spikformer("spikformer_8_512", pretrained, **kwargs)


@register_model
def spikformer_8_768(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spikformer-8-768 (ImageNet, 8 heads, T 4)."""
    kwargs = {"depth": 8, "embed_dims": 768, "num_heads": 8, **kwargs}
    return build_spikformer("spikformer_8_768", pretrained, **kwargs)
