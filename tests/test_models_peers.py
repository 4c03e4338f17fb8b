"""The paper's peers in the zoo: Spikformer, the Spike-driven Transformer and SDSA inside
Max-Former layouts (golden outputs of the original code: tests/test_models_golden.py)."""

import math
import re
from pathlib import Path

import pytest
import timm
import torch

import models.zoo  # noqa: F401  (registers the presets)
from models.layers import MIXERS

PEERS = Path(__file__).parent / "data" / "keys" / "peers"

# keys file -> (preset, arguments of the published configuration)
PUBLISHED = {
    "spikformer_4_384_cifar10": ("spikformer_4_384", {"num_classes": 10}),
    "spikformer_4_384_cifar100": ("spikformer_4_384", {"num_classes": 100}),
    "spikformer_8_384": ("spikformer_8_384", {}),
    "spikformer_8_512": ("spikformer_8_512", {}),
    "spikformer_8_768": ("spikformer_8_768", {}),
    "sdt_2_512_cifar10": ("sdt_2_512", {"num_classes": 10}),
    "sdt_2_512_cifar100": ("sdt_2_512", {"num_classes": 100}),
    "sdt_8_384": ("sdt_8_384", {}),
    "sdt_8_512": ("sdt_8_512", {}),
    "sdt_8_768": ("sdt_8_768", {}),
}


NEVER_CALLED = r"block\.\d+\.(norm[12]\.(weight|bias)|attn\.talking_heads\.weight)"
"""State-dict entries of layers the original code builds and never calls (Spikformer's
`Block.norm1`/`norm2`, SDT's `MS_SSA_Conv.talking_heads`): state here, not parameters."""


def read_keys(path: Path) -> tuple[int, dict[str, str]]:
    header, *lines = path.read_text().splitlines()
    count = int(header.split(":")[1].split()[0])
    return count, dict(line.split("\t") for line in lines)


def numel(shape: str) -> int:
    return math.prod(int(n) for n in shape.split("x")) if shape != "scalar" else 1


def test_every_peer_keys_file_is_covered() -> None:
    assert {path.stem for path in PEERS.glob("*.tsv")} == set(PUBLISHED)


@pytest.mark.parametrize("keys_file", list(PUBLISHED))
def test_state_dict_equals_original_code(keys_file: str) -> None:
    count, expected = read_keys(PEERS / f"{keys_file}.tsv")
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
    never_called = sum(numel(v) for k, v in expected.items() if re.fullmatch(NEVER_CALLED, k))
    assert never_called > 0
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count - never_called


