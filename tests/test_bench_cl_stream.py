"""The stream benchmark's bookkeeping (no training): forgetting, cost ratios and the joint shortcut."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest

from bench.cl_stream import (Run, Settings, _domain_ends, build_stream, domains_to_score, merge, parse, summarise,
                             train_config, write_report)


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
    assert [_domain_ends(STREAM, i) for i in range(6)] == [False, False, True, False, False, True]
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
    assert custom.seeds == [1, 2] and custom.epochs == 5


def test_full_mode_defaults_bound_the_reservoir_and_flags_reach_the_settings(tmp_path):
    DATA = fake_data(tmp_path)
    _, full = parse(["--data", str(DATA)])
    assert len(full.strategies) == 7 and full.seeds == [13, 14, 15]
    stream_rows = (full.pb_batches + full.tw_batches) * full.batch_rows
    assert full.reservoir_capacity < stream_rows  # a reservoir that never fills would just be class_balanced
    _, exact = parse(["--data", str(DATA), "--precision", "fp32", "--lora-learning-rate", "5e-4"])
    assert exact.precision == "fp32" and exact.lora_learning_rate == 5e-4
    _, plain = parse(["--data", str(DATA), "--no-class-weighting"])
    assert plain.class_weighting is False
    assert train_config(plain, 13, "naive").class_weighting is False
    assert train_config(full, 13, "naive").class_weighting is True
    _, small_steps = parse(["--data", str(DATA), "--batch-size", "8"])
    assert train_config(small_steps, 13, "joint").batch_size == 8 and train_config(full, 13, "joint").batch_size == 16


def test_a_missing_data_folder_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        parse(["--data", str(tmp_path / "nowhere")])
    assert caught.value.code == 2
    assert "Sentences_50Agree.txt not found" in capsys.readouterr().err


def test_the_full_mode_measures_the_daemons_default_inside_the_cost_target(tmp_path):
    from daemon.config import ModelSection, ReplaySection, TrainSection

    _, full = parse(["--data", str(fake_data(tmp_path))])
    # The table's class_balanced row is the daemon's default configuration.
    assert full.replay_ratio == ReplaySection().ratio
    assert full.max_length == ModelSection().max_length
    assert full.class_weighting == TrainSection().class_weighting
    assert full.label_smoothing == TrainSection().label_smoothing
    assert full.layer_lr_decay == TrainSection().layer_lr_decay
    assert full.ema_decay == TrainSection().ema_decay
    assert full.batch_size == TrainSection().batch_size
    updates = full.pb_batches + full.tw_batches
    replay_cost = 1 + (updates - 1) * (1 + full.replay_ratio)  # in batches × epochs; update 1 has no past
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
    _, s = parse(["--data", str(data), "--batch-rows", "5", "--tw-batch-rows", "8", "--label-smoothing", "0.1"])
    batches, _ = build_stream(data, s)
    assert [len(b) for b in batches] == [5, 5, 5, 8, 8, 8]
    assert [b["domain"].iloc[0] for b in batches] == ["phrasebank"] * 3 + ["twitter"] * 3
    # The Twitter batches are consecutive, non-overlapping slices of the shuffled train file.
    tw_texts = [t for b in batches[3:] for t in b["text"]]
    assert len(set(tw_texts)) == 24
    _, same = parse(["--data", str(data), "--batch-rows", "5"])
    assert [len(b) for b in build_stream(data, same)[0]] == [5] * 6
    # Label smoothing reaches training, for every strategy; the default is the daemon's (off).
    assert train_config(s, 13, "joint").label_smoothing == 0.1
    assert train_config(same, 13, "naive").label_smoothing == 0.0
    # Layer-wise learning-rate decay reaches full fine-tuning; LoRA adapters keep one rate.
    _, decayed = parse(["--data", str(data), "--layer-lr-decay", "0.85"])
    assert [train_config(decayed, 13, k).layer_lr_decay for k in ("joint", "naive", "lora")] == [0.85, 0.85, 1.0]
    assert train_config(same, 13, "joint").layer_lr_decay == 1.0
    _, averaged = parse(["--data", str(data), "--ema-decay", "0.999"])
    assert [train_config(averaged, 13, k).ema_decay for k in ("joint", "lora")] == [0.999, 0.999]
    assert train_config(same, 13, "joint").ema_decay == 0.0


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


@pytest.mark.parametrize("flags,message", [(["--tw-batch-rows", "-5"], "--tw-batch-rows -5: must not be negative"),
                                           (["--batch-rows", "-1"], "--batch-rows -1: must not be negative"),
                                           (["--label-smoothing", "1.0"], "--label-smoothing 1.0: must be below 1"),
                                           (["--layer-lr-decay", "1.5"], "--layer-lr-decay 1.5: must be in (0, 1]"),
                                           (["--layer-lr-decay", "0"], "--layer-lr-decay 0.0: must be in (0, 1]"),
                                           (["--ema-decay", "1"], "--ema-decay 1.0: must be below 1"),
                                           (["--batch-size", "0"], "--batch-size 0: must be at least 1")])
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
                                "settings": asdict(settings), "batches": [{"rows": 5}] * 6,
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
    write_part(tmp_path / "other.json", 14, 0.80, epochs=5)
    with pytest.raises(SystemExit, match=r"seed\(s\) \[13\] appear in more than one part"):
        merge([tmp_path / "a.json", tmp_path / "again.json"], data, tmp_path / "out", "m", "cmd")
    with pytest.raises(SystemExit, match=r"other settings \(epochs\)"):
        merge([tmp_path / "a.json", tmp_path / "other.json"], data, tmp_path / "out", "m", "cmd")
    with pytest.raises(SystemExit, match=r"cannot read .*missing.json"):
        merge([tmp_path / "a.json", tmp_path / "missing.json"], data, tmp_path / "out", "m", "cmd")
    assert not (tmp_path / "out").exists()


def test_merge_reads_parts_saved_before_a_setting_existed(tmp_path):
    data = small_data(tmp_path / "data")
    write_part(tmp_path / "a.json", 13, 0.80)
    write_part(tmp_path / "b.json", 14, 0.80)
    old = json.loads((tmp_path / "a.json").read_text())
    del old["settings"]["class_weighting"]  # files written before --no-class-weighting existed
    (tmp_path / "a.json").write_text(json.dumps(old))
    summary = merge([tmp_path / "a.json", tmp_path / "b.json"], data, tmp_path / "out", "m", "cmd")
    assert summary["naive"]["seeds"] == [13, 14]


def test_merge_refuses_training_flags_it_would_ignore(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        parse(["--data", str(fake_data(tmp_path)), "--merge", "a.json", "--seeds", "13", "--no-class-weighting"])
    assert caught.value.code == 2
    assert "drop --seeds, --no-class-weighting" in capsys.readouterr().err
    args, _ = parse(["--data", str(fake_data(tmp_path)), "--merge", "a.json", "b.json", "--name", "m"])
    assert args.merge == [Path("a.json"), Path("b.json")]
