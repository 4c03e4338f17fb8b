"""MS-QKFormer presets (the paper's baseline), registered with timm.

MS-QKFormer is the same hierarchical family as Max-Former with QKFormer's embeddings and QK
token attention in the early stages.
"""

from functools import partial
from typing import Any

from timm.models import generate_default_cfgs, register_model

from models.zoo.build import RELEASES, build_spiking_model, cifar_cfg, imagenet_cfg
from models.zoo.maxformer import build_imagenet_layout
from models.zoo.spiking_former import SpikingFormer

IMAGENET_LAYOUT = {
    "embeds": ("qkformer_stem", "qkformer_stage", "qkformer_stage"),
    "mixers": ("qk", "qk", "ssa"),
    "depths": (1, 2, 7),
}
CIFAR_LAYOUT = {
    "embeds": ("orig", "1max", "1max"),
    "mixers": ("qk", "qk", "ssa"),
    "depths": (1, 1, 2),
    "num_heads": 8,
}

qkformer_in1k_cfg = partial(imagenet_cfg, first_conv="patch_embed1.proj_conv", crop_pct=224 / 256)
"""Config of an ImageNet MS-QKFormer (the first conv of its stem sees the pixels; evaluated as
the original's imagenet/utils.py:143-155 does: crop_pct 224/256, bicubic)."""

default_cfgs = generate_default_cfgs(
    {
        "ms_qkformer_10_384.t4_in1k": qkformer_in1k_cfg(RELEASES + "ms_qk_10-384_T4.pth.tar"),
        "ms_qkformer_10_512.untrained": qkformer_in1k_cfg(),
        "ms_qkformer_10_768.t1_in1k": qkformer_in1k_cfg(RELEASES + "ms_qk_10-768_T1.pth.tar"),
        "ms_qkformer_imagenet.untrained": qkformer_in1k_cfg(),
        "ms_qkformer_cifar.untrained": cifar_cfg(first_conv="patch_embed1.proj_conv"),
    }
)


@register_model
def ms_qkformer_10_384(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """MS-QKFormer-10-384 (ImageNet, 16.47M parameters)."""
    return build_imagenet_layout("ms_qkformer_10_384", pretrained, IMAGENET_LAYOUT, 384, **kwargs)


@register_model
def ms_qkformer_10_512(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """MS-QKFormer-10-512 (ImageNet)."""
    return build_imagenet_layout("ms_qkformer_10_512", pretrained, IMAGENET_LAYOUT, 512, **kwargs)


@register_model
def ms_qkformer_10_768(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """MS-QKFormer-10-768 (ImageNet, 64.96M parameters)."""
    return build_imagenet_layout("ms_qkformer_10_768", pretrained, IMAGENET_LAYOUT, 768, **kwargs)


@register_model
def ms_qkformer_imagenet(
    pretrained: bool = False, embed_dims: int = 384, **kwargs: Any
) -> SpikingFormer:
    """The ImageNet MS-QKFormer layout at any width: QKFormer stem + 1 x QK-attention, QKFormer
    stage embedding + 2 x QK-attention, + 7 x SSA (`embed_dims // 64` heads)."""
    return build_imagenet_layout(
        "ms_qkformer_imagenet", pretrained, IMAGENET_LAYOUT, embed_dims, **kwargs
    )


@register_model
def ms_qkformer_cifar(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """CIFAR MS-QKFormer: Embed-Orig + 1 x QK, Embed-1Max + 1 x QK, Embed-1Max + 2 x SSA
    (8 heads); embed_dims 384, mlp_ratio 4."""
    kwargs = {"embed_dims": 384, "mlp_ratio": 4.0, **CIFAR_LAYOUT, **kwargs}
    return build_spiking_model(SpikingFormer, "ms_qkformer_cifar", pretrained, **kwargs)
