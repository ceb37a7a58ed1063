"""Figures attached to a candidate's run, for a reviewer in the MLflow UI."""

from __future__ import annotations

from pathlib import Path

from registry.errors import ConfusionShapeError


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
