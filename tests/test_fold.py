"""BatchNorm folded into the convolution before it: the same logits, in float64 to 1e-10."""

import pytest
import timm
import torch
from torch import nn

import models.zoo  # noqa: F401  (registers the zoo)
from models.fold import fold_batchnorm, fold_into
from models.layers import EMBEDDINGS, MIXERS
from models.zoo import SpikingFormer

PRESETS = {
    "maxformer_cifar": ({"embed_dims": 32}, (2, 3, 8, 8)),
    "maxformer_imagenet": ({"embed_dims": 64, "mlp_ratio": 1.0}, (2, 3, 16, 16)),
    "maxformer_event": ({"embed_dims": 32, "num_classes": 11}, (2, 2, 2, 16, 16)),
    "ms_qkformer_cifar": ({"embed_dims": 32}, (2, 3, 8, 8)),
    "ms_qkformer_imagenet": ({"embed_dims": 64}, (2, 3, 16, 16)),
    "max_resnet18": ({"embed_dims": 32, "num_classes": 3}, (2, 3, 8, 8)),
}


def trained_looking(model: nn.Module) -> nn.Module:
    """``model`` in float64 with BatchNorm statistics and affine parameters away from their
    initial values (so that a wrongly folded pair changes the logits)."""
    torch.manual_seed(1)
    model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 2.0)
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    return model


def assert_folds_exactly(model: nn.Module, shape: tuple[int, ...]) -> None:
    model = trained_looking(model)
    x = torch.randn(shape, dtype=torch.float64) * 3
    folded = fold_batchnorm(model)
    left = [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert left == []
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_folds_to_the_same_logits(name):
    kwargs, shape = PRESETS[name]
    model = timm.create_model(name, T=2, lif_backend="torch", **kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert_folds_exactly(model, shape)
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model.state_dict().keys() == before.keys()  # the original is left as it is


@pytest.mark.parametrize("embed", list(EMBEDDINGS))
def test_every_embedding_folds(embed):
    model = SpikingFormer(embeds=(embed, "max", "max"), mixers=("identity", "dwc3", "ssa"),
                          embed_dims=32, T=2, lif_backend="torch")
    assert_folds_exactly(model, (1, 3, 32, 32))


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_every_mixer_folds(mixer):
    model = SpikingFormer(mixers=(mixer, mixer, mixer), embed_dims=32, T=2, lif_backend="torch")
    assert_folds_exactly(model, (2, 3, 8, 8))


def test_fold_into_closed_form():
    """Conv 1x1 of weight 2 and bias 1, BN mean 1, var 3 (eps 1), gamma 4, beta 5:
    BN(2x + 1) = 4 * (2x + 1 - 1) / 2 + 5 = 4x + 5."""
    conv = nn.Conv2d(1, 1, 1)
    norm = nn.BatchNorm2d(1, eps=1.0).eval()
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(1.0)
        norm.running_mean.fill_(1.0)
        norm.running_var.fill_(3.0)
        norm.weight.fill_(4.0)
        norm.bias.fill_(5.0)
    folded = fold_into(conv, norm)
    assert folded.weight.item() == 4.0 and folded.bias.item() == 5.0
    assert conv.weight.item() == 2.0  # the original is left as it is


def test_evaluation_folds_and_leaves_the_model_trainable():
    """``evaluate`` scores the folded copy (the same loss) and the model still trains."""
    from models.app.training.distributed import DistContext
    from models.app.training.engine import evaluate

    model = trained_looking(timm.create_model("maxformer_cifar", embed_dims=32, T=2,
                                              lif_backend="torch"))
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x), y).item()
    ctx = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    metrics = evaluate(model, [(x, y)], ctx)
    assert metrics["loss"] == pytest.approx(expected, rel=1e-6)  # logits in float32 there
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
