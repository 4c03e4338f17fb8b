"""The ``maxformer`` command line: subcommands, help, clear errors, eval of a checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs import TINY_ARGS, tiny_run

from models.app.cli import COMMANDS, build_parser, main
from models.app.config import build_config, config_from_args, read_recipe
from models.app.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model_kwargs": {"embed_dims": 16}, "T": 1, "img_size": 8, "batch_size": 16,
        "warmup_epochs": 0, "workers": 0, "epochs": 1, "train_samples": 64}


def test_help_lists_subcommands_and_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--config" in out and "--resume" in out and "--set" in out and "digits" in out


def test_overrides_reach_the_config():
    args = build_parser().parse_args(["train", "--epochs", "3", "--lr", "0.01", "--set",
                                      "aa=null", "--set", "scale=[1, 1]", "--download"])
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.lr, cfg.aa, cfg.scale, cfg.download) == (3, 0.01, None, [1, 1], True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--set", "learnig_rate=1"],
         "unknown config key(s) learnig_rate in --set; valid keys: model, model_kwargs, T,"),
        (["train", "--config", "nope"], "no config 'nope'"),
        (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent"],
         "no CIFAR-10 batches at /nonexistent/cifar-10-batches-py"),
        (["train", "--model", "no_such_net"], "unknown model 'no_such_net'"),
        (["train", "--resume", "/nonexistent/run"], "no checkpoint file at"),
        (["eval", "--checkpoint", "/nonexistent.pt"], "no checkpoint file at"),
        (["train", "--config", "cifar10dvs", "--set", "erase_after_mix=true"],
         "erase_after_mix is for images; dataset 'cifar10dvs' gives event frames"),
        (["train", "--set", "eval_loss_mean=batches"],
         "unknown eval_loss_mean 'batches'; did you mean batch? choose one of image, batch"),
    ],
)
def test_user_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_module_entry_point_reports_error_without_traceback():
    done = subprocess.run([sys.executable, "-m", "models.app.cli", "train", "--set", "T=zero"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "config key T expects" in done.stderr and "Traceback" not in done.stderr


def test_eval_reproduces_training_metrics(tmp_path, capsys):
    cfg = build_config(read_recipe("digits"), TINY)
    result = train(cfg, output=tmp_path / "run")
    report = tmp_path / "eval.json"
    code = main(["eval", "--checkpoint", str(tmp_path / "run" / "checkpoint-last.pt"),
                 "--no-progress", "--json", str(report)])
    assert code == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "top-5" in out and "images/s" in out
    metrics = json.loads(report.read_text())
    assert metrics["images"] == 360
    assert abs(metrics["acc1"] - result.summary["final_acc1"]) < 1e-9
    assert abs(metrics["loss"] - result.summary["final_loss"]) < 1e-5
    assert metrics["images_per_sec"] > 0


TRAIN_ARGS = ["--epochs", "1", "--set", "train_samples=64", *TINY_ARGS]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for a machine "
                            "without a CUDA GPU")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "opt=sgdx"], "unknown opt 'sgdx'; did you mean sgd"),
        (["--set", "sched=plateau"], "unknown sched 'plateau'; choose one of cosine, tanh"),
        (["--set", "interpolation=foo"], "unknown interpolation 'foo'; choose one of bilinear"),
        (["--set", "remode=foo"], "unknown remode 'foo'; choose one of const, rand, pixel"),
        (["--set", "mixup_mode=foo"], "unknown mixup_mode 'foo'; choose one of batch, pair"),
        (["--set", "aa=foo"], "timm cannot build the training transform of this config (aa 'foo'"),
        (["--set", "smoothing=1.5"], "smoothing must be in [0, 1), got 1.5"),
        (["--set", "lr=.nan"], "config key lr must be a finite number, got nan"),
        (["--lr", "nan"], "argument --lr: expected a finite number, got 'nan'"),
        (["--set", "lr=0"], "lr must be in (0, inf), got 0.0"),
        (["--workers", "-1"], "workers must be in [0, inf), got -1"),
        (["--seed", "-1"], "seed must be in [0, 2147483647], got -1"),
        (["--set", "scale=[0.5, a]"], "config key scale expects a list of finite floats, got 'a'"),
        (["--set", "scale=[0.9, 0.5]"], "scale must be [low, high] with 0 < low <= high <= 1"),
        (["--set", "model_kwargs={embed_dims: 20}"], "cannot build maxformer_cifar"),
        (["--set", "model_kwargs={checkpoint_path: /etc/passwd}"],
         "model_kwargs checkpoint_path not arguments of SpikingFormer (maxformer_cifar); its "
         "arguments: embeds, mixers"),
        (["--set", "model_kwargs={pretrained_cfg_overlay: {file: /etc/passwd}}"],
         "model_kwargs pretrained_cfg_overlay not arguments of SpikingFormer"),
        (["--img-size", "2"], "SpikingFormer cannot run on digits at img_size 2 (one sample: "
         "(1, 2, 2)): image size 2x2 is not a multiple of the network's stride 4"),
        (["--batch-size", "1000"], "fewer than batch_size 1000"),
        (["--log", "neptune"], "argument --log: invalid choice: 'neptune'"),
        pytest.param(["--device", "cuda"], "--device cuda, but no CUDA GPU is available",
                     marks=NO_GPU),
    ],
)
def test_bad_training_input_is_one_line(argv, message, tmp_path, capsys):
    try:
        code = main(["train", "--output", str(tmp_path / "run"), *TRAIN_ARGS, *argv])
    except SystemExit as exit_:  # the argument parser's errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run" / "checkpoint-last.pt").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run folder of maxformer train."""
    return tiny_run(tmp_path_factory.mktemp("trained") / "run", train_samples=64)


