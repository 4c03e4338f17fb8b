"""The analysis scripts run on small settings and write sane figures and numbers."""

import json
import math

import numpy as np
import pytest
import timm
import torch
from torch import nn

from analysis import feature_spectra, neuron_response
from spectral import lif_cutoff

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_outputs(folder, stem):
    assert (folder / f"{stem}.png").read_bytes()[:8] == PNG_SIGNATURE
    return json.loads((folder / f"{stem}.json").read_text())


@pytest.mark.parametrize("script", [neuron_response, feature_spectra])
def test_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_neuron_response(tmp_path):
    argv = ["--out", str(tmp_path), "--neurons", "4", "--steps", "256", "--points", "4"]
    neuron_response.main([*argv, "--layers", "3", "--toy-steps", "256"])
    report = read_outputs(tmp_path, "neuron_response")
    assert len(report["omega_over_pi"]) == 4
    assert set(report["subthreshold"]) == {
        "IF",
        "LIF tau=1.5",
        "LIF tau=2",
        "LIF tau=4",
        "LIF tau=8",
    }
    for entry in report["subthreshold"].values():
        np.testing.assert_allclose(
            entry["measured_gain_db"], entry["closed_form_gain_db"], atol=0.1
        )
    for entry in report["spiking"].values():
        assert 0.05 < entry["firing_rate"] < 0.6
        assert np.all(np.isfinite(entry["relative_gain_db"]))
    cutoff = report["cutoff"]
    np.testing.assert_allclose(
        cutoff["omega_c_over_pi"], lif_cutoff(np.array(cutoff["tau"])) / math.pi
    )
    gains = report["cascade"]["gain_db_at_half_pi"]
    assert len(gains) == 3
    np.testing.assert_allclose(gains, gains[0] * np.arange(1, 4))  # dB add up in a cascade
    amplitudes = report["toy"]["signals"]["input"]["amplitude_at_toy_omegas"]
    np.testing.assert_allclose(amplitudes, 1.0, rtol=0.02)  # three unit sines


def test_feature_spectra(tmp_path):
    feature_spectra.main([
        "--out", str(tmp_path), "--models", "resnet18", "--size", "64", "--import", "json",
        "--types", "Conv2d", "--names", "act1", "layer1.*.act2",
    ])  # fmt: skip
    report = read_outputs(tmp_path, "feature_spectra")
    assert report["images"] == ["china.jpg", "flower.jpg"]
    assert report["settings"]["imports"] == ["json"]
    layers = report["models"]["resnet18"]
    expected = [
        name
        for name, module in timm.create_model("resnet18").named_modules()
        if isinstance(module, nn.Conv2d) or name in ("act1", "layer1.0.act2", "layer1.1.act2")
    ]
    assert [layer["name"] for layer in layers] == expected
    assert layers[0]["shape"] == [2, 64, 32, 32]
    assert layers[0]["depth"] == 0.0 and layers[-1]["depth"] == 1.0
    assert np.all(np.diff([layer["depth"] for layer in layers]) > 0)
    for layer in layers:
        assert 0.0 <= layer["high_frequency_ratio"] <= 1.0
        assert layer["delta_log_amplitude"] < 0.0
        assert layer["firing_rate"] is None and layer["skipped"] is None


def test_feature_spectra_compares_maxformer_mixers(tmp_path):
    variants = ["maxformer_cifar:T=1;embed_dims=32", "maxformer_cifar:T=1;embed_dims=32;"
                "mixers=[identity,avg_pool,ssa]"]
    report = feature_spectra.main(["--out", str(tmp_path), "--models", *variants, "--size", "32"])
    assert list(report["models"]) == variants
    dwc, avg = (report["models"][v] for v in variants)
    assert any(layer["name"] == "stage2.0.mixer.conv" for layer in dwc)
    assert not any(".mixer." in layer["name"] for layer in avg)
    ratios = [layer["high_frequency_ratio"] for layer in dwc + avg]
    measured = [r for r in ratios if r is not None]  # None: a constant map (no spikes upstream)
    assert len(measured) > len(ratios) / 2 and all(0.0 <= r <= 1.0 for r in measured)


def test_feature_spectra_rejects_a_malformed_model_spec(tmp_path):
    with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
        feature_spectra.main(["--out", str(tmp_path), "--models", "maxformer_cifar:T"])


def test_feature_spectra_rejects_unknown_module_type(tmp_path):
    with pytest.raises(ValueError, match=r"\['Conv9d'\].*Conv2d"):
        feature_spectra.main(["--out", str(tmp_path), "--types", "Conv9d", "--size", "32"])


def test_prepared_images_are_normalised():
    photos = [np.full((6, 10, 3), 255, np.uint8), np.zeros((6, 10, 3), np.uint8)]
    images = feature_spectra.prepare_images(photos, 4, (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))
    assert images.shape == (2, 3, 4, 4)
    torch.testing.assert_close(images[0, 1], torch.full((4, 4), 2.0))
    torch.testing.assert_close(images[1, 0], torch.full((4, 4), -1.0))
