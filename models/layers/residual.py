"""The residual block of MS-ResNet / Max-ResNet (membrane shortcut)."""

from torch import Tensor, nn

from models.layers.drop_path import TimeMajorDropPath
from models.layers.spiking import NeuronFactory, per_step, pool


class MSBasicBlock(nn.Module):
    """LIF -> 3x3 conv -> BN -> LIF -> 3x3 conv -> BN, added to the input membrane potential.

    `[T, B, C_in, H, W] -> [T, B, C_out, H / stride, W / stride]`. With `stride=2` the block
    down-samples by a strided first conv (`downsample="conv"`, MS-ResNet) or by a 3x3 max-pool
    after it (`downsample="max"`, Max-ResNet). A width or resolution change puts a 1x1 conv + BN
    on the shortcut; it acts on the membrane potential, as published. `drop_path`: stochastic
    depth rate of the residual branch.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        neuron: NeuronFactory,
        stride: int = 1,
        downsample: str = "max",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if downsample not in ("max", "conv"):
            raise ValueError(f"unknown downsample {downsample!r}; valid: 'max', 'conv'")
        pooled = stride == 2 and downsample == "max"
        self.spike1 = neuron()
        self.conv1 = nn.Conv2d(
            in_chans, out_chans, 3, stride=1 if pooled else stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.maxpool1 = pool("max", stride=2) if pooled else nn.Identity()
        self.spike2 = neuron()
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        if stride != 1 or in_chans != out_chans:
            self.downsample = nn.Sequential(
                nn.Flatten(0, 1),
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chans),
            )
        else:
            self.downsample = None
        self.drop_path = TimeMajorDropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        out = per_step(self.spike1(x), self.conv1, self.bn1, self.maxpool1)
        out = self.drop_path(per_step(self.spike2(out), self.conv2, self.bn2))
        if self.downsample is None:
            return out + x
        return out + self.downsample(x).reshape(out.shape)
