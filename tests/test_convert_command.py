"""`maxformer convert` and `maxformer eval --T-values` on a converted checkpoint."""

import json

import torch
from runs import tiny

from models.app.cli import main
from models.app.datasets import DATASETS
from models.app.modeling import model_for_config

MIXERS = {"embed_dims": 16, "mixers": ["identity", "dwc3", "dwc3"]}


def saved_checkpoint(path, neuron):
    """An untrained digits network's checkpoint as `maxformer train` writes its model and
    config."""
    cfg = tiny(neuron=neuron, model_kwargs=MIXERS, lif_backend="torch", batch_size=128)
    torch.manual_seed(0)
    model = model_for_config(cfg, DATASETS["digits"])
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, path)
    return path


def test_convert_writes_a_checkpoint_that_eval_reads_over_T(tmp_path, capsys):
    source = saved_checkpoint(tmp_path / "relu.pt", "relu")
    out = tmp_path / "converted.pt"
    assert main(["convert", "--checkpoint", str(source), "--output", str(out), "--T", "4",
                 "--calibration-batches", "1"]) == 0
    saved = torch.load(out, weights_only=True)
    assert saved["config"]["neuron"] == "if_converted" and saved["config"]["T"] == 4
    assert any(key.endswith(".threshold") for key in saved["model"])
    report = tmp_path / "curve.json"
    assert main(["eval", "--checkpoint", str(out), "--T-values", "1", "3", "--no-progress",
                 "--json", str(report)]) == 0
    curve = json.loads(report.read_text())
    assert [point["T"] for point in curve["curve"]] == [1, 3]
    assert "T=   3: top-1" in capsys.readouterr().out
    assert main(["convert", "--checkpoint", str(source), "--output", str(out)]) == 2


def test_convert_refuses_a_spiking_checkpoint_in_one_line(tmp_path, capsys):
    source = saved_checkpoint(tmp_path / "lif.pt", "lif")
    assert main(["convert", "--checkpoint", str(source), "--output",
                 str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "neuron 'lif'" in err and "\n" not in err
