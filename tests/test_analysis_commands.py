"""``maxformer transfer``, ``heatmap`` and ``bandnoise`` on a tiny digits network trained in the
test (and its twins), and their one-line errors."""

import json
import math
import time

import pytest
import torch

from models.app.cli import main
from models.app.config import build_config, read_recipe
from models.app.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = {"model_kwargs": {"embed_dims": 16}, "T": 2, "img_size": 8, "batch_size": 16,
        "warmup_epochs": 0, "workers": 0, "epochs": 1, "train_samples": 96}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Max-Former trained on the digits for one epoch; its checkpoint path."""
    folder = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    train(build_config(read_recipe("digits"), TINY), output=folder / "run")
    return folder / "run" / "checkpoint-last.pt"


def command(capsys, *argv):
    code = main([*map(str, argv[:1]), "--no-progress", *map(str, argv[1:])])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report(folder, name):
    assert (folder / f"{name}.png").read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in folder.iterdir()) == [f"{name}.json", f"{name}.png"]
    return json.loads((folder / f"{name}.json").read_text())


def test_transfer_of_a_trained_network_and_its_twins(trained, tmp_path, capsys):
    start = time.perf_counter()
    code, out, _ = command(capsys, "transfer", "--checkpoint", trained, "--twins", "--T", 32,
                           "--omegas", 4, "--samples", 8, "--output", tmp_path / "t")
    assert code == 0 and time.perf_counter() - start < 60
    result = report(tmp_path / "t", "transfer")
    assert result["omega"] == pytest.approx([math.pi / 4 * k for k in (1, 2, 3, 4)])
    nets = result["networks"]
    assert [n["neuron"] for n in nets] == ["lif", "if", "relu"]
    assert [n["tau"] for n in nets] == [2.0, None, None] and nets[0]["warmup"] == 8
    for net in nets:
        rows = [r for r in result["layers"] if r["network"] == net["network"]]
        assert rows[0]["layer"] == "patch_embed1.lif" and rows[-1]["layer"] == "head_lif"
        assert [r["neurons_before"] for r in rows] == (
            list(range(1, len(rows) + 1)) if net["neuron"] != "relu" else [0] * len(rows))
        first = rows[0]
        assert first["gain_db"][0] == 0.0 and len(first["floor"]) == 4
        assert len(first["spike_spectrum"]) == 24 // 2 + 1
    lif = [r for r in result["layers"] if r["network"] == nets[0]["network"]]
    assert lif[0]["predicted_db"][-1] == pytest.approx(
        20 * math.log10(abs((0.5 / (1 + 0.5)) * (1 - 0.5 * complex(math.cos(math.pi / 4),
                                                                   -math.sin(math.pi / 4))) / 0.5)))
    relu = [r for r in result["layers"] if r["network"] == nets[2]["network"]]
    assert all(v == 0.0 for r in relu for v in r["predicted_db"])
    assert "Eq. 12" in out


def test_full_fourier_heat_map_of_a_trained_network(trained, tmp_path, capsys):
    start = time.perf_counter()
    code, out, _ = command(capsys, "heatmap", "--checkpoint", trained, "--samples", 32,
                           "--output", tmp_path / "h")
    assert code == 0 and time.perf_counter() - start < 60
    net = report(tmp_path / "h", "heatmap")["networks"][0]
    assert net["u"] == list(range(-4, 4)) == net["v"] and net["stride"] == 1
    error = torch.tensor(net["error"])
    assert error.shape == (8, 8) and bool(((error >= 0) & (error <= 1)).all())
    assert torch.tensor(net["gradient"]["amplitude"]).shape == (8, 8)
    loss = torch.tensor(net["loss_increase"])
    assert torch.equal(loss[1:, 1:], loss[1:, 1:].flip(0, 1))  # (u, v) and (-u, -v) share one


def test_band_noise_of_a_trained_network(trained, tmp_path, capsys):
    code, out, _ = command(capsys, "bandnoise", "--checkpoint", trained, "--samples", 32,
                           "--bands", 2, "--level", 0.5, "--level", 4.0, "--output",
                           tmp_path / "b")
    assert code == 0
    net = report(tmp_path / "b", "bandnoise")["networks"][0]
    assert len(net["accuracy"]) == 2 and all(len(row) == 2 for row in net["accuracy"])
    assert 0.0 <= net["clean_accuracy"] <= 1.0


@pytest.mark.parametrize("argv, message", [
    (["transfer", "--omega", "0"], "omega 0.0 is outside (0, pi]"),
    (["transfer", "--omega", "3.2"], "omega 3.2 is outside (0, pi]"),
    (["transfer", "--eps", "0"], "--eps must be a number > 0"),
    (["transfer", "--layers", "nothing*"], "--layers nothing* match no module"),
    (["heatmap", "--eps", "-1"], "--eps must be a number > 0"),
    (["bandnoise", "--band", "0.1:0.2"], "holds no frequency"),
    (["bandnoise", "--level", "0"], "--level must be a number > 0"),
])
def test_bad_input_is_one_line(trained, tmp_path, capsys, argv, message):
    code, _, err = command(capsys, *argv, "--checkpoint", trained, "--samples", 4,
                           "--output", tmp_path / "x")
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_a_network_without_a_time_axis_is_refused_for_transfer(tmp_path, capsys):
    code, _, err = command(capsys, "transfer", "--model", "resnet18", "--img-size", 32,
                           "--dataset", "bands", "--samples", 2, "--output", tmp_path / "x")
    assert code == 2 and "has no time axis" in err and err.count("\n") == 1
