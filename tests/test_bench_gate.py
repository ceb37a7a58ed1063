"""The gate benchmark's stage-2 bookkeeping on synthetic per-row predictions (no training): the draws call
the daemon's own gate, the WAIT loop ends, the rates and targets add up, the policy grid is checked, and
stage 2 + the report run alone from a stage-1 cache. One integration test runs --quick for real."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.gate_bench import main, parse
from bench.gate_config import Config
from bench.gate_data import ROTATE, candidate_batches, kinds, relabel, stream_batches
from bench.gate_draws import (
    GRID,
    PolicyGridError,
    draw_decisions,
    part_report,
    policy_of,
    read_grid,
)
from bench.gate_report import classes, stage2_summary
from registry.policy import GatePolicy
from retrain.evaluation import score

LABELS = ["negative", "neutral", "positive"]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT = {"name": "default"}


def evidence(candidate: str, n: int = 600, champion_accuracy: float = 0.7, seed: int = 0) -> dict:
    """Per-row predictions on a fresh and a regression half: a champion right on `champion_accuracy` of the
    rows, and a candidate that is the champion ("same"), right wherever the champion is wrong and
    otherwise the same ("fixes"), or wrong on every row ("all_wrong")."""
    rng = np.random.default_rng(seed)
    out = {"labels": LABELS, "train_loss": 0.4}
    for half in ("fresh", "regression"):
        truth = rng.choice(3, size=n, p=[0.15, 0.65, 0.2])
        right = rng.random(n) < champion_accuracy
        champion = np.where(right, truth, (truth + rng.integers(1, 3, size=n)) % 3)
        cand = {"same": champion, "fixes": truth, "all_wrong": (truth + 1) % 3}[candidate]
        out[half] = {"truth": truth, "candidate": cand.copy(), "champion": champion}
    return out


def test_part_report_is_what_score_returns():
    rng = np.random.default_rng(3)
    for n, classes_seen in ((60, 3), (200, 3), (25, 2)):
        truth = rng.integers(0, classes_seen, size=n)
        pred = np.where(rng.random(n) < 0.7, truth, rng.integers(0, 3, size=n))
        mine = part_report(truth, pred, LABELS)
        theirs = score([LABELS[i] for i in truth], [LABELS[i] for i in pred], LABELS)
        stored = mine.to_dict()  # lists and dicts, as score() returns them
        assert stored.pop("confusion") == theirs.pop("confusion")
        for key, value in theirs.items():
            assert stored[key] == pytest.approx(value, abs=1e-12), key
        assert mine.y_true == tuple(LABELS[i] for i in truth) and mine.y_pred == tuple(LABELS[i] for i in pred)


def test_a_candidate_identical_to_the_champion_is_never_promoted_by_default():
    out = draw_decisions(evidence("same"), DEFAULT, draws=6, fresh_rows=60, regression_rows=200, seed_key=[1])
    # The same predictions on every fresh row: rejected at once, not waited on until max_wait_rows.
    assert out["promote"] == 0 and out["reject"] == 6 and out["rounds"] == [1] * 6
    assert out["failed_rules"] == {"fresh_gain": 6}


def test_a_candidate_right_wherever_the_champion_is_wrong_is_promoted():
    out = draw_decisions(evidence("fixes"), DEFAULT, draws=20, fresh_rows=60, regression_rows=200, seed_key=[2])
    assert out["promote"] == 20 and out["rounds"] == [1] * 20 and out["rows"] == [60] * 20


def test_a_candidate_wrong_on_every_row_is_never_promoted():
    for entry in GRID:
        out = draw_decisions(evidence("all_wrong"), entry, draws=10, fresh_rows=60, regression_rows=200, seed_key=[3])
        assert out["promote"] == 0 and out["reject"] == 10, entry["name"]


def test_a_slightly_worse_candidate_is_never_promoted_by_default():
    ev = evidence("same")
    for half in ("fresh", "regression"):  # break every 7th row the champion gets right (~10 % of them)
        rows = ev[half]
        right = np.flatnonzero(rows["champion"] == rows["truth"])[::7]
        rows["candidate"][right] = (rows["truth"][right] + 1) % 3
    out = draw_decisions(ev, DEFAULT, draws=10, fresh_rows=60, regression_rows=200, seed_key=[4])
    assert out["promote"] == 0 and out["reject"] == 10


def test_the_wait_loop_ends_within_max_wait_rows():
    entry = {"name": "short wait", "max_wait_rows": 180}
    out = draw_decisions(evidence("same"), entry, draws=15, fresh_rows=60, regression_rows=100, seed_key=[5])
    assert max(out["rows"]) <= 180 and max(out["rounds"]) <= 3 and out["wait"] == 0
    # A pool smaller than max_wait_rows ends the loop too: the draw then stays WAIT (nothing promoted).
    small = evidence("same", n=100)
    out = draw_decisions(small, DEFAULT, draws=5, fresh_rows=60, regression_rows=50, seed_key=[6])
    assert out["rows"] == [60] * 5 and out["promote"] == 0


def test_draws_are_seeded():
    ev = evidence("same")
    a = draw_decisions(ev, {"name": "w", "max_wait_rows": 120}, draws=4, fresh_rows=60, regression_rows=200,
                       seed_key=[7])
    assert a == draw_decisions(ev, {"name": "w", "max_wait_rows": 120}, draws=4, fresh_rows=60,
                               regression_rows=200, seed_key=[7])


def test_rates_and_targets():
    cache = {"seeds": {"13": {"candidates": {
        "clean": {"pred": [], "gain": {"all": 0.05}}, "noisy": {"pred": [], "gain": {"all": 0.004}},
        "poisoned": {"pred": [], "gain": {"all": -0.2}}, "worse": {"pred": [], "gain": {"all": 0.02}},
        "clean_large": {"pred": [], "gain": {"all": -0.001}}, }}}}
    all_kinds = kinds(600, 0.2, 5e-3)
    assert classes(cache, all_kinds) == {"13/clean": "clearly_better", "13/noisy": "other",
                                         "13/poisoned": "harmful", "13/worse": "harmful",
                                         "13/clean_large": "harmful"}  # a negative true gain is harmful

    def result(promote: int, reject: int, wait: int = 0) -> dict:
        n = promote + reject + wait
        return {"draws": n, "promote": promote, "reject": reject, "wait": wait, "rows": [60] * (n - 1) + [180],
                "rounds": [1] * (n - 1) + [3], "failed_rules": {"fresh_gain": reject}, "waiting_rules": {}}

    raw = {"p": {"13/clean": result(7, 2, 1), "13/noisy": result(5, 5), "13/poisoned": result(0, 10),
                 "13/worse": result(1, 9), "13/clean_large": result(0, 10)}}
    p = stage2_summary(raw, cache, all_kinds)["p"]
    assert p["harmful_promoted"] == pytest.approx(1 / 30) and p["harmful_promoted_max"] == pytest.approx(0.1)
    assert p["clearly_better_not_promoted"] == pytest.approx(0.3)
    assert p["targets_met"] == (False, False)
    clean = p["kinds"]["clean"]
    assert (clean["promote"], clean["reject"], clean["wait"]) == pytest.approx((0.7, 0.2, 0.1))
    assert clean["mean_rows"] == pytest.approx((9 * 60 + 180) / 10) and clean["max_rounds"] == 3
    assert clean["failed_rules"] == {"fresh_gain": pytest.approx(0.2)}


def test_policy_grid_is_checked_against_gate_policy_fields(tmp_path):
    assert policy_of({"name": "x", "max_wait_rows": 800}) == GatePolicy(max_wait_rows=800)
    with pytest.raises(PolicyGridError, match="not GatePolicy fields.*max_forgetting"):
        policy_of({"name": "typo", "max_forgeting": 0.02})
    with pytest.raises(PolicyGridError, match="max_forgetting"):
        policy_of({"name": "out of range", "max_forgetting": 5})
    with pytest.raises(PolicyGridError, match="distinct"):
        read_grid(None, ['{"name": "a"}', '{"name": "a", "confidence": 0.9}'])
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps([{"name": "a"}, {"name": "b", "confidence": 0.9}]))
    assert [e["name"] for e in read_grid([grid_file], ['{"name": "c"}'])] == ["a", "b", "c"]
    assert read_grid(None, None) == GRID
    for entry in GRID:
        policy_of(entry)


def test_batches_of_each_kind():
    unseen = pd.DataFrame({"text": [f"t{i}" for i in range(3000)], "label": ["neutral", "positive", "negative"] * 1000})
    all_kinds = kinds(300, 0.2, 5e-3)
    batches = candidate_batches(unseen, all_kinds, 0.2, LABELS, seed=1)
    assert {name: len(rows) for name, rows in batches.items()} == {
        "clean": 300, "clean_large": 600, "noisy": 300, "poisoned": 300, "worse": 300}
    assert batches["worse"].equals(batches["clean"])
    own = [set(batches[k]["text"]) for k in ("clean", "clean_large", "noisy", "poisoned")]
    assert sum(map(len, own)) == len(set().union(*own))  # disjoint rows
    truth = dict(zip(unseen["text"], unseen["label"]))
    poisoned = batches["poisoned"]
    assert (poisoned["label"] == poisoned["text"].map(truth).map(ROTATE)).all()
    moved = (batches["noisy"]["label"] != batches["noisy"]["text"].map(truth)).mean()
    assert 0.12 < moved < 0.28
    stream = stream_batches(unseen, 300, LABELS, seed=1)
    assert stream["poisoned3"]["label"].tolist() == stream["clean3"]["label"].map(ROTATE).tolist()
    assert not set(stream["clean1"]["text"]) & set().union(*own)
    assert relabel(unseen, "true", 0.2, LABELS, 0).equals(unseen)


def fake_data(root: Path, rows: int = 400) -> Path:
    folder = root / "twitter_financial_news_sentiment"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"text": [f"tweet {i}" for i in range(rows)], "label": rng.choice(3, size=rows)})
    frame.to_csv(folder / "sent_valid.csv", index=False)
    frame.to_csv(folder / "sent_train.csv", index=False)
    return root


def test_quick_mode_and_flags(tmp_path):
    data = fake_data(tmp_path)
    args, cfg, grid = parse(["--data", str(data), "--quick", "--draws", "7"])
    assert cfg.seeds == [13] and cfg.epochs == 1 and cfg.draws == 7 and args.name == "gate_quick"
    assert args.work == Path("/tmp/gate_bench_quick") and grid == GRID
    args, cfg, _ = parse(["--data", str(data), "--stages", "2", "--seeds", "1", "2"])
    assert args.stages == [2] and cfg.seeds == [1, 2] and cfg.stage3_seeds() == [1] and cfg.epochs is None
    with pytest.raises(SystemExit):
        parse(["--data", str(data), "--policy", '{"name": "x", "no_such_field": 1}'])


def test_stage2_and_report_run_alone_from_a_stage1_cache(tmp_path, capsys):
    """What the lead reruns with new policies: stage 2 from cached predictions, no model loaded."""
    from bench.gate_data import evaluation_pool

    data, work, out = fake_data(tmp_path / "data"), tmp_path / "work", tmp_path / "out"
    cfg = Config(seeds=[13])
    pool = evaluation_pool(data)
    truth = pool["label"].tolist()
    rng = np.random.default_rng(1)
    champion = [t if rng.random() < 0.7 else LABELS[(LABELS.index(t) + 1) % 3] for t in truth]
    cands = {"clean": {"pred": truth}, "poisoned": {"pred": [ROTATE[t] for t in truth]},
             "worse": {"failed": "NonFiniteLossError: loss nan"}}
    for cand in cands.values():
        if "pred" in cand:
            gain = score(truth, cand["pred"], LABELS)["macro_f1"] - score(truth, champion, LABELS)["macro_f1"]
            cand.update(train_loss=0.5, gain={"all": gain, "fresh": gain, "regression": gain},
                        cycle={"outcome": "PROMOTE", "seconds": 1.0, "reasons": [], "metrics": {"fresh_rows": 60.0}})
    work.mkdir()
    (work / "stage1.json").write_text(json.dumps({
        "key": cfg.stage1_key(), "labels": LABELS, "pool": {"label": truth, "half": pool["pool"].tolist()},
        "seeds": {"13": {"champion": {"pred": champion, "cycle": {"seconds": 1.0}}, "candidates": cands}}}))
    report = main(["--data", str(data), "--stages", "2", "--work", str(work), "--out", str(out), "--seeds", "13",
                   "--draws", "5", "--jobs", "1", "--policy", '{"name": "default"}', "--policy",
                   '{"name": "confidence 0.9", "confidence": 0.9}'])
    s2 = report["stage2"]
    assert s2["default"]["kinds"]["clean"]["promote"] == 1.0 and s2["default"]["harmful_promoted"] == 0.0
    assert s2["confidence 0.9"]["kinds"]["poisoned"]["reject"] == 1.0
    assert s2["default"]["clearly_better_not_promoted"] == 0.0 and s2["default"]["targets_met"] == (True, True)
    assert report["stage1"]["kinds"]["worse"]["failed"] == {"13": "NonFiniteLossError: loss nan"}
    md = (out / "gate.md").read_text()
    assert "| default | clean |" in md and "Commit:" in md and report["commit"]
    assert json.loads((out / "gate.json").read_text())["stages"]["2"]["seconds"] >= 0


@pytest.mark.integration
@pytest.mark.skipif(not (DATA / "twitter_financial_news_sentiment" / "sent_valid.csv").is_file(),
                    reason="needs ../shared/data")
@pytest.mark.skipif(os.environ.get("CLTOOL_BENCH_SMOKE") != "1",
                    reason="trains a dozen MiniLM cycles (tens of minutes on 2 cores): set CLTOOL_BENCH_SMOKE=1")
def test_quick_run_trains_decides_and_reports(tmp_path):
    """--quick for real: the packaged MiniLM, real cycles and MLflow, all three stages (several minutes)."""
    report = main(["--data", str(DATA), "--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                   "--jobs", "1"])
    assert set(report["stages"]) == {"1", "2", "3"}
    assert set(report["stage2"]) == {entry["name"] for entry in GRID}
    rows = report["stage3"]["rows"]
    assert {r["stream"] for r in rows} == {"clean", "poisoned"} and all(r["always_all_promoted"] for r in rows)
    assert (tmp_path / "out" / "gate_quick.md").is_file()
