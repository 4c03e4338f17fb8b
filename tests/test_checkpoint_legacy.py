"""Checkpoints saved by older code (other names, the original's order): mapped by order when
every shape fits, refused in one line otherwise; and `pretrained=True` through timm's hub."""

import hashlib
import logging
from pathlib import Path

import pytest
import timm
import torch
from timm.models import set_pretrained_check_hash

import models.zoo  # noqa: F401  (registers the zoo)
from models import CheckpointError, load_checkpoint
from models.checkpoint import original_key_order

KEYS = Path(__file__).parent / "data" / "keys"
TINY = {"embed_dims": 16, "num_heads": 2, "T": 1, "lif_backend": "torch"}


def layout_order(keys_file: str) -> list[str]:
    _, *lines = (KEYS / f"{keys_file}.tsv").read_text().splitlines()
    return [line.split("\t")[0] for line in lines]


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """`model` with every floating-point entry drawn from N(0, 0.5) (so spikes fire)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
    return model


def legacy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict under arbitrary names, in the original code's order."""
    state_dict = model.state_dict()
    return {f"old{i}.w": state_dict[key] for i, key in enumerate(original_key_order(model))}


@pytest.fixture(scope="module")
def big() -> torch.nn.Module:
    return randomised(timm.create_model("maxformer_10_768", T=1, lif_backend="torch"), 0).eval()


def test_layout_order_is_the_original_order(big: torch.nn.Module) -> None:
    """The order used is the published layout's, which is not our modules' own order."""
    assert original_key_order(big) == layout_order("maxformer_10_768")
    assert original_key_order(big) != list(big.state_dict())


def test_renamed_file_in_order_loads_with_one_line(
    big: torch.nn.Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "10-768-T1.pth.tar"
    torch.save({"state_dict": legacy(big), "epoch": 299}, path)
    target = timm.create_model("maxformer_10_768", T=1, lif_backend="torch").eval()
    with caplog.at_level(logging.WARNING, logger="models.checkpoint"):
        load_checkpoint(target, path)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert str(path) in lines[0] and "398 tensors by order" in lines[0]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = big(x), target(x)
    assert expected.std() > 0
    assert torch.equal(expected, got)


def cases(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[dict, str]]:
    """Damaged copies of a legacy state dict, and the words the refusal must contain."""
    items = list(state_dict.items())
    wrong = dict(items)
    wrong["old100.w"] = torch.zeros(7)
    extra = {**state_dict, "old398.w": torch.zeros(3)}
    fewer = dict(items[:-1])
    return {
        "shape": (wrong, "tensor 100 'old100.w' (7,)"),
        "one more": (extra, "tensor 398 'old398.w' (3,) is one more than 398"),
        "one fewer": (fewer, "the file ends after 397 tensors, before 'head.bias' (1000,)"),
    }


@pytest.mark.parametrize("case", ["shape", "one more", "one fewer"])
def test_misfit_is_refused_in_one_line(big: torch.nn.Module, case: str) -> None:
    state_dict, words = cases(legacy(big))[case]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(big, state_dict)
    message = str(info.value)
    assert "\n" not in message and words in message


def test_pretrained_true_reads_a_legacy_file_through_timms_hub(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`pretrained=True` with the release URL pointed at a local file: timm downloads it into
    its cache (torch hub), checks the SHA-256 prefix in the file name, and our filter maps the
    legacy names by order."""
    source = randomised(timm.create_model("maxformer_cifar", **TINY), 2)
    raw = tmp_path / "raw.pth"
    torch.save({"state_dict": legacy(source)}, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    served = tmp_path / "served" / f"legacy-{digest[:10]}.pth"
    served.parent.mkdir()
    raw.rename(served)
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    set_pretrained_check_hash(True)
    try:
        with caplog.at_level(logging.WARNING, logger="models.checkpoint"):
            loaded = timm.create_model(
                "maxformer_cifar",
                pretrained=True,
                pretrained_cfg_overlay={"url": served.as_uri()},
                **TINY,
            )
        assert (tmp_path / "hub" / "checkpoints" / served.name).is_file()
        bad = served.with_name("legacy-0000000000.pth")
        served.rename(bad)
        with pytest.raises(RuntimeError, match="invalid hash value"):
            timm.create_model(
                "maxformer_cifar", pretrained=True, pretrained_cfg_overlay={"url": bad.as_uri()},
                **TINY,
            )
    finally:
        set_pretrained_check_hash(False)
        torch.hub.set_dir(hub)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"{served.as_uri()}: names differ")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_pretrained_file_overlay_with_legacy_names(tmp_path: Path) -> None:
    source = randomised(timm.create_model("maxformer_cifar", **TINY), 3)
    path = tmp_path / "legacy.pth"
    torch.save(legacy(source), path)
    loaded = timm.create_model(
        "maxformer_cifar", pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **TINY
    )
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert isinstance(loaded, models.SpikingFormer)


@pytest.mark.parametrize("classes", [7, 0])
@pytest.mark.parametrize("renamed", [True, False], ids=["legacy names", "our names"])
def test_pretrained_with_other_classes_gets_a_fresh_classifier(
    tmp_path: Path, classes: int, renamed: bool
) -> None:
    """As timm's pretrained loading does for its own models: with another num_classes the
    file's classifier is dropped and the model keeps the one its constructor made (none for
    0 classes); everything else is the file's, whether its names are ours or older ones."""
    source = randomised(timm.create_model("maxformer_cifar", **TINY), 4)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": legacy(source) if renamed else source.state_dict()}, path)
    torch.manual_seed(5)
    fresh = timm.create_model("maxformer_cifar", num_classes=classes, **TINY)
    torch.manual_seed(5)
    loaded = timm.create_model("maxformer_cifar", pretrained=True, num_classes=classes,
                               pretrained_cfg_overlay={"file": str(path)}, **TINY)
    assert loaded.state_dict().keys() == fresh.state_dict().keys()
    assert any(key.startswith("head.") for key in source.state_dict())
    for key, value in loaded.state_dict().items():
        expected = fresh.state_dict()[key] if key.startswith("head.") else source.state_dict()[key]
        assert torch.equal(value, expected), key


def test_pretrained_with_other_classes_still_refuses_a_misfit(tmp_path: Path) -> None:
    """The classifier may differ in its classes only: another input width is refused."""
    source = timm.create_model("maxformer_cifar", **TINY)
    state_dict = legacy(source)
    last = list(state_dict)[-2]  # head.weight [10, 16] in the original order
    state_dict[last] = torch.zeros(10, 15)
    path = tmp_path / "weights.pth"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError) as info:
        timm.create_model("maxformer_cifar", pretrained=True, num_classes=7,
                          pretrained_cfg_overlay={"file": str(path)}, **TINY)
    message = str(info.value)
    assert "\n" not in message
    assert f"{last!r} (10, 15) does not fit 'head.weight' (7, 16)" in message
