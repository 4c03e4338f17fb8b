"""The model zoo: checkpoint layouts, presets, the ablation specification and input checks."""

import copy
from pathlib import Path

import pytest
import timm
import torch

import models.zoo  # noqa: F401  (registers the zoo with timm)
from models.layers import EMBEDDINGS, MIXERS

KEYS = Path(__file__).parent / "data" / "keys"

# keys file -> (preset, arguments of the published configuration)
PUBLISHED = {
    "maxformer_10_384": ("maxformer_10_384", {}),
    "maxformer_10_512": ("maxformer_10_512", {}),
    "maxformer_10_768": ("maxformer_10_768", {}),
    "ms_qkformer_10_384": ("ms_qkformer_10_384", {}),
    "ms_qkformer_10_768": ("ms_qkformer_10_768", {}),
    "maxformer_cifar10": ("maxformer_cifar", {"num_classes": 10}),
    "maxformer_cifar100": ("maxformer_cifar", {"num_classes": 100}),
    "ms_qkformer_cifar100": ("ms_qkformer_cifar", {"num_classes": 100}),
    "max_resnet18_cifar10": ("max_resnet18", {"num_classes": 10}),
    "maxformer_cifar10dvs": ("maxformer_event", {"num_classes": 10}),
    "maxformer_dvsgesture": ("maxformer_event", {"num_classes": 11}),
}


def read_keys(path: Path) -> tuple[int, dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    count = int(header.split(":")[1].split()[0])
    return count, dict(line.split("\t") for line in lines)


def test_every_keys_file_is_covered() -> None:
    assert {path.stem for path in KEYS.glob("*.tsv")} == set(PUBLISHED)


@pytest.mark.parametrize("keys_file", list(PUBLISHED))
def test_state_dict_equals_published_checkpoint(keys_file: str) -> None:
    count, expected = read_keys(KEYS / f"{keys_file}.tsv")
    name, kwargs = PUBLISHED[keys_file]
    with torch.device("meta"):
        model = timm.create_model(name, **kwargs)
    ours = {
        key: "x".join(map(str, value.shape)) if value.dim() else "scalar"
        for key, value in model.state_dict().items()
    }
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert ours == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count


# preset -> (arguments for a tiny model, input)
TINY = {
    "maxformer_10_384": ({"T": 1}, (2, 3, 16, 16)),
    "maxformer_10_512": ({"T": 1}, (2, 3, 16, 16)),
    "maxformer_10_768": ({"T": 1}, (2, 3, 16, 16)),
    "maxformer_imagenet": ({"T": 1, "embed_dims": 64, "mlp_ratio": 1.0}, (2, 3, 16, 16)),
    "maxformer_cifar": ({"T": 1, "embed_dims": 32, "num_classes": 5}, (2, 3, 8, 8)),
    "maxformer_event": ({"embed_dims": 32, "num_classes": 11}, (2, 2, 2, 16, 16)),
    "ms_qkformer_10_384": ({"T": 1}, (2, 3, 16, 16)),
    "ms_qkformer_10_512": ({"T": 1}, (2, 3, 16, 16)),
    "ms_qkformer_10_768": ({"T": 1}, (2, 3, 16, 16)),
    "ms_qkformer_imagenet": ({"T": 2, "embed_dims": 64, "in_chans": 1}, (2, 1, 16, 16)),
    "ms_qkformer_cifar": ({"T": 1, "embed_dims": 32}, (2, 3, 8, 8)),
    "max_resnet18": ({"T": 1, "num_classes": 3, "embed_dims": 32}, (2, 3, 4, 4)),
}


def test_all_presets_are_registered() -> None:
    assert set(TINY) <= set(timm.list_models())


@pytest.mark.parametrize("name", list(TINY))
def test_preset_runs_forward_and_backward(name: str) -> None:
    kwargs, shape = TINY[name]
    torch.manual_seed(0)
    model = timm.create_model(name, lif_backend="torch", **kwargs)
    x = (torch.randn(shape) * 4).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (shape[0], model.num_classes)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lif_backend_reaches_every_neuron() -> None:
    model = timm.create_model("maxformer_cifar", embed_dims=32, lif_backend="spikingjelly")
    neurons = [m for m in model.modules() if type(m).__name__ == "MultiStepLIF"]
    assert len(neurons) > 10
    assert {m.backend for m in neurons} == {"spikingjelly"}
    thresholds = {m.spec.v_threshold for m in neurons}
    assert thresholds == {1.0, 0.5}


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="triton"):
        timm.create_model("maxformer_cifar", embed_dims=32, lif_backend="cupy")


