"""Figures attached to a candidate's run, for a reviewer in the MLflow UI.

Each function checks its input before drawing (a bad shape raises, and no file is written), selects
the Agg backend itself and closes its figure, so the daemon can call them for months.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from registry.errors import ConfusionShapeError, RegistryError


class FigureInputError(RegistryError, ValueError):
    """Numbers handed to a figure that do not fit its shape or range."""

    def __init__(self, figure: str, problem: str, expected: str) -> None:
        self.figure, self.problem = figure, problem
        super().__init__(f"{figure}: {problem}; expected {expected}")


def confusion_png(confusion: list[list[int]], labels: list[str], title: str, path: Path) -> Path:
    """Write the confusion matrix (rows true, columns predicted) as a PNG heat map at `path`."""
    if len(confusion) != len(labels) or any(len(row) != len(labels) for row in confusion):
        raise ConfusionShapeError(len(confusion), [len(row) for row in confusion], len(labels))
    import matplotlib

    # Agg here, not at import: the daemon has no display, but importing this module must not
    # change a backend someone else (a notebook) chose.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 1.2 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    try:
        image = ax.imshow(confusion, cmap="Blues")
        fig.colorbar(image, ax=ax)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        peak = max((max(row) for row in confusion), default=0)
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                # White text on the dark cells so every count stays readable.
                colour = "white" if peak and count > peak / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=colour)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)  # figures are kept by pyplot until closed; a daemon would leak them
    return path


def class_recall_bars_png(
    candidate_recall: Mapping[str, float | None],
    champion_recall: Mapping[str, float | None] | None,
    title: str,
    path: Path,
) -> Path:
    """Recall per class as grouped bars, candidate beside champion (candidate only for a first
    model), so a class the candidate gave up on stands out even when macro-F1 went up."""
    figure = "class_recall_bars_png"
    labels = list(candidate_recall)
    if not labels:
        raise FigureInputError(figure, "candidate_recall is empty", "one recall per class")
    if champion_recall is not None and set(champion_recall) != set(labels):
        raise FigureInputError(
            figure,
            f"champion classes {sorted(champion_recall)} differ from candidate classes {sorted(labels)}",
            "the same classes for both models",
        )
    series = [("candidate", candidate_recall, "#1f77b4")]
    if champion_recall is not None:
        series.append(("champion", champion_recall, "#bbbbbb"))
    for who, recall, _ in series:
        for label in labels:
            _check_unit(figure, f"{who} recall of {label!r}", recall[label])
    plt = _pyplot()
    room_w, room_h = _label_room(labels)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(labels) + 3.0 + room_w), 3.6 + room_h))
    try:
        width = 0.8 / len(series)
        for k, (who, recall, colour) in enumerate(series):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
            values = [recall[label] for label in labels]
            bars = ax.bar(xs, [0.0 if _missing(v) else v for v in values], width, label=who, color=colour)
            for bar, value in zip(bars, values):
                text = "n/a" if _missing(value) else f"{value:.2f}"
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        _x_labels(ax, labels)
        ax.set_ylim(0, 1.12)  # room above a 1.00 bar for its label
        ax.set_ylabel("recall")
        ax.set_title(title)
        # Beside the axes, not inside: inside, it would hide a short bar or its label.
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        return _save(fig, path)
    finally:
        plt.close(fig)


def accuracy_matrix_png(
    matrix: Sequence[Sequence[float | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    path: Path,
) -> Path:
    """The continual-learning accuracy matrix as an annotated heat map: one row per model version
    (or update), one column per batch or source, cell = score of that model on that test set.
    None or NaN (not evaluated, e.g. a batch that arrived later) is left blank."""
    figure = "accuracy_matrix_png"
    if not row_labels or not col_labels:
        raise FigureInputError(figure, "no rows or no columns", "at least one row label and one column label")
    if len(matrix) != len(row_labels) or any(len(row) != len(col_labels) for row in matrix):
        raise FigureInputError(
            figure,
            f"matrix is {len(matrix)} rows with lengths {[len(row) for row in matrix]}",
            f"{len(row_labels)} rows (one per row label) of {len(col_labels)} values (one per column label)",
        )
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            _check_unit(figure, f"cell [{row_labels[i]!r}, {col_labels[j]!r}]", value)
    plt = _pyplot()
    import numpy as np

    values = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    room_w, room_h = _label_room(col_labels)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(col_labels) + 2.5 + room_w),
                                    max(2.5, 0.5 * len(row_labels) + 1.6 + room_h)))
    try:
        cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # NaN (None) cells stay blank
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        fig.colorbar(image, ax=ax)
        _x_labels(ax, col_labels)
        ax.set_yticks(range(len(row_labels)), list(row_labels))
        ax.set_title(title)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                if not _missing(value):
                    colour = "black" if value > 0.6 else "white"  # viridis is light at the top
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
        return _save(fig, path)
    finally:
        plt.close(fig)


def _check_unit(figure: str, what: str, value: Any) -> None:
    """A score in [0, 1], or None / NaN (not measured: drawn blank or "n/a")."""
    if value is None:
        return
    # numbers.Real also admits numpy scalars (np.float32 is not a float subclass).
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FigureInputError(figure, f"{what} is {value!r}", "a number in [0, 1] or None")
    if not math.isnan(value) and not 0 <= value <= 1:
        raise FigureInputError(figure, f"{what} is {value!r}", "a number in [0, 1] or None")


def _missing(value: Any) -> bool:
    return value is None or math.isnan(value)


def _slanted(labels: Sequence[str]) -> bool:
    return len(labels) > 4 or max(len(str(label)) for label in labels) > 10


def _label_room(labels: Sequence[str]) -> tuple[float, float]:
    """Extra (width, height) in inches that slanted tick labels need below and left of the axes."""
    if not _slanted(labels):
        return 0.0, 0.0
    longest = max(len(str(label)) for label in labels)
    return 0.05 * longest, 0.035 * longest  # ~0.1 inch a character, at 30 degrees


def _x_labels(ax: Any, labels: Sequence[str]) -> None:
    """Tick labels under the columns, slanted when they would run into each other (batch ids are
    ~30 characters long)."""
    slanted = _slanted(labels)
    ax.set_xticks(range(len(labels)), [str(label) for label in labels], rotation=30 if slanted else 0,
                  ha="right" if slanted else "center", rotation_mode="anchor" if slanted else "default")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # see confusion_png
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
