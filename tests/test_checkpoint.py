"""Loading checkpoints: the published formats, safety against code in pickles, clear errors."""

import argparse
import os
import pickle
from pathlib import Path

import pytest
import timm
import torch

import models.zoo  # noqa: F401  (registers the zoo with timm)
from models import CheckpointError, load_checkpoint
from models.checkpoint import non_finite_tensors

KEYS = Path(__file__).parent / "data" / "keys"
TINY = {"embed_dims": 16, "num_heads": 2, "T": 1, "lif_backend": "torch"}


def tiny_model(seed: int) -> models.SpikingFormer:
    torch.manual_seed(seed)
    model = timm.create_model("maxformer_cifar", **TINY)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()
    return model


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def published_state_dict(keys_file: str) -> dict[str, torch.Tensor]:
    """A state dict with the published layout (values do not matter here)."""
    _, *lines = (KEYS / f"{keys_file}.tsv").read_text().splitlines()
    state_dict = {}
    for line in lines:
        key, shape = line.split("\t")
        if shape == "scalar":
            state_dict[key] = torch.tensor(0)
        else:
            state_dict[key] = torch.zeros([int(n) for n in shape.split("x")])
    return state_dict


def test_published_training_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """The original CIFAR script (timm's CheckpointSaver) stores args as argparse.Namespace."""
    checkpoint = {
        "epoch": 299,
        "arch": "max_former",
        "state_dict": published_state_dict("maxformer_cifar100"),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
        "version": 2,
        "args": argparse.Namespace(model="max_former", time_step=4, lr=0.01),
        "metric": 83.1,
    }
    path = tmp_path / "model_best.pth.tar"
    torch.save(checkpoint, path)
    with torch.device("meta"):
        model = timm.create_model("maxformer_cifar", num_classes=100)
    model.to_empty(device="cpu")
    result = load_checkpoint(model, path)
    assert result.missing_keys == [] and result.unexpected_keys == []


@pytest.mark.parametrize("wrapper", ["bare", "model", "state_dict", "module_prefix"])
def test_checkpoint_formats_round_trip(tmp_path: Path, wrapper: str) -> None:
    source = tiny_model(0)
    state_dict = source.state_dict()
    checkpoint = {
        "bare": state_dict,
        "model": {"model": state_dict, "epoch": 3, "args": argparse.Namespace(lr=0.1)},
        "state_dict": {"state_dict": state_dict},
        "module_prefix": {"model": {f"module.{k}": v for k, v in state_dict.items()}},
    }[wrapper]
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    target = tiny_model(1)
    load_checkpoint(target, path)
    assert_same_weights(source, target)

    in_memory = tiny_model(2)
    load_checkpoint(in_memory, checkpoint)
    assert_same_weights(source, in_memory)


class RunsCode:
    """An object whose unpickling runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    payload = {"model": tiny_model(0).state_dict(), "hook": RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    model = tiny_model(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="refused to load") as info:
        load_checkpoint(model, path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": tiny_model(0).state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(tiny_model(1), path)
    assert info.value.__cause__ is not None


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tiny_model(0), tmp_path / "absent.pth")


def test_mismatches_are_listed() -> None:
    state_dict = tiny_model(0).state_dict()
    state_dict["head.weight"] = torch.zeros(3, 16)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tiny_model(1), state_dict)
    wrong = "wrong shape (1):\n  head.weight: checkpoint (3, 16) vs model (10, 16)"
    assert wrong in str(info.value)
    del state_dict["head.bias"]
    state_dict["stage9.0.mixer.conv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tiny_model(1), state_dict)
    message = str(info.value)
    assert "\n" not in message
    assert "by name (1 missing, 1 unexpected keys) nor in order" in message


def test_non_strict_loads_the_rest() -> None:
    source = tiny_model(0)
    state_dict = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    target = tiny_model(1)
    result = load_checkpoint(target, state_dict, strict=False)
    assert sorted(result.missing_keys) == ["head.bias", "head.weight"]
    assert torch.equal(target.stage3[0].attn.q_conv.weight, source.stage3[0].attn.q_conv.weight)
    assert not torch.equal(target.head.weight, source.head.weight)


def test_not_a_state_dict_is_refused() -> None:
    with pytest.raises(CheckpointError, match="'epoch' is a int, not a tensor"):
        load_checkpoint(tiny_model(0), {"epoch": 3, "weights": {}})


def test_timm_pretrained_file_uses_our_filter(tmp_path: Path) -> None:
    """timm's own loader: `_orig_mod.` (torch.compile) prefixes are removed only by our
    `checkpoint_filter_fn`, and the Namespace in the file needs our allow-list."""
    source = tiny_model(0)
    compiled_keys = {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "compiled.pth"
    torch.save({"model": compiled_keys, "args": argparse.Namespace(lr=0.1)}, path)
    loaded = timm.create_model(
        "maxformer_cifar", pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **TINY
    )
    assert_same_weights(source, loaded)


def test_flipped_bytes_are_refused_not_loaded(tmp_path: Path) -> None:
    """torch.load does not check the zip records' CRC-32; read_checkpoint does."""
    source = tiny_model(0)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": source.state_dict()}, path)
    data = bytearray(path.read_bytes())
    at = data.find(source.head.weight.detach().numpy().tobytes()[:16])
    data[at + 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["head.weight"],
                           source.head.weight)  # what torch alone would load
    with pytest.raises(CheckpointError, match="record '.*' fails the CRC-32 check"):
        load_checkpoint(tiny_model(1), path)


def test_damaged_zip_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": tiny_model(0).state_dict()}, path)
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the last central-directory entry
    data[at + 20 : at + 24] = b"\xff\xff\xff\x7f"  # its compressed size
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged|truncated|corrupt"):
        load_checkpoint(tiny_model(1), path)


def test_non_finite_tensors_are_named_wherever_they_are() -> None:
    state = {"model": {"a": torch.zeros(2), "b": torch.tensor([1.0, float("inf")])},
             "optimizer": {"state": {0: {"step": torch.tensor(3),
                                         "v": torch.full((2,), float("nan"))}},
                           "param_groups": [{"lr": 0.1}]},
             "counts": torch.tensor([1, 2])}
    assert non_finite_tensors(state) == ["model.b", "optimizer.state.0.v"]
    assert non_finite_tensors(torch.ones(3)) == []
