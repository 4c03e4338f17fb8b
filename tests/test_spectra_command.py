"""``maxformer spectra`` on a checkpoint trained in the test and its twins, on timm's resnet18,
on a spikingjelly network, and its one-line errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from models.app.analysis.report import new_output_folder
from models.app.cli import main
from models.app.config import build_config, read_recipe
from models.app.data import build_datasets
from models.app.datasets import DATASETS
from models.app.errors import UserError
from models.app.modeling import model_for_config
from models.app.samples import dataset_labels, stratified_order
from models.app.training.trainer import train
from models.checkpoint import load_checkpoint, read_checkpoint
from models.layers.mixers import DepthwiseConvMixer, SpikingSelfAttention
from models.neurons import MultiStepNeuron, MultiStepReLU
from spectral import high_frequency_ratio

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = {"model_kwargs": {"embed_dims": 16}, "T": 2, "img_size": 8, "batch_size": 16,
        "warmup_epochs": 0, "workers": 0, "epochs": 1, "train_samples": 96}
SJ_NETWORK = '''
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn


class OverTime(nn.Module):
    """Images [B, C, H, W] -> logits [B, K]: the network runs on T copies, time first."""

    def __init__(self, net, steps):
        super().__init__()
        self.net, self.steps = net, steps

    def forward(self, x):
        return self.net(x.unsqueeze(0).repeat(self.steps, 1, 1, 1, 1)).mean(0)


def build():
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, surrogate_function=surrogate.ATan()),
        layer.MaxPool2d(2),
        layer.Conv2d(8, 8, 3, padding=1),
        neuron.IFNode(v_threshold=0.5, surrogate_function=surrogate.ATan()),
        layer.Flatten(), layer.Linear(8 * 8 * 8, 10),
    )
    functional.set_step_mode(net, "m")
    return OverTime(net, 3)
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Max-Former trained on the digits for one epoch; its checkpoint path."""
    folder = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    train(build_config(read_recipe("digits"), TINY), output=folder / "run")
    return folder / "run" / "checkpoint-last.pt"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Default output folders (runs/...) land in the test's folder."""
    monkeypatch.chdir(tmp_path)


def spectra(capsys, *argv):
    """Run ``maxformer spectra``; returns (exit code, stdout, stderr)."""
    code = main(["spectra", "--no-progress", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_report(folder):
    for name in ("spectra.png",):
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE
    return json.loads((folder / "spectra.json").read_text())


def layers_of(report, network):
    return [r for r in report["layers"] if r["network"] == network]


def saved_config(checkpoint):
    return build_config(read_checkpoint(checkpoint)["config"], {})


def test_spectra_of_a_training_checkpoint_and_its_twins(trained, tmp_path, capsys):
    out = tmp_path / "spectra"
    code, stdout, _ = spectra(capsys, "--checkpoint", trained, "--twins", "--cam", 3,
                              "--samples", 20, "--batch-size", 8, "--output", out)
    assert code == 0
    report = read_report(out)
    assert (out / "cam.png").read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in out.iterdir()) == ["cam.png", "spectra.json", "spectra.png"]
    networks = report["networks"]
    assert [n["neuron"] for n in networks] == ["lif", "if", "relu"]
    lif = networks[0]["network"]
    assert [n["twin_of"] for n in networks] == [None, lif, lif]
    assert all(n["image_count"] == 20 and not n["random_weights"] for n in networks)
    assert "20 held-out images of digits" in stdout and str(trained) in networks[0]["weights"]

    cfg = saved_config(trained)
    model = model_for_config(cfg, DATASETS["digits"])
    kinds = (MultiStepNeuron, MultiStepReLU, nn.MaxPool2d, DepthwiseConvMixer,
             SpikingSelfAttention)
    finished = []
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            module.register_forward_hook(lambda m, a, o, name=name: finished.append(name))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, 8, 8))
    expected = list(dict.fromkeys(finished))  # in the order their outputs come out
    for network in networks:
        layers = layers_of(report, network["network"])
        assert [r["layer"] for r in layers] == expected  # one entry per layer, depth order
        analysed = [r for r in layers if r["skipped"] is None]
        depths = [r["depth"] for r in analysed]
        assert depths[0] == 0.0 and depths[-1] == 1.0 and np.all(np.diff(depths) > 0)
        assert [r["stage"] for r in analysed] == sorted(r["stage"] for r in analysed)
        assert {tuple(r["output"]["map_size"]) for r in analysed} == {(8, 8), (4, 4), (2, 2)}
        skipped = {r["layer"] for r in layers if r["skipped"]}
        assert "head_lif" in skipped and "stage3.0.attn.q_lif" in skipped  # [T, B, C], tokens
        neurons = [r for r in analysed if r["module_type"].startswith("MultiStep")]
        assert neurons and all(r["input"] is not None for r in neurons)
        spiking = network["neuron"] != "relu"
        assert all(r["spiking"] == spiking for r in neurons)
        assert all(0.0 <= r["firing_rate"] <= 1.0 for r in neurons if spiking)
        assert not any(r["spiking"] for r in analysed if r not in neurons)  # pools, mixers
        for r in analysed:
            assert r["model"] == "maxformer_cifar" and r["network"] == network["network"]
            ratio = r["output"]["high_frequency_ratio"]
            assert ratio is None or 0.0 <= ratio <= 1.0
            assert r["output"]["delta_log_amplitude_radius"] == 1.0  # radial: r = Nyquist

    # the numbers are those of the checkpoint's network on the seeded stratified sample of 20
    load_checkpoint(model, read_checkpoint(trained))
    held_out = build_datasets(cfg)[1]
    sample = stratified_order(dataset_labels(held_out), 20, seed=0)
    images = torch.stack([held_out[i][0] for i in sample])
    seen = {}
    neuron = model.eval().patch_embed1.lif
    neuron.register_forward_hook(lambda m, a, o: seen.setdefault("spikes", o))

    def normalised_input(module, args, kwargs):  # the neuron is handed its BatchNorm as `norm`
        seen.setdefault("input", kwargs["norm"](args[0].flatten(0, 1)))

    neuron.register_forward_pre_hook(normalised_input, with_kwargs=True)
    with torch.no_grad():
        model(images)
    first = layers_of(report, lif)[0]
    assert first["layer"] == "patch_embed1.lif"
    assert first["firing_rate"] == pytest.approx(seen["spikes"].mean().item())
    for record, tensor in ((first["output"], seen["spikes"]), (first["input"], seen["input"])):
        expected_ratio = high_frequency_ratio(tensor)
        if math.isnan(expected_ratio):
            assert record["high_frequency_ratio"] is None
        else:
            assert record["high_frequency_ratio"] == pytest.approx(expected_ratio)


