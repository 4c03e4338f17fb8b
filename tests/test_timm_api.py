"""The zoo as timm uses it: constructor arguments, head, checkpointing, layer decay, pretrained
configs, feature extraction, torch.fx, torch.export and TorchScript's refusal.

A freshly built spiking network is silent in eval mode (its first layers' few spikes die out
and the head's neurons never fire before BatchNorm has running statistics), so tests that
compare outputs first give BatchNorm the statistics of a batch (`calibrated`).
"""

import copy

import pytest
import timm
import torch
from timm.layers import get_notrace_functions, get_notrace_modules
from timm.models import group_parameters
from timm.optim import create_optimizer_v2
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import models.zoo  # noqa: F401  (registers the zoo with timm)
from models.layers import TimeMajorDropPath
from models.spike_storage import kept_for_backward
from models.zoo import ZOO_MODULES

SMALL = {
    "maxformer_cifar": {"embed_dims": 32, "num_heads": 2, "T": 2},
    "ms_qkformer_cifar": {"embed_dims": 32, "num_heads": 2, "T": 2},
    "max_resnet18": {"embed_dims": (8, 16, 32), "stem_width": 8, "T": 2},
}


def small(name: str, **kwargs) -> nn.Module:
    return timm.create_model(name, lif_backend="torch", **{**SMALL[name], **kwargs})


