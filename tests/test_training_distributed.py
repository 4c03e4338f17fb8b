"""Several processes (gloo): one machine with DistributedDataParallel, and two machines with
torchrun (one of them losing its worker and restarting it)."""

import csv
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from models.app.config import build_config, read_recipe
from models.app.data import build_datasets, eval_loader
from models.app.training.distributed import DistContext
from models.app.training.engine import evaluate
from models.app.training.trainer import train

TINY = {"model_kwargs": {"embed_dims": 16}, "T": 1, "img_size": 8, "batch_size": 16,
        "warmup_epochs": 0, "workers": 0, "epochs": 1, "train_samples": 128}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, port, run_dir, result_dir):
    torch.set_num_threads(1)  # as torchrun does: one thread per process
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    result = train(build_config(read_recipe("digits"), TINY), output=run_dir, device="cpu")
    torch.save(result.model.state_dict(), os.path.join(result_dir, f"rank{rank}.pt"))
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result.summary, f)


def test_two_process_gloo_epoch(tmp_path):
    run_dir, result_dir = tmp_path / "run", tmp_path / "results"
    result_dir.mkdir()
    mp.spawn(_rank, args=(_free_port(), str(run_dir), str(result_dir)), nprocs=2, join=True)
    w0 = torch.load(result_dir / "rank0.pt", weights_only=True)
    w1 = torch.load(result_dir / "rank1.pt", weights_only=True)
    assert [k for k, v in w0.items() if not torch.equal(v, w1[k])] == []
    assert {p.name for p in run_dir.iterdir()} == {
        "config.yaml", "metrics.csv", "metrics.png", "checkpoint-last.pt", "checkpoint-best.pt",
        "summary.json", ".lock"}
    s0 = json.loads((result_dir / "rank0.json").read_text())
    s1 = json.loads((result_dir / "rank1.json").read_text())
    assert s0["world_size"] == 2 and s1["output"] is None
    assert s0["final_acc1"] == s1["final_acc1"]
    # the metrics reduced over the two shards equal one pass over the whole held-out set
    cfg = build_config(read_recipe("digits"), TINY)
    _, val, info = build_datasets(cfg)
    import timm

    import models.zoo  # noqa: F401  (registers the zoo with timm)

    model = timm.create_model(cfg.model, num_classes=10, in_chans=1, T=1, embed_dims=16)
    model.load_state_dict(w0)
    ctx = DistContext(0, 1, torch.device("cpu"))
    whole = evaluate(model, eval_loader(val, 64, 0, ctx), ctx)
    assert whole["images"] == 360
    assert abs(whole["acc1"] - s0["final_acc1"]) < 1e-9
    assert abs(whole["loss"] - s0["final_loss"]) < 1e-5


# --- several machines: the README's multi-node torchrun, as two nodes on 127.0.0.1 ---------

ROOT = Path(__file__).resolve().parents[1]
NODE_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "GLOO_SOCKET_IFNAME": "lo",
            # a new store for every round of workers: in the store torchrun otherwise shares
            # between rounds, restarted workers can read the addresses of the workers they
            # replace and fail to connect
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
TRAIN_ARGS = ["--no-progress", "--epochs", "3", "--set", "train_samples=128",
              "--set", "model_kwargs={embed_dims: 16}", "--T", "1", "--img-size", "8",
              "--batch-size", "16", "--device", "cpu"]


def start_nodes(run_dir, logs, max_restarts=0):
    """Two ``torchrun --nnodes 2`` agents with one worker each, as the README runs one per
    machine (``--local-addr`` because both machines are 127.0.0.1)."""
    port = _free_port()
    return [
        subprocess.Popen(
            ["torchrun", "--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "1",
             "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
             "--local-addr", "127.0.0.1", "--max-restarts", str(max_restarts),
             "-m", "models.app", "train", "--output", str(run_dir), *TRAIN_ARGS],
            cwd=ROOT, env=NODE_ENV, stdout=logs[rank], stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]


def finish(nodes, logs, timeout=400):
    try:
        codes = [node.wait(timeout=timeout) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    texts = [Path(log.name).read_text() for log in logs]
    assert codes == [0, 0], "\n".join(texts)
    return texts


def metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"}
                for row in csv.DictReader(f)]


def final_tensors(run_dir):
    checkpoint = torch.load(run_dir / "checkpoint-last.pt", weights_only=True)
    return {**checkpoint["model"], **{f"optimizer.{k}.{n}": v
                                      for k, state in checkpoint["optimizer"]["state"].items()
                                      for n, v in state.items()}}


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_nodes")
    logs = [open(folder / f"node{rank}.log", "w") for rank in (0, 1)]
    finish(start_nodes(folder / "run", logs), logs)
    return folder / "run"


def test_readme_multi_node_torchrun_runs(two_node_run):
    summary = json.loads((two_node_run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 3
    assert [row["epoch"] for row in metrics(two_node_run)] == ["1", "2", "3"]


def _workers_of(agent: subprocess.Popen) -> list[int]:
    """The worker processes an agent started (its children)."""
    found = []
    for task in Path(f"/proc/{agent.pid}/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


def test_killed_worker_restarts_from_the_last_checkpoint_and_ends_as_uninterrupted(
    tmp_path, two_node_run
):
    run = tmp_path / "run"
    logs = [open(tmp_path / f"node{rank}.log", "w") for rank in (0, 1)]
    nodes = start_nodes(run, logs, max_restarts=1)
    deadline = time.monotonic() + 300
    while not (run / "checkpoint-last.pt").exists():  # epoch 1 is saved: kill in epoch 2
        assert all(node.poll() is None for node in nodes), "a node ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (worker,) = _workers_of(nodes[1])
    os.kill(worker, signal.SIGKILL)
    texts = finish(nodes, logs)
    assert any("the same run again after a stop: continuing from" in t for t in texts), texts
    assert metrics(run) == metrics(two_node_run)
    ours, theirs = final_tensors(run), final_tensors(two_node_run)
    assert [k for k in theirs if not torch.equal(ours[k], theirs[k])] == []
