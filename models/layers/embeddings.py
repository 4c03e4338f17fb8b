"""Patch embeddings: the first layers of each stage, which set its width and resolution.

Every embedding maps a membrane potential `[T, B, C_in, H, W]` to `[T, B, dim, H / s, W / s]`
(`s` is the class's `stride`) as the sum of a main path and a shortcut path ("membrane
shortcut"). The first stage's embedding sees pixels or event frames instead of a membrane
potential. Attribute names are those of the published checkpoints.
"""

from torch import Tensor, nn

from models.layers.spiking import NeuronFactory, per_step, pool


def _pool(kind: str | None) -> nn.Module:
    """Down-sampling by 2 after a convolution: `"max"`, `"avg"` or `None` (no pooling)."""
    return nn.Identity() if kind is None else pool(kind, stride=2)


class ConvBN(nn.Module):
    """Convolution (no bias), BatchNorm, optional down-sampling pool.

    `[T, B, C_in, H, W] -> [T, B, C_out, H', W']`; the input is spikes (or pixels for a stem).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        stride: int = 1,
        pool: str | None = None,
    ) -> None:
        super().__init__()
        self.embed_conv = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.embed_bn = nn.BatchNorm2d(out_chans)
        self.pool = _pool(pool)

    def forward(self, x: Tensor) -> Tensor:
        return per_step(x, self.embed_conv, self.embed_bn, self.pool)


class EmbedOrig(nn.Module):
    """Embed-Orig (CIFAR stem, stride 1): conv stem, then a 3x3 main path and a 1x1 shortcut."""

    stride = 1

    def __init__(self, in_chans: int, dim: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.proj_conv = nn.Conv2d(in_chans, dim // 2, 3, padding=1, bias=False)
        self.proj_bn = nn.BatchNorm2d(dim // 2)
        self.lif = neuron()
        self.embed1 = ConvBN(dim // 2, dim, 3)
        self.embed2 = ConvBN(dim // 2, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        spikes = self.lif(per_step(x, self.proj_conv), norm=self.proj_bn)
        return self.embed1(spikes) + self.embed2(spikes)


class EmbedOrigImageNet(nn.Module):
    """Embed-Orig-ImageNet (stride 4): a stride-2 conv on pixels, then a stride-2 3x3 + 3x3
    main path and a stride-2 1x1 shortcut."""

    stride = 4

    def __init__(self, in_chans: int, dim: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.embed1 = ConvBN(in_chans, dim // 2, 3, stride=2)
        self.lif1 = neuron()
        self.embed2 = ConvBN(dim // 2, dim, 3, stride=2)
        self.lif2 = neuron()
        self.embed3 = ConvBN(dim, dim, 3)
        self.embed4 = ConvBN(dim // 2, dim, 1, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        spikes = self.lif1(self.embed1(x))
        return self.embed3(self.lif2(self.embed2(spikes))) + self.embed4(spikes)


class EmbedPool(nn.Module):
    """Embed-Max (`pool="max"`) or Embed-Avg (`pool="avg"`), stride 2: 3x3 conv + pool, then
    3x3 conv on the main path; 1x1 conv + pool on the shortcut.

    Checkpoint names: `{pool}_embed1` (main, pooled), `embed1` (main), `{pool}_embed2` (shortcut).
    """

    stride = 2

    def __init__(self, in_chans: int, dim: int, neuron: NeuronFactory, pool: str = "max") -> None:
        super().__init__()
        self._pooled_name, self._shortcut_name = f"{pool}_embed1", f"{pool}_embed2"
        self.lif1 = neuron()
        self.add_module(self._pooled_name, ConvBN(in_chans, dim, 3, pool=pool))
        self.lif2 = neuron()
        self.embed1 = ConvBN(dim, dim, 3)
        self.add_module(self._shortcut_name, ConvBN(in_chans, dim, 1, pool=pool))

    def forward(self, x: Tensor) -> Tensor:
        pooled = getattr(self, self._pooled_name)
        shortcut = getattr(self, self._shortcut_name)
        spikes = self.lif1(x)
        return self.embed1(self.lif2(pooled(spikes))) + shortcut(spikes)


class EmbedDownsampleLast(nn.Module):
    """Stride-2 embeddings that down-sample in their second conv; 1x1 stride-2 shortcut.

    `downsample="max"`: Embed-1Max (QKFormer's CIFAR stage embedding), 3x3 conv, then 3x3 conv
    + max-pool (`max_embed1`). `downsample="conv"`: Embed-Orig for later stages, 3x3 conv, then
    a stride-2 3x3 conv (`orig_embed1`).
    """

    stride = 2

    def __init__(
        self, in_chans: int, dim: int, neuron: NeuronFactory, downsample: str = "max"
    ) -> None:
        super().__init__()
        if downsample not in ("max", "conv"):
            raise ValueError(f"unknown downsample {downsample!r}; valid: 'max', 'conv'")
        self.lif1 = neuron()
        self.embed1 = ConvBN(in_chans, dim, 3)
        self.lif2 = neuron()
        if downsample == "max":
            self._down_name = "max_embed1"
            down = ConvBN(dim, dim, 3, pool="max")
        else:
            self._down_name = "orig_embed1"
            down = ConvBN(dim, dim, 3, stride=2)
        self.add_module(self._down_name, down)
        self.embed2 = ConvBN(in_chans, dim, 1, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        down = getattr(self, self._down_name)
        spikes = self.lif1(x)
        return down(self.lif2(self.embed1(spikes))) + self.embed2(spikes)


class EmbedMaxPlus(nn.Module):
    """Embed-Max+ (event stem, stride 8): conv stem, three 3x3 conv + max-pool stages; the
    shortcut is a stride-4 1x1 conv from the spikes entering the second one.

    Its first conv + max-pool stage is a stem with an output of its own (a feature level,
    as timm's ResNet stem): `forward_stem` `[T, B, C_in, H, W] -> [T, B, dim / 4, H / 2,
    W / 2]`, then `forward_after_stem` to `[T, B, dim, H / 8, W / 8]`.
    """

    stride = 8
    stem_stride = 2
    stem_modules = ("proj_conv", "proj_bn", "lif1", "max_embed1")
    """The submodules `forward_stem` runs (the others run in `forward_after_stem`)."""

    def __init__(self, in_chans: int, dim: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.stem_chans = dim // 4
        self.proj_conv = nn.Conv2d(in_chans, dim // 8, 3, padding=1, bias=False)
        self.proj_bn = nn.BatchNorm2d(dim // 8)
        self.lif1 = neuron()
        self.max_embed1 = ConvBN(dim // 8, dim // 4, 3, pool="max")
        self.lif2 = neuron()
        self.max_embed2 = ConvBN(dim // 4, dim // 2, 3, pool="max")
        self.lif3 = neuron()
        self.max_embed3 = ConvBN(dim // 2, dim, 3, pool="max")
        self.embed1 = ConvBN(dim // 4, dim, 1, stride=4)

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.max_embed1(self.lif1(per_step(x, self.proj_conv), norm=self.proj_bn))

    def forward_after_stem(self, x: Tensor) -> Tensor:
        spikes = self.lif2(x)
        return self.max_embed3(self.lif3(self.max_embed2(spikes))) + self.embed1(spikes)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_after_stem(self.forward_stem(x))


class QKFormerStem(nn.Module):
    """MS-QKFormer's ImageNet stem (`PatchEmbedInit`, stride 4): conv + max-pool on pixels, then
    conv + max-pool and conv on the main path; a stride-2 1x1 conv ("rpe") shortcut."""

    stride = 4

    def __init__(self, in_chans: int, dim: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.proj_conv = nn.Conv2d(in_chans, dim // 2, 3, padding=1, bias=False)
        self.proj_bn = nn.BatchNorm2d(dim // 2)
        self.maxpool = _pool("max")
        self.proj_lif1 = neuron()
        self.proj_conv1 = nn.Conv2d(dim // 2, dim, 3, padding=1, bias=False)
        self.proj_bn1 = nn.BatchNorm2d(dim)
        self.maxpool1 = _pool("max")
        self.proj_lif2 = neuron()
        self.proj_conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.proj_bn2 = nn.BatchNorm2d(dim)
        self.rpe_conv = nn.Conv2d(dim // 2, dim, 1, stride=2, bias=False)
        self.rpe_bn = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        spikes = self.proj_lif1(per_step(x, self.proj_conv, self.proj_bn, self.maxpool))
        x = per_step(spikes, self.proj_conv1, self.proj_bn1, self.maxpool1)
        x = per_step(self.proj_lif2(x), self.proj_conv2, self.proj_bn2)
        return x + per_step(spikes, self.rpe_conv, self.rpe_bn)


class QKFormerEmbed(nn.Module):
    """MS-QKFormer's ImageNet stage embedding (`PatchEmbeddingStage`, stride 2): 3x3 conv +
    max-pool, then 3x3 conv; a stride-2 1x1 conv shortcut."""

    stride = 2

    def __init__(self, in_chans: int, dim: int, neuron: NeuronFactory) -> None:
        super().__init__()
        self.init_lif = neuron()
        self.proj3_conv = nn.Conv2d(in_chans, dim, 3, padding=1, bias=False)
        self.proj3_bn = nn.BatchNorm2d(dim)
        self.proj3_maxpool = _pool("max")
        self.proj3_lif = neuron()
        self.proj4_conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.proj4_bn = nn.BatchNorm2d(dim)
        self.proj_res_conv = nn.Conv2d(in_chans, dim, 1, stride=2, bias=False)
        self.proj_res_bn = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        spikes = self.init_lif(x)
        main = per_step(spikes, self.proj3_conv, self.proj3_bn, self.proj3_maxpool)
        main = per_step(self.proj3_lif(main), self.proj4_conv, self.proj4_bn)
        return main + per_step(spikes, self.proj_res_conv, self.proj_res_bn)


EMBEDDINGS: dict[str, tuple[type[nn.Module], dict]] = {
    "orig": (EmbedOrig, {}),
    "orig_imagenet": (EmbedOrigImageNet, {}),
    "orig_later": (EmbedDownsampleLast, {"downsample": "conv"}),
    "max": (EmbedPool, {"pool": "max"}),
    "avg": (EmbedPool, {"pool": "avg"}),
    "1max": (EmbedDownsampleLast, {"downsample": "max"}),
    "max_plus": (EmbedMaxPlus, {}),
    "qkformer_stem": (QKFormerStem, {}),
    "qkformer_stage": (QKFormerEmbed, {}),
}
"""Embedding names of the model specification: name -> (class, fixed arguments)."""


def embedding_stride(name: str) -> int:
    """Spatial down-sampling factor of the embedding `name`."""
    return _lookup(name)[0].stride


def has_stem_level(name: str) -> bool:
    """Whether the embedding `name`'s stem is a feature level of its own (`forward_stem`)."""
    return hasattr(_lookup(name)[0], "forward_stem")


def create_embedding(name: str, in_chans: int, dim: int, neuron: NeuronFactory) -> nn.Module:
    """Embedding `name` (a key of `EMBEDDINGS`): `[T, B, in_chans, H, W] -> [T, B, dim, ...]`."""
    cls, kwargs = _lookup(name)
    return cls(in_chans, dim, neuron, **kwargs)


def _lookup(name: str) -> tuple[type[nn.Module], dict]:
    if name not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {name!r}; valid: {', '.join(EMBEDDINGS)}")
    return EMBEDDINGS[name]
