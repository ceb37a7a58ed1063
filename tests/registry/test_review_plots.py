"""The review figures: class recall bars (candidate vs champion) and the accuracy matrix."""

from __future__ import annotations

import struct

import pytest

from registry.plots import FigureInputError, accuracy_matrix_png, class_recall_bars_png


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_recall_bars_compare_candidate_and_champion_in_a_png(tmp_path):
    path = class_recall_bars_png({"negative": 0.8, "neutral": 0.55, "positive": 1.0},
                                 {"negative": 0.7, "neutral": 0.6, "positive": None},
                                 "fresh test rows: recall per class", tmp_path / "plots" / "recall.png")
    data = path.read_bytes()
    width, height = png_size(data)
    assert path == tmp_path / "plots" / "recall.png"
    assert 400 <= width <= 1500 and 250 <= height <= 1000 and len(data) > 5_000


def test_recall_bars_for_a_first_model_have_no_champion(tmp_path):
    path = class_recall_bars_png({"a": 0.5, "b": float("nan")}, None, "first model", tmp_path / "r.png")
    assert png_size(path.read_bytes())[0] >= 400


@pytest.mark.parametrize(("candidate", "champion", "message"), [
    ({}, None, "candidate_recall is empty"),
    ({"a": 0.5, "b": 0.5}, {"a": 0.5}, "champion classes \\['a'\\] differ"),
    ({"a": 1.5}, None, "candidate recall of 'a' is 1.5"),
    ({"a": -0.1}, None, "is -0.1"),
    ({"a": "high"}, None, "is 'high'"),
])
def test_recall_bars_refuse_bad_input_and_write_nothing(tmp_path, candidate, champion, message):
    with pytest.raises(FigureInputError, match=message):
        class_recall_bars_png(candidate, champion, "t", tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()


def test_accuracy_matrix_is_a_heat_map_with_blank_cells(tmp_path):
    matrix = [[0.81, None, None], [0.79, 0.74, float("nan")], [0.80, 0.77, 0.70]]
    path = accuracy_matrix_png(matrix, ["v1", "v2", "v3"], ["phrasebank-1", "phrasebank-2", "tweets-1"],
                               "macro-F1 after each update", tmp_path / "matrix.png")
    width, height = png_size(path.read_bytes())
    assert 400 <= width <= 1500 and 200 <= height <= 1000


@pytest.mark.parametrize(("matrix", "rows", "cols", "message"), [
    ([[0.5, 0.5]], ["v1", "v2"], ["b1", "b2"], "matrix is 1 rows with lengths \\[2\\]; expected 2 rows"),
    ([[0.5], [0.5, 0.6]], ["v1", "v2"], ["b1", "b2"], "lengths \\[1, 2\\]"),
    ([], [], ["b1"], "no rows or no columns"),
    ([[0.5, 2.0]], ["v1"], ["b1", "b2"], "cell \\['v1', 'b2'\\] is 2.0"),
])
def test_accuracy_matrix_refuses_a_bad_shape_or_value_and_writes_nothing(tmp_path, matrix, rows, cols, message):
    with pytest.raises(FigureInputError, match=message) as caught:
        accuracy_matrix_png(matrix, rows, cols, "t", tmp_path / "m.png")
    assert isinstance(caught.value, ValueError)
    assert not (tmp_path / "m.png").exists()