def test_checkpoints_whose_config_lacks_keys_are_one_line(trained, tmp_path, capsys):
    checkpoint = torch.load(trained / "checkpoint-last.pt", weights_only=True)
    del checkpoint["config"]["model"], checkpoint["config"]["dataset"]
    partial = tmp_path / "partial.pt"
    torch.save(checkpoint, partial)
    for command in (["eval", "--checkpoint", str(partial)], ["train", "--resume", str(partial)],
                    ["energy", "--checkpoint", str(partial)]):
        assert main([*command, "--no-progress"]) == 2, command
        err = capsys.readouterr().err
        assert f"the config saved in {partial} lacks model, dataset" in err, err
        assert len(err.strip().splitlines()) == 1


def test_resume_of_a_checkpoint_not_written_by_training_is_one_line(tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, weights)
    assert main(["train", "--resume", str(weights)]) == 2
    err = capsys.readouterr().err
    assert f"{weights} is not a checkpoint of maxformer train: it lacks optimizer" in err


@pytest.mark.parametrize("command", ["eval", "energy"])
@pytest.mark.parametrize("target, message", [("missing/report.json", "does not exist"),
                                             (".", "is a folder")])
def test_json_that_cannot_be_written_fails_before_any_work(trained, tmp_path, capsys, command,
                                                           target, message):
    argv = [command, "--checkpoint", str(trained / "checkpoint-last.pt"), "--json",
            str(tmp_path / target), "--no-progress"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert message in err and len(err.strip().splitlines()) == 1
    assert out == ""  # nothing was measured


def test_damaged_checkpoint_bytes_are_refused(trained, tmp_path, capsys):
    data = bytearray((trained / "checkpoint-last.pt").read_bytes())
    weight = torch.load(trained / "checkpoint-last.pt", weights_only=True)["model"]["head.weight"]
    at = data.find(weight.numpy().tobytes()[:16])
    data[at + 3] ^= 0x40  # one bit of one weight
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    assert main(["eval", "--checkpoint", str(damaged), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "fails the CRC-32 check" in err and str(damaged) in err


def test_mismatching_checkpoint_is_one_line(trained, capsys):
    argv = ["eval", "--checkpoint", str(trained / "checkpoint-last.pt"), "--set",
            "model_kwargs={embed_dims: 32}", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "does not fit SpikingFormer: " in err and "wrong shape: " in err and "more" in err
    assert len(err.strip().splitlines()) == 1


def test_config_files_that_cannot_be_read_are_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [1,\n")
    unreadable = tmp_path / "binary.yaml"
    unreadable.write_bytes(b"\xff\xfe\x00")
    for path, message in ((broken, "is not valid YAML"), (unreadable, "cannot read config")):
        assert main(["train", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
