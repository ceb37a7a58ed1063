"""The gate benchmark's numbers: stage summaries, targets, and the Markdown + JSON report."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from bench.gate_data import STREAMS, Kind

REPO = Path(__file__).resolve().parents[1]
CLEARLY_BETTER = 0.01  # true pool gain ≥ +1.0 pt
TARGET_MISSED_BETTER = 0.20
TARGET_F1_GAP = 0.005


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + (" + uncommitted" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}){gpu}, torch {torch.__version__} ({torch.get_num_threads()} "
            f"threads), Python {platform.python_version()}")


# ---- classification of candidates ---------------------------------------------------------------


def classes(cache: dict[str, Any], kinds: list[Kind]) -> dict[str, str]:
    """"seed/kind" → harmful | clearly_better | other, from the kind's construction and its true pool gain."""
    harmful_kinds = {k.name for k in kinds if k.harmful}
    out = {}
    for seed, entry in cache["seeds"].items():
        for kind, cand in entry["candidates"].items():
            if "pred" not in cand:
                continue
            gain = cand["gain"]["all"]
            out[f"{seed}/{kind}"] = ("harmful" if kind in harmful_kinds or gain < 0
                                     else "clearly_better" if gain >= CLEARLY_BETTER else "other")
    return out


def stage1_summary(cache: dict[str, Any], kinds: list[Kind]) -> dict[str, Any]:
    out = {}
    for kind in kinds:
        per_seed = {seed: e["candidates"][kind.name] for seed, e in cache["seeds"].items() if kind.name in e["candidates"]}
        trained = {s: c for s, c in per_seed.items() if "pred" in c}
        gains = [c["gain"]["all"] for c in trained.values()]
        out[kind.name] = {
            "note": kind.note, "harmful_by_construction": kind.harmful,
            "gain_by_seed": {s: c["gain"] for s, c in trained.items()},
            "gain_mean": float(np.mean(gains)) if gains else None,
            "gain_sd": float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0,
            "daemon_cycle": {s: {"outcome": c["cycle"]["outcome"], "fresh_rows": c["cycle"]["metrics"].get("fresh_rows"),
                                 "regression_rows": c["cycle"]["metrics"].get("regression_rows"),
                                 "seconds": c["cycle"]["seconds"], "reasons": c["cycle"]["reasons"]}
                             for s, c in trained.items()},
            "failed": {s: c["failed"] for s, c in per_seed.items() if "failed" in c},
        }
    champions = {seed: e["champion"]["cycle"] for seed, e in cache["seeds"].items() if "champion" in e}
    return {"kinds": out, "bootstrap_seconds": {s: c["seconds"] for s, c in champions.items()}}


def _rates(results: list[dict[str, Any]]) -> dict[str, Any]:
    draws = sum(r["draws"] for r in results)
    rows = [x for r in results for x in r["rows"]]
    rounds = [x for r in results for x in r["rounds"]]
    return {"draws": draws, "promote": sum(r["promote"] for r in results) / draws,
            "reject": sum(r["reject"] for r in results) / draws, "wait": sum(r["wait"] for r in results) / draws,
            "mean_rows": float(np.mean(rows)), "mean_rounds": float(np.mean(rounds)), "max_rounds": int(max(rounds))}


def stage2_summary(results: dict[str, dict[str, dict]], cache: dict[str, Any], kinds: list[Kind]) -> dict[str, Any]:
    """Per policy: rates per kind (pooled over seeds), per candidate, and the issue's two targets."""
    cls = classes(cache, kinds)
    out = {}
    for policy, by_candidate in results.items():
        per_kind = {}
        for kind in kinds:
            mine = {key: r for key, r in by_candidate.items() if key.split("/")[1] == kind.name}
            if mine:
                per_kind[kind.name] = {**_rates(list(mine.values())),
                                       "promote_by_seed": {k.split("/")[0]: r["promote"] / r["draws"] for k, r in mine.items()},
                                       "failed_rules": _shares(mine.values(), "failed_rules"),
                                       "waiting_rules": _shares(mine.values(), "waiting_rules")}
        harmful = [r for key, r in by_candidate.items() if cls.get(key) == "harmful"]
        better = [r for key, r in by_candidate.items() if cls.get(key) == "clearly_better"]
        harmful_rate = _rates(harmful)["promote"] if harmful else None
        missed = 1 - _rates(better)["promote"] if better else None
        out[policy] = {
            "kinds": per_kind,
            "candidates": {key: {"class": cls.get(key), "promote": r["promote"] / r["draws"],
                                 "reject": r["reject"] / r["draws"], "wait": r["wait"] / r["draws"],
                                 "mean_rows": float(np.mean(r["rows"])), "mean_rounds": float(np.mean(r["rounds"]))}
                           for key, r in by_candidate.items()},
            "harmful_candidates": sum(1 for key in by_candidate if cls.get(key) == "harmful"),
            "clearly_better_candidates": sum(1 for key in by_candidate if cls.get(key) == "clearly_better"),
            "harmful_promoted": harmful_rate,
            "harmful_promoted_max": max((r["promote"] / r["draws"] for r in harmful), default=None),
            "clearly_better_not_promoted": missed,
            "targets_met": (harmful_rate == 0 if harmful else None,
                            missed <= TARGET_MISSED_BETTER if missed is not None else None),
        }
    return out


