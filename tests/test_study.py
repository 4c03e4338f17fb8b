"""`maxformer study`: a grid of ordinary runs, resumable, spread over processes, reported."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from models.app.cli import main
from models.app.errors import RunInterrupted
from models.app.study import (
    TIMING_COLUMNS,
    cell_lock,
    cell_state,
    read_study,
    run_study,
    study_names,
    write_report,
)
from models.app.training.checkpointing import LAST, load_resume_point

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]

TINY = {"model_kwargs": {"embed_dims": 16}, "T": 2, "epochs": 2, "train_samples": 480,
        "batch_size": 16, "lr": 1e-2}
GRID = {
    "description": "two variants, two seeds",
    "base": "digits",
    "set": TINY,
    "variants": [
        {"name": "max-former"},
        {"name": "avg-pool x3", "model_kwargs": {"mixers": ["avg_pool"] * 3}},
    ],
    "seeds": [0, 1],
    "measure_images": 32,
}


def write_spec(path, spec):
    path.write_text(yaml.safe_dump(spec))
    return path


def read_csv(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS}
                for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The grid run uninterrupted on the command line."""
    folder = tmp_path_factory.mktemp("straight")
    spec = write_spec(folder / "grid.yaml", GRID)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests' one_thread fixture, which is per test
    try:
        assert main(["study", str(spec), "--output", str(folder / "study"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return spec, folder / "study"


def test_killed_and_resumed_grid_gives_the_same_csv(straight, tmp_path):
    spec, straight_folder = straight
    study = read_study(str(spec))
    folder = tmp_path / "study"
    first = folder / study.cells[0].folder
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the threads of the uninterrupted grid
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.app", "study", str(spec), "--output", str(folder),
         "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (first / LAST).exists():  # the first epoch of the first cell is saved
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()  # as a crash or a lost machine would
    proc.communicate()
    states = [cell_state(folder / cell.folder) for cell in study.cells]
    assert states == ["partial", "pending", "pending", "pending"], states
    write_report(study, folder)  # --report at any time
    assert [row["state"] for row in read_csv(folder / "study.csv")] == states

    lines = []  # the rest, in two processes' shares, then once more
    run_study(study, folder, part=(2, 2), log=lines.append)
    run_study(study, folder, part=(1, 2), log=lines.append)
    assert any("seed 0: resuming after epoch 1 (" in line for line in lines), lines
    run_study(study, folder, log=lines.append)
    assert sum("done before, skipped" in line for line in lines) == 4, lines
    write_report(study, folder)
    rows = read_csv(folder / "study.csv")
    assert rows == read_csv(straight_folder / "study.csv")
    assert [row["state"] for row in rows] == ["done"] * 4
    assert {row["variant"] for row in rows} == {"max-former", "avg-pool x3"}
    assert {row["seed"] for row in rows} == {"0", "1"}
    assert all(row["rate_stage1"] != "" and row["hf_ratio_stage1"] != "" for row in rows)
    assert float(rows[0]["energy_mj"]) > 0
    for row in rows:  # the top-1 of each cell's last epoch, as its own run folder has it
        with open(folder / row["folder"] / "metrics.csv", newline="") as f:
            last = list(csv.DictReader(f))[-1]
        assert last["epoch"] == row["epochs_done"] == "2"
        assert 0 < float(row["top1"]) == float(last["val_acc1"]) <= 100
    text = (straight_folder / "study.md").read_text()
    assert "## max-former" in text and "## avg-pool x3" in text and " ± " in text
    assert (straight_folder / "study.png").read_bytes()[:4] == b"\x89PNG"


def test_ctrl_c_stops_the_study_with_a_resumable_cell(straight, tmp_path):
    spec, _ = straight
    study = read_study(str(spec))
    folder = tmp_path / "study"
    first = folder / study.cells[0].folder

    def interrupt_in_the_second_epoch():
        while not (first / "metrics.csv").exists():
            time.sleep(0.005)
        signal.raise_signal(signal.SIGINT)

    watcher = threading.Thread(target=interrupt_in_the_second_epoch)
    watcher.start()
    with pytest.raises(RunInterrupted, match="interrupted by SIGINT.*rerun the study to resume"):
        run_study(study, folder, log=lambda line: None)
    watcher.join()
    assert [cell_state(folder / c.folder) for c in study.cells] == ["partial"] + ["pending"] * 3
    assert load_resume_point(first).epoch == 1


def test_a_cell_killed_before_its_first_checkpoint_trains_again(straight, tmp_path):
    spec, straight_folder = straight
    study = read_study(str(spec))
    study.cells[:] = study.cells[:1]
    folder = tmp_path / "study"
    first = folder / study.cells[0].folder
    first.mkdir(parents=True)
    (first / "config.yaml").write_text((straight_folder / study.cells[0].folder
                                        / "config.yaml").read_text())
    assert cell_state(first) == "pending"
    run_study(study, folder, log=lambda line: None)
    assert cell_state(first) == "done"
    assert load_resume_point(first).epoch == 2


def test_a_cell_is_an_ordinary_run_for_eval(straight, tmp_path, capsys):
    _, folder = straight
    cell = folder / "max-former" / "seed1"
    out = tmp_path / "eval.json"
    code = main(["eval", "--checkpoint", str(cell / "checkpoint-best.pt"), "--json", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((cell / "summary.json").read_text())
    assert json.loads(out.read_text())["acc1"] == pytest.approx(summary["best_acc1"])


def test_a_cell_another_process_holds_is_left_to_it(straight, tmp_path):
    spec, _ = straight
    study = read_study(str(spec))
    held = tmp_path / study.cells[0].folder
    lines = []
    with cell_lock(held) as acquired:
        assert acquired
        run_study(study, tmp_path, part=(1, 4), log=lines.append)
    assert lines == ["[cell 1/4] max-former, seed 0: running in another process, skipped"]
    assert cell_state(held) == "pending"


@pytest.mark.parametrize(("variant", "message"), [
    ({"name": "typo", "learning_rate": 0.1}, "variant 'typo': unknown config key(s) learning_rate"),
    ({"name": "bad neuron", "neuron": "lifx"}, "unknown neuron 'lifx'; choose one of lif, if"),
    ({"name": "bad mixer", "model_kwargs": {"mixers": ["max_pool", "max_pool", "maxpool"]}},
     "unknown token mixer 'maxpool'"),
    ({"name": "bad band", "dataset": "bands", "band": [0.7, 0.2]}, "got [0.7, 0.2]"),
])
def test_an_unknown_key_or_value_is_one_line_before_any_cell(tmp_path, capsys, variant,
                                                             message):
    spec = write_spec(tmp_path / "bad.yaml", {**GRID, "variants": [GRID["variants"][0], variant]})
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"maxformer study: error: study bad, variant {variant['name']!r}:")
    assert message in err
    assert not folder.exists()


def test_shipped_studies_are_valid(capsys):
    assert {"pooling", "bands", "neurons", "frequency"} <= set(study_names())
    assert main(["study"]) == 0  # without a study: the shipped ones, what each asks
    listed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in listed] == study_names()
    grids = {name: read_study(name) for name in study_names()}
    pooling = grids["pooling"]
    assert len(pooling.seeds) == 3 and len(pooling.variants) == 4
    assert {cell.config.dataset for cell in pooling.cells} == {"digits"}
    assert len(grids["bands"].variants) == 12  # pooling's four layouts x three bands
    assert {cell.config.neuron for cell in grids["neurons"].cells} == {"lif", "if", "relu"}
    frequency = grids["frequency"]  # neurons x pooling's three layouts x (digits, bands)
    assert len(frequency.variants) == 18 and len(frequency.seeds) == 3
    assert {cell.config.dataset for cell in frequency.cells} == {"digits", "bands"}
    assert {cell.config.neuron for cell in frequency.cells} == {"lif", "if", "relu"}
    assert set(frequency.measures) == {"transfer", "heatmap", "bandnoise"}
