"""Max-ResNet-18: MS-ResNet with max-pool down-sampling (CIFAR)."""

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import Tensor, nn

from models.checkpoint import checkpoint_filter_fn
from models.layers import BlockSequence, MSBasicBlock, neuron_factory, per_step
from models.zoo.backbone import SpikingBackbone, Stage, factory_device
from models.zoo.build import build_spiking_model, cifar_cfg, drop_path_rates, stage_widths

# timm's convention: a model's module offers the filter its checkpoints load through.
__all__ = ["MaxResNet", "checkpoint_filter_fn", "max_resnet18"]


class MaxResNet(SpikingBackbone):
    """Spiking ResNet with membrane shortcuts (MS-ResNet); stages after the first halve the
    resolution in their first block by a max-pool (`downsample="max"`, Max-ResNet) or a strided
    conv (`downsample="conv"`).

    `[B, C, H, W]` (repeated `T` times) -> logits `[B, num_classes]`. Head: LIF, global pooling
    (`global_pool`), linear, averaged over time. `embed_dims`: the width of each stage, or of
    the last one (each earlier stage has half the width of the next). `neuron`: "lif", "if" or
    "relu" (twins with the same state dict, see `SpikingFormer`); `drop_rate`, `drop_path_rate`,
    `global_pool`, `device`, `dtype` as there.
    """

    classifier_name = "fc1"

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 2),
        embed_dims: int | Sequence[int] = (128, 256, 512),
        stem_width: int = 64,
        downsample: str = "max",
        in_chans: int = 3,
        num_classes: int = 10,
        T: int | None = 4,
        neuron: str = "lif",
        lif_backend: str = "auto",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        widths = stage_widths(embed_dims, len(depths))
        self.in_chans = in_chans
        self.T = T
        self.neuron = neuron
        self.stride = 2 ** (len(depths) - 1)
        self.num_features = widths[-1]
        self.grad_checkpointing = False
        make_neuron = neuron_factory(neuron, lif_backend)
        rates = drop_path_rates(drop_path_rate, depths)
        self.feature_info = []
        with factory_device(device):
            self.conv1 = nn.Conv2d(in_chans, stem_width, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_width)
            in_width = stem_width
            for i, (width, stage_rates) in enumerate(zip(widths, rates, strict=True)):
                stride = 1 if i == 0 else 2
                blocks = [
                    MSBasicBlock(
                        in_width if j == 0 else width, width, make_neuron,
                        stride=stride if j == 0 else 1, downsample=downsample, drop_path=rate,
                    )
                    for j, rate in enumerate(stage_rates)
                ]
                self.add_module(f"layer{i + 1}", BlockSequence(*blocks))
                self.feature_info.append(
                    {"num_chs": width, "reduction": 2**i, "module": f"layer{i + 1}"}
                )
                in_width = width
            self.spike = make_neuron()
            self._init_head(num_classes, global_pool, drop_rate)
        if dtype is not None:
            self.to(dtype=dtype)

    def _stem(self, x: Tensor) -> Tensor:
        return per_step(x, self.conv1, self.bn1)

    def _levels(self) -> list[Stage]:
        names = (self._level_module_names(i)[0] for i in range(len(self.feature_info)))
        return [getattr(self, name) for name in names]

    def _level_module_names(self, index: int) -> list[str]:
        return [f"layer{index + 1}"]

    def _pool_and_fire(self, x: Tensor) -> Tensor:
        """Fires the head's neurons on the membrane potential, then pools the spikes."""
        return per_step(self.spike(x), self.global_pool)

    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^(?:conv1|bn1)\.",
            "blocks": r"^layer(\d+)\." if coarse else r"^layer(\d+)\.(\d+)\.",
        }


default_cfgs = generate_default_cfgs(
    {"max_resnet18.untrained": cifar_cfg(first_conv="conv1", classifier="fc1")}
)


@register_model
def max_resnet18(pretrained: bool = False, **kwargs: Any) -> MaxResNet:
    """Max-ResNet-18 (CIFAR): blocks [3, 3, 2], widths 128/256/512, max-pool down-sampling."""
    kwargs = {"depths": (3, 3, 2), "embed_dims": (128, 256, 512), **kwargs}
    return build_spiking_model(MaxResNet, "max_resnet18", pretrained, **kwargs)