def test_a_trained_lif_checkpoint_runs_as_its_twins(trained):
    cfg = saved_config(trained)
    weights = read_checkpoint(trained)
    x = build_datasets(cfg)[1][0][0][None].repeat(2, 1, 1, 1)
    outputs = {}
    for neuron, T in (("if", 2), ("relu", 1), ("relu", 4)):
        twin = model_for_config(build_config(cfg.to_dict(), {"neuron": neuron, "T": T}),
                                DATASETS["digits"]).eval()
        load_checkpoint(twin, weights, strict=True)
        seen = {}
        twin.stage1[0].mlp.fc1_lif.register_forward_hook(
            lambda m, a, o, seen=seen: seen.setdefault("out", o))
        with torch.no_grad():
            outputs[neuron, T] = twin(x)
        binary = bool(((seen["out"] == 0) | (seen["out"] == 1)).all())
        assert binary == (neuron == "if")
    torch.testing.assert_close(outputs["relu", 1], outputs["relu", 4], rtol=1e-5, atol=1e-6)


def write_pictures(folder, count, size, mode="RGB"):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / f"picture{i}.png")
    return folder


def test_spectra_of_timm_resnet18_on_a_folder_of_pictures(tmp_path, capsys):
    pictures = write_pictures(tmp_path / "pictures", 3, 80)
    out = tmp_path / "out"
    code, stdout, _ = spectra(capsys, "--model", "resnet18", "--images", pictures,
                              "--img-size", 64, "--cam", 2, "--output", out)
    assert code == 0
    report = read_report(out)
    (network,) = report["networks"]
    assert network["random_weights"] and "random weights" in network["weights"]
    assert "random weights" in stdout and "3 pictures from" in network["images"]
    model = timm.create_model("resnet18")
    expected = [name for name, m in model.named_modules()
                if isinstance(m, (nn.ReLU, nn.MaxPool2d))]
    layers = report["layers"]
    assert [r["layer"] for r in layers] == expected
    assert all(r["input"] is not None for r in layers if r["module_type"] == "ReLU")
    assert not any(r["spiking"] for r in layers)
    assert layers[0]["output"]["map_size"] == [32, 32] and layers[-1]["stage"] == 5
    assert (out / "cam.png").read_bytes()[:8] == PNG_SIGNATURE


