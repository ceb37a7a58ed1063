"""Stage 2: many seeded gate decisions per stored candidate, from its per-row pool predictions alone.

The gate (`registry.gate.decide`) is a pure function of the two models' per-row predictions, so one
trained candidate yields as many evaluations as there are ways to draw the rows a daemon would have
judged it on. One draw: a regression sample of `regression_rows` rows from the regression pool (the
suite a few batches in), and `fresh_rows` rows from the fresh pool (one pending batch's test rows).
While the gate says WAIT, another `fresh_rows` rows join (the next pending batch) and it decides
again, until PROMOTE or REJECT, or until the policy's `max_wait_rows` (or the pool) runs out: then the
draw ends as WAIT, which promotes nothing. Draw i of a candidate uses the same rows under every policy,
so policies are compared on paired evidence.

A policy is a dict of `GatePolicy` field overrides plus a "name"; field names are checked against
`GatePolicy.model_fields` when the grid is read, so a field the gate gains is usable at once.

Why the reports are not built by `retrain.evaluation.score`: it runs the shipped `evaluate` metric
modules, ~130 ms a call, and stage 2 needs ~10^5 reports. `part_report` builds the same dict from the
confusion matrix in numpy (~0.1 ms); `check_parts` compares it with `score` on every candidate before
its draws (tests/test_bench_gate.py pins it too), so a change to `score` stops the benchmark instead
of drifting away from it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from registry import bootstrap as _bootstrap_module
from registry import evidence as _evidence_module
from registry import gate as _gate_module
from registry import policy as _policy_module
from registry.evidence import EvaluationReport, PartReport
from registry.gate import PROMOTE, REJECT, WAIT, decide
from registry.policy import GatePolicy

# The gate's code as this process imported it. Stage 2's workers import it afresh, so a gate edited while
# the benchmark runs would judge part of the draws: each worker checks it has the parent's.
_GATE_MODULES = (_gate_module, _policy_module, _bootstrap_module, _evidence_module)
GATE_CODE = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in _GATE_MODULES)).hexdigest()[:12]

# The default grid: the gate's defaults and single-field variants around them. Extend it here or pass
# --policies FILE.json (a list of such dicts) / --policy JSON. (No always-promote entry: the gate has
# rules no policy field turns off, such as the negative-flip sign test; stage 3 forces it instead.)
# The defaults and their neighbours: each entry moves one threshold off the default.
GRID: list[dict[str, Any]] = [
    {"name": "default"},
    {"name": "significance only (fresh_margin 0, max_forgetting 0.01: the defaults before)",
     "fresh_margin": 0.0, "max_forgetting": 0.01},
    {"name": "fresh_margin 0.02", "fresh_margin": 0.02},
    {"name": "max_forgetting 0.01", "max_forgetting": 0.01},
    {"name": "max_forgetting 0.03", "max_forgetting": 0.03},
    {"name": "pool_regression off", "pool_regression": False},
    {"name": "max_wait_rows 200", "max_wait_rows": 200},
]


class PolicyGridError(ValueError):
    def __init__(self, entry: Any, problem: str) -> None:
        self.entry, self.problem = entry, problem
        super().__init__(f"policy {entry!r}: {problem}")


def policy_of(entry: dict[str, Any]) -> GatePolicy:
    """The GatePolicy of one grid entry: its fields over the gate's defaults, validated by GatePolicy itself."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise PolicyGridError(entry, "expected a dict with a 'name' and GatePolicy field overrides")
    fields = {k: v for k, v in entry.items() if k != "name"}
    unknown = sorted(set(fields) - set(GatePolicy.model_fields))
    if unknown:
        raise PolicyGridError(entry, f"{unknown} not GatePolicy fields ({', '.join(GatePolicy.model_fields)})")
    try:
        return GatePolicy(**fields)
    except ValueError as exc:
        raise PolicyGridError(entry, str(exc)) from None


def read_grid(files: list[Path] | None, inline: list[str] | None) -> list[dict[str, Any]]:
    """--policies FILE.json (lists of entries) then --policy JSON (one entry each); the default grid if neither."""
    grid = [entry for path in files or [] for entry in json.loads(Path(path).read_text())]
    grid += [json.loads(text) for text in inline or []]
    grid = grid or [dict(entry) for entry in GRID]
    names = [entry.get("name") for entry in grid]
    if len(set(names)) != len(names):
        raise PolicyGridError(names, "policy names must be distinct")
    for entry in grid:
        policy_of(entry)
    return grid


