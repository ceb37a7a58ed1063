"""Stream benchmark: does a cltool-style update learn the new without forgetting the old, and at what cost?

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cl_stream --data ../shared/data --quick     # < 5 min, smoke
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cl_stream --data ../shared/data             # full, < 45 min
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cl_stream --data ../shared/data --pb-batches 1 --tw-batches 0 \
        --batch-rows 0 --test-rows 0 --strategies joint --epochs 10 --learning-rate 7e-5   # PhraseBank ceiling

The stream: Financial PhraseBank (50Agree) in 3 batches, then Twitter financial news in 3 batches
(a domain shift: short, noisy tweets with cash-tags). Held out per domain: a fixed 20 % of
PhraseBank (stratified, stream seed 0) and the Twitter `sent_valid.csv` file. Every strategy uses
the same model (the packaged MiniLM), seeds, epochs and hyper-parameters; the first update
(batch 1 from the base model) is identical for all and is trained once per seed and shared.

Strategies: naive (new rows only), each replay policy (class_balanced, reservoir, recency),
LoRA + class-balanced replay, distillation + class-balanced replay (LwF-style), and joint
retraining from the base model on all rows so far (the quality ceiling and the cost without
cltool). Outputs, under --out, named by --name (default cl_stream): `<name>.md` (tables, with the
command and machine on top), `<name>.json` (every cell of every run) and two PNGs.

Scores are macro-F1 on each domain's test rows. Forgetting (PhraseBank) = the PhraseBank score
after its last batch minus the final one (after the Twitter updates); cumulative samples = train rows × epochs actually
run, summed over updates (the joint strategy retrains from scratch at every update).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from retrain import cl_metrics
from retrain.defaults import MAX_LENGTH
from retrain.evaluation import Predictor, score
from retrain.modeling import PACKAGED_BASE, resolve_base
from retrain.replay import make_replay
from retrain.train import TrainConfig, fine_tune

LABELS = ["negative", "neutral", "positive"]
TWITTER_LABELS = {0: "negative", 1: "positive", 2: "neutral"}  # bearish, bullish, neutral
DOMAINS = ["phrasebank", "twitter"]
STRATEGIES = ["naive", "class_balanced", "reservoir", "recency", "lora", "distill", "joint"]
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Settings:
    # The full-mode defaults are sized to run 7 strategies x 3 seeds in < 45 min on 2 CPU cores.
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 2e-4
    max_length: int = MAX_LENGTH  # the daemon's default model.max_length
    precision: str = "bf16"  # mixed precision for training and scoring; "fp32" is about 1.7x slower on CPU
    replay_ratio: float = 0.9  # the daemon's default replay.ratio: (1 + 5 x 1.9) / 21 = 50 % of joint's samples
    replay_weight: float = 1.0
    reservoir_capacity: int = 500  # a third of the stream's 1,500 train rows: the buffer really is bounded
    half_life_rows: int = 500
    lora_rank: int = 8
    lora_learning_rate: float = 1e-3  # adapters need a larger step than full fine-tuning
    distill_alpha: float = 1.0
    label_smoothing: float = 0.0  # the daemon's default: one-hot targets
    layer_lr_decay: float = 1.0  # the daemon's default: one learning rate for every layer
    ema_decay: float = 0.0  # the daemon's default: the weights as trained, no moving average
    class_weighting: bool = True  # the daemon's default: inverse class frequency weights in the loss
    pb_batches: int = 3
    tw_batches: int = 3
    batch_rows: int = 250  # 0 = all PhraseBank train rows in pb_batches; Twitter batches the same size
    tw_batch_rows: int = 0  # 0 = Twitter batches as large as the PhraseBank ones; N = N rows each
    test_rows: int = 0  # 0 = the whole test sets (969 PhraseBank rows, 2,388 Twitter rows); N = N stratified rows
    val_share: float = 0.0  # > 0: hold out a share of each batch and early-stop on it (patience 1)
    joint_every_update: bool = False  # False: joint is trained after the last batch of each domain only
    seeds: list[int] = field(default_factory=lambda: [13, 14, 15])
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))


# -- the stream -------------------------------------------------------------------------------------
def read_phrasebank(data: Path) -> pd.DataFrame:
    path = data / "financial_phrasebank" / "Sentences_50Agree.txt"
    rows = [line.rsplit("@", 1) for line in path.read_text(encoding="latin-1").splitlines() if "@" in line]
    frame = pd.DataFrame(rows, columns=["text", "label"])
    frame["label"] = frame["label"].str.strip()
    frame["text"] = frame["text"].str.strip()
    # Duplicate texts (8) and texts with two labels (2): keep one copy, drop the conflicting ones.
    conflicting = frame.groupby("text")["label"].nunique()
    frame = frame[~frame["text"].isin(conflicting[conflicting > 1].index)].drop_duplicates("text")
    return frame.reset_index(drop=True)


def read_twitter(data: Path, name: str) -> pd.DataFrame:
    frame = pd.read_csv(data / "twitter_financial_news_sentiment" / name)
    frame["label"] = frame["label"].map(TWITTER_LABELS)
    return frame[["text", "label"]].drop_duplicates("text").reset_index(drop=True)


def stratified_take(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """`n` rows (0 = all) keeping the label mix; deterministic for `seed`."""
    if n <= 0 or n >= len(frame):
        return frame
    share = n / len(frame)
    parts = [g.sample(max(1, round(len(g) * share)), random_state=seed) for _, g in frame.groupby("label")]
    return pd.concat(parts).sample(frac=1, random_state=seed).head(n).reset_index(drop=True)


def build_stream(data: Path, s: Settings) -> tuple[list[pd.DataFrame], dict[str, pd.DataFrame]]:
    """(batches in arrival order, test rows per domain). Fixed by stream seed 0, independent of the run seeds."""
    pb = read_phrasebank(data)
    pb_test = stratified_take(pb, round(0.2 * len(pb)), seed=0)
    pb_train = pb[~pb["text"].isin(pb_test["text"])].sample(frac=1, random_state=0).reset_index(drop=True)
    tw_train = read_twitter(data, "sent_train.csv").sample(frac=1, random_state=0).reset_index(drop=True)
    tw_test = read_twitter(data, "sent_valid.csv")
    size = s.batch_rows or len(pb_train) // s.pb_batches
    batches = [pb_train.iloc[i * size:(i + 1) * size].assign(domain="phrasebank") for i in range(s.pb_batches)]
    tw_size = s.tw_batch_rows or size
    for domain, rows, per_batch, count in (("PhraseBank", pb_train, size, s.pb_batches),
                                           ("Twitter", tw_train, tw_size, s.tw_batches)):
        if per_batch * count > len(rows):
            raise SystemExit(f"the stream asks for {count} {domain} batches of {per_batch} rows, but {domain} has "
                             f"{len(rows)} train rows: use fewer or smaller batches")
    batches += [tw_train.iloc[i * tw_size:(i + 1) * tw_size].assign(domain="twitter") for i in range(s.tw_batches)]
    rng = np.random.default_rng(0)
    for index, batch in enumerate(batches):
        batch["batch"] = index
        batch["split"] = np.where(rng.random(len(batch)) < s.val_share, "val", "train")
        batch["row_hash"] = [f"{index}-{i}" for i in range(len(batch))]
        batch["batch_id"] = f"b{index}"
    tests = {"phrasebank": stratified_take(pb_test, s.test_rows, seed=0),
             "twitter": stratified_take(tw_test, s.test_rows, seed=0)}
    return batches, tests


# -- one strategy, one seed -------------------------------------------------------------------------
@dataclass
class Run:
    strategy: str
    seed: int
    matrix: list[list[float | None]] = field(default_factory=list)  # update × domain
    samples: list[int] = field(default_factory=list)  # train rows × epochs per update
    seconds: list[float] = field(default_factory=list)  # training wall time per update
    replay_rows: list[int] = field(default_factory=list)


def train_config(s: Settings, seed: int, strategy: str) -> TrainConfig:
    lr = s.lora_learning_rate if strategy == "lora" else s.learning_rate
    return TrainConfig(epochs=s.epochs, batch_size=s.batch_size, learning_rate=lr, seed=seed,
                       max_length=s.max_length, early_stopping_patience=1 if s.val_share > 0 else 0,
                       precision=s.precision, class_weighting=s.class_weighting,
                       lora_rank=s.lora_rank if strategy == "lora" else 0,
                       distill_alpha=s.distill_alpha if strategy == "distill" else 0.0,
                       label_smoothing=s.label_smoothing,
                       layer_lr_decay=1.0 if strategy == "lora" else s.layer_lr_decay, ema_decay=s.ema_decay)


def evaluate(model_dir: Path, tests: dict[str, pd.DataFrame], s: Settings, domains: list[str]) -> list[float | None]:
    predictor = _predictor(model_dir, s)
    cells: list[float | None] = []
    for domain in DOMAINS:
        if domain not in domains:
            cells.append(None)
            continue
        ids, _ = predictor.predict(tests[domain]["text"].tolist())
        cells.append(score(tests[domain]["label"].tolist(), [predictor.labels[i] for i in ids], LABELS)["macro_f1"])
    return cells


def _predictor(model_dir: Path, s: Settings) -> Predictor:
    """Scoring in the benchmark uses the same arithmetic as its training (--precision)."""
    return Predictor(model_dir, max_length=s.max_length, bf16=s.precision == "bf16")


def domains_to_score(batches: list[pd.DataFrame], update: int) -> list[str]:
    """PhraseBank after every update (its forgetting curve); Twitter from the last PhraseBank update on."""
    seen = {b["domain"].iloc[0] for b in batches[: update + 1]}
    last_pb = max(i for i, b in enumerate(batches) if b["domain"].iloc[0] == "phrasebank")
    return [d for d in DOMAINS if d in seen or (d == "twitter" and update >= last_pb)]


def run_strategy(strategy: str, seed: int, batches, tests, s: Settings, first: dict, work: Path,
                 progress) -> Run:
    """Updates 2..n of one strategy; update 1 (from the base model on batch 1) comes in `first`."""
    run = Run(strategy, seed, [first["cells"]], [first["samples"]], [first["seconds"]], [0])
    model_dir = first["model_dir"]
    policy = _policy(strategy, s)
    policy.observe(_split(batches[0], "train"), seed)
    base = resolve_base(PACKAGED_BASE)
    for update in range(1, len(batches)):
        new = batches[update]
        past = pd.concat(batches[:update], ignore_index=True)
        new_train, past_train = _split(new, "train"), _split(past, "train")
        if strategy == "joint":
            init, train_rows = base, pd.concat([past_train, new_train], ignore_index=True)
            val = pd.concat([_split(past, "val"), _split(new, "val")], ignore_index=True)
        else:
            init = model_dir
            n_replay = 0 if strategy == "naive" else round(s.replay_ratio * len(new_train))
            replay = policy.sample(past_train, n_replay, LABELS, seed + update) if n_replay else past_train.iloc[:0]
            replay = replay.assign(weight=s.replay_weight)
            if strategy == "distill" and len(replay):
                _, probs = _predictor(model_dir, s).predict(replay["text"].tolist())
                replay = replay.assign(teacher_probs=list(probs))
            train_rows = pd.concat([new_train.assign(weight=1.0), replay], ignore_index=True)
            # As the daemon does: the new batch's val rows plus as many past ones (at least 50), when
            # there is a val split at all (--val-share > 0).
            new_val, past_val = _split(new, "val"), _split(past, "val")
            n_past = min(len(past_val), max(len(new_val), 50)) if len(new_val) else 0
            val = pd.concat([new_val, past_val.sample(n_past, random_state=seed)], ignore_index=True)
        run.replay_rows.append(len(train_rows) - len(new_train) if strategy != "joint" else 0)
        if strategy == "joint" and not s.joint_every_update and not _domain_ends(batches, update):
            # Retraining from scratch here costs exactly rows × epochs (fixed epochs, no early
            # stopping); only its scores are skipped, to keep the benchmark inside its time budget.
            run.matrix.append([None] * len(DOMAINS))
            run.samples.append(len(train_rows) * s.epochs)
            run.seconds.append(0.0)
            continue
        out = work / f"{strategy}-{seed}-{update}"
        result = fine_tune(init, train_rows, val[["text", "label"]] if len(val) else None, LABELS, out,
                           train_config(s, seed, strategy))
        policy.observe(new_train, seed)
        cells = evaluate(result.model_dir, tests, s, domains_to_score(batches, update))
        run.matrix.append(cells)
        run.samples.append(result.samples_seen)
        run.seconds.append(result.seconds)
        progress(f"{strategy} seed {seed} update {update + 1}/{len(batches)}: "
                 f"PB {_fmt(cells[0])} TW {_fmt(cells[1])}  {result.samples_seen} samples, {result.seconds:.0f}s")
        model_dir = result.model_dir
    return run


def _domain_ends(batches, update: int) -> bool:
    return update == len(batches) - 1 or batches[update + 1]["domain"].iloc[0] != batches[update]["domain"].iloc[0]


def _policy(strategy: str, s: Settings):
    """The replay policy a strategy uses (naive and joint build one too, and never sample from it)."""
    if strategy == "reservoir":
        return make_replay("reservoir", capacity=s.reservoir_capacity)
    if strategy == "recency":
        return make_replay("recency", half_life_rows=s.half_life_rows)
    return make_replay("class_balanced")


def _split(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    return frame[frame["split"] == split]


def _fmt(value: float | None) -> str:
    return "  —  " if value is None else f"{100 * value:5.1f}"


# -- summary --------------------------------------------------------------------------------------
def summarise(runs: list[Run], batches) -> dict[str, dict]:
    last_pb = max(i for i, b in enumerate(batches) if b["domain"].iloc[0] == "phrasebank")
    learned_at = [last_pb, len(batches) - 1]
    out: dict[str, dict] = {}
    for strategy in dict.fromkeys(r.strategy for r in runs):
        mine = [r for r in runs if r.strategy == strategy]
        final = [cl_metrics.average_score(r.matrix, learned_at) for r in mine]
        # Forgetting = PhraseBank after its last batch minus PhraseBank at the end: the two cells every
        # strategy (joint included) has scored. The max-over-rows form (cl_metrics.task_forgetting, which
        # the daemon logs) takes the best of several noisy scores, so it grows with the number of scored
        # rows and would penalise the strategies scored after every update; it is kept in the JSON.
        pb_forgetting = [r.matrix[last_pb][0] - r.matrix[-1][0] for r in mine]
        pb_forgetting_max = [cl_metrics.task_forgetting(r.matrix, learned_at)[0] for r in mine]
        bwt = [cl_metrics.backward_transfer(r.matrix, learned_at) for r in mine]
        out[strategy] = {
            "final_mean_macro_f1": _stats(final),
            "final_phrasebank": _stats([r.matrix[-1][0] for r in mine]),
            "final_twitter": _stats([r.matrix[-1][1] for r in mine]),
            "phrasebank_forgetting": _stats(pb_forgetting),
            "phrasebank_forgetting_max": _stats(pb_forgetting_max),
            "backward_transfer": _stats(bwt),
            "cumulative_samples": _stats([sum(r.samples) for r in mine]),
            "train_seconds": _stats([sum(r.seconds) for r in mine]),
            "matrix_mean": _mean_matrix([r.matrix for r in mine]),
            "seeds": [r.seed for r in mine],
        }
    return out


def _mean_matrix(matrices) -> list[list[float | None]]:
    """Cell-wise mean over seeds; None where a cell was not scored."""
    array = np.array([[[np.nan if c is None else c for c in row] for row in m] for m in matrices], dtype=float)
    mean = array.mean(axis=0)
    return [[None if np.isnan(c) else float(c) for c in row] for row in mean]


def _stats(values) -> dict[str, float]:
    array = np.array(values, dtype=float)
    return {"mean": float(np.mean(array)), "sd": float(np.std(array, ddof=1)) if len(array) > 1 else 0.0,
            "n": len(array)}


def _seeds_done(runs, planned: list[int]) -> str:
    """The seeds the tables cover; a report written part-way through a run says which are still to come."""
    done = [seed for seed in planned if any(r.seed == seed for r in runs)]
    missing = [seed for seed in planned if seed not in done]
    text = ", ".join(map(str, done))
    return f"{text} (partial: {', '.join(map(str, missing))} not run yet)" if missing else text


def write_report(out: Path, name: str, summary, runs, s: Settings, command: str, machine: str, wall: float, batches,
                 tests, wall_note: str = ""):
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(
        {"command": command, "machine": machine, "wall_seconds": wall, "settings": asdict(s),
         "batches": [{"domain": b["domain"].iloc[0], "rows": len(b), "train": int((b["split"] == "train").sum())}
                     for b in batches],
         "test_rows": {d: len(t) for d, t in tests.items()}, "summary": summary,
         "runs": [asdict(r) for r in runs]}, indent=1))
    joint = summary.get("joint")
    lines = [
        "# Stream benchmark: learning without forgetting", "",
        f"Command: `{command}`  ", f"Machine: {machine}  ",
        f"Wall time: {wall / 60:.1f} min{wall_note}. Seeds: {_seeds_done(runs, s.seeds)}.", "",
        "Stream: " + ", ".join(f"{b['domain'].iloc[0]} {int((b['split'] == 'train').sum())} train rows"
                               for b in batches) + ".  ",
        f"Test rows: PhraseBank {len(tests['phrasebank'])}, Twitter {len(tests['twitter'])}. "
        f"Model: packaged all-MiniLM-L6-v2; epochs {s.epochs} "
        f"({'early stopping on a ' + format(s.val_share, '.0%') + ' val split' if s.val_share else 'fixed, no early stopping'}), "
        f"lr {s.learning_rate} (LoRA: {s.lora_learning_rate}, rank {s.lora_rank}), {s.precision}, "
        f"batch {s.batch_size}, max_length {s.max_length}, replay ratio {s.replay_ratio}, "
        f"replay weight {s.replay_weight}, class weighting {'on' if s.class_weighting else 'off'}"
        f"{f', label smoothing {s.label_smoothing}' if s.label_smoothing else ''}"
        f"{f', layer-wise lr decay {s.layer_lr_decay}' if s.layer_lr_decay != 1 else ''}"
        f"{f', weight average (EMA) decay {s.ema_decay}' if s.ema_decay else ''}.", "",
        "Macro-F1 in points, mean ± sd over seeds. PB forgetting = PhraseBank score after its last batch "
        "minus the final one (after the Twitter updates). Samples = train rows × epochs run, summed over "
        "the updates (joint retrains from the base model at every update).", "",
        "| strategy | final mean F1 | PhraseBank | Twitter | PB forgetting | BWT | cum. samples | vs joint | train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy, m in summary.items():
        ratio = (f"{m['cumulative_samples']['mean'] / joint['cumulative_samples']['mean']:.0%}" if joint else "—")
        lines.append(
            f"| {strategy} | {_pm(m['final_mean_macro_f1'])} | {_pm(m['final_phrasebank'])} | {_pm(m['final_twitter'])} "
            f"| {_pm(m['phrasebank_forgetting'])} | {_pm(m['backward_transfer'])} "
            f"| {m['cumulative_samples']['mean']:,.0f} | {ratio} | {m['train_seconds']['mean'] / 60:.1f} min |")
    lines += ["", "## Accuracy matrices (macro-F1 ×100, mean over seeds; rows: after update k; columns: test domain)", ""]
    for strategy, m in summary.items():
        lines += [f"**{strategy}**", "", "| after update | " + " | ".join(DOMAINS) + " |", "|---|---|---|"]
        for k, row in enumerate(m["matrix_mean"]):
            lines.append(f"| {k + 1} ({batches[k]['domain'].iloc[0]}) | " +
                         " | ".join("—" if (c is None or c != c) else f"{100 * c:.1f}" for c in row) + " |")
        lines.append("")
    lines += [f"![macro-F1 per domain over the stream]({name}_scores.png)",
              f"![final score vs cost]({name}_cost.png)", ""]
    (out / f"{name}.md").write_text("\n".join(lines))
    _plots(out, name, summary)


def _pm(stat: dict) -> str:
    return f"{100 * stat['mean']:.1f} ± {100 * stat['sd']:.1f}"


def _plots(out: Path, name: str, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for strategy, m in summary.items():
        matrix = np.array([[np.nan if c is None else c for c in row] for row in m["matrix_mean"]], dtype=float)
        steps = np.arange(1, len(matrix) + 1)
        for ax, column in zip(axes, (0, 1)):
            known = ~np.isnan(matrix[:, column])
            ax.plot(steps[known], 100 * matrix[known, column], marker="o", label=strategy)
    for ax, title in zip(axes, ["PhraseBank test", "Twitter valid"]):
        ax.set_title(f"{title}: macro-F1 after each update")
        ax.set_xticks(range(1, 1 + max(len(m["matrix_mean"]) for m in summary.values())))
        ax.set_xlabel("update (1–3 PhraseBank, 4–6 Twitter)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{name}_scores.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, m in summary.items():
        ax.errorbar(m["cumulative_samples"]["mean"], 100 * m["final_mean_macro_f1"]["mean"],
                    yerr=100 * m["final_mean_macro_f1"]["sd"], marker="o", capsize=3)
        ax.annotate(strategy, (m["cumulative_samples"]["mean"], 100 * m["final_mean_macro_f1"]["mean"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("cumulative training samples")
    ax.set_ylabel("final mean macro-F1 (both domains)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{name}_cost.png", dpi=110)
    plt.close(fig)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = f"GPU {torch.cuda.get_device_name(0)}, " if torch.cuda.is_available() else ""
    return (f"{gpu}{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}, commit {_commit()}{'' if _clean() else ' (with local changes)'}")


def _clean() -> bool:
    try:
        return not subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                  text=True, cwd=REPO, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def merge(parts: list[Path], data: Path, out: Path, name: str, command: str) -> dict:
    """One report from runs saved by separate invocations (e.g. one seed per process or per machine).

    The parts must agree on every setting but the seeds, and no seed may appear twice: the merged
    table is then exactly what one run over all the seeds would have printed. The stream is rebuilt
    from `data` (it is fixed by stream seed 0) and checked against the parts' batch sizes.
    """
    loaded = []
    for path in parts:
        try:
            loaded.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--merge: cannot read {path}: {exc}") from exc
    for part in loaded:
        # A setting added later is missing from older files; they ran with its default (the old behaviour).
        part["settings"] = {**asdict(Settings()), **part["settings"]}
    first = {k: v for k, v in loaded[0]["settings"].items() if k != "seeds"}
    seeds: list[int] = []
    for path, part in zip(parts, loaded):
        others = {k: v for k, v in part["settings"].items() if k != "seeds"}
        if others != first:
            differ = sorted(k for k in first.keys() | others.keys() if first.get(k) != others.get(k))
            raise SystemExit(f"--merge: {path} was run with other settings ({', '.join(differ)})")
        clash = set(seeds) & set(part["settings"]["seeds"])
        if clash:
            raise SystemExit(f"--merge: seed(s) {sorted(clash)} appear in more than one part ({path})")
        seeds += part["settings"]["seeds"]
    s = Settings(**{**first, "seeds": seeds})
    batches, tests = build_stream(data, s)
    if [len(b) for b in batches] != [b["rows"] for b in loaded[0]["batches"]]:
        raise SystemExit(f"--merge: the stream rebuilt from {data} does not match the parts' batches")
    runs = [Run(**r) for part in loaded for r in part["runs"]]
    summary = summarise(runs, batches)
    machines = list(dict.fromkeys(part["machine"] for part in loaded))
    commands = "`; `".join(part["command"] for part in loaded)
    write_report(out, name, summary, runs, s, f"{commands}`, merged by `{command}", " | ".join(machines),
                 sum(part["wall_seconds"] for part in loaded), batches, tests,
                 wall_note=f" (the {len(parts)} parts' wall times added up)")
    return summary


# Flags that override a Settings field of the same name.
SETTING_FLAGS = ("pb_batches", "tw_batches", "val_share", "seeds", "strategies", "epochs", "batch_size", "batch_rows",
                 "tw_batch_rows", "test_rows",
                 "max_length", "lora_rank", "reservoir_capacity", "half_life_rows", "learning_rate",
                 "lora_learning_rate", "precision", "replay_ratio", "replay_weight", "distill_alpha",
                 "label_smoothing", "layer_lr_decay", "ema_decay", "class_weighting")


def _flag(name: str) -> str:
    return "--no-class-weighting" if name == "class_weighting" else "--" + name.replace("_", "-")


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder with financial_phrasebank/ and twitter_financial_news_sentiment/")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where the report and PNGs go")
    p.add_argument("--name", default="cl_stream", help="file name stem of the report, JSON and PNGs")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                   help="train nothing: write one report (--out, --name) from the JSON files of runs made "
                        "separately with the same settings and different seeds")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (< 5 min on 2 cores): 50-row batches, 100 test rows, 1 seed, 3 strategies")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--val-share", type=float, help="hold out this share of each batch for early stopping (default 0)")
    p.add_argument("--joint-every-update", action="store_true", help="score joint after every update, not only "
                   "after each domain's last batch (its cost is counted either way)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES)
    p.add_argument("--no-class-weighting", dest="class_weighting", action="store_false", default=None,
                   help="plain cross-entropy instead of the daemon's inverse-class-frequency weights")
    helps = {"batch_size": "rows per training step (default 16, as in the daemon)",
             "tw_batch_rows": "rows per Twitter batch (default: as many as a PhraseBank batch)",
             "label_smoothing": "share of each target spread over all classes (default 0, as in the daemon)",
             "layer_lr_decay": "each encoder layer learns at this factor times the rate of the layer above, "
                               "the head at --learning-rate (default 1: one rate, as in the daemon)",
             "ema_decay": "score and keep a moving average of the weights with this per-step decay "
                          "(default 0: off, as in the daemon)"}
    for name in ("epochs", "batch_size", "batch_rows", "tw_batch_rows", "test_rows", "max_length", "lora_rank", "reservoir_capacity",
                 "half_life_rows", "pb_batches", "tw_batches"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=helps.get(name))
    p.add_argument("--precision", choices=["bf16", "fp32"],
                   help="bf16 (default): mixed precision, about 1.7x faster on CPUs with AVX512-BF16; fp32: exact")
    for name in ("learning_rate", "lora_learning_rate", "replay_ratio", "replay_weight", "distill_alpha",
                 "label_smoothing", "layer_lr_decay", "ema_decay"):
        p.add_argument("--" + name.replace("_", "-"), type=float, help=helps.get(name))
    args = p.parse_args(argv)
    for needed in ("financial_phrasebank/Sentences_50Agree.txt", "twitter_financial_news_sentiment/sent_train.csv",
                   "twitter_financial_news_sentiment/sent_valid.csv"):
        if not (args.data / needed).is_file():
            p.error(f"--data {args.data}: {needed} not found (expected the shared data folder)")
    given = [name for name in SETTING_FLAGS if getattr(args, name) is not None]
    for name in given:
        value = getattr(args, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            p.error(f"{_flag(name)} {value}: must not be negative")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) == 0:
            p.error(f"{_flag(name)} 0: must be at least 1")
    if args.label_smoothing is not None and args.label_smoothing >= 1:
        p.error(f"--label-smoothing {args.label_smoothing}: must be below 1")
    if args.layer_lr_decay is not None and not 0 < args.layer_lr_decay <= 1:
        p.error(f"--layer-lr-decay {args.layer_lr_decay}: must be in (0, 1]")
    if args.ema_decay is not None and args.ema_decay >= 1:
        p.error(f"--ema-decay {args.ema_decay}: must be below 1")
    training_flags = ([_flag(n) for n in given] + ["--quick"] * args.quick
                      + ["--joint-every-update"] * args.joint_every_update)
    if args.merge and training_flags:
        p.error(f"--merge trains nothing and takes its settings from the parts: drop {', '.join(training_flags)}")
    s = Settings()
    if args.quick:
        s = Settings(epochs=2, batch_rows=50, test_rows=100, seeds=[13], strategies=["naive", "class_balanced", "joint"],
                     reservoir_capacity=200, half_life_rows=100)
    s.joint_every_update = args.joint_every_update
    for name in given:
        setattr(s, name, getattr(args, name))
    return args, s


def main(argv: list[str] | None = None) -> None:
    args, s = parse(argv)
    started = time.perf_counter()
    command = "python -m bench.cl_stream " + shlex.join(sys.argv[1:] if argv is None else argv)

    def progress(line: str) -> None:
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {line}", flush=True)

    if args.merge:
        merge(args.merge, args.data, args.out, args.name, command)
        print((args.out / f"{args.name}.md").read_text())
        return
    host = machine()  # once, at the start: the commit is the code that ran
    batches, tests = build_stream(args.data, s)
    progress(f"stream: {[len(b) for b in batches]} rows per batch; test rows "
             f"{ {d: len(t) for d, t in tests.items()} }; strategies {s.strategies}; seeds {s.seeds}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="cl_stream-") as tmp:
        work = Path(tmp)
        for seed in s.seeds:
            first_batch = batches[0]
            first_val = _split(first_batch, "val")[["text", "label"]]
            result = fine_tune(resolve_base(PACKAGED_BASE), _split(first_batch, "train"),
                               first_val if len(first_val) else None, LABELS, work / f"first-{seed}",
                               train_config(s, seed, "naive"))
            first = {"model_dir": result.model_dir, "samples": result.samples_seen, "seconds": result.seconds,
                     "cells": evaluate(result.model_dir, tests, s, domains_to_score(batches, 0))}
            progress(f"seed {seed} update 1 (shared): PB {_fmt(first['cells'][0])}")
            for strategy in s.strategies:
                runs.append(run_strategy(strategy, seed, batches, tests, s, first, work, progress))
                for leftover in work.glob(f"{strategy}-{seed}-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
            # Partial results after each seed: a long run that is stopped still leaves a report.
            write_report(args.out, args.name, summarise(runs, batches), runs, s, command, host,
                         time.perf_counter() - started, batches, tests)
    progress(f"done: {args.out / (args.name + '.md')}")
    print((args.out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
