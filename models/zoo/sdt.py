"""Spike-driven Transformer presets (Yao et al., NeurIPS 2023;
github.com/BICLab/Spike-Driven-Transformer), registered with timm: the spike-driven SPS,
`depth` blocks of spike-driven self-attention (SDSA) and the spiking MLP with membrane
shortcuts, a head neuron and a linear head. State-dict names and shapes are those of the
published code."""

from functools import partial
from typing import Any

from timm.models import generate_default_cfgs, register_model

from models.layers import SpikingBlock
from models.zoo.build import build_spiking_model, cifar_cfg, imagenet_cfg
from models.zoo.plain_former import PlainSpikingTransformer

default_cfgs = generate_default_cfgs(
    {
        "sdt_2_512.untrained": cifar_cfg(first_conv="patch_embed.proj_conv"),
        "sdt_8_384.untrained": imagenet_cfg(first_conv="patch_embed.proj_conv"),
        "sdt_8_512.untrained": imagenet_cfg(first_conv="patch_embed.proj_conv"),
        "sdt_8_768.untrained": imagenet_cfg(first_conv="patch_embed.proj_conv"),
    }
)


def build_sdt(
    variant: str, pretrained: bool, depth: int, embed_dims: int, num_heads: int = 8,
    mlp_ratio: float = 4.0, **kwargs: Any,
) -> PlainSpikingTransformer:
    """A Spike-driven Transformer; `pools` "0011" on CIFAR, "1111" (default) on ImageNet. Its
    initialisation: truncated-normal 2-D convolutions."""
    block = partial(_block, num_heads=num_heads, mlp_ratio=mlp_ratio)
    kwargs = {"pools": "1111", "weight_init": "conv2d", **kwargs}
    return build_spiking_model(
        PlainSpikingTransformer, variant, pretrained, block=block, depth=depth,
        embed_dims=embed_dims, spike_driven=True, head_neuron=True, **kwargs,
    )


def _block(dim: int, neuron: Any, num_heads: int, mlp_ratio: float) -> SpikingBlock:
    return SpikingBlock(dim, "sdsa", neuron, num_heads=num_heads, mlp_ratio=mlp_ratio)


@register_model
def sdt_2_512(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spike-driven Transformer-2-512 (CIFAR, 8 heads, T 4): SPS with max-pools after its
    last two layers."""
    kwargs = {"num_classes": 10, "depth": 2, "embed_dims": 512, "pools": "0011", **kwargs}
    return build_sdt("sdt_2_512", pretrained, **kwargs)


@register_model
def sdt_8_384(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spike-driven Transformer-8-384 (ImageNet, 8 heads, T 4)."""
    return build_sdt("sdt_8_384", pretrained, **{"depth": 8, "embed_dims": 384, **kwargs})


@register_model
def sdt_8_512(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spike-driven Transformer-8-512 (ImageNet, 8 heads, T 4)."""
    return build_sdt("sdt_8_512", pretrained, **{"depth": 8, "embed_dims": 512, **kwargs})


@register_model
def sdt_8_768(pretrained: bool = False, **kwargs: Any) -> PlainSpikingTransformer:
    """Spike-driven Transformer-8-768 (ImageNet, 8 heads, T 4)."""
    return build_sdt("sdt_8_768", pretrained, **{"depth": 8, "embed_dims": 768, **kwargs})
