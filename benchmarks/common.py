"""What the benchmark scripts share: the machine's name and writing results as JSON."""

from __future__ import annotations

import json
import platform

import torch


def device_name(device: torch.device) -> str:
    """The GPU's name, or the processor's model name (``/proc/cpuinfo`` on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def write_json(path: str | None, result: dict) -> None:
    """Write ``result`` to ``path`` as indented JSON; nothing when ``path`` is None."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