@pytest.mark.parametrize("name", ["spikformer_8_768", "sdt_8_768"])
def test_parameter_count_is_the_papers(name: str) -> None:
    """Spikformer-8-768 and SDT-8-768 have 66.34M parameters as their papers count them
    (quoted side by side in Spikingformer, arXiv 2304.11954, Table 1): without the weights
    of the layers their code never calls (66.36M with Spikformer's LayerNorms)."""
    with torch.device("meta"):
        model = timm.create_model(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 66.34


@pytest.mark.parametrize("name", ["spikformer_4_384", "sdt_2_512"])
def test_every_parameter_gets_a_gradient(name: str) -> None:
    """What DistributedDataParallel (without `find_unused_parameters`) and timm's tests need;
    the never-called weights are buffers that training leaves as they are, as in the original,
    and `init_weights` draws them again."""
    torch.manual_seed(0)
    model = timm.create_model(name, embed_dims=32, depth=1, num_heads=2, T=1, lif_backend="torch")
    state = {k: v.clone() for k, v in model.state_dict().items() if re.fullmatch(NEVER_CALLED, k)}
    assert state
    model(torch.randn(2, 3, 16, 16) * 4).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
        model.get_buffer(key).fill_(float("nan"))
    model.init_weights()
    for key, value in state.items():
        assert torch.isfinite(model.get_buffer(key)).all(), key
        if key.endswith("norm1.weight"):
            assert torch.equal(model.get_buffer(key), torch.ones_like(value))


def test_published_nesting_loads_strictly(tmp_path: Path) -> None:
    """A checkpoint saved as the original training scripts save it (`{"state_dict": ...}`)
    loads through timm's `checkpoint_path` with strict key matching."""
    kwargs = {"embed_dims": 64, "depth": 1, "num_heads": 4, "T": 1}
    source = timm.create_model("sdt_2_512", **kwargs)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": source.state_dict()}, path)
    loaded = timm.create_model("sdt_2_512", checkpoint_path=str(path), **kwargs)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize(
    ("name", "shape"),
    [("spikformer_4_384", (2, 3, 16, 16)), ("spikformer_8_384", (2, 3, 32, 32)),
     ("sdt_2_512", (2, 3, 16, 16)), ("sdt_8_384", (2, 3, 32, 32))],
)
def test_peer_runs_forward_backward_and_features(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = timm.create_model(
        name, embed_dims=32, depth=1, num_heads=2, T=2, num_classes=5, lif_backend="torch"
    )
    x = (torch.randn(shape) * 4).requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    levels = model.forward_intermediates(x, intermediates_only=True)  # patch splitting, block
    stride = model.feature_info[0]["reduction"]
    grid = (2, 32, shape[2] // stride, shape[3] // stride)
    assert [level.shape for level in levels] == [grid, grid]
    assert [info["module"] for info in model.feature_info] == ["patch_embed", "block.0"]
    with torch.no_grad():
        stem = model.patch_embed(x.detach().unsqueeze(0).repeat(2, 1, 1, 1, 1))
    torch.testing.assert_close(levels[0], stem.mean(0), rtol=0, atol=0)
    model.set_grad_checkpointing()
    x.grad = None
    model(x).sum().backward()


def test_sdsa_is_a_mixer_of_maxformer_layouts() -> None:
    """Table 7, group 8: Orig/Max/Max with SDSA in the last stage, as one argument."""
    assert "sdsa" in MIXERS
    model = timm.create_model(
        "maxformer_cifar", mixers=("identity", "dwc3", "sdsa"), embed_dims=32, num_heads=4, T=2,
        lif_backend="torch",
    )
    attn = model.stage3[0].attn
    assert type(attn).__name__ == "SpikeDrivenSelfAttention"
    names = dict(attn.named_modules()).keys()
    assert {"shortcut_lif", "q_conv", "talking_heads", "proj_bn"} <= names
    assert model(torch.randn(2, 3, 32, 32) * 4).shape == (2, 10)


def test_sdsa_gates_each_channel_by_its_token_sum() -> None:
    """Closed form, one step, eval mode, projections `2 * I` (BN the identity): an input of 2
    fires the LIF (v = x / 2 = 1), so q = k = v = s = spikes of x; a channel's gate fires
    where its token sum of `k * v` reaches 1 (v = 1 / 2 at threshold 0.5); the output is
    `x + 2 * q * gate`."""
    from models.layers.mixers import SpikeDrivenSelfAttention
    from models.layers.spiking import neuron_factory

    mixer = SpikeDrivenSelfAttention(2, neuron_factory("lif", "torch"), num_heads=1).double()
    mixer.eval()
    for name in ("q", "k", "v", "proj"):
        conv, bn = getattr(mixer, f"{name}_conv"), getattr(mixer, f"{name}_bn")
        with torch.no_grad():
            conv.weight.copy_(2.0 * torch.eye(2, dtype=torch.float64).view(2, 2, 1, 1))
            if conv.bias is not None:
                conv.bias.zero_()
        bn.reset_parameters()
        bn.running_var.fill_(1.0 - bn.eps)
    x = torch.zeros(1, 1, 2, 1, 3, dtype=torch.float64)  # [T, B, C, H, W]
    x[0, 0, 0, 0, 1] = 2.0  # channel 0: one spike (token 1)
    x[0, 0, 1, 0, 2] = 1.5  # channel 1: below threshold, silent
    with torch.no_grad():
        out = mixer(x)
    expected = x.clone()
    expected[0, 0, 0, 0, 1] += 2.0
    assert torch.equal(out, expected)


@pytest.mark.parametrize("name", ["spikformer_4_384", "sdt_2_512"])
def test_energy_sees_the_peers_stage_by_stage(name: str) -> None:
    """The energy report places every counted operation of a peer in its one stage or the
    classifier; the pixels' convolution is the only MAC layer before the head, the blocks'
    layers run on spikes (AC)."""
    from models.energy import measure_energy

    torch.manual_seed(0)
    model = timm.create_model(name, embed_dims=32, depth=1, num_heads=2, T=2, lif_backend="torch")
    report = measure_energy(model, torch.randn(1, 3, 16, 16) * 4)
    stages = {layer.name: layer.stage for layer in report.layers}
    assert set(stages.values()) == {"stage 1", "classifier"}, stages
    counted = {layer.name: layer.counted_as for layer in report.layers}
    assert counted["patch_embed.proj_conv"] == "MAC"
    blocks = {key: value for key, value in counted.items() if key.startswith("block.")}
    assert blocks and set(blocks.values()) == {"AC"}, blocks