def calibrated(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """`model` in eval mode with BatchNorm's running statistics those of batch `x`."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


@pytest.mark.parametrize("name", list(SMALL))
def test_timm_constructor_arguments_are_honoured(name):
    model = timm.create_model(
        name, drop_rate=0.25, drop_path_rate=0.3, global_pool="max", device="meta",
        dtype=torch.float64, **SMALL[name],
    )
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    assert {(t.device.type, t.dtype) for t in tensors} == {("meta", torch.float64)}
    assert model.head_drop.p == 0.25 and model.global_pool.pool_type == "max"
    rates = [m.drop_prob for m in model.modules() if isinstance(m, TimeMajorDropPath)]
    assert rates[0] == 0.0 and max(rates) == pytest.approx(0.3) and rates == sorted(rates)
    with pytest.raises(TypeError):
        timm.create_model(name, not_a_model_arg=1)


@pytest.mark.parametrize("name", list(SMALL))
def test_dropout_and_drop_path_act_only_while_training(name):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    plain = calibrated(small(name), x)
    dropping = small(name, drop_rate=0.5, drop_path_rate=0.5)
    dropping.load_state_dict(plain.state_dict())
    dropping.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropping(x), plain(x), rtol=0, atol=0)
        assert plain(x).std() > 0  # the calibrated network responds to its input
    plain.train()
    dropping.train()
    with torch.no_grad():
        torch.manual_seed(1)
        first = dropping(x)
        torch.manual_seed(1)
        again = dropping(x)
        changed = not torch.equal(first, plain(x))
    assert torch.equal(first, again) and changed


def test_drop_path_drops_a_sample_at_every_time_step():
    torch.manual_seed(0)
    drop = TimeMajorDropPath(0.5).train()
    out = drop(torch.ones(3, 64, 5))  # [T, B, C]
    per_sample = out.transpose(0, 1).flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample.amin(1) == per_sample.amax(1)).all()
    assert drop.eval()(out) is out


@pytest.mark.parametrize("name", ["maxformer_cifar", "max_resnet18"])
def test_global_pool_is_honoured_and_kept_by_reset_classifier(name):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    model = calibrated(small(name, global_pool="max"), x)
    with torch.no_grad():
        pooled_max = model.forward_head(model.forward_features(x), pre_logits=True)
        model.reset_classifier(5)
        assert torch.equal(model.forward_head(model.forward_features(x), pre_logits=True),
                           pooled_max)
        model.reset_classifier(5, "avg")
        pooled_avg = model.forward_head(model.forward_features(x), pre_logits=True)
        model.reset_classifier(0, "")
        spatial = model(x)
        model.reset_classifier(3, "catavgmax")
        logits = model(x)
    assert not torch.allclose(pooled_avg, pooled_max)
    assert spatial.shape == (4, model.num_features, 4, 4)  # spike rates of every position
    assert ((spatial >= 0) & (spatial <= 1)).all() and spatial.std() > 0
    assert model.head_hidden_size == 2 * model.num_features and logits.shape == (4, 3)


@pytest.mark.parametrize("name", list(SMALL))
def test_reset_classifier_keeps_device_dtype_and_mode(name):
    model = small(name).to(torch.float64).eval()
    model.reset_classifier(3)
    head = model.get_classifier()
    assert head.weight.dtype == torch.float64 and not head.training
    model.to("meta").train()
    model.reset_classifier(4, "avgmax")
    head = model.get_classifier()
    assert head.weight.device.type == "meta" and head.training and model.global_pool.training
    assert model.pretrained_cfg["classifier"] + ".weight" in model.state_dict()


@pytest.mark.parametrize("name", list(SMALL))
def test_grad_checkpointing_changes_nothing_but_what_is_kept(name):
    """Same outputs, gradients, BatchNorm statistics and keys, with drop path (random) on."""
    x = torch.randn(2, 3, 16, 16)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = small(name, drop_path_rate=0.3).train()
        model.set_grad_checkpointing(checkpointing)
        torch.manual_seed(1)
        logits, kept = kept_for_backward(lambda m=model: m(x), exclude=model.parameters())
        logits.square().sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((logits, kept, grads, model.state_dict()))
    (logits, kept, grads, state), (logits_c, kept_c, grads_c, state_c) = results
    assert kept_c < kept
    assert list(state_c) == list(state)
    torch.testing.assert_close(logits_c, logits, rtol=0, atol=0)
    torch.testing.assert_close(grads_c, grads, rtol=0, atol=0)
    torch.testing.assert_close(state_c, state, rtol=0, atol=0)


FIRST_STAGES = {  # the three kinds of Max-Former stem: CIFAR, ImageNet, event (stem level)
    "maxformer_cifar": ({"embed_dims": 32, "num_heads": 2, "T": 2}, (2, 3, 16, 16)),
    "maxformer_imagenet": ({"embed_dims": 64, "T": 2}, (2, 3, 32, 32)),
    "maxformer_event": ({"embed_dims": 32, "num_heads": 2, "T": 2}, (2, 2, 2, 32, 32)),
}


@pytest.mark.parametrize("name", list(FIRST_STAGES))
def test_grad_checkpointing_keeps_only_the_inputs_of_embeddings_and_blocks(name):
    """Checkpointed, a Max-Former keeps the input of every embedding and block and the head's
    two small tensors (its neurons' input [T, B, C] and the classifier's [B, C]), nothing
    else; outputs, gradients and BatchNorm statistics stay those of the plain run."""
    kwargs, shape = FIRST_STAGES[name]
    x = torch.randn(shape)
    inputs = []

    def recorded(method):
        def run(z):
            inputs.append(z)
            return method(z)
        return run

    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = timm.create_model(name, lif_backend="torch", drop_path_rate=0.3, **kwargs)
        model.train().set_grad_checkpointing(checkpointing)
        units = [m for n, m in model.named_children() if n.startswith(("patch_embed", "stage"))]
        units = [unit for m in units for unit in (m if isinstance(m, nn.Sequential) else [m])]
        inputs.clear()
        handles = [unit.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
                   for unit in units]
        if model.stem_level:  # the event stem's two parts run as methods, not as a module
            for part in ("forward_stem", "forward_after_stem"):
                setattr(model.patch_embed1, part, recorded(getattr(model.patch_embed1, part)))
        torch.manual_seed(1)
        logits, kept = kept_for_backward(lambda m=model: m(x), exclude=model.parameters())
        for handle in handles:
            handle.remove()
        level_inputs = sum(t.numel() * t.element_size() for t in inputs)
        logits.square().sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((logits, grads, model.state_dict()))
    head = model.T * x.shape[0] * model.num_features * 4 + x.shape[0] * model.num_features * 4
    assert kept == head + level_inputs
    (logits, grads, state), (logits_c, grads_c, state_c) = results
    torch.testing.assert_close(logits_c, logits, rtol=0, atol=0)
    torch.testing.assert_close(grads_c, grads, rtol=0, atol=0)
    torch.testing.assert_close(state_c, state, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(SMALL))
def test_layer_decay_groups_follow_depth(name):
    model = small(name)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    scale = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            scale[param] = group["lr_scale"]
    by_name = {n: scale[p] for n, p in model.named_parameters()}
    first, head = model.feature_info[0]["module"], model.pretrained_cfg["classifier"]
    last = model.feature_info[-1]["module"]
    stem = min(by_name.values())
    assert by_name[f"{head}.weight"] == 1.0
    assert stem < max(v for n, v in by_name.items() if n.startswith(first)) < 1.0
    assert max(v for n, v in by_name.items() if n.startswith(first)) < min(
        v for n, v in by_name.items() if n.startswith(last)
    )
    assert model.no_weight_decay() == set()


def test_stage_embedding_sits_between_the_stages_in_layer_decay():
    model = small("maxformer_cifar")
    groups = group_parameters(model, model.group_matcher(), reverse=True)
    assert (
        groups["patch_embed1.proj_conv.weight"]
        < groups["stage1.0.mlp.fc1_conv.weight"]
        < groups["patch_embed2.max_embed1.embed_conv.weight"]
        < groups["stage2.0.mlp.fc1_conv.weight"]
        < groups["head.weight"]
    )


ZOO_CONFIGS = timm.list_models(
    module=[module.__name__.rsplit(".", 1)[-1] for module in ZOO_MODULES], include_tags=True
)


@pytest.mark.parametrize("name", ZOO_CONFIGS)
def test_every_config_names_the_first_conv_and_classifier(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    keys = model.state_dict()
    cfg = model.pretrained_cfg
    assert cfg["first_conv"] + ".weight" in keys and cfg["classifier"] + ".weight" in keys
    assert keys[cfg["first_conv"] + ".weight"].shape[1] == cfg["input_size"][0]


def test_all_configs_are_listed():
    assert len(ZOO_CONFIGS) == 22 and "maxformer_10_768.t1_in1k" in ZOO_CONFIGS


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("maxformer_imagenet", {"embed_dims": 64, "T": 1}),
        ("ms_qkformer_imagenet", {"embed_dims": 64, "T": 1}),
    ],
)
def test_pretrained_weights_load_into_a_one_channel_model(name, kwargs, tmp_path):
    """timm adapts the config's first conv (`pretrained=True, in_chans=1`) and drops the head
    for another number of classes."""
    torch.manual_seed(0)
    source = timm.create_model(name, **kwargs)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    model = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, in_chans=1,
        num_classes=5, **kwargs,
    )
    first = model.pretrained_cfg["first_conv"] + ".weight"
    ours, theirs = model.state_dict(), source.state_dict()
    torch.testing.assert_close(ours[first], theirs[first].sum(1, keepdim=True))
    assert ours["head.weight"].shape == (5, 64)
    same = [k for k in theirs if k not in (first, "head.weight", "head.bias")]
    assert all(torch.equal(ours[k], theirs[k]) for k in same)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("name", ["maxformer_cifar", "max_resnet18"])
def test_hook_features_are_the_stage_outputs(name):
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    model = calibrated(small(name), x)
    torch.manual_seed(0)
    hooked = small(name, features_only=True, feature_cls="hook")
    calibrated(hooked.body, x)
    with torch.no_grad():
        maps = hooked(x)
        stages = model.forward_intermediates(x, output_fmt="TNCHW", intermediates_only=True)
    assert len(maps) == len(stages) == 3
    for fmap, stage in zip(maps, stages, strict=True):
        torch.testing.assert_close(fmap, stage, rtol=0, atol=0)


def fx_model(model: nn.Module) -> nn.Module:
    """`model` traced by torch.fx as timm's tests trace it (timm's leaf modules and functions)."""
    tracer_kwargs = {
        "leaf_modules": get_notrace_modules(),
        "autowrap_functions": get_notrace_functions(),
        "param_shapes_constant": True,
    }
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    return create_feature_extractor(
        model, train_return_nodes=train_nodes[-1:], eval_return_nodes=eval_nodes[-1:],
        tracer_kwargs=tracer_kwargs,
    )


@pytest.mark.parametrize("name", list(SMALL))
def test_fx_trace_equals_eager(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    model = calibrated(small(name), x)
    traced = fx_model(model)
    with torch.no_grad():
        eager = model(x)
        (fx_out,) = traced(x).values()
    assert eager.std() > 0
    torch.testing.assert_close(fx_out, eager, rtol=0, atol=0)


def test_torch_export_of_maxformer_cifar_equals_eager():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = calibrated(timm.create_model("maxformer_cifar", embed_dims=64, T=2), x)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        eager = model(x)
        out = exported.module()(x)
        other = exported.module()(torch.randn(2, 3, 32, 32))
    assert eager.std() > 0 and not torch.equal(other, eager)
    torch.testing.assert_close(out, eager, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_refuses_with_a_clear_error():
    with pytest.raises(RuntimeError, match="TorchScript cannot compile SpikingFormer.*export"):
        torch.jit.script(small("maxformer_cifar"))


def test_features_only_model_checkpoints_its_blocks():
    torch.manual_seed(0)
    model = small("maxformer_cifar", features_only=True)
    plain = copy.deepcopy(model)
    model.set_grad_checkpointing()
    x = torch.randn(2, 3, 16, 16)
    out, _ = kept_for_backward(lambda: model(x))
    ref, _ = kept_for_backward(lambda: plain(x))
    assert all(torch.equal(a, b) for a, b in zip(out, ref, strict=True))
    assert model.model.grad_checkpointing
