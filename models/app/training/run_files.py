"""The run folder: ``config.yaml``, ``metrics.csv``, ``metrics.png``, checkpoints, ``summary.json``.

A new run never takes a folder that holds files: a default name gets a suffix, an ``--output``
that holds a run is refused. Every file is written whole (``models.app.files``), and the
temporary files of killed runs are removed when a run opens its folder.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.app.config import TrainConfig, save_config
from models.app.errors import UserError
from models.app.files import atomic_write, atomic_write_text, remove_orphans
from models.app.training.curves import learning_curves

CONFIG_YAML, METRICS_CSV, METRICS_PNG, SUMMARY_JSON = (
    "config.yaml", "metrics.csv", "metrics.png", "summary.json")
LAST, BEST = "checkpoint-last.pt", "checkpoint-best.pt"
LOCK = ".lock"
"""Locked (``lockf``) by the process that writes the folder, so that no second one does."""
RUN_FILES = (CONFIG_YAML, METRICS_CSV, METRICS_PNG, SUMMARY_JSON, LAST, BEST, LOCK)
"""The files a run writes in its folder (and ``tensorboard/`` or ``wandb/`` with ``--log``)."""

Row = dict[str, Any]


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_metrics(path: Path) -> list[Row]:
    """The rows of a ``metrics.csv`` (values as written); a file that is not one is a
    :class:`UserError`."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            int(row["epoch"])
    except (OSError, csv.Error, KeyError, TypeError, ValueError) as err:
        raise UserError(f"cannot read {path}: not a metrics.csv written by a run ({err})") from err
    return rows


class RunFolder:
    """The files of one run; only rank 0 makes one (with :meth:`create` or :meth:`reopen`)."""

    def __init__(self, path: Path, history: Sequence[Row] = (), made: bool = False) -> None:
        self.path = Path(path)
        self.made = made
        """Whether this run made the folder (then it removes it when it leaves nothing)."""
        self.rows: list[Row] = list(history)
        self._lock: int | None = _lock(self.path)

    def close(self) -> None:
        """Let another process write the folder (also when this process ends)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @classmethod
    def create(cls, path: Path | None, cfg: TrainConfig, history: Sequence[Row] = ()) -> RunFolder:
        """The folder of a new run: ``path``, made now, or when None a new folder of
        :func:`default_run_dir` (a suffix ``-2``, ``-3``, ... when the name is taken).

        An existing ``path`` is taken only when it holds no files but hidden ones (locks,
        temporaries: a run writes none of their names but ``.lock``), or run files but no
        checkpoint: a run that stopped (or was killed) before its first checkpoint left nothing
        to continue, so the same command starts it again there.
        ``history``: the metrics rows of the epochs a resumed checkpoint already trained.
        """
        if path is None:
            base = default_run_dir(cfg)
            for suffix in range(1, 1000):
                candidate = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
                if _make_folder(candidate, exist_ok=False):
                    return cls(candidate, history, made=True)
            raise UserError(f"cannot find a free run folder name like {base}")
        path = Path(path).expanduser()
        if path.exists() and not path.is_dir():
            raise UserError(f"--output {path} is a file, not a folder")
        made = not path.exists()
        _make_folder(path, exist_ok=True)
        held = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        restartable = set(held) <= set(RUN_FILES) - {LAST, BEST, SUMMARY_JSON}
        if held and not restartable:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise UserError(
                f"run folder {path} already holds files ({shown}); a new run never replaces "
                f"them: give another --output, or continue that run with --resume {path}"
            )
        run = cls(path, history, made=made)
        remove_orphans(path)
        return run

    @classmethod
    def reopen(cls, path: Path, epochs_done: int) -> RunFolder:
        """The folder of a run that continues after ``epochs_done`` epochs: the rows of later
        epochs (written before a crash could save their checkpoint) are dropped, since the run
        trains those epochs again; temporary files of killed processes are removed."""
        run = cls(Path(path))
        try:
            remove_orphans(run.path)
            metrics = run.file(METRICS_CSV)
            rows = read_metrics(metrics) if metrics.exists() else []
        except BaseException:
            run.close()
            raise
        run.rows = [r for r in rows if int(r["epoch"]) <= epochs_done]
        return run

    def remove_unfinished(self) -> None:
        """After a stop or a failure before the first checkpoint: remove the run files (and
        the folder, when this run made it and nothing else is in it) and let go of the folder;
        a folder that holds a checkpoint is left as it is."""
        if self.file(LAST).exists() or self.file(BEST).exists():
            return
        for name in RUN_FILES:
            self.file(name).unlink(missing_ok=True)
        self.close()
        if self.made:
            with contextlib.suppress(OSError):  # not empty: temporaries of others, logs
                self.path.rmdir()

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, cfg: TrainConfig) -> None:
        save_config(cfg, self.file(CONFIG_YAML))

    def write_metrics(self) -> None:
        """``metrics.csv`` and ``metrics.png`` of the rows so far (each written whole)."""
        if not self.rows:
            return
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.file(METRICS_CSV), text.getvalue())
        figure = learning_curves(self.rows, title=self.path.name)
        atomic_write(self.file(METRICS_PNG), lambda f: figure.savefig(f, format="png"))

    def append_metrics(self, row: Row) -> None:
        self.rows.append(row)
        self.write_metrics()

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.file(SUMMARY_JSON), json.dumps(summary, indent=2) + "\n")


def _lock(folder: Path) -> int:
    """Lock ``folder/.lock`` (an exclusive POSIX lock: released when the process ends, not
    passed on to forked loader workers) or raise a :class:`UserError` naming the process that
    holds it."""
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UserError(f"cannot write in run folder {folder}: {err.strerror or err}") from err
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UserError(
            f"run folder {folder} is being written by another process (pid {holder}); wait for "
            "it to end, or give another --output"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _make_folder(path: Path, exist_ok: bool) -> bool:
    """Make ``path`` (and its parents); False when it exists and ``exist_ok`` is not set."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        if path.is_symlink() and not path.exists():
            raise UserError(f"--output {path} is a symbolic link to {os.readlink(path)}, which "
                            "does not exist") from None
        if exist_ok:
            raise UserError(f"--output {path} is a file, not a folder") from None
        return False
    except OSError as err:
        raise UserError(f"cannot make run folder {path}: {err.strerror or err}") from err
    return True
