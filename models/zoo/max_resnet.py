"""Max-ResNet-18: MS-ResNet with max-pool down-sampling (CIFAR)."""

from collections.abc import Sequence
from typing import Any

from timm.models import generate_default_cfgs, register_model
from torch import Tensor, nn

from models.layers import MSBasicBlock, neuron_factory, per_step
from models.zoo.backbone import SpikingBackbone, Stage
from models.zoo.build import build_spiking_model, cifar_cfg, stage_widths
from models.zoo.inputs import to_time_major


class MaxResNet(SpikingBackbone):
    """Spiking ResNet with membrane shortcuts (MS-ResNet); stages after the first halve the
    resolution in their first block by a max-pool (`downsample="max"`, Max-ResNet) or a strided
    conv (`downsample="conv"`).

    `[B, C, H, W]` (repeated `T` times) -> logits `[B, num_classes]`. Head: LIF, global average
    pooling, linear, averaged over time. `embed_dims`: the width of each stage, or of the last
    one (each earlier stage has half the width of the next). `neuron`: "lif", "if" or "relu"
    (twins with the same state dict, see `SpikingFormer`).
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
    ) -> None:
        super().__init__()
        widths = stage_widths(embed_dims, len(depths))
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.T = T
        self.neuron = neuron
        self.num_stages = len(depths)
        self.stride = 2 ** (self.num_stages - 1)
        self.num_features = self.head_hidden_size = widths[-1]
        make_neuron = neuron_factory(neuron, lif_backend)
        self.conv1 = nn.Conv2d(in_chans, stem_width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.feature_info = []
        in_width = stem_width
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            stride = 1 if i == 0 else 2
            first = MSBasicBlock(in_width, width, make_neuron, stride=stride, downsample=downsample)
            blocks = [first]
            blocks += [MSBasicBlock(width, width, make_neuron) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(
                {"num_chs": width, "reduction": 2**i, "module": f"layer{i + 1}"}
            )
            in_width = width
        self.spike = make_neuron()
        self.fc1 = nn.Linear(widths[-1], num_classes) if num_classes > 0 else nn.Identity()

    def _stem(self, x: Tensor) -> Tensor:
        x = to_time_major(x, self.in_chans, self.T, stride=self.stride)
        return per_step(x, self.conv1, self.bn1)

    def _stages(self) -> list[Stage]:
        return [getattr(self, self._stage_module_names(i)[0]) for i in range(self.num_stages)]

    def _stage_module_names(self, index: int) -> list[str]:
        return [f"layer{index + 1}"]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """`[T, B, C, h, w]` -> logits `[B, num_classes]` (or pooled spike rates `[B, C]`)."""
        rates = self.spike(x).mean((3, 4)).mean(0)
        return rates if pre_logits else self.fc1(rates)


default_cfgs = generate_default_cfgs(
    {"max_resnet18.untrained": cifar_cfg(first_conv="conv1", classifier="fc1")}
)


@register_model
def max_resnet18(pretrained: bool = False, **kwargs: Any) -> MaxResNet:
    """Max-ResNet-18 (CIFAR): blocks [3, 3, 2], widths 128/256/512, max-pool down-sampling."""
    kwargs = {"depths": (3, 3, 2), "embed_dims": (128, 256, 512), **kwargs}
    return build_spiking_model(MaxResNet, "max_resnet18", pretrained, **kwargs)
