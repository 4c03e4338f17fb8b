"""Runs stopped anywhere resume exactly; run folders are never replaced; run files, logs."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from runs import (
    TINY_ARGS,
    at_training_forward,
    flatten,
    rows,
    tiny,
    tiny_run,
    without_timings,
)

from models.app.cli import main
from models.app.errors import RunInterrupted
from models.app.training import run_files
from models.app.training.checkpointing import BEST, LAST, load_resume_point
from models.app.training.run_files import RunFolder
from models.app.training.trainer import resume_config, train

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLES = {"train_samples": 160}
BATCHES = 10  # 160 samples / 16
# every source of randomness a recipe has: random crops (python), random erasing (torch, in
# the data), mixup and cutmix (numpy), the EMA of the weights
RANDOM = {**SAMPLES, "scale": [0.5, 1.0], "reprob": 0.3, "mixup": 0.5, "cutmix": 0.5,
          "ema": True, "ema_decay": 0.9}


def tensors(path):
    """Every tensor a checkpoint keeps about the model: weights, optimizer state, EMA."""
    checkpoint = torch.load(path, weights_only=True)
    return {key: value for part in ("model", "optimizer", "ema")
            for key, value in flatten(checkpoint[part], part).items()
            if isinstance(value, torch.Tensor)}


def sigterm(model):
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("uninterrupted"), epochs=2, **RANDOM)


@pytest.mark.parametrize(
    "forward, workers, resume_workers, where",
    [
        (4, 0, 1, "in epoch 1 after 4 batches"),
        (BATCHES, 0, 0, "before epoch 2"),  # the last batch of epoch 1: stops after its save
        (BATCHES + 4, 1, 0, "in epoch 2 after 4 batches"),
    ],
)
def test_sigterm_anywhere_then_resume_equals_uninterrupted(
    tmp_path, uninterrupted, forward, workers, resume_workers, where
):
    run = tmp_path / "run"
    with at_training_forward(forward, sigterm), pytest.raises(RunInterrupted) as stop:
        train(tiny(epochs=2, **RANDOM, workers=workers), output=run)
    assert f"interrupted by SIGTERM {where}" in str(stop.value)
    assert stop.value.exit_code == 128 + signal.SIGTERM
    point = load_resume_point(run)
    assert (point.epoch, point.batches) == divmod(forward, BATCHES)
    train(resume_config(point.checkpoint["config"], {"workers": resume_workers}), resume=point)
    assert without_timings(rows(run)) == without_timings(rows(uninterrupted))
    ours, theirs = tensors(run / LAST), tensors(uninterrupted / LAST)
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if not torch.equal(ours[k], theirs[k])] == []


def test_output_that_holds_a_run_is_refused_and_left_as_it_was(tmp_path, capsys):
    run = tiny_run(tmp_path / "run", **SAMPLES)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = ["train", "--output", str(run), "--epochs", "1", *TINY_ARGS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"run folder {run} already holds files" in err and f"--resume {run}" in err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_taken_default_name_gets_a_suffix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_files.time, "strftime", lambda fmt: "20250101-120000")
    cfg = tiny()
    first = RunFolder.create(None, cfg)
    (first.path / "config.yaml").write_text("taken")
    second = RunFolder.create(None, cfg)
    first.close()
    second.close()
    assert first.path.name == "maxformer_cifar-digits-20250101-120000"
    assert second.path.name == "maxformer_cifar-digits-20250101-120000-2"
    assert (first.path / "config.yaml").read_text() == "taken"


def test_resume_from_best_continues_in_a_new_folder(tmp_path, monkeypatch, capsys):
    run = tiny_run(tmp_path / "run", epochs=2, **SAMPLES)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    best = torch.load(run / BEST, weights_only=True)["epoch"]
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", str(run / BEST), "--epochs", "3", "--no-progress"]) == 0
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing replaced
    (new,) = (tmp_path / "runs").iterdir()
    assert f"in a new run folder {new.relative_to(tmp_path)}" in capsys.readouterr().err
    continued = rows(new)
    assert continued[:best] == rows(run)[:best]
    assert [int(r["epoch"]) for r in continued] == [1, 2, 3][: len(continued)]
    assert len(continued) == 3
    assert torch.load(new / LAST, weights_only=True)["epoch"] == 3
    # into the folder it came from it would replace that run's later epochs: refused
    assert main(["train", "--resume", str(run / BEST), "--output", str(run), "--epochs", "3",
                 "--no-progress"]) == 2
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_removes_temporary_files_of_killed_writers(tmp_path):
    run = tiny_run(tmp_path / "run", **SAMPLES)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = run / f".checkpoint-last.pt.{dead.pid}.tmp"
    alive = run / f".summary.json.{os.getppid()}.tmp"  # a process that still runs: kept
    orphan.write_bytes(b"half a checkpoint")
    alive.write_bytes(b"being written")
    point = load_resume_point(run)
    train(resume_config(point.checkpoint["config"], {"epochs": 2}), resume=point)
    assert not orphan.exists() and alive.exists()
    assert [int(r["epoch"]) for r in rows(run)] == [1, 2]


def test_every_run_folder_has_its_learning_curves(tmp_path):
    run = tiny_run(tmp_path / "run", epochs=2, **SAMPLES)
    assert (run / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_tensorboard_log_has_the_metrics_rows(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(tiny(epochs=2, **SAMPLES), output=run, log=["tensorboard"])
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    for name in ("train_loss", "val_acc1"):
        logged = [(e.step, e.value) for e in events.Scalars(name)]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[name]), rel=1e-6))
                          for r in rows(run)]


def test_missing_logger_package_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    assert main(["train", "--log", "wandb", "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--log wandb needs the wandb package" in err and "pip install wandb" in err
    assert not (tmp_path / "run").exists()


def test_a_damaged_metrics_file_stops_a_resume_with_one_line(tmp_path, capsys):
    run = tiny_run(tmp_path / "run", **SAMPLES)
    (run / "metrics.csv").write_text("not,a\nmetrics file\n")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {run / 'metrics.csv'}: not a metrics.csv written by a run" in err
    assert torch.load(run / LAST, weights_only=True)["epoch"] == 1


def test_torchrun_variables_that_are_not_numbers_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "two")
    assert main(["train", "--output", str(tmp_path / "run"), *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert "environment variable WORLD_SIZE='two' is not an integer" in err


def test_resuming_with_fewer_epochs_than_trained_is_one_line(tmp_path, capsys):
    run = tiny_run(tmp_path / "run", epochs=2, **SAMPLES)
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(epoch 2) has trained more epochs than epochs 1" in err and "--epochs 2" in err


def test_a_run_folder_another_process_writes_is_refused(tmp_path, capsys):
    run = tiny_run(tmp_path / "run", **SAMPLES)
    hold = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0)\n"
            "os.write(fd, b'4242')\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"run folder {run} is being written by another process (pid 4242)" in err
    assert [r["epoch"] for r in rows(run)] == ["1"]


def test_a_folder_with_hidden_files_only_is_taken_and_they_are_kept(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".study-lock").write_text("a caller's lock")
    tiny_run(run, **SAMPLES)
    assert (run / ".study-lock").read_text() == "a caller's lock"
    assert (run / "checkpoint-last.pt").is_file()