def test_spectra_of_a_spikingjelly_network_from_module_function(tmp_path, capsys):
    (tmp_path / "sjnet.py").write_text(SJ_NETWORK)
    out = tmp_path / "out"
    code, stdout, _ = spectra(capsys, "--model", f"{tmp_path / 'sjnet.py'}:build", "--img-size",
                              16, "--samples", 6, "--cam", 2, "--method", "diagonal",
                              "--output", out)
    assert code == 0
    report = read_report(out)
    assert report["method"] == "diagonal"
    names = [r["layer"] for r in report["layers"]]
    assert names == ["net.2", "net.3", "net.5"]  # LIF, max-pool, IF: found by duck typing
    lif, pool, if_node = report["layers"]
    assert lif["spiking"] and if_node["spiking"] and pool["spiking"]  # max of spikes: spikes
    assert 0.0 < lif["firing_rate"] < pool["firing_rate"] < 1.0
    assert lif["input"]["map_size"] == [16, 16] and pool["input"] is None
    assert if_node["output"]["map_size"] == [8, 8] and if_node["stage"] == 2
    assert lif["output"]["delta_log_amplitude_radius"] == pytest.approx(math.sqrt(2) * 14 / 16)
    assert (out / "cam.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "6 held-out images of digits" in stdout


def one_line_error(capsys, *argv):
    code, _, err = spectra(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_checkpoint_that_fits_no_model_is_one_line(trained, tmp_path, capsys):
    other = tmp_path / "resnet.pt"
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), other)
    err = one_line_error(capsys, "--checkpoint", other, "--model", "maxformer_cifar",
                         "--dataset", "digits", "--output", tmp_path / "a")
    assert f"{other} does not fit maxformer_cifar" in err and "missing keys" in err
    err = one_line_error(capsys, "--checkpoint", other, "--output", tmp_path / "b")
    assert "holds no training config" in err and "--model" in err
    err = one_line_error(capsys, "--checkpoint", trained, "--model", "resnet18")
    assert "was trained as maxformer_cifar" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_images_are_one_line(trained, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    err = one_line_error(capsys, "--checkpoint", trained, "--images", empty)
    assert f"--images {empty} holds no pictures" in err
    err = one_line_error(capsys, "--checkpoint", trained, "--img-size", 2)
    assert "images of 2x2 px are smaller than the patch grid" in err and "--img-size 4" in err
    tiny = write_pictures(tmp_path / "tiny", 2, 1, mode="L")
    err = one_line_error(capsys, "--checkpoint", trained, "--images", tiny)
    assert "is 1x1 px, smaller than the network's 2x2 patch grid" in err


def test_a_layer_pattern_that_matches_nothing_is_one_line(trained, capsys):
    err = one_line_error(capsys, "--checkpoint", trained, "--layers", "decoder.*")
    assert "--layers decoder.* match no module of maxformer_cifar" in err
    assert "patch_embed1" in err


def test_selected_layers_and_a_refused_output_folder(trained, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, _ = spectra(capsys, "--checkpoint", trained, "--layers", "stage2.*lif",
                         "--samples", 4, "--output", out)
    assert code == 0
    names = [r["layer"] for r in read_report(out)["layers"]]
    assert names == ["stage2.0.mixer.lif", "stage2.0.mlp.fc1_lif", "stage2.0.mlp.fc2_lif"]
    before = (out / "spectra.json").read_bytes()
    err = one_line_error(capsys, "--checkpoint", trained, "--output", out)
    assert "exists and is not an empty folder" in err
    assert (out / "spectra.json").read_bytes() == before


def test_output_folders_are_new_and_never_reused(tmp_path):
    first, second = new_output_folder(None, "a/b c"), new_output_folder(None, "a/b c")
    assert first != second and first.parent == second.parent == Path("runs")
    assert first.name.startswith("spectra-a_b_c-") and first.is_dir() and second.is_dir()
    (first / "spectra.json").write_text("{}")
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        new_output_folder(first, "x")
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        new_output_folder(first / "spectra.json", "x")
    assert new_output_folder(second, "x") == second  # an empty folder is fine


def test_train_trains_the_relu_twin_through_the_neuron_key(tmp_path, capsys):
    out = tmp_path / "relu-run"
    code = main(["train", "--set", "neuron=relu", "--set", "epochs=1", "--set",
                 "train_samples=32", "--set", "model_kwargs={embed_dims: 16}", "--set", "T=1",
                 "--no-progress", "--output", str(out)])
    assert code == 0
    checkpoint = read_checkpoint(out / "checkpoint-last.pt")
    cfg = build_config(checkpoint["config"], {})
    assert cfg.neuron == "relu"
    relu = model_for_config(cfg, DATASETS["digits"])
    load_checkpoint(relu, checkpoint, strict=True)
    assert not any(isinstance(m, MultiStepNeuron) for m in relu.modules())
    assert any(isinstance(m, MultiStepReLU) for m in relu.modules())
    lif = model_for_config(build_config(cfg.to_dict(), {"neuron": "lif"}), DATASETS["digits"])
    load_checkpoint(lif, checkpoint, strict=True)  # and back: the same state dict


def test_a_failed_run_leaves_no_folder_behind(trained, tmp_path, capsys):
    out = tmp_path / "never"
    err = one_line_error(capsys, "--checkpoint", trained, "--samples", 4, "--cam", 2,
                         "--cam-layer", "stage9", "--output", out)
    assert "--cam-layer 'stage9' is no module of maxformer_cifar" in err
    assert not out.exists()
