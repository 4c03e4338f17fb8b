"""The learning-curve figure of a run (``metrics.png``), drawn with matplotlib's Agg backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("loss", (("train_loss", "train"), ("val_loss", "held-out"))),
    ("accuracy (%)", (("val_acc1", "top-1"), ("val_acc5", "top-5"), ("ema_acc1", "EMA top-1"))),
)
"""One panel per entry: its y label and the (metrics.csv column, legend) pairs it draws."""


def learning_curves(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """Loss and accuracy against the epoch, from rows of ``metrics.csv`` (columns absent from
    the rows are left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.88, wspace=0.25)
    epochs = [int(row["epoch"]) for row in rows]
    for index, (label, columns) in enumerate(PANELS):
        axes = figure.add_subplot(1, len(PANELS), index + 1)
        for column, legend in columns:
            if all(row.get(column) not in (None, "") for row in rows):
                values = [float(row[column]) for row in rows]
                axes.plot(epochs, values, marker="o" if len(rows) < 30 else None, label=legend)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    if title:
        figure.suptitle(title)
    return figure
