"""RandAugment over the original CIFAR training's five operations (its ``cifar10-100/aa_snn.py``),
built on timm's RandAugment: the policy string (``rand-m9-n1-mstd0.4-inc1``) is parsed by timm,
and only the list of operations is the original's."""

from __future__ import annotations

from timm.data.auto_augment import RandAugment, rand_augment_ops

SNN_OPERATIONS = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")
"""The operations the original's RandAugment draws from (timm's names; the same with ``inc1``)."""

AA_OPERATIONS = ("timm", "snn")
"""Values of the ``aa_ops`` config key: timm's stock list, or ``SNN_OPERATIONS``."""


def with_snn_operations(transform):
    """``transform`` (a timm ``Compose``) with every RandAugment step drawing from
    ``SNN_OPERATIONS`` only, at the magnitude, magnitude noise and fill timm parsed."""
    for step in getattr(transform, "transforms", ()):
        if isinstance(step, RandAugment):
            first = step.ops[0]
            step.ops = rand_augment_ops(
                magnitude=first.magnitude, prob=first.prob, hparams=first.hparams,
                transforms=list(SNN_OPERATIONS),
            )
            step.choice_weights = None
    return transform
