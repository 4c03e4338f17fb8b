"""The ``maxformer`` command line: subcommands, help, clear errors, eval of a checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