# ---- per-row evidence → PartReport ---------------------------------------------------------------


def part_report(true_ids: np.ndarray, pred_ids: np.ndarray, labels: list[str]) -> PartReport:
    """What `retrain.evaluation.score` returns (plus y_true/y_pred), computed from the confusion matrix."""
    k, n = len(labels), len(true_ids)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true_ids, pred_ids), 1)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)

    def ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:  # zero_division=0, as score()
        return np.divide(top, bottom, out=np.zeros(k), where=bottom > 0)

    f1 = ratio(2 * tp, (support + predicted).astype(np.float64))
    by_label = lambda values: {label: float(v) for label, v in zip(labels, values)}
    names = np.asarray(labels, dtype=object)
    return PartReport(
        n=n, macro_f1=float(f1.mean()), accuracy=float(tp.sum() / n), recall=by_label(ratio(tp, support)),
        pred_share={label: float(c) / n for label, c in zip(labels, predicted)},
        y_true=tuple(names[true_ids]), y_pred=tuple(names[pred_ids]),
        precision=by_label(ratio(tp, predicted)), f1=by_label(f1),
        support={label: int(c) for label, c in zip(labels, support)}, confusion=confusion.tolist())


def check_parts(truth: np.ndarray, preds: list[np.ndarray], labels: list[str], rows: int, seed: int,
                checks: int = 3) -> None:
    """`part_report` must equal `retrain.evaluation.score` (to 1e-12) on seeded samples of these rows."""
    from retrain.evaluation import score  # imports torch: the parent process only

    rng = np.random.default_rng(seed)
    for _ in range(checks):
        index = rng.choice(len(truth), size=min(rows, len(truth)), replace=False)
        for pred in preds:
            mine = part_report(truth[index], pred[index], labels)
            theirs = score([labels[i] for i in truth[index]], [labels[i] for i in pred[index]], labels)
            for key, value in theirs.items():
                if not _close(getattr(mine, key), value):
                    raise AssertionError(f"part_report differs from retrain.evaluation.score on {key!r}: "
                                         f"{getattr(mine, key)!r} vs {value!r}")


def _close(a: Any, b: Any) -> bool:
    if isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in b)
    if isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(b, float) or isinstance(a, float):
        return a is not None and b is not None and abs(a - b) <= 1e-12
    return a == b


# ---- the draws ----------------------------------------------------------------------------------


def draw_decisions(evidence: dict[str, Any], entry: dict[str, Any], draws: int, fresh_rows: int,
                   regression_rows: int, seed_key: list[int]) -> dict[str, Any]:
    """`draws` seeded evaluations of one candidate under one policy, each with its WAIT rounds.

    `evidence`: labels, and per half ("fresh", "regression") int arrays truth / candidate / champion,
    plus the candidate's train_loss. Returns the outcome counts and per-draw rows used and rounds.
    """
    policy, labels = policy_of(entry), evidence["labels"]
    fresh, reg = evidence["fresh"], evidence["regression"]
    n_fresh, n_reg = len(fresh["truth"]), len(reg["truth"])
    cap = min(getattr(policy, "max_wait_rows", n_fresh), n_fresh)
    outcomes, rows_used, rounds_used, failed, waiting = [], [], [], Counter(), Counter()
    for i in range(draws):
        rng = np.random.default_rng([*seed_key, i])
        order = rng.permutation(n_fresh)
        pick = rng.choice(n_reg, size=min(regression_rows, n_reg), replace=False) if regression_rows else None
        reports = {}
        if pick is not None:
            reports = {side: part_report(reg["truth"][pick], reg[side][pick], labels)
                       for side in ("candidate", "champion")}
        rows, rounds = min(fresh_rows, n_fresh), 0
        while True:
            rounds += 1
            index = order[:rows]
            sides = {side: EvaluationReport(part_report(fresh["truth"][index], fresh[side][index], labels),
                                            reports.get(side),
                                            evidence["train_loss"] if side == "candidate" else None)
                     for side in ("candidate", "champion")}
            decision = decide(sides["candidate"], sides["champion"], policy)
            if decision.outcome != WAIT or rows >= cap or rows + fresh_rows > n_fresh:
                break
            rows += fresh_rows
        outcomes.append(decision.outcome)
        rows_used.append(rows)
        rounds_used.append(rounds)
        failed.update(check.rule for check in decision.failed)
        waiting.update(check.rule for check in decision.waiting)
    counts = Counter(outcomes)
    return {"draws": draws, "promote": counts[PROMOTE], "reject": counts[REJECT], "wait": counts[WAIT],
            "rows": rows_used, "rounds": rounds_used, "failed_rules": dict(failed), "waiting_rules": dict(waiting)}


