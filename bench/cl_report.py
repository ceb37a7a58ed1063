"""The stream benchmark's results: the summary over seeds, the Markdown report, its JSON and plots, and --merge."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.cl_data import build_stream
from bench.cl_runs import Run
from bench.cl_settings import DOMAINS, Settings, flatten, from_json, to_json
from retrain import cl_metrics

REPO = Path(__file__).resolve().parents[1]


# -- summary over seeds ---------------------------------------------------------------------------
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
        {"command": command, "machine": machine, "wall_seconds": wall, "settings": to_json(s),
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
        (f"Test rows: PhraseBank {len(tests['phrasebank'])}, Twitter {len(tests['twitter'])}. "
         f"Model: {s.model.base}; {_training(s)}."), "",
        ("Macro-F1 in points, mean ± sd over seeds. PB forgetting = PhraseBank score after its last batch "
         "minus the final one (after the Twitter updates). Samples = train rows × epochs run, summed over "
         "the updates (joint retrains from the base model at every update)."), "",
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
                         " | ".join("—" if c is None else f"{100 * c:.1f}" for c in row) + " |")
        lines.append("")
    lines += [f"![macro-F1 per domain over the stream]({name}_scores.png)",
              f"![final score vs cost]({name}_cost.png)", ""]
    (out / f"{name}.md").write_text("\n".join(lines))
    _plots(out, name, summary)


def _training(s: Settings) -> str:
    """The settings line: the package configs' values this run used (the daemon's, but where the bench overrides)."""
    train, replay = s.train, s.replay
    stopping = f"early stopping on a {s.val_share:.0%} val split" if s.val_share else "fixed, no early stopping"
    return (f"epochs {train.epochs} ({stopping}), lr {train.learning_rate} (LoRA: {s.lora_learning_rate}, rank "
            f"{s.lora_rank}), {train.precision}, batch {train.batch_size}, max_length {s.model.max_length}, "
            f"replay ratio {replay.ratio} (reservoir capacity {replay.reservoir_capacity}, recency half-life "
            f"{replay.half_life_rows} rows), distill alpha {s.distill_alpha}, "
            f"class weighting {'on' if train.class_weighting else 'off'}"
            + (", length-grouped batches" if train.length_grouped else ", random batches"))


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
    for path, part in zip(parts, loaded):
        try:
            # A setting added later is missing from older files: they ran with its default (the old behaviour).
            part["settings"] = to_json(from_json(part["settings"]))
        except ValueError as exc:  # pydantic's errors and InvalidConfigError are ValueErrors
            raise SystemExit(f"--merge: {path}: {exc}") from exc
    first = {k: v for k, v in flatten(loaded[0]["settings"]).items() if k != "seeds"}
    seeds: list[int] = []
    for path, part in zip(parts, loaded):
        others = {k: v for k, v in flatten(part["settings"]).items() if k != "seeds"}
        if others != first:
            differ = sorted(k for k in first.keys() | others.keys() if first.get(k) != others.get(k))
            raise SystemExit(f"--merge: {path} was run with other settings ({', '.join(differ)})")
        clash = set(seeds) & set(part["settings"]["seeds"])
        if clash:
            raise SystemExit(f"--merge: seed(s) {sorted(clash)} appear in more than one part ({path})")
        seeds += part["settings"]["seeds"]
    s = from_json({**loaded[0]["settings"], "seeds": seeds})
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