def test_pool_mixer_ablation_is_one_argument() -> None:
    """The paper's Avg-Pool vs Max-Pool token mixing: same weights, different mixer."""
    torch.manual_seed(0)
    layout = {"embed_dims": 32, "T": 2, "lif_backend": "torch"}
    avg = timm.create_model("maxformer_cifar", mixers=("avg_pool", "dwc3", "ssa"), **layout)
    max_ = timm.create_model("maxformer_cifar", mixers=("max_pool", "dwc3", "ssa"), **layout)
    assert avg.state_dict().keys() == max_.state_dict().keys()
    max_.load_state_dict(avg.state_dict())
    assert type(avg.stage1[0].token_mixer.pool).__name__ == "AvgPool2d"
    assert type(max_.stage1[0].token_mixer.pool).__name__ == "MaxPool2d"
    x = torch.randn(2, 3, 8, 8) * 4
    avg.eval()
    max_.eval()
    with torch.no_grad():
        (avg_stage1,) = avg.forward_intermediates(x, indices=[0], intermediates_only=True)
        (max_stage1,) = max_.forward_intermediates(x, indices=[0], intermediates_only=True)
    assert not torch.allclose(avg_stage1, max_stage1)


@pytest.mark.parametrize("embed", list(EMBEDDINGS))
@pytest.mark.parametrize("mixer", ["identity", "dwc7", "ssa_dwc", "qk"])
def test_every_embedding_and_mixer_composes(embed: str, mixer: str) -> None:
    model = timm.create_model(
        "maxformer_cifar",
        embeds=(embed, "avg"),
        mixers=(mixer, "max_pool"),
        depths=(1, 1),
        embed_dims=16,
        num_heads=2,
        mlp_ratio=1.0,
        T=1,
        lif_backend="torch",
    )
    size = model.stride
    assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_dwc_mixer_is_one_class_with_published_names() -> None:
    model = timm.create_model(
        "maxformer_cifar", mixers=("dwc3", "dwc5", "dwc7"), embed_dims=16, num_heads=2
    )
    mixers = [model.stage1[0].token_mixer, model.stage2[0].token_mixer, model.stage3[0].token_mixer]
    assert len({type(m) for m in mixers}) == 1
    keys = model.state_dict().keys()
    assert "stage1.0.mixer.conv.weight" in keys and "stage2.0.mixer.conv_bn.bias" in keys
    assert "stage3.0.mixer.conv5.weight" in keys and "stage3.0.mixer.conv5_bn.weight" in keys
    assert [tuple(getattr(m, m._conv_name).kernel_size) for m in mixers] == [
        (3, 3),
        (5, 5),
        (7, 7),
    ]


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown token mixer 'swin'.*dwc3.*ssa"):
        timm.create_model("maxformer_cifar", mixers=("identity", "swin", "ssa"))
    with pytest.raises(ValueError, match="unknown embedding 'conv'.*orig.*max_plus"):
        timm.create_model("maxformer_cifar", embeds=("conv", "max", "max"))
    with pytest.raises(ValueError, match="same number of stages"):
        timm.create_model("maxformer_cifar", mixers=("identity", "ssa"))
    with pytest.raises(ValueError, match="num_heads=5"):
        timm.create_model("maxformer_cifar", embed_dims=32, num_heads=5)
    assert set(MIXERS) >= {"identity", "max_pool", "avg_pool", "dwc3", "dwc5", "dwc7", "ssa"}


