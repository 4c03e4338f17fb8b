"""The model zoo; importing it registers every preset with timm."""

import timm

from models.zoo import max_resnet, maxformer, ms_qkformer, sdt, spikformer
from models.zoo.backbone import SpikingBackbone
from models.zoo.max_resnet import MaxResNet
from models.zoo.spiking_former import SpikingFormer

ZOO_MODULES = (max_resnet, maxformer, ms_qkformer, spikformer, sdt)


def zoo_model_names() -> list[str]:
    """The timm names of the zoo's models (``maxformer_cifar``, ...), sorted."""
    return timm.list_models(module=[module.__name__.rsplit(".", 1)[-1] for module in ZOO_MODULES])


__all__ = [
    "MaxResNet",
    "SpikingBackbone",
    "SpikingFormer",
    "ZOO_MODULES",
    "max_resnet",
    "maxformer",
    "ms_qkformer",
    "sdt",
    "spikformer",
    "zoo_model_names",
]
