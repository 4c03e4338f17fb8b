"""The benchmark scripts run on a tiny setting and write valid JSON (timings are not tested)."""

import json

from benchmarks import bench_lif, bench_model


def test_bench_lif_writes_rows_for_each_backend(tmp_path):
    out = tmp_path / "lif.json"
    bench_lif.main([
        "--steps", "2", "--log2-neurons", "10", "--modes", "fwd", "fwd+bwd", "--no-maxformer",
        "--reps", "1", "--copy-mib", "1", "--json", str(out),
    ])
    result = json.loads(out.read_text())
    assert result["copy_gb_per_s"] > 0
    combos = {(row["backend"], row["mode"]) for row in result["rows"]}
    assert combos == {(b, m) for b in ("torch", "spikingjelly") for m in ("fwd", "fwd+bwd")}
    for row in result["rows"]:
        assert row["T"] == 2 and row["N"] == 1024 and row["ms"] > 0 and row["gb_per_s"] > 0


def test_bench_model_counts_what_is_kept_for_backward(tmp_path):
    out = tmp_path / "model.json"
    bench_model.main([
        "--models", "maxformer_cifar", "--embed-dims", "32", "--T", "1", "--batch", "1",
        "--img-size", "16", "--reps", "1", "--reference", "--json", str(out),
    ])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["reference"]) for r in rows] == [
        ("torch", False), ("spikingjelly", False), ("spikingjelly", True)
    ]
    ours, reference = rows[0], rows[2]
    assert 0 < ours["saved_mib"] < reference["saved_mib"]
    assert all(r["train_ms"] > 0 and r["infer_img_per_s"] > 0 for r in rows)