def _evidence(cache: dict[str, Any], seed: str, kind: str) -> dict[str, Any]:
    labels = cache["labels"]
    index = {label: i for i, label in enumerate(labels)}
    ids = lambda values: np.array([index[v] for v in values], dtype=np.int64)
    half = np.array(cache["pool"]["half"])
    truth = ids(cache["pool"]["label"])
    entry = cache["seeds"][seed]
    cand, champ = ids(entry["candidates"][kind]["pred"]), ids(entry["champion"]["pred"])
    parts = {name: {"truth": truth[half == name], "candidate": cand[half == name], "champion": champ[half == name]}
             for name in ("fresh", "regression")}
    return {"labels": labels, **parts, "train_loss": entry["candidates"][kind].get("train_loss"),
            "gate_code": GATE_CODE}


def _task(args: tuple) -> tuple[str, str, str, dict[str, Any]]:
    evidence, entry, draws, fresh_rows, regression_rows, seed_key, seed, kind = args
    from threadpoolctl import threadpool_limits

    if evidence.get("gate_code", GATE_CODE) != GATE_CODE:
        raise RuntimeError(f"registry/gate.py (or policy, bootstrap, evidence) changed while the benchmark ran: "
                           f"the parent judged with {evidence['gate_code']}, this worker has {GATE_CODE}; rerun")

    with threadpool_limits(1):  # one BLAS thread per worker: the workers are the parallelism
        return seed, kind, entry["name"], draw_decisions(evidence, entry, draws, fresh_rows, regression_rows,
                                                         seed_key)


def candidates(cache: dict[str, Any]) -> list[tuple[str, str]]:
    """(seed, kind) of every stored candidate that trained (a failed one has no predictions)."""
    return [(seed, kind) for seed, entry in cache["seeds"].items()
            for kind, cand in entry["candidates"].items() if "pred" in cand]


def run_stage2(cache: dict[str, Any], grid: list[dict[str, Any]], draws: int, fresh_rows: int,
               regression_rows: int, jobs: int, progress, on_policy=None) -> dict[str, dict[str, dict]]:
    """{policy name: {"seed/kind": draw result}}; `on_policy(results)` after each policy (partial reports)."""
    stored = candidates(cache)
    evidence = {}
    for seed, kind in stored:
        evidence[seed, kind] = ev = _evidence(cache, seed, kind)
        both = [np.concatenate([ev[h][side] for h in ("fresh", "regression")]) for side in ("candidate", "champion")]
        truth = np.concatenate([ev[h]["truth"] for h in ("fresh", "regression")])
        check_parts(truth, both, ev["labels"], fresh_rows, seed=int(seed))
    results: dict[str, dict[str, dict]] = {}
    # Spawned workers import numpy and the gate only (no torch); jobs 1 runs in this process.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) if jobs > 1 else None
    try:
        for entry in grid:
            tasks = [(evidence[seed, kind], entry, draws, fresh_rows, regression_rows,
                      [int(seed), zlib.crc32(kind.encode())], seed, kind) for seed, kind in stored]
            done = pool.map(_task, tasks) if pool else map(_task, tasks)
            results[entry["name"]] = {f"{seed}/{kind}": out for seed, kind, _, out in done}
            progress(f"stage 2 policy {entry['name']!r}: {len(tasks)} candidates × {draws} draws")
            if on_policy is not None:
                on_policy(results)
    finally:
        if pool is not None:
            pool.shutdown()
    return results
