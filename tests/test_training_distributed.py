"""Two CPU processes (gloo) train one epoch with DistributedDataParallel."""

import json
import os
import socket

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
        "config.yaml", "metrics.csv", "checkpoint-last.pt", "checkpoint-best.pt", "summary.json"}
    s0 = json.loads((result_dir / "rank0.json").read_text())
    s1 = json.loads((result_dir / "rank1.json").read_text())
    assert s0["world_size"] == 2 and s1["output"] is None
    assert s0["final_acc1"] == s1["final_acc1"]
    # the metrics reduced over the two shards equal one pass over the whole held-out set
    cfg = build_config(read_recipe("digits"), TINY)
    _, val, info = build_datasets(cfg)
    import timm

    import models  # noqa: F401

    model = timm.create_model(cfg.model, num_classes=10, in_chans=1, T=1, embed_dims=16)
    model.load_state_dict(w0)
    ctx = DistContext(0, 1, torch.device("cpu"))
    whole = evaluate(model, eval_loader(val, 64, 0, ctx), ctx)
    assert whole["images"] == 360
    assert abs(whole["acc1"] - s0["final_acc1"]) < 1e-9
    assert abs(whole["loss"] - s0["final_loss"]) < 1e-5
