"""The model zoo; importing it registers every preset with timm."""

from models.zoo import max_resnet, maxformer, ms_qkformer
from models.zoo.max_resnet import MaxResNet
from models.zoo.spiking_former import SpikingFormer

__all__ = ["MaxResNet", "SpikingFormer", "max_resnet", "maxformer", "ms_qkformer"]