def _shares(results, key: str) -> dict[str, float]:
    """Share of draws whose final decision had each rule failed (or waiting)."""
    results = list(results)
    draws = sum(r["draws"] for r in results)
    rules = sorted({rule for r in results for rule in r[key]})
    return {rule: sum(r[key].get(rule, 0) for r in results) / draws for rule in rules}


def stage3_summary(results: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for seed, entry in results.items():
        if seed == "key" or "default" not in entry or "always_promote" not in entry:
            continue
        for stream in STREAMS:
            d, a = entry["default"][stream], entry["always_promote"][stream]
            j = entry.get("joint", {}).get(stream)
            rows.append({"seed": seed, "stream": stream, "bootstrap": entry["bootstrap_macro_f1"],
                         "default": d["macro_f1"], "always_promote": a["macro_f1"],
                         "joint": j["macro_f1"] if j else None,
                         "default_decisions": [c["outcome"] for c in d["cycles"]],
                         "always_decisions": [c["outcome"] + (" (forced)" if c.get("forced") else "")
                                              for c in a["cycles"]],
                         "always_all_promoted": a["all_promoted"],
                         "poisoned_blocked": (not d["poisoned_promoted"]) if stream == "poisoned" else None,
                         "pending_at_end": d["pending_at_end"]})
    clean = [r["default"] - r["always_promote"] for r in rows if r["stream"] == "clean"]
    blocked = [r["poisoned_blocked"] for r in rows if r["stream"] == "poisoned"]
    return {"rows": rows, "clean_gap_to_always": float(np.mean(clean)) if clean else None,
            "every_poisoned_blocked": all(blocked) if blocked else None,
            "targets_met": (bool(clean) and float(np.mean(clean)) >= -TARGET_F1_GAP, all(blocked) if blocked else None)}


# ---- Markdown ---------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %" if value in (0, 1) else f"{100 * value:.1f} %"


def _pt(value: float | None, sign: bool = True) -> str:
    return "—" if value is None else f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"


def _ok(flag: bool | None) -> str:
    return "—" if flag is None else "met" if flag else "**missed**"


def render(report: dict[str, Any]) -> str:
    cfg, stages = report["config"], report["stages"]
    lines = ["# Gate benchmark: does the gate let real improvements through and keep harmful ones out?", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             (f"Commit: {report['commit']}; gate code {report['gate_code']} (sha of registry/gate.py, policy.py, "
             f"bootstrap.py, evidence.py); written {report['written']}  "),
             f"Gate defaults: {', '.join(f'{k} {v}' for k, v in report['gate_defaults'].items())}  ",
             (f"Load average (1 min): {report['load_average']['start']:.1f} at the start, "
              f"{report['load_average']['written']:.1f} when written (other jobs shared the cores when > 2)  "),
             "Wall time: " + "; ".join(f"stage {s} {v['seconds'] / 60:.1f} min" + (f" (`{v['command']}`)"
                                       if v["command"] != report["command"] else "")
                                       for s, v in sorted(stages.items())) + "", "",
             (f"Settings: seeds {cfg['seeds']}, bootstrap on data/demo/01-tweets.csv "
             f"({cfg['bootstrap_rows'] or 'all'} rows), {cfg['batch_rows']}-row batches, train.epochs "
             f"{cfg['epochs'] or 'daemon default'}, noise {cfg['noise']:.0%}, worse lr {cfg['worse_lr']:g}; stage 2: "
             f"{cfg['draws']} draws per candidate and policy, {cfg['fresh_rows']} fresh rows per pending batch, "
             f"{cfg['regression_rows']} regression rows; pool {report['pool']}."), ""]
    s1, s2, s3 = report.get("stage1"), report.get("stage2"), report.get("stage3")
    if s2:
        lines += ["## Targets per policy (stage 2)", "",
                  ("Harmful = poisoned and worse candidates, and any candidate whose true pool gain is < 0; "
                  f"clearly better = true pool gain ≥ +{100 * CLEARLY_BETTER:.1f} pt."), "",
                  ("| policy | harmful promoted (target 0) | worst harmful candidate | clearly better not promoted "
                  "(target ≤ 20 %) | candidates harmful / clearly better |"), "|---|---|---|---|---|"]
        for policy, p in s2.items():
            lines.append(f"| {policy} | {_pct(p['harmful_promoted'])} ({_ok(p['targets_met'][0])}) | "
                         f"{_pct(p['harmful_promoted_max'])} | {_pct(p['clearly_better_not_promoted'])} "
                         f"({_ok(p['targets_met'][1])}) | {p['harmful_candidates']} / {p['clearly_better_candidates']} |")
        lines.append("")
    if s1:
        lines += ["## Candidates (stage 1: one real cycle each, scored on the whole pool)", "",
                  "| kind | what | true pool gain, pt (mean ± sd) | per seed | daemon's own cycle decision per seed |",
                  "|---|---|---|---|---|"]
        for kind, k in s1["kinds"].items():
            per_seed = ", ".join(f"{_pt(g['all'])}" for g in k["gain_by_seed"].values())
            own = ", ".join(f"{c['outcome']} ({c['fresh_rows']:.0f} fresh)" for c in k["daemon_cycle"].values())
            if k["failed"]:
                own += "; failed: " + "; ".join(k["failed"].values())
            mean = "—" if k["gain_mean"] is None else f"{_pt(k['gain_mean'])} ± {100 * k['gain_sd']:.1f}"
            lines.append(f"| {kind} | {k['note']} | {mean} | {per_seed} | {own} |")
        lines.append("")
    if s2:
        lines += ["## Decisions per kind and policy (stage 2, pooled over seeds)", "",
                  ("P(promote) / P(reject) / P(wait, unresolved) over the draws; rows = fresh rows seen at the final "
                  "decision; rounds = decisions per draw (1 + WAITs). Rules = share of draws whose final decision "
                  "failed that rule."), "",
                  "| policy | kind | true gain, pt | promote | reject | wait | mean rows | mean rounds | rules failed |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for policy, p in s2.items():
            for kind, r in p["kinds"].items():
                gain = s1["kinds"][kind]["gain_mean"] if s1 else None
                rules = ", ".join(f"{rule} {100 * v:.0f} %" for rule, v in
                                  sorted(r["failed_rules"].items(), key=lambda x: -x[1]) if v >= 0.05) or "—"
                lines.append(f"| {policy} | {kind} | {_pt(gain)} | {_pct(r['promote'])} | {_pct(r['reject'])} | "
                             f"{_pct(r['wait'])} | {r['mean_rows']:.0f} | {r['mean_rounds']:.1f} | {rules} |")
        lines.append("")
    if s3:
        lines += ["## Streams (stage 3: the daemon over four batches after the bootstrap, real training)", "",
                  ("Final champion's macro-F1 on the whole pool, in points. Decisions are per cycle (a WAIT keeps "
                  "its batch pending for the next cycle)."), "",
                  ("| seed | stream | bootstrap | gate defaults | always promote | joint retraining | defaults − always "
                  "| decisions (defaults) | poisoned blocked |"), "|---|---|---|---|---|---|---|---|---|"]
        for r in s3["rows"]:
            lines.append(f"| {r['seed']} | {r['stream']} | {_pt(r['bootstrap'], False)} | {_pt(r['default'], False)} | "
                         f"{_pt(r['always_promote'], False)} | {_pt(r['joint'], False)} | "
                         f"{_pt(r['default'] - r['always_promote'])} | {' '.join(r['default_decisions'])} | "
                         f"{'—' if r['poisoned_blocked'] is None else 'yes' if r['poisoned_blocked'] else '**no**'} |")
        always_ok = all(r["always_all_promoted"] for r in s3["rows"])
        forced = sum(d.endswith("(forced)") for r in s3["rows"] for d in r["always_decisions"])
        joint = [r["default"] - r["joint"] for r in s3["rows"] if r["joint"] is not None]
        always = "; ".join(f"{r['stream']}: " + " ".join(r["always_decisions"]) for r in s3["rows"])
        lines += ["", (f"Always-promote made every candidate champion: {'yes' if always_ok else '**no**'} ({forced} "
                       "forced after the gate refused: "
                       f"{always}). "
                       f"Clean streams: defaults − always-promote {_pt(s3['clean_gap_to_always'])} pt (target ≥ "
                       f"−0.5: {_ok(s3['targets_met'][0])}); every poisoned batch blocked: "
                       f"{_ok(s3['targets_met'][1])}. Defaults − joint retraining: "
                       f"{', '.join(_pt(g) for g in joint) or '—'} pt."), ""]
    lines += [f"Raw numbers: `{report['name']}.json`. Per-row predictions (stage 1 cache): `{report['work']}`.", ""]
    return "\n".join(lines)


def write(out: Path, name: str, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / f"{name}.md").write_text(render(report))
