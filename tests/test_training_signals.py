"""Crash safety: atomic checkpoint writes, SIGINT saves a resumable checkpoint."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from models.app.training.checkpointing import LAST, atomic_save

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--set", "model_kwargs={embed_dims: 16}", "--set", "train_samples=320", "--T", "1",
             "--img-size", "8", "--batch-size", "16", "--set", "warmup_epochs=0", "--workers", "0",
             "--no-progress"]

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process on a shared CPU
WRITER = """
import sys, torch
from models.app.training.checkpointing import atomic_save
atomic_save({"model": {"w": torch.ones(64, 1024, 1024)}}, sys.argv[1])
"""


def test_killed_write_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint-last.pt"
    atomic_save({"model": {"w": torch.zeros(3)}, "epoch": 1}, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
        assert proc.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["model"]["w"], torch.zeros(3))


def test_failed_write_keeps_previous_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    try:
        atomic_save({"epoch": 2, "bad": Unpicklable()}, path)
    except RuntimeError as err:
        assert "disk full" in str(err)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_sigint_saves_resumable_checkpoint_and_resume_finishes(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "models.app.cli", "train", "--output", str(run), *TINY_ARGS]
    proc = subprocess.Popen([*cmd, "--epochs", "50"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 300
    while not (run / "metrics.csv").exists():  # one epoch done
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "interrupted by SIGINT" in err and "--resume" in err and "Traceback" not in err
    ckpt = torch.load(run / LAST, weights_only=True)
    assert 1 <= ckpt["epoch"] < 50
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    done = subprocess.run([*cmd, "--resume", str(run), "--epochs", str(ckpt["epoch"] + 1)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr
    final = torch.load(run / LAST, weights_only=True)
    assert final["epoch"] == ckpt["epoch"] + 1 and final["batches_done"] == 0
    assert os.path.exists(run / "summary.json")
    with open(run / "metrics.csv", newline="") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == list(range(1, final["epoch"] + 1))
