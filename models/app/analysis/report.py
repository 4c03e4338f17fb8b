"""What ``maxformer spectra`` writes: a new output folder, and ``spectra.json`` records in which
every number comes with its network, model, layer, stage and normalised depth."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.app.analysis.networks import Network
from models.app.errors import UserError
from models.app.files import atomic_write, atomic_write_text
from spectral import LayerSpectrum, Spectrum

SPECTRA_JSON, SPECTRA_PNG, CAM_PNG = "spectra.json", "spectra.png", "cam.png"


def new_output_folder(path: Path | None, name: str, command: str = "spectra") -> Path:
    """Create the output folder of ``command``: ``path`` if it is new or empty (a non-empty one
    is refused), else ``runs/<command>-<name>-<time>`` (with ``-2``, ``-3``, ... if that
    exists; claimed by an exclusive ``mkdir``)."""
    if path is not None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"--output {path} exists and is not an empty folder; {command} "
                            "never overwrites: choose a new folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create --output {path}: {err.strerror}") from err
        return path
    stem = Path("runs") / f"{command}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-" \
        f"{time.strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1, 1000):
        candidate = stem if attempt == 1 else stem.with_name(f"{stem.name}-{attempt}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
        except OSError as err:
            raise UserError(f"cannot create the output folder {candidate}: {err.strerror}") \
                from err
    raise UserError(f"999 output folders named {stem}* exist already; give --output")


def write_json(path: Path, report: dict[str, Any]) -> None:
    """``report`` as the JSON file ``path``, written whole (see `atomic_write_text`)."""
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")


def write_png(path: Path, figure: Any, dpi: int) -> None:
    """A matplotlib ``figure`` as the PNG file ``path``, written whole (see `atomic_write`)."""
    atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=dpi))


def finite(value: float | None) -> float | None:
    """JSON has no nan or inf: they are written as null."""
    return float(value) if value is not None and math.isfinite(value) else None


def _values(array: np.ndarray) -> list[float | None]:
    return [finite(v) for v in np.asarray(array, dtype=float).tolist()]


def spectrum_record(spectrum: Spectrum | None) -> dict[str, Any] | None:
    """A `spectral.Spectrum` as JSON: summary numbers first, then the curves."""
    if spectrum is None:
        return None
    return {
        "maps": spectrum.maps,
        "map_size": list(spectrum.size),
        "high_frequency_ratio": finite(spectrum.high_frequency_ratio),
        "delta_log_amplitude": finite(spectrum.summary_delta),
        "delta_log_amplitude_radius": spectrum.summary_radius,
        "profile": {"radius": spectrum.delta_radii.tolist(),
                    "delta_log_amplitude": _values(spectrum.delta_log_amplitude)},
        "power": {"radius": spectrum.radii.tolist(), "power": _values(spectrum.power)},
    }


def network_record(network: Network, images: str, image_count: int) -> dict[str, Any]:
    return {
        "network": network.label,
        "model": network.model_name,
        "neuron": network.neuron,
        "twin_of": network.twin_of,
        "weights": network.weights,
        "random_weights": network.random_weights,
        "images": images,
        "image_count": image_count,
        "img_size": network.img_size,
        "T": getattr(network.model, "T", None),
    }


def layer_records(network: Network, layers: list[LayerSpectrum]) -> list[dict[str, Any]]:
    """One record per probed layer, in depth order."""
    return [
        {
            "network": network.label,
            "model": network.model_name,
            "neuron": network.neuron,
            "layer": layer.name,
            "module_type": layer.module_type,
            "stage": layer.stage,
            "depth": layer.depth,
            "shape": list(layer.shape),
            "map_size": list(layer.shape[-2:]) if layer.stage is not None else None,
            "calls": layer.calls,
            "nonfinite_calls": layer.nonfinite_calls,
            "spiking": layer.firing_rate is not None,
            "firing_rate": layer.firing_rate,
            "output": spectrum_record(layer.output),
            "input": spectrum_record(layer.input),
            "skipped": layer.skipped,
        }
        for layer in layers
    ]