@pytest.fixture(scope="module")
def cifar_model() -> models.SpikingFormer:
    return timm.create_model("maxformer_cifar", embed_dims=16, num_heads=2, T=1).eval()


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 8, 8), "expected images"),
        ((1, 1, 1, 3, 8, 8), "expected images"),
        ((1, 4, 8, 8), "4 channels, the model expects 3"),
        ((1, 3, 10, 10), "10x10 is not a multiple of the network's stride 4"),
        ((1, 2, 3, 8, 8), "2 time steps, the model T=1"),
    ],
)
def test_bad_input_is_refused(cifar_model: models.SpikingFormer, shape, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cifar_model(torch.zeros(shape))


def test_event_model_takes_frames_and_clips_of_any_length() -> None:
    """As its config says: a frame [B, 2, H, W] repeated T times, or clips [B, T', 2, H, W]."""
    model = timm.create_model("maxformer_event", embed_dims=32).eval()
    assert model.T == 16 and model.pretrained_cfg["input_size"] == (2, 128, 128)
    assert "[B, 2, H, W]" in model.pretrained_cfg["notes"][0]
    with pytest.raises(ValueError, match="3 channels, the model expects 2"):
        model(torch.zeros(1, 4, 3, 16, 16))
    frame = (torch.rand(2, 2, 16, 16) < 0.5).float()
    with torch.no_grad():
        from_frame = model(frame)
        from_clip = model(frame.unsqueeze(1).repeat(1, 16, 1, 1, 1))
        short = model.forward_features(torch.rand(2, 3, 2, 16, 16))
    torch.testing.assert_close(from_frame, from_clip, rtol=0, atol=0)
    assert short.shape == (2, 32, 1, 1, 3)  # timm's NCHW with the clip's time steps last


def test_static_image_is_repeated_over_time() -> None:
    model = timm.create_model("maxformer_cifar", embed_dims=16, num_heads=2, T=3).eval()
    image = torch.randn(2, 3, 8, 8) * 4
    with torch.no_grad():
        from_image = model(image)
        from_frames = model(image.unsqueeze(1).repeat(1, 3, 1, 1, 1))
    torch.testing.assert_close(from_image, from_frames, rtol=0, atol=0)


def test_timm_feature_api() -> None:
    model = timm.create_model("maxformer_cifar", embed_dims=32, num_heads=2, T=2).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        final, stages = model.forward_intermediates(x, output_fmt="TNCHW")
        means = model.forward_intermediates(x, indices=[0], intermediates_only=True)
        pre_logits = model.forward_head(final, pre_logits=True)
        features = model.forward_features(x)
    assert [tuple(s.shape) for s in stages] == [
        (2, 1, 8, 16, 16),
        (2, 1, 16, 8, 8),
        (2, 1, 32, 4, 4),
    ]
    torch.testing.assert_close(means[0], stages[0].mean(0))
    assert torch.equal(final, features) and features.shape == (1, 32, 4, 4, 2)
    torch.testing.assert_close(features, stages[2].permute(1, 2, 3, 4, 0))
    assert [info["reduction"] for info in model.feature_info] == [1, 2, 4]
    assert pre_logits.shape == (1, 32) and ((pre_logits >= 0) & (pre_logits <= 1)).all()
    assert model.get_classifier().out_features == 10
    model.reset_classifier(7)
    assert model(x).shape == (1, 7)
    model.reset_classifier(0)
    assert model(x).shape == (1, 32)


def test_max_resnet_timm_feature_api() -> None:
    model = timm.create_model("max_resnet18", T=1).eval()
    with torch.no_grad():
        stages = model.forward_intermediates(torch.randn(1, 3, 8, 8), intermediates_only=True)
    assert [tuple(s.shape) for s in stages] == [(1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]
    assert model.get_classifier() is model.fc1


@pytest.mark.parametrize(
    "name, kwargs, dropped",
    [
        ("maxformer_cifar", {"embed_dims": 32, "num_heads": 2}, ("patch_embed3.", "stage3.")),
        ("max_resnet18", {"embed_dims": (8, 16, 32)}, ("layer3.",)),
    ],
)
def test_pruned_model_gives_the_same_intermediates(name, kwargs, dropped) -> None:
    model = timm.create_model(name, T=2, **kwargs).eval()
    pruned = copy.deepcopy(model)
    assert pruned.prune_intermediate_layers(indices=[0, 1]) == [0, 1]
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        full = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        kept = pruned.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        features = pruned(x)
    assert all(torch.equal(a, b) for a, b in zip(full, kept, strict=True))
    assert not [k for k in pruned.state_dict() if k.startswith(dropped)]
    assert len(pruned.state_dict()) < len(model.state_dict())
    assert pruned.num_features == full[1].shape[1] and features.shape == (1, full[1].shape[1])
    assert len(pruned.feature_info) == 2


def test_event_stem_is_a_feature_level_before_the_stages() -> None:
    kwargs = {"embed_dims": 32, "num_heads": 2, "T": 2}
    torch.manual_seed(0)
    model = timm.create_model("maxformer_event", **kwargs).eval()
    torch.manual_seed(0)
    hooked = timm.create_model("maxformer_event", features_only=True, feature_cls="hook", **kwargs)
    x = torch.randn(1, 2, 2, 32, 32)
    with torch.no_grad():
        logits = model(x)
        levels = model.forward_intermediates(x, output_fmt="TNCHW", intermediates_only=True)
        hooks = hooked.eval()(x)
        pruned = copy.deepcopy(model)
        assert pruned.prune_intermediate_layers(indices=[0]) == [0]
        (stem,) = pruned.forward_intermediates(x, output_fmt="TNCHW", intermediates_only=True)
    assert [info["reduction"] for info in model.feature_info] == [2, 8, 16]
    assert [tuple(level.shape) for level in levels] == [
        (2, 1, 4, 16, 16),
        (2, 1, 16, 4, 4),
        (2, 1, 32, 2, 2),
    ]
    assert hooked.feature_info.channels() == [4, 16, 32]
    for level, hook in zip(levels, hooks, strict=True):
        assert torch.equal(level, hook)
    assert torch.equal(stem, levels[0])
    kept = {key.split(".")[1] for key in pruned.state_dict() if key.startswith("patch_embed1.")}
    assert kept == {"proj_conv", "proj_bn", "max_embed1"}
    assert not [key for key in pruned.state_dict() if key.startswith(("stage", "patch_embed2"))]
    assert logits.shape == (1, 10)


def test_features_only_gives_time_averaged_stage_outputs() -> None:
    torch.manual_seed(0)
    kwargs = {"embed_dims": 32, "num_heads": 2, "T": 2}
    features = timm.create_model("maxformer_cifar", features_only=True, **kwargs).eval()
    torch.manual_seed(0)
    model = timm.create_model("maxformer_cifar", **kwargs).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        maps = features(x)
        stages = model.forward_intermediates(x, output_fmt="TNCHW", intermediates_only=True)
    assert features.feature_info.channels() == [8, 16, 32]
    assert len(maps) == 3
    for fmap, stage in zip(maps, stages, strict=True):
        torch.testing.assert_close(fmap, stage.mean(0))


@pytest.mark.parametrize(
    "name, kwargs, steps",
    [
        ("maxformer_10_768.t1_in1k", {}, 1),
        ("maxformer_10_768.t4_in1k", {}, 4),
        ("maxformer_10_768", {}, 4),
        ("maxformer_10_768.t1_in1k", {"T": 2}, 2),
        ("ms_qkformer_10_768.t1_in1k", {}, 1),
    ],
)
def test_a_pretrained_tag_sets_time_steps(name, kwargs, steps) -> None:
    with torch.device("meta"):
        assert timm.create_model(name, **kwargs).T == steps


def test_default_checkpoint_sets_time_steps_when_pretrained() -> None:
    from models.zoo.build import tagged_time_steps

    assert tagged_time_steps("ms_qkformer_10_768", True, None) == 1
    assert tagged_time_steps("ms_qkformer_10_768", False, None) is None
    assert tagged_time_steps("maxformer_cifar", True, None) is None


def default_std(layer: torch.nn.Module) -> float:
    """Standard deviation of PyTorch's default weights (uniform within 1/sqrt(fan_in))."""
    fan_in = layer.weight[0].numel()
    return 1.0 / (3.0 * fan_in) ** 0.5


@pytest.mark.parametrize(
    "name, kwargs, truncated",
    [
        ("maxformer_cifar", {}, torch.nn.Linear),
        ("ms_qkformer_cifar", {}, torch.nn.Linear),
        ("maxformer_event", {}, torch.nn.Linear),
        ("maxformer_imagenet", {"embed_dims": 128}, torch.nn.Conv2d),
        ("ms_qkformer_imagenet", {"embed_dims": 128}, torch.nn.Conv2d),
    ],
)
def test_weights_start_as_the_original_code_starts_them(name, kwargs, truncated) -> None:
    """The original code draws truncated-normal weights (std 0.02, zero bias) for the linear
    layers of its CIFAR and event networks and for the 2-D convolutions of its ImageNet ones;
    every other layer keeps PyTorch's default."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=100, **kwargs)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d |
                                                         torch.nn.Linear)]
    kinds = {type(m) for m in layers}
    assert truncated in kinds and len(kinds) == 3
    for layer in layers:
        if layer.weight.numel() < 2000:
            continue
        std = layer.weight.std().item()
        if isinstance(layer, truncated):
            assert std == pytest.approx(0.02, rel=0.1)
            assert layer.bias is None or not layer.bias.any()
        else:
            assert std == pytest.approx(default_std(layer), rel=0.1)
            bound = 1.0 / layer.weight[0].numel() ** 0.5
            assert layer.weight.abs().max() <= bound
            assert layer.bias is None or (layer.bias.any() and layer.bias.abs().max() <= bound)
    model.init_weights()
    head = model.get_classifier()
    expected = 0.02 if truncated is torch.nn.Linear else default_std(head)
    assert head.weight.std().item() == pytest.approx(expected, rel=0.1)
