"""The stream benchmark's bookkeeping (no training): forgetting, cost ratios, the joint shortcut, and that its
updates are the daemon's own (`prepare_update`, with fakes for training and scoring)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from bench import cl_runs
from bench.cl_data import build_stream, domain_ends, domains_to_score
from bench.cl_report import merge, summarise, write_report
from bench.cl_runs import Run, first_update, run_strategy
from bench.cl_settings import (
    DOMAINS,
    LABELS,
    Settings,
    derive,
    replay_config,
    to_json,
    train_config,
)
from bench.cl_stream import parse
from retrain.config import ModelConfig, ReplayConfig, TrainConfig
from retrain.update import Teacher, prepare_update


def batches(domains: list[str]) -> list[pd.DataFrame]:
    return [pd.DataFrame({"text": ["t"], "label": ["neutral"], "domain": [d]}) for d in domains]


def fake_data(root):
    for name in ("financial_phrasebank/Sentences_50Agree.txt", "twitter_financial_news_sentiment/sent_train.csv",
                 "twitter_financial_news_sentiment/sent_valid.csv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


STREAM = batches(["phrasebank"] * 3 + ["twitter"] * 3)


def test_domain_ends_and_what_is_scored_when():
    assert [domain_ends(STREAM, i) for i in range(6)] == [False, False, True, False, False, True]
    assert domains_to_score(STREAM, 0) == ["phrasebank"]
    assert domains_to_score(STREAM, 2) == ["phrasebank", "twitter"]  # Twitter's "before" score
    assert domains_to_score(STREAM, 5) == ["phrasebank", "twitter"]


def test_summary_forgetting_bwt_and_cost():
    pb = [0.60, 0.70, 0.80, 0.78, 0.74, 0.72]
    tw = [None, None, 0.50, 0.60, 0.65, 0.70]
    naive = Run("naive", 13, [[p, t] for p, t in zip(pb, tw)], [100] * 6, [1.0] * 6, [0] * 6)
    joint = Run("joint", 13, [[0.6, None], [None, None], [0.82, 0.5], [None, None], [None, None], [0.8, 0.72]],
                [100, 200, 300, 400, 500, 600], [1.0] * 6, [0] * 6)
    summary = summarise([naive, joint], STREAM)
    assert summary["naive"]["phrasebank_forgetting"]["mean"] == pytest.approx(0.80 - 0.72)
    assert summary["naive"]["backward_transfer"]["mean"] == pytest.approx(0.72 - 0.80)
    assert summary["naive"]["final_mean_macro_f1"]["mean"] == pytest.approx((0.72 + 0.70) / 2)
    assert summary["naive"]["cumulative_samples"]["mean"] == 600
    assert summary["joint"]["cumulative_samples"]["mean"] == 2100
    assert summary["joint"]["phrasebank_forgetting"]["mean"] == pytest.approx(0.02)  # unscored updates skipped
    assert summary["joint"]["matrix_mean"][1] == [None, None]


def test_forgetting_compares_the_same_two_cells_for_every_strategy():
    # A noisy peak after the PhraseBank phase (0.83 at update 4) must not count as forgetting: the
    # max-over-rows form would, and it would penalise strategies that are scored more often than joint.
    pb = [0.60, 0.70, 0.80, 0.83, 0.79, 0.78]
    tw = [None, None, 0.50, 0.60, 0.65, 0.70]
    run = Run("replay", 13, [[p, t] for p, t in zip(pb, tw)], [100] * 6, [1.0] * 6, [0] * 6)
    summary = summarise([run], STREAM)["replay"]
    assert summary["phrasebank_forgetting"]["mean"] == pytest.approx(0.80 - 0.78)
    assert summary["phrasebank_forgetting_max"]["mean"] == pytest.approx(0.83 - 0.78)


def test_quick_mode_is_small_and_flags_override_it(tmp_path):
    DATA = fake_data(tmp_path)
    _, quick = parse(["--quick", "--data", str(DATA)])
    assert quick.batch_rows == 50 and quick.seeds == [13] and len(quick.strategies) == 3
    _, custom = parse(["--quick", "--data", str(DATA), "--seeds", "1", "2", "--epochs", "5"])
    assert custom.seeds == [1, 2] and custom.train.epochs == 5
    assert quick.replay.reservoir_capacity == 200 and custom.replay.reservoir_capacity == 200


def test_full_mode_defaults_bound_the_reservoir_and_flags_reach_the_settings(tmp_path):
    DATA = fake_data(tmp_path)
    _, full = parse(["--data", str(DATA)])
    assert len(full.strategies) == 7 and full.seeds == [13, 14, 15]
    stream_rows = (full.pb_batches + full.tw_batches) * full.batch_rows
    assert full.replay.reservoir_capacity < stream_rows  # a reservoir that never fills would just be class_balanced
    _, exact = parse(["--data", str(DATA), "--precision", "fp32", "--lora-learning-rate", "5e-4"])
    assert exact.train.precision == "fp32" and exact.lora_learning_rate == 5e-4
    # The LoRA rate and rank reach the lora strategy only.
    assert train_config(exact, 13, "lora").learning_rate == 5e-4 and train_config(exact, 13, "lora").lora_rank == 8
    assert train_config(exact, 13, "naive").learning_rate == TrainConfig().learning_rate
    assert train_config(exact, 13, "naive").lora_rank == 0
    assert [train_config(full, 13, k).distill_alpha for k in ("distill", "class_balanced")] == [1.0, 0.0]
    assert replay_config(full, "naive").ratio == 0 and replay_config(full, "reservoir").policy == "reservoir"
    _, plain = parse(["--data", str(DATA), "--no-class-weighting"])
    assert plain.train.class_weighting is False
    assert train_config(plain, 13, "naive").class_weighting is False
    assert train_config(full, 13, "naive").class_weighting is True
    _, random_batches = parse(["--data", str(DATA), "--no-length-grouped"])
    assert train_config(random_batches, 13, "class_balanced").length_grouped is False
    assert train_config(full, 13, "class_balanced").length_grouped is True  # the daemon's default
    _, small_steps = parse(["--data", str(DATA), "--batch-size", "8"])
    assert train_config(small_steps, 13, "joint").batch_size == 8 and train_config(full, 13, "joint").batch_size == 16


def test_a_missing_data_folder_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        parse(["--data", str(tmp_path / "nowhere")])
    assert caught.value.code == 2
    assert "Sentences_50Agree.txt not found" in capsys.readouterr().err


def changed(config, default) -> dict:
    """The fields of `config` that differ from `default` (a package config type's defaults)."""
    return {k: v for k, v in config.model_dump().items() if v != default.model_dump()[k]}


def test_the_full_mode_measures_the_daemons_default_inside_the_cost_target(tmp_path):
    _, full = parse(["--data", str(fake_data(tmp_path))])
    # The table's class_balanced row is the daemon's default configuration.
    assert full.replay.ratio == ReplayConfig().ratio
    assert full.model.max_length == ModelConfig().max_length
    assert full.train.class_weighting == TrainConfig().class_weighting
    assert full.train.batch_size == TrainConfig().batch_size
    # ... but for the benchmark's declared departures, and nothing else.
    assert full.model == ModelConfig()
    assert changed(train_config(full, 14, "class_balanced"), TrainConfig()) == {"epochs": 2, "precision": "bf16",
                                                                              "seed": 14}
    assert changed(replay_config(full, "class_balanced"), ReplayConfig()) == {"reservoir_capacity": 500,
                                                                            "half_life_rows": 500}
    updates = full.pb_batches + full.tw_batches
    replay_cost = 1 + (updates - 1) * (1 + full.replay.ratio)  # in batches × epochs; update 1 has no past
    joint_cost = sum(range(1, updates + 1))  # joint retrains on everything at every update
    assert replay_cost / joint_cost <= 0.5


def small_data(root):
    """A real-format data folder, small enough for build_stream at 5-row batches."""
    labels = ["negative", "neutral", "positive"]
    pb = root / "financial_phrasebank" / "Sentences_50Agree.txt"
    pb.parent.mkdir(parents=True)
    pb.write_text("".join(f"sentence {i} about profits@{labels[i % 3]}\n" for i in range(60)), encoding="latin-1")
    tw = root / "twitter_financial_news_sentiment"
    tw.mkdir()
    for name in ("sent_train.csv", "sent_valid.csv"):
        pd.DataFrame({"text": [f"$TSLA tweet {i} {name}" for i in range(40)],
                      "label": [i % 3 for i in range(40)]}).to_csv(tw / name, index=False)
    return root


def test_twitter_batches_can_be_larger_than_phrasebank_ones(tmp_path):
    data = small_data(tmp_path / "data")
    _, s = parse(["--data", str(data), "--batch-rows", "5", "--tw-batch-rows", "8"])
    batches, _ = build_stream(data, s)
    assert [len(b) for b in batches] == [5, 5, 5, 8, 8, 8]
    assert [b["domain"].iloc[0] for b in batches] == ["phrasebank"] * 3 + ["twitter"] * 3
    # The Twitter batches are consecutive, non-overlapping slices of the shuffled train file.
    tw_texts = [t for b in batches[3:] for t in b["text"]]
    assert len(set(tw_texts)) == 24
    _, same = parse(["--data", str(data), "--batch-rows", "5"])
    assert [len(b) for b in build_stream(data, same)[0]] == [5] * 6


def test_a_report_written_part_way_names_the_seeds_it_covers(tmp_path):
    data = small_data(tmp_path / "data")
    s = Settings(batch_rows=5, seeds=[13, 14, 15], strategies=["naive"])
    batches, tests = build_stream(data, s)
    run = Run("naive", 13, [[0.6, None], [0.7, None], [0.8, 0.5], [0.75, 0.6], [0.74, 0.65], [0.7, 0.7]],
              [10] * 6, [1.0] * 6, [0] * 6)
    write_report(tmp_path, "r", summarise([run], batches), [run], s, "cmd", "box", 60.0, batches, tests)
    assert "Seeds: 13 (partial: 14, 15 not run yet)." in (tmp_path / "r.md").read_text()
    write_report(tmp_path, "r", summarise([run, replace(run, seed=14), replace(run, seed=15)], batches),
                 [run, replace(run, seed=14), replace(run, seed=15)], s, "cmd", "box", 60.0, batches, tests)
    assert "Seeds: 13, 14, 15." in (tmp_path / "r.md").read_text()


@pytest.mark.parametrize("flags,message", [
    (["--tw-batch-rows", "-5"], "--tw-batch-rows -5: must not be negative"),
    (["--batch-rows", "-1"], "--batch-rows -1: must not be negative"),
    # The package configs' own bounds, named by flag, config and field.
    (["--batch-size", "0"], "--batch-size 0: TrainConfig.batch_size = 0 is not allowed: expected an integer in [1, "),
    (["--replay-ratio", "-1"], "--replay-ratio -1.0: ReplayConfig.ratio = -1.0 is not allowed"),
    (["--max-length", "4"], "--max-length 4: ModelConfig.max_length = 4 is not allowed"),
    (["--lora-rank", "300"], "--lora-rank 300: TrainConfig.lora_rank = 300 is not allowed"),
    (["--lora-learning-rate", "2"], "--lora-learning-rate 2.0: TrainConfig.learning_rate = 2.0 is not allowed"),
])
def test_bad_numbers_are_refused_before_anything_trains(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as caught:
        parse(["--data", str(small_data(tmp_path / "data"))] + flags)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_a_stream_larger_than_the_data_is_refused_not_cut_short(tmp_path):
    data = small_data(tmp_path / "data")  # 48 PhraseBank train rows, 40 Twitter train rows
    _, s = parse(["--data", str(data), "--batch-rows", "5", "--tw-batch-rows", "14"])
    with pytest.raises(SystemExit, match="3 Twitter batches of 14 rows, but Twitter has 40 train rows"):
        build_stream(data, s)
    _, s = parse(["--data", str(data), "--batch-rows", "17"])
    with pytest.raises(SystemExit, match="3 PhraseBank batches of 17 rows, but PhraseBank has 48 train rows"):
        build_stream(data, s)


def write_part(path, seed: int, pb_end: float, **overrides) -> None:
    settings = Settings(batch_rows=5, seeds=[seed], strategies=["naive"], **overrides)
    run = Run("naive", seed, [[0.6, None], [0.7, None], [pb_end, 0.5], [0.75, 0.6], [0.74, 0.65], [0.7, 0.7]],
              [10] * 6, [1.0] * 6, [0] * 6)
    path.write_text(json.dumps({"command": f"part {seed}", "machine": f"box {seed}", "wall_seconds": 60.0,
                                "settings": to_json(settings), "batches": [{"rows": 5}] * 6,
                                "runs": [asdict(run)]}))


def test_merge_writes_the_report_one_run_over_all_seeds_would_have(tmp_path):
    data = small_data(tmp_path / "data")
    write_part(tmp_path / "a.json", 13, 0.80)
    write_part(tmp_path / "b.json", 14, 0.76)
    summary = merge([tmp_path / "a.json", tmp_path / "b.json"], data, tmp_path / "out", "merged", "merge cmd")
    assert summary["naive"]["seeds"] == [13, 14]
    # forgetting per seed: 0.80 - 0.70 and 0.76 - 0.70
    assert summary["naive"]["phrasebank_forgetting"]["mean"] == pytest.approx(0.08)
    saved = json.loads((tmp_path / "out" / "merged.json").read_text())
    assert saved["settings"]["seeds"] == [13, 14] and saved["wall_seconds"] == 120.0
    report = (tmp_path / "out" / "merged.md").read_text()
    assert "Seeds: 13, 14" in report and "`part 13`; `part 14`, merged by `merge cmd`" in report
    assert "box 13 | box 14" in report


def test_merge_refuses_parts_that_are_not_one_benchmark(tmp_path):
    data = small_data(tmp_path / "data")
    write_part(tmp_path / "a.json", 13, 0.80)
    write_part(tmp_path / "again.json", 13, 0.80)
    write_part(tmp_path / "other.json", 14, 0.80, train=derive(Settings().train, epochs=5))
    with pytest.raises(SystemExit, match=r"seed\(s\) \[13\] appear in more than one part"):
        merge([tmp_path / "a.json", tmp_path / "again.json"], data, tmp_path / "out", "m", "cmd")
    with pytest.raises(SystemExit, match=r"other settings \(train\.epochs\)"):
        merge([tmp_path / "a.json", tmp_path / "other.json"], data, tmp_path / "out", "m", "cmd")
    with pytest.raises(SystemExit, match=r"cannot read .*missing.json"):
        merge([tmp_path / "a.json", tmp_path / "missing.json"], data, tmp_path / "out", "m", "cmd")
    assert not (tmp_path / "out").exists()


def test_merge_reads_parts_saved_before_a_setting_existed(tmp_path):
    data = small_data(tmp_path / "data")
    write_part(tmp_path / "a.json", 13, 0.80)
    write_part(tmp_path / "b.json", 14, 0.80)
    old = json.loads((tmp_path / "a.json").read_text())
    del old["settings"]["train"]["class_weighting"]  # files written before --no-class-weighting existed
    (tmp_path / "a.json").write_text(json.dumps(old))
    summary = merge([tmp_path / "a.json", tmp_path / "b.json"], data, tmp_path / "out", "m", "cmd")
    assert summary["naive"]["seeds"] == [13, 14]


def test_a_part_saved_before_length_grouping_existed_ran_with_random_batches(tmp_path):
    from bench.cl_settings import from_json, to_json

    saved = to_json(parse(["--data", str(fake_data(tmp_path))])[1])
    assert saved["train"]["length_grouped"] is True  # the daemon's default now
    del saved["train"]["length_grouped"]
    assert from_json(saved).train.length_grouped is False  # what such a run did


def test_merge_refuses_training_flags_it_would_ignore(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        parse(["--data", str(fake_data(tmp_path)), "--merge", "a.json", "--seeds", "13", "--no-class-weighting"])
    assert caught.value.code == 2
    assert "drop --seeds, --no-class-weighting" in capsys.readouterr().err
    args, _ = parse(["--data", str(fake_data(tmp_path)), "--merge", "a.json", "b.json", "--name", "m"])
    assert args.merge == [Path("a.json"), Path("b.json")]


# -- the updates are the daemon's: training and scoring faked, the rows real ----------------------------------
TEACHER_PROBS = [0.2, 0.3, 0.5]


class FakePredictor:
    """Stands in for the previous update's model as distill's teacher; remembers which model it was."""

    loaded: ClassVar[list[Path]] = []

    def __init__(self, model_dir, s) -> None:
        FakePredictor.loaded.append(Path(model_dir))
        self.labels = LABELS

    def predict(self, texts):
        return np.zeros(len(texts), dtype=int), np.array([TEACHER_PROBS] * len(texts))


@pytest.fixture
def fake_training(monkeypatch):
    """fine_tune and scoring replaced by fakes that record what each update trained on."""
    calls: list[SimpleNamespace] = []

    def fine_tune(init, train_rows, val_rows, labels, out_dir, config, *, max_length):
        calls.append(SimpleNamespace(init=init, train=train_rows, val=val_rows, config=config, out=out_dir,
                                     max_length=max_length))
        return SimpleNamespace(model_dir=out_dir / "model", samples_seen=len(train_rows) * config.epochs, seconds=0.0)

    monkeypatch.setattr(cl_runs, "fine_tune", fine_tune)
    monkeypatch.setattr(cl_runs, "evaluate", lambda model_dir, tests, s, domains: [
        0.5 if d in domains else None for d in DOMAINS])
    monkeypatch.setattr(cl_runs, "predictor", FakePredictor)
    FakePredictor.loaded = []
    return calls


@pytest.mark.parametrize("strategy,policy,ratio", [("naive", "class_balanced", 0.0), ("reservoir", "reservoir", 0.9),
                                                   ("recency", "recency", 0.9), ("distill", "class_balanced", 0.9)])
def test_an_update_trains_on_what_prepare_update_assembles(tmp_path, fake_training, strategy, policy, ratio):
    data = small_data(tmp_path / "data")
    _, s = parse(["--data", str(data), "--batch-rows", "5", "--val-share", "0.3", "--reservoir-capacity", "4",
                  "--half-life-rows", "3"])
    batches, tests = build_stream(data, s)
    first = first_update(batches, tests, s, 13, tmp_path)
    run = run_strategy(strategy, 13, batches, tests, s, first, tmp_path, progress=lambda line: None)

    # The daemon's recipe, called directly: the same config, the run's seed, and the replay state carried
    # from each update (champion) to the next (candidate); the first starts from none (no champion yet).
    config = ReplayConfig(policy=policy, ratio=ratio, reservoir_capacity=4, half_life_rows=3)
    teacher = Teacher(lambda texts: [TEACHER_PROBS] * len(texts), LABELS) if strategy == "distill" else None
    state, expected = None, []
    for update, new in enumerate(batches):
        past = pd.concat(batches[:update], ignore_index=True) if update else new.iloc[:0]
        rows = prepare_update(new, past, LABELS, config, state, 13, teacher if update else None)
        state = rows.replay_state
        expected.append(rows)
    first_call, *calls = fake_training
    # Update 1 (shared by all strategies) trained on batch 1's train rows: there is no past to replay.
    assert first_call.train["text"].tolist() == expected[0].train_rows["text"].tolist()
    assert first_call.val["text"].tolist() == expected[0].val_rows["text"].tolist()
    assert len(calls) == len(batches) - 1
    for call, rows in zip(calls, expected[1:]):
        pd.testing.assert_frame_equal(call.train, rows.train_rows)
        pd.testing.assert_frame_equal(call.val, rows.val_rows)
        assert call.max_length == s.model.max_length
    # Each update starts from the previous one's model, as a candidate starts from the champion.
    assert [Path(c.init) for c in calls] == [c.out / "model" for c in fake_training[:-1]]
    assert run.replay_rows == [0] + [len(rows.replay) for rows in expected[1:]]
    if strategy == "naive":
        assert run.replay_rows == [0] * len(batches)
    else:
        assert all(n > 0 for n in run.replay_rows[1:])
    if strategy == "reservoir":
        # A bounded buffer that has been offered every train row of the stream, once.
        assert max(len(rows.replay_state["buffer"]) for rows in expected) == 4
        assert expected[-1].replay_state["seen"] == sum(int((b["split"] == "train").sum()) for b in batches)
    if strategy == "distill":
        # The teacher is the model the update starts from; its probabilities label the replayed rows only.
        assert FakePredictor.loaded == [Path(c.init) for c in calls]
        replayed = calls[-1].train.iloc[len(expected[-1].new_train):]
        assert replayed["teacher_probs"].tolist() == [TEACHER_PROBS] * len(replayed)
        assert calls[-1].config.distill_alpha == s.distill_alpha
    else:
        assert FakePredictor.loaded == [] and "teacher_probs" not in calls[-1].train.columns


def test_joint_retrains_from_the_base_on_everything_but_trains_only_where_it_is_scored(tmp_path, fake_training):
    data = small_data(tmp_path / "data")
    _, s = parse(["--data", str(data), "--batch-rows", "5"])
    batches, tests = build_stream(data, s)
    first = first_update(batches, tests, s, 13, tmp_path)
    run = run_strategy("joint", 13, batches, tests, s, first, tmp_path, progress=lambda line: None)
    _, *calls = fake_training
    assert len(calls) == 2  # after the last PhraseBank batch and after the last Twitter batch
    assert len({str(c.init) for c in fake_training}) == 1  # always the base model
    assert [len(c.train) for c in calls] == [15, 30]
    assert run.samples == [10, 20, 30, 40, 50, 60]  # rows × epochs, also where it was not trained


@pytest.mark.parametrize("flag", ["--label-smoothing", "--layer-lr-decay", "--ema-decay", "--replay-weight"])
def test_the_removed_knobs_are_gone(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as caught:
        parse(["--data", str(fake_data(tmp_path)), flag, "0.5"])
    assert caught.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    saved = json.dumps(to_json(Settings()))
    assert flag[2:].replace("-", "_") not in saved and '"weight"' not in saved
