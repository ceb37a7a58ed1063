"""Stage 3: the daemon over whole streams (real training): the gate's defaults, always-promote, joint retraining.

Per stream seed, from stage 1's bootstrap folder (champion v1 on the demo's first batch), each gate
policy runs the daemon over two streams of four batches, ingested one at a time with `run_cycle`
after each: clean (clean1..clean4) and poisoned (clean1, clean2, poisoned3, clean4; poisoned3 is
clean3's texts with every label rotated). The streams share their first two batches, so each policy's
folder is branched after them. Always-promote runs the gate with every threshold open (ALWAYS_PROMOTE)
and promotes what it still refuses (the negative-flip sign test, a collapsed model) the way an operator
would, through the daemon's `AliasKeeper.promote(force=True)`. A WAIT keeps its batches pending, as
in the daemon: the next cycle trains on them and the next batch together. Joint retraining fine-tunes the base model once on every
clean row of a stream (the bootstrap batch included), with the ledger's own train/val split and the
daemon's TrainConfig. The final champions are scored on the whole evaluation pool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from bench.gate_config import ALWAYS_PROMOTE, Config, daemon_settings
from bench.gate_data import SHARED_PREFIX, STREAMS, stream_batches, write_batch
from bench.gate_train import (
    bootstrap,
    branch,
    executor,
    ingest,
    log_line,
    predict,
    set_threads,
    timed_cycle,
)
from daemon.context import Context, open_context
from daemon.cycle import evidence
from retrain.evaluation import Predictor, score
from retrain.modeling import resolve_base
from retrain.train import fine_tune
from retrain.update import split

CACHE = "stage3.json"
POLICIES = {"default": {}, "always_promote": ALWAYS_PROMOTE}


def feed(ctx: Context, root: Path, name: str, rows: pd.DataFrame, force: bool) -> dict[str, Any]:
    """Ingest one batch and run a cycle, as the daemon does when a file lands in its inbox. `force`: a
    candidate the gate refused is then promoted the way an operator would (`cltool promote --force`)."""
    ingest(ctx, write_batch(rows, root / "files" / f"{name}.csv"))
    trained_on = [b.file_name.removesuffix(".csv") for b in ctx.store.list_batches(pending=True)]
    record = timed_cycle(ctx, f"bench: {name}")
    record["forced"] = False
    if force and record["outcome"] != "PROMOTE" and record["version"] is not None:
        ctx.keeper.promote(record["version"], "bench: always promote", actor="bench", force=True,
                           decision=record["outcome"])
        record["forced"] = True
    return {"batch": name, "trained_on": trained_on, **record}


def _policy_streams(policy: str, base: Path, work: Path, cfg: Config, seed: int,
                    batches: dict[str, pd.DataFrame], texts: list[str], truth: list[str], labels: list[str],
                    progress: Callable[[str], None]) -> dict[str, Any]:
    gate, force = POLICIES[policy], policy == "always_promote"
    prefix = work / f"{policy}-prefix"
    branch(base, prefix)
    ctx = open_context(daemon_settings(prefix, cfg, seed, gate=gate), owner="bench")
    shared = [feed(ctx, prefix, name, batches[name], force) for name in STREAMS["clean"][:SHARED_PREFIX]]
    out = {}
    for stream, names in STREAMS.items():
        root = work / f"{policy}-{stream}"
        branch(prefix, root)
        ctx = open_context(daemon_settings(root, cfg, seed, gate=gate), owner="bench")
        cycles = shared + [feed(ctx, root, name, batches[name], force) for name in names[SHARED_PREFIX:]]
        champion = ctx.registry.get_alias("champion").version
        pred = predict(ctx, champion, texts)
        became_champion = [c["outcome"] == "PROMOTE" or c["forced"] for c in cycles]
        poisoned_promoted = any(promoted and any(b.startswith("poisoned") for b in c["trained_on"])
                                for promoted, c in zip(became_champion, cycles))
        out[stream] = {
            "cycles": [{k: c[k] for k in ("batch", "trained_on", "outcome", "forced", "version", "reasons", "seconds")}
                       for c in cycles],
            "champion": champion, "macro_f1": score(truth, pred, labels)["macro_f1"],
            "pending_at_end": [b.file_name for b in ctx.store.list_batches(pending=True)],
            "poisoned_promoted": poisoned_promoted if stream == "poisoned" else None,
            "all_promoted": all(became_champion),
        }
        progress(f"stage 3 seed {seed} {policy} {stream}: "
                 + ", ".join(f"{c['batch']} {c['outcome']}{' (forced)' * c['forced']}" for c in cycles)
                 + f"; final champion v{champion} pool macro-F1 {100 * out[stream]['macro_f1']:.1f}")
    out["_ledger"] = str(work / f"{policy}-clean")  # the folder that learned every clean batch
    return out


def joint_rows(stream: str, ledger: Path, cfg: Config, seed: int) -> pd.DataFrame:
    """Every clean row of `stream` (the bootstrap batch included) from a clean-stream folder's ledger, which
    holds every clean batch, with the split the daemon gave each row."""
    wanted = {"01-tweets", *[name for name in STREAMS[stream] if not name.startswith("poisoned")]}
    ctx = open_context(daemon_settings(ledger, cfg, seed), owner="bench")
    batches = ctx.store.list_batches()
    names = {b.batch_id: b.file_name.removesuffix(".csv") for b in batches}
    rows = evidence.load_rows(ctx.store, batches)
    rows = rows.assign(file=rows["batch_id"].map(names))
    rows = rows[rows["file"].isin(wanted)].reset_index(drop=True)
    if missing := wanted - set(rows["file"]):
        raise RuntimeError(f"joint {stream}: batches {sorted(missing)} are not in {ledger}")
    return rows


def joint(stream: str, rows: pd.DataFrame, work: Path, cfg: Config, seed: int, texts: list[str],
          truth: list[str], labels: list[str]) -> dict[str, Any]:
    """The base model fine-tuned once on `rows` (their train split; early stopping on their val split) with
    the daemon's TrainConfig, scored on the pool."""
    s = daemon_settings(work / f"joint-{stream}", cfg, seed)
    started = time.perf_counter()
    result = fine_tune(resolve_base(s.model.base), split(rows, "train"), split(rows, "val"), s.labels,
                       work / f"joint-{stream}", s.train, max_length=s.model.max_length)
    model = Predictor(result.model_dir, max_length=s.model.max_length)
    ids, _ = model.predict(texts)
    f1 = score(truth, [model.labels[i] for i in ids], labels)["macro_f1"]
    return {"macro_f1": f1, "train_rows": int((rows["split"] == "train").sum()), "epochs_run": result.epochs_run,
            "seconds": time.perf_counter() - started}


