"""Construction of the zoo's models: stage widths, drop-path rates, timm configs and the
checkpoint filter."""

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, resolve_pretrained_cfg
from timm.models._features import FeatureGetterNet
from torch import nn

from models.checkpoint import checkpoint_filter_fn, safe_checkpoint_globals
from models.conversion import gate_max_pools
from models.layers import has_stem_level

RELEASES = "https://github.com/bic-L/MaxFormer/releases/download/checkpoints/"
"""Where the authors publish the ImageNet checkpoints."""

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def stage_widths(embed_dims: int | Sequence[int], num_stages: int) -> list[int]:
    """Width of each stage: given per stage, or the last stage's width, halved stage by stage."""
    if isinstance(embed_dims, int):
        return [embed_dims // 2 ** (num_stages - 1 - i) for i in range(num_stages)]
    if len(embed_dims) != num_stages:
        raise ValueError(f"embed_dims needs one width per stage ({num_stages}), got {embed_dims}")
    return list(embed_dims)


def drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic depth rate of every block, per stage: rising linearly from 0 at the first
    block to `drop_path_rate` at the last (timm's schedule)."""
    rates = torch.linspace(0.0, drop_path_rate, sum(depths), device="cpu")
    return [chunk.tolist() for chunk in rates.split(list(depths))]


def imagenet_cfg(url: str = "", **kwargs: Any) -> dict[str, Any]:
    """Pretrained config of an ImageNet model (224 px, 1000 classes); `first_conv` names the
    convolution that sees the pixels (timm adapts it for `in_chans != 3`)."""
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (14, 14),
        "crop_pct": 0.95,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "classifier": "head",
        **kwargs,
    }


def cifar_cfg(**kwargs: Any) -> dict[str, Any]:
    """Config of a CIFAR-10 model (32 px, 10 classes); no published weights."""
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": CIFAR_MEAN,
        "std": CIFAR_STD,
        "classifier": "head",
        **kwargs,
    }


def tagged_time_steps(variant: str, pretrained: bool, pretrained_cfg: Any) -> int | None:
    """T named by the pretrained tag (`t1_in1k` -> 1): the tag asked for, or with `pretrained`
    the architecture's default one; None when there is none or it names no T."""
    if pretrained_cfg is None and not pretrained:
        return None
    tag = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg).tag or ""
    match = re.match(r"t(\d+)_", tag)
    return int(match.group(1)) if match else None


class StageFeatures(FeatureGetterNet):
    """The zoo's `features_only` model: timm's wrapper of `forward_intermediates` (stage
    outputs `[B, C, H, W]`, averaged over time), with `set_grad_checkpointing` as timm's other
    feature wrappers have it (detection and segmentation pipelines train with it)."""

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)


def build_spiking_model(
    model_cls: Callable[..., nn.Module], variant: str, pretrained: bool, **kwargs: Any
) -> nn.Module:
    """timm's `build_model_with_cfg` with our checkpoint filter; weights are read with
    `weights_only=True`, allowing the `argparse.Namespace` the original training scripts store.
    `kwargs` must hold `depths` (one level per stage) or `depth` (a non-hierarchical network:
    its patch splitting, then one level per block). Unless `T` is given, a pretrained tag that
    names T sets it (`maxformer_10_768.t1_in1k` runs with T=1). `features_only=True` gives the
    feature-level outputs averaged over time (`forward_intermediates`), of the levels in
    `out_indices` (default: all; a first embedding with a stem level adds one before the
    stages). With neuron "if_converted", the converted network's structure (gated max-pools)."""
    if "T" not in kwargs:
        steps = tagged_time_steps(variant, pretrained, kwargs.get("pretrained_cfg"))
        if steps is not None:
            kwargs["T"] = steps
    embeds = kwargs.get("embeds")
    if "depths" in kwargs:
        num_levels = len(kwargs["depths"]) + bool(embeds and has_stem_level(embeds[0]))
    else:
        num_levels = 1 + kwargs["depth"]
    out_indices = kwargs.pop("out_indices", tuple(range(num_levels)))
    with safe_checkpoint_globals():
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg={"feature_cls": StageFeatures, "out_indices": out_indices},
            **kwargs,
        )
    return gate_max_pools(model) if kwargs.get("neuron") == "if_converted" else model
