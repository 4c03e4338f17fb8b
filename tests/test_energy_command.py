"""The `maxformer energy` command: table, JSON, real data, and clear errors for bad arguments."""

import argparse
import json

import pytest
import torch
from runs import tiny_run

from models.app import cli
from models.app.commands import energy as command

FIRST_CONV_FLOPS = 32 * 32 * 48 * 3 * 9  # maxformer_cifar: stage 1 is 96 wide, its stem 48


def energy_main(argv: list[str]) -> int:
    """`maxformer energy ARGV` through the `maxformer` entry point."""
    return cli.main(["energy", *argv])


def run_energy(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def test_command_prints_the_stage_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "energy.json"
    assert run_energy(["--model", "maxformer_cifar", "--T", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "random weights" in printed
    for row in ("stage 1", "patch embedding", "token mixer", "MLP", "classifier", "total"):
        assert row in printed
    report = json.loads(out.read_text())
    for key in ("model", "T", "params", "macs", "sops", "energy_mj", "ann_energy_mj"):
        assert key in report
    assert report["model"] == "maxformer_cifar" and report["T"] == 2
    first = report["layers"][0]
    assert first["name"] == "patch_embed1.proj_conv" and first["macs"] == FIRST_CONV_FLOPS
    assert {"name", "kind", "flops", "input_rate", "sops", "macs", "energy_mj", "stage",
            "part"} <= set(first)
    total = report["energy_mj"]
    assert sum(layer["energy_mj"] for layer in report["layers"]) == pytest.approx(total)
    assert sum(stage["energy_mj"] for stage in report["stages"]) == pytest.approx(total)
    assert [s["stage"] for s in report["stages"]] == ["stage 1", "stage 2", "stage 3",
                                                      "classifier"]


def test_command_measures_real_digits(capsys):
    argv = ["--model", "maxformer_cifar", "--T", "1", "--dataset", "digits", "--batch-size",
            "3", "--batches", "2"]
    assert run_energy(argv) == 0
    printed = capsys.readouterr().out
    assert "digits held-out images (images: 6)" in printed


def test_unknown_model_lists_close_matches(capsys):
    assert energy_main(["--model", "maxformer_cifr"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'maxformer_cifr'" in err and "maxformer_cifar" in err
    assert "Traceback" not in err


def test_checkpoint_that_does_not_fit_gives_the_load_error(capsys, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"head.weight": torch.zeros(3, 7)}, path)
    argv = ["--model", "maxformer_cifar", "--T", "1", "--checkpoint", str(path), "--random-input"]
    assert energy_main(argv) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "head.weight" in err and str(path) in err
    assert "Traceback" not in err


def test_event_model_without_T_asks_for_it(capsys):
    assert energy_main(["--model", "maxformer_event", "--input-size", "32"]) == 2
    assert "--T" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_training_checkpoint_supplies_model_and_settings(tmp_path, capsys):
    from models.app.config import build_config, read_recipe
    from models.app.training.trainer import train

    tiny = {"epochs": 1, "model_kwargs": {"embed_dims": 16}, "T": 1, "img_size": 8,
            "batch_size": 64}
    train(build_config(read_recipe("digits"), tiny), output=tmp_path)
    out = tmp_path / "energy.json"
    argv = ["--checkpoint", str(tmp_path / "checkpoint-best.pt"), "--dataset", "digits",
            "--json", str(out)]
    assert run_energy(argv) == 0
    report = json.loads(out.read_text())
    assert (report["model"], report["T"], report["input_size"]) == ("maxformer_cifar", 1, 8)
    saved = torch.load(tmp_path / "checkpoint-best.pt", weights_only=True)["model"]
    assert report["params"] == sum(v.numel() for k, v in saved.items() if "running" not in k
                                   and "num_batches" not in k)
    assert report["weights"].startswith("weights from")


def test_model_is_required_without_a_training_checkpoint(capsys):
    assert energy_main([]) == 2
    assert "--model is required" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("energy") / "run", batch_size=64) / \
        "checkpoint-best.pt"


def test_a_training_checkpoint_is_measured_on_its_own_dataset(trained_checkpoint, tmp_path,
                                                              capsys):
    out = tmp_path / "energy.json"
    assert energy_main(["--checkpoint", str(trained_checkpoint), "--batch-size", "4",
                        "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "digits held-out images (images: 4)" in printed and "random" not in printed
    report = json.loads(out.read_text())
    assert report["input"] == "digits held-out images" and report["trained"] is True
    assert energy_main(["--checkpoint", str(trained_checkpoint), "--random-input",
                        "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["input"] == "random input"


def test_trained_weights_without_a_dataset_ask_for_one(tmp_path, capsys):
    weights = tmp_path / "published.pth"
    torch.save({"state_dict": {}}, weights)
    assert energy_main(["--model", "maxformer_cifar", "--checkpoint", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "names no dataset: give --dataset" in err and "--random-input" in err


def test_random_weights_are_said_in_the_table_and_the_json(tmp_path, capsys):
    out = tmp_path / "energy.json"
    argv = ["--model", "maxformer_cifar", "--T", "1", "--img-size", "8", "--json", str(out)]
    assert energy_main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert "random weights (untrained" in table[0]
    report = json.loads(out.read_text())
    assert report["trained"] is False and report["weights"].startswith("random weights")


def test_small_energies_are_shown_in_units_that_show_them(trained_checkpoint, capsys):
    assert energy_main(["--checkpoint", str(trained_checkpoint), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("stage "))
    total = next(line for line in lines if line.startswith("total"))
    unit = header.split("energy (")[1].rstrip(")")
    assert unit in ("uJ", "nJ", "pJ")  # a small model: far below a millijoule
    assert 1.0 <= float(total.split()[-1]) < 1000.0


@pytest.mark.parametrize("flag", ["--img-size", "--input-size"])
def test_a_zero_image_size_is_refused(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        energy_main(["--model", "maxformer_cifar", flag, "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "expected an integer >= 1, got 0" in err and len(err.strip().splitlines()) == 1


def test_input_the_model_cannot_take_is_one_line(capsys):
    assert energy_main(["--model", "maxformer_cifar", "--T", "1", "--img-size", "6"]) == 2
    err = capsys.readouterr().err
    assert "cannot run on random input at img_size 6" in err and "stride 4" in err
    assert len(err.strip().splitlines()) == 1


def test_convention_sets_how_the_command_counts(tmp_path, capsys):
    out = tmp_path / "energy.json"
    argv = ["--model", "maxformer_cifar", "--T", "2", "--img-size", "32", "--json", str(out)]
    assert run_energy([*argv, "--convention", "sdt"]) == 0
    printed = capsys.readouterr().out
    assert "(sdt convention)" in printed and "convention: sdt, the Spike-driven" in printed
    report = json.loads(out.read_text())
    assert report["convention"] == "sdt" and report["convention_rules"]["MAC"].startswith(
        "the first convolution")
    assert report["layers"][0]["macs"] == 2 * FIRST_CONV_FLOPS  # a static image, T times
    assert run_energy(argv) == 0
    report = json.loads(out.read_text())
    assert report["convention"] == "ours" and report["layers"][0]["macs"] == FIRST_CONV_FLOPS


def test_an_unknown_convention_is_one_line_listing_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        energy_main(["--model", "maxformer_cifar", "--convention", "snntorch"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'snntorch'" in err
    assert "'ours', 'spikformer', 'sdt', 'syops', 'spikingjelly'" in err


def test_help_explains_every_convention_and_the_names_are_the_registry(capsys):
    from models.energy import CONVENTIONS

    assert command.CONVENTIONS == tuple(CONVENTIONS)
    with pytest.raises(SystemExit):
        energy_main(["--help"])
    help_text = capsys.readouterr().out
    for name in CONVENTIONS:
        assert f"\n  {name} " in help_text
    assert "docs/energy.md" in help_text