def _policy_job(args: tuple) -> tuple[str, str, dict[str, Any]]:
    policy, base, stream_work, cfg, seed, batches, texts, truth, labels, threads = args
    set_threads(threads)
    started = time.perf_counter()
    out = _policy_streams(policy, base, stream_work, cfg, seed, batches, texts, truth, labels, log_line)
    return "policy", policy, {**out, "_seconds": time.perf_counter() - started}


def _joint_job(args: tuple) -> tuple[str, str, dict[str, Any]]:
    stream, rows, stream_work, cfg, seed, texts, truth, labels, threads = args
    set_threads(threads)
    out = joint(stream, rows, stream_work, cfg, seed, texts, truth, labels)
    log_line(f"stage 3 seed {seed} joint {stream}: pool macro-F1 {100 * out['macro_f1']:.1f} in {out['seconds']:.0f} s")
    return "joint", stream, out


def each(function, tasks: list[tuple], jobs: int):
    """`function(task)` for every task, in `jobs` worker processes, yielded as they finish."""
    with executor(min(jobs, len(tasks))) as ex:
        yield from (future.result() for future in as_completed([ex.submit(function, task) for task in tasks]))


def run_stage3(work: Path, cfg: Config, pool: pd.DataFrame, unseen: pd.DataFrame, labels: list[str],
               on_result: Callable[[dict], None] | None = None, jobs: int = 1, threads: int = 0) -> dict[str, Any]:
    """{seed: {policy: {stream: ...}, "joint": {stream: ...}, "bootstrap_macro_f1"}}, resuming from
    <work>/stage3.json. The two policies run side by side in `jobs` processes, then the two joint models."""
    path = work / CACHE
    results = json.loads(path.read_text()) if path.is_file() else {}
    if results.get("key") not in (None, cfg.stage3_key()):
        raise SystemExit(f"{path} was made with other settings ({results['key']}); use another --work, or delete it")
    results["key"] = cfg.stage3_key()
    texts, truth = pool["text"].tolist(), pool["label"].tolist()
    for seed in cfg.stage3_seeds():
        entry = results.setdefault(str(seed), {})
        base = work / f"seed{seed}" / "bootstrap"
        ctx, record = bootstrap(base, cfg, seed)
        if "bootstrap_macro_f1" not in entry:
            entry["bootstrap_macro_f1"] = score(truth, predict(ctx, record["version"], texts), labels)["macro_f1"]
        batches = stream_batches(unseen, cfg.batch_rows, labels, seed)
        stream_work = work / f"seed{seed}" / "stream"
        tasks = [(policy, base, stream_work, cfg, seed, batches, texts, truth, labels, threads)
                 for policy in POLICIES if policy not in entry]
        for _, policy, out in each(_policy_job, tasks, jobs):
            entry[policy] = out
            _save(path, results, on_result)
        ledger = Path(entry["always_promote"]["_ledger"])
        entry.setdefault("joint", {})
        tasks = [(stream, joint_rows(stream, ledger, cfg, seed), stream_work, cfg, seed, texts, truth, labels, threads)
                 for stream in STREAMS if stream not in entry["joint"]]
        for _, stream, out in each(_joint_job, tasks, jobs):
            entry["joint"][stream] = out
            _save(path, results, on_result)
    return results


def _save(path: Path, results: dict[str, Any], on_result) -> None:
    path.write_text(json.dumps(results, indent=1))
    if on_result is not None:
        on_result(results)
