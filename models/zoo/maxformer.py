"""Max-Former presets (ImageNet, CIFAR, neuromorphic), registered with timm.

Every preset is a `SpikingFormer` layout; keyword arguments (`T`, `num_classes`, `in_chans`,
`embed_dims`, `mlp_ratio`, `neuron`, `lif_backend`, and `embeds`, `mixers`, `depths`,
`num_heads` for ablations) override its defaults.
"""

from functools import partial
from typing import Any

from timm.models import generate_default_cfgs, register_model

from models.zoo.build import RELEASES, build_spiking_model, cifar_cfg, imagenet_cfg
from models.zoo.spiking_former import SpikingFormer

IMAGENET_LAYOUT = {
    "embeds": ("orig_imagenet", "max", "max"),
    "mixers": ("dwc7", "dwc5", "ssa"),
    "depths": (1, 2, 7),
}
CIFAR_LAYOUT = {
    "embeds": ("orig", "max", "max"),
    "mixers": ("identity", "dwc3", "ssa"),
    "depths": (1, 1, 2),
    "num_heads": 8,
}
EVENT_LAYOUT = {
    "embeds": ("max_plus", "max"),
    "mixers": ("dwc3", "ssa"),
    "depths": (1, 1),
    "num_heads": 16,
}


def heads_per_64_channels(embed_dims: int | tuple[int, ...]) -> int:
    """Heads of the ImageNet models: one per 64 channels of the last stage."""
    last = embed_dims if isinstance(embed_dims, int) else embed_dims[-1]
    return max(1, last // 64)


def build_imagenet_layout(
    variant: str, pretrained: bool, layout: dict[str, Any], embed_dims: Any, **kwargs: Any
) -> SpikingFormer:
    """An ImageNet-style model: `embed_dims // 64` heads unless `num_heads` is given, and
    the original ImageNet code's initialisation (truncated-normal 2-D convolutions)."""
    kwargs = {
        "num_heads": heads_per_64_channels(embed_dims),
        "mlp_ratio": 4.0,
        "weight_init": "conv2d",
        **layout,
        **kwargs,
    }
    return build_spiking_model(SpikingFormer, variant, pretrained, embed_dims=embed_dims, **kwargs)


maxformer_in1k_cfg = partial(
    imagenet_cfg, first_conv="patch_embed1.embed1.embed_conv", crop_pct=224 / 256
)
"""Config of an ImageNet Max-Former (the first conv of Embed-Orig-ImageNet sees the pixels;
evaluated as the original's imagenet/utils.py:143-155 does: crop_pct 224/256, bicubic)."""

EVENT_TIME_STEPS = 16
"""Frames per clip of the neuromorphic recipes (CIFAR10-DVS, DVS128 Gesture)."""

default_cfgs = generate_default_cfgs(
    {
        "maxformer_10_384.t4_in1k": maxformer_in1k_cfg(RELEASES + "10-384-T4.pth.tar"),
        "maxformer_10_512.t4_in1k": maxformer_in1k_cfg(RELEASES + "10-512-T4.pth.tar"),
        "maxformer_10_512.t1_in1k": maxformer_in1k_cfg(RELEASES + "10-512-T1.pth.tar"),
        "maxformer_10_768.t4_in1k": maxformer_in1k_cfg(RELEASES + "10-768-T4.pth.tar"),
        "maxformer_10_768.t1_in1k": maxformer_in1k_cfg(RELEASES + "10-768-T1.pth.tar"),
        "maxformer_imagenet.untrained": maxformer_in1k_cfg(),
        "maxformer_cifar.untrained": cifar_cfg(first_conv="patch_embed1.proj_conv"),
        "maxformer_event.untrained": cifar_cfg(
            input_size=(2, 128, 128),
            pool_size=(8, 8),
            mean=(0.0, 0.0),
            std=(1.0, 1.0),
            first_conv="patch_embed1.proj_conv",
            notes=(
                f"input: event frames [B, 2, H, W] (each repeated T={EVENT_TIME_STEPS} times) "
                "or clips [B, T, 2, H, W] of any length",
            ),
        ),
    }
)


@register_model
def maxformer_10_384(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """Max-Former-10-384 (ImageNet, 16.24M parameters)."""
    return build_imagenet_layout("maxformer_10_384", pretrained, IMAGENET_LAYOUT, 384, **kwargs)


@register_model
def maxformer_10_512(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """Max-Former-10-512 (ImageNet, 28.65M parameters)."""
    return build_imagenet_layout("maxformer_10_512", pretrained, IMAGENET_LAYOUT, 512, **kwargs)


@register_model
def maxformer_10_768(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """Max-Former-10-768 (ImageNet, 63.99M parameters)."""
    return build_imagenet_layout("maxformer_10_768", pretrained, IMAGENET_LAYOUT, 768, **kwargs)


@register_model
def maxformer_imagenet(
    pretrained: bool = False, embed_dims: int = 384, **kwargs: Any
) -> SpikingFormer:
    """The ImageNet Max-Former layout at any width: Embed-Orig-ImageNet + 1 x DWC-7,
    Embed-Max + 2 x DWC-5, Embed-Max + 7 x SSA (`embed_dims // 64` heads)."""
    return build_imagenet_layout(
        "maxformer_imagenet", pretrained, IMAGENET_LAYOUT, embed_dims, **kwargs
    )


@register_model
def maxformer_cifar(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """CIFAR Max-Former: Embed-Orig + 1 x Identity, Embed-Max + 1 x DWC-3, Embed-Max + 2 x SSA
    (8 heads); embed_dims 384, mlp_ratio 4."""
    kwargs = {"embed_dims": 384, "mlp_ratio": 4.0, **CIFAR_LAYOUT, **kwargs}
    return build_spiking_model(SpikingFormer, "maxformer_cifar", pretrained, **kwargs)


@register_model
def maxformer_event(pretrained: bool = False, **kwargs: Any) -> SpikingFormer:
    """Neuromorphic Max-Former (CIFAR10-DVS, DVS128 Gesture): Embed-Max+ + 1 x DWC-3,
    Embed-Max + 1 x SSA (16 heads); embed_dims 256, mlp_ratio 1. Input: clips
    `[B, T, 2, H, W]` of any length, or frames `[B, 2, H, W]` repeated `T` (16) times."""
    kwargs = {
        "embed_dims": 256,
        "mlp_ratio": 1.0,
        "T": EVENT_TIME_STEPS,
        "event_input": True,
        **EVENT_LAYOUT,
        **kwargs,
    }
    return build_spiking_model(SpikingFormer, "maxformer_event", pretrained, **kwargs)
