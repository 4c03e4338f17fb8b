"""The run folder: ``config.yaml``, ``metrics.csv``, ``summary.json`` (checkpoints aside)."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

from models.app.config import TrainConfig, save_config

METRICS_CSV, SUMMARY_JSON, CONFIG_YAML = "metrics.csv", "summary.json", "config.yaml"


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunFolder:
    """Files of one run; only rank 0 makes one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, cfg: TrainConfig) -> None:
        save_config(cfg, self.file(CONFIG_YAML))

    def start_metrics(self, epochs_done: int) -> None:
        """Keep the rows of the first ``epochs_done`` epochs (a resumed run redoes the rest)."""
        path = self.file(METRICS_CSV)
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= epochs_done]
        if rows:
            self._write_rows(rows, "w")
        else:
            path.unlink()

    def append_metrics(self, row: dict[str, Any]) -> None:
        self._write_rows([row], "a")

    def _write_rows(self, rows: list[dict[str, Any]], mode: str) -> None:
        path = self.file(METRICS_CSV)
        new = mode == "w" or not path.exists()
        with open(path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.file(SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
