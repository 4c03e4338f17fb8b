"""The benchmark scripts run on a tiny setting and write valid JSON (timings are not tested)."""

import json

import pytest
import timm
import torch

from benchmarks import bench_lif, bench_model, tune_lif
from models.neurons import triton_backend
from models.spike_storage import kept_for_backward


def test_bench_lif_writes_rows_for_each_backend(tmp_path):
    out = tmp_path / "lif.json"
    bench_lif.main([
        "--T", "2", "--log2-neurons", "10", "--modes", "fwd", "fwd+bwd", "--no-maxformer",
        "--reps", "1", "--copy-mib", "1", "--device", "cpu", "--json", str(out),
    ])
    result = json.loads(out.read_text())
    assert result["copy_gb_per_s"] > 0
    combos = {(row["backend"], row["mode"]) for row in result["rows"]}
    backends = ("numba", "torch", "spikingjelly")
    assert combos == {(b, m) for b in backends for m in ("fwd", "fwd+bwd")}
    for row in result["rows"]:
        assert row["T"] == 2 and row["N"] == 1024 and row["ms"] > 0 and row["gb_per_s"] > 0
        assert row["share_of_copy"] > 0 and row["share_of_allocating_copy"] > 0
        assert row["page_faults"] >= 0


def test_old_flag_spellings_still_work(tmp_path, capsys):
    out = tmp_path / "lif.json"
    bench_lif.main([
        "--steps", "1", "--backends", "torch", "--log2-neurons", "8", "--modes", "fwd",
        "--no-maxformer", "--reps", "1", "--copy-mib", "1", "--device", "cpu", "--json", str(out),
    ])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["T"]) for r in rows] == [("torch", 1)]
    assert "--steps is now --T" in capsys.readouterr().err


def test_bench_model_counts_what_is_kept_for_backward(tmp_path):
    out = tmp_path / "model.json"
    bench_model.main([
        "--models", "maxformer_cifar", "--embed-dims", "32", "--T", "1", "--batch-size", "1",
        "--img-size", "16", "--reps", "1", "--reference", "--device", "cpu", "--json", str(out),
    ])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["reference"]) for r in rows] == [
        ("numba", False), ("torch", False), ("spikingjelly", False), ("spikingjelly", True)
    ]
    ours, reference = rows[0], rows[3]
    assert 0 < ours["saved_mib"] < reference["saved_mib"]
    assert all(r["train_ms"] > 0 and r["infer_img_per_s"] > 0 for r in rows)


def test_speedups_are_against_the_faster_spikingjelly_baseline():
    def row(backend, ms):
        return dict(shape="s", dtype="bf16", mode="fwd", backend=backend, ms=ms)

    rows = [row("triton", 1.0), row("spikingjelly", 8.0), row("spikingjelly-mp", 3.0)]
    assert bench_lif.speedups(rows) == ["s bf16 fwd: triton is 3.00x spikingjelly-mp"]
    assert bench_lif.speedups(rows[:2]) == ["s bf16 fwd: triton is 8.00x spikingjelly"]


def test_maxformer_rows_time_each_layer_size_once():
    sizes = bench_lif.maxformer_neuron_sizes(batch=2)
    shapes = bench_lif.maxformer_shapes(batch=2)
    assert len({n for _, _, n, _ in shapes}) == len(shapes) < len(sizes)
    assert sum(layers for *_, layers in shapes) == len(sizes)
    assert sum(n * layers for _, _, n, layers in shapes) == sum(n for _, n in sizes)


def test_tune_lif_times_every_launch_setting(tmp_path):
    out = tmp_path / "tune.json"
    defaults = (triton_backend.BLOCK_FORWARD, triton_backend.TILE_ELEMENTS)
    assert tune_lif.main([
        "--log2-neurons", "7", "--blocks", "64", "128", "--tiles", "256", "--warps", "1",
        "--copy-mib", "1", "--json", str(out),
    ]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["kernel"], r.get("BLOCK_FORWARD"), r.get("TILE_ELEMENTS")) for r in rows] == [
        ("fwd", 64, None), ("fwd", 128, None), ("bwd", None, 256)
    ]
    assert all(r["ms"] > 0 for r in rows)
    assert (triton_backend.BLOCK_FORWARD, triton_backend.TILE_ELEMENTS) == defaults


def test_bench_model_times_a_row_per_variant(tmp_path):
    out = tmp_path / "model.json"
    bench_model.main([
        "--models", "maxformer_cifar", "--embed-dims", "32", "--T", "1", "--batch-size", "1",
        "--img-size", "16", "--reps", "1", "--backends", "torch", "--variants", "eager",
        "channels_last", "fold", "checkpointed", "bf16", "--by-module", "100",
        "--module-depth", "1", "--device", "cpu", "--json", str(out),
    ])
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["eager", "channels_last", "fold", "checkpointed",
                                           "bf16"]
    assert all(r["train_ms"] > 0 and r["infer_ms"] > 0 for r in rows)
    eager, checkpointed = rows[0], rows[3]
    assert checkpointed["saved_mib"] < eager["saved_mib"] / 2
    for row in (eager, checkpointed):  # every saved tensor attributed to one module
        assert sum(row["saved_mib_by_module"].values()) == pytest.approx(row["saved_mib"])
    model = timm.create_model("maxformer_cifar", embed_dims=32, T=1, lif_backend="torch")
    _, kept = kept_for_backward(lambda: model(torch.randn(1, 3, 16, 16)), model.parameters())
    assert eager["saved_mib"] == kept / 2**20
    assert set(eager["saved_mib_by_module"]) >= {"patch_embed1", "stage1", "stage3"}


def test_bench_chunks_row_measures_one_run(capsys):
    from benchmarks import bench_chunks

    assert bench_chunks.main(["--one-T=4", "--chunk=2", "--grad", "--batch-size=2",
                              "--img-size=8", "--embed-dims=16", "--lif-backend=torch"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (row["T"], row["chunk"], row["grad"]) == (4, 2, True)
    assert row["peak_mib"] >= row["peak_before_run_mib"] > 0 and row["seconds"] > 0
