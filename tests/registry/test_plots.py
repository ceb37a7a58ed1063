"""The confusion-matrix figure attached to a candidate's run."""

from __future__ import annotations

import pytest

from registry.errors import ConfusionShapeError
from registry.plots import confusion_png


def test_confusion_png_writes_a_png_image(tmp_path):
    path = confusion_png([[5, 1, 0], [2, 7, 1], [0, 0, 9]], ["negative", "neutral", "positive"],
                         "fresh rows", tmp_path / "plots" / "confusion.png")
    data = path.read_bytes()
    assert path == tmp_path / "plots" / "confusion.png"
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2_000


def test_confusion_png_rejects_a_matrix_that_does_not_match_the_labels(tmp_path):
    with pytest.raises(ConfusionShapeError, match="expected a 3x3 matrix"):
        confusion_png([[1, 2], [3, 4]], ["a", "b", "c"], "t", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
