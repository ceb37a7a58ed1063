"""The `cltool` command. One short function per command; each docstring is its --help.

Exit codes: 0 done, 1 refused or failed (message says why), 2 bad usage or config, 3 lock held.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from daemon import events
from daemon.cli.common import actor, context, emit, fail_cleanly
from daemon.cli.config_file import render_toml
from daemon.cli.db import db
from daemon.errors import CltoolError, QuarantinedError

HIDDEN_BY_DEFAULT = {events.ALIAS_SYNCED, events.CYCLE_STARTED, events.CYCLE_PHASE, events.DEMO_FED, events.WATCH_SCORED,
                     events.DRIFT_SCORED, events.JOB_MISSED, events.OBSERVE_LISTENING, events.LIVE_SCORED,
                     events.LIVE_EMBEDDING_SCORED}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="TOML config (else $CLTOOL_CONFIG, else ./cltool.toml).")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Override state_dir.")
@click.option("--inbox-dir", type=click.Path(file_okay=False), help="Override inbox_dir.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any setting, e.g. --set train.epochs=1.")
@click.version_option(package_name="cltool")
@click.pass_context
def cli(ctx: click.Context, config, state_dir, inbox_dir, sets) -> None:
    """cltool keeps a text classifier learning from new labeled data without forgetting.

    Drop labeled files (text,label) into the inbox; the daemon validates and records them,
    fine-tunes the champion on new rows plus a replay of the past, and promotes the candidate
    (MLflow alias `champion`) only when the gate says it is better on the same evidence.
    """
    ctx.obj = {"config": config, "state_dir": state_dir, "inbox_dir": inbox_dir, "sets": sets}


@cli.command()
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder for cltool.toml, the inbox and the state.")
@click.option("--force", is_flag=True, help="Overwrite an existing cltool.toml.")
@fail_cleanly
def init(folder: str, force: bool) -> None:
    """Write a commented cltool.toml with every setting at its default, and create the inbox."""
    root = Path(folder)
    target = root / "cltool.toml"
    if target.exists() and not force:
        raise CltoolError(f"{target} exists; pass --force to overwrite it")
    root.mkdir(parents=True, exist_ok=True)
    target.write_text(render_toml(), encoding="utf-8")
    (root / "inbox").mkdir(exist_ok=True)
    click.echo(f"wrote {target}\ninbox: {root / 'inbox'}\nnext: cltool --config {target} run")


@cli.command()
@click.option("--once", is_flag=True, help="Take the inbox, run one cycle if triggered or requested, then exit.")
@click.option("--demo-feed", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Demo: copy the files of this folder into the inbox one at a time, each after the last is learned.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print what happened as JSON.")
@click.option("--standby", is_flag=True,
              help="If another daemon leads this state store, wait and take over when it stops renewing its lease "
                   "(store.lease_seconds) instead of refusing to start.")
@click.pass_obj
@fail_cleanly
def run(obj, once: bool, demo_feed: Path | None, as_json: bool, standby: bool) -> None:
    """Run the daemon in the foreground (Ctrl-C or SIGTERM stops it at a safe point).

    One daemon leads a state store at a time; on PostgreSQL, standbys on other hosts (`--standby`) wait
    to take over and finish what the leader left half done."""
    from daemon import memory
    from daemon.service import Daemon

    if standby and once:
        raise click.UsageError("--standby waits to lead a long-running daemon; it does not go with --once")
    memory.limit_arenas()  # before any thread starts (daemon/memory.py)
    daemon = Daemon(context(obj, "daemon", refuse_outdated=False), demo_feed=demo_feed, standby=standby)
    if not once:
        daemon.run_forever()
        return
    ingested, result = daemon.run_once()
    data = {"ingested": [r.to_dict() for r in ingested], "cycle": result.to_dict() if result else None}
    lines = [f"{r.file}: {r.status} — {r.reason}" for r in ingested]
    lines.append(f"cycle: {result.outcome} v{result.version} — {'; '.join(result.reasons)}" if result
                 else "cycle: not triggered")
    emit(data, as_json, "\n".join(lines))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.pass_obj
@fail_cleanly
def ingest(obj, files: tuple[Path, ...], as_json: bool) -> None:
    """Validate and record FILES now (your files are copied, not moved). Exit 1 if any is quarantined."""
    ctx = context(obj)
    ctx.inbox.actor = actor()
    results = [ctx.inbox.ingest_copy(path) for path in files]
    emit([r.to_dict() for r in results], as_json, "\n".join(f"{r.file}: {r.status} — {r.reason}" for r in results))
    bad = [r for r in results if r.status == "quarantined"]
    if bad:
        raise QuarantinedError(bad[0].quarantine_path, bad[0].reason)


@cli.command()
@click.option("--reason", default="manual request", show_default=True, help="Why (goes in the history).")
@click.pass_obj
@fail_cleanly
def retrain(obj, reason: str) -> None:
    """Ask for a cycle now, whatever the trigger says. The daemon (or `run --once`) carries it out.

    Batches parked after train.max_failures training failures in a row come back to pending first."""
    from daemon.state import parking

    ctx = context(obj)
    unparked = parking.unpark(ctx.store, actor(), reason)
    if unparked:
        click.echo(f"unparked {len(unparked)} batch(es): {', '.join(unparked)}")
    ctx.store.append(events.RETRAIN_REQUESTED, reason, actor=actor())
    pending = parking.pending(ctx.store)
    click.echo(f"cycle requested ({sum(b.n_train for b in pending)} new train rows waiting); "
               "the running daemon starts it at its next check, or run `cltool run --once`")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--live", is_flag=True, help="Read the aliases and figures from MLflow, not from cltool's event log "
                                          "(slower; `cltool fsck` reports where the two differ).")
@click.pass_obj
@fail_cleanly
def status(obj, as_json: bool, live: bool) -> None:
    """Champion, challenger, previous champion, pending rows and the last decision.

    The aliases are where cltool last moved them, with each version's figures as its decision recorded
    them: no MLflow call, so it answers at once. An alias moved outside cltool shows with --live (and in
    `cltool fsck`)."""
    from daemon.cli.status import collect, render

    data = collect(context(obj), live=live)
    emit(data, as_json, render(data))


@cli.command()
@click.argument("version")
@click.option("--reason", required=True, help="Why (goes in the history and the registry).")
@click.option("--force", is_flag=True, help="Promote a version the gate rejected.")
@click.pass_obj
@fail_cleanly
def promote(obj, version: str, reason: str, force: bool) -> None:
    """Make VERSION the champion (the old one becomes previous_champion)."""
    move = context(obj).keeper.promote(version, reason, actor=actor(), force=force)
    forced = " (forced past a REJECT)" if move.event.payload.get("forced") else ""
    click.echo(f"champion: v{move.champion}{forced}; previous_champion: v{move.previous_champion}")


@cli.command()
@click.option("--reason", required=True, help="Why (goes in the history).")
@click.option("--to", "to", metavar="VERSION", help="Version to return to (default: previous_champion).")
@click.pass_obj
@fail_cleanly
def rollback(obj, reason: str, to: str | None) -> None:
    """Return the champion alias to previous_champion (or --to VERSION)."""
    move = context(obj).keeper.rollback(reason, actor=actor(), to=to)
    click.echo(f"champion: v{move.champion}; previous_champion: v{move.previous_champion}")


@cli.command()
@click.option("--keep", type=click.IntRange(min=1), metavar="N",
              help="Keep the weights of the newest N versions (default: mlflow.keep_versions).")
@click.option("--keep-runs", type=click.IntRange(min=0), metavar="N",
              help="Keep the runs and registry entries of the newest N versions (default: mlflow.keep_runs; "
                   "0 = keep all).")
@click.option("--keep-champions", type=click.IntRange(min=0), metavar="N",
              help="Keep the weights of the N versions that were champion most recently (default: "
                   "mlflow.keep_champions; 0 = every former champion).")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@click.pass_obj
@fail_cleanly
def prune(obj, keep: int | None, keep_runs: int | None, keep_champions: int | None, dry_run: bool,
          as_json: bool) -> None:
    """Delete what old versions that cannot serve any more leave behind (the daemon does this after each cycle).

    Kept: every version an alias points at and the --keep-champions versions that were champion most
    recently (rollback targets). Other versions older than the newest --keep lose their weights: their
    registry entry, run, metrics and reports stay (tag cltool.pruned), but they can no longer be promoted
    or rolled back to. Older than the newest --keep-runs, versions that never were champion are removed
    from MLflow altogether (their decision stays in `cltool history`), and an embedded MLflow store is
    garbage-collected at once; a former champion's run is never removed."""
    from daemon.promotion import retention
    from registry import removal

    ctx = context(obj)
    keep = keep if keep is not None else ctx.settings.mlflow.keep_versions
    keep_runs = keep_runs if keep_runs is not None else ctx.settings.mlflow.keep_runs
    if keep_runs and keep_runs < keep:
        raise click.UsageError(f"--keep-runs {keep_runs} would remove versions whose weights --keep {keep} keeps")
    if keep == 0:
        emit([], as_json, "mlflow.keep_versions = 0: every version keeps its weights (pass --keep N)")
        return
    keep_champions = keep_champions if keep_champions is not None else ctx.settings.mlflow.keep_champions
    pruned, removed = retention.both(ctx, keep, keep_runs, actor=actor(), dry_run=dry_run,
                                     keep_champions=keep_champions)
    if removed and not dry_run:
        removal.collect_garbage(ctx.registry, force=True)
    gone = {v.version for v in removed}
    found = [(v, "weights") for v in pruned if v.version not in gone] + [(v, "run") for v in removed]
    found.sort(key=lambda item: -int(item[0].version))
    verb = "would delete" if dry_run else "deleted"
    what = {"weights": "the weights of", "run": "the run, reports and registry entry of"}
    emit([{"version": v.version, "created_at": v.created_at.isoformat(), "decision": v.tags.get("cltool.decision"),
            "what": kind, "deleted": not dry_run} for v, kind in found], as_json,
          "\n".join(f"{verb} {what[kind]} v{v.version} (created {v.created_at:%Y-%m-%d %H:%M}, "
                    f"{v.tags.get('cltool.decision', 'no decision')})" for v, kind in found)
          or f"nothing to prune: the newest {keep} versions, alias holders and "
             + (f"the last {keep_champions} champions" if keep_champions else "former champions") + " keep their weights"
             + (f", and the newest {keep_runs} their runs" if keep_runs else ""))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--limit", default=50, show_default=True, help="Newest N events.")
@click.option("--type", "types", multiple=True, help="Only these event types (repeatable).")
@click.option("--all", "show_all", is_flag=True, help="Include bookkeeping events (alias.synced, cycle.started).")
@click.pass_obj
@fail_cleanly
def history(obj, as_json: bool, limit: int, types: tuple[str, ...], show_all: bool) -> None:
    """The append-only event log: ingests, decisions, promotions, rollbacks, failures."""
    store = context(obj).store
    found = store.events(types=types or None, newest_first=True, limit=None if not (types or show_all) else limit)
    if not (types or show_all):
        found = [e for e in found if e.type not in HIDDEN_BY_DEFAULT][:limit]
    found.reverse()
    emit([e.to_dict() for e in found], as_json, "\n".join(
        f"{e.at:%Y-%m-%d %H:%M:%S} {e.type:<19} {('v' + e.version) if e.version else '-':>5}  {e.actor:<14} "
        f"{'[forced] ' if e.payload.get('forced') else ''}{e.reason}"
        for e in found) or "no events yet")


@cli.command()
@click.option("--repair", is_flag=True, help="Fix what the event log can decide, and record each fix as an event "
                                            "(refused while a daemon leads this state).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_obj
@fail_cleanly
def fsck(obj, repair: bool, as_json: bool) -> None:
    """Check the stores against each other: every file recorded once, ledger = stored rows, every consumed
    batch decided once, no interrupted cycle or undecided version, no open alias intent, MLflow's aliases =
    the event log's last moves (champion a promoted version), every alias holder has its weights.
    Exit 0 when all hold (after --repair: when what is left holds), 1 with the list when not."""
    from daemon.fsck import fsck as check

    ctx = context(obj)
    found = check(ctx, repair=repair, me=ctx.owner)
    lines = [("repaired " if p in found.repaired else "") + p.line() for p in found.problems]
    verdict = "clean" if found.clean else f"{len([p for p in found.problems if p not in found.repaired])} problem(s)"
    emit(found.to_dict(), as_json, "\n".join([*lines, f"fsck: {verdict} ({', '.join(found.checked)} checked)"]))
    if not found.clean:
        sys.exit(1)


@cli.command()
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@fail_cleanly
def explain(obj, version: str, as_json: bool) -> None:
    """Replay the gate's decision on VERSION from its stored eval report and config, and print why."""
    from daemon.cli.explain import explain as replay
    from daemon.cli.explain import render

    data = replay(context(obj), version)
    emit(data, as_json, render(data))
    if not data["reproduced"]:
        sys.exit(1)


@cli.command()
@click.argument("texts", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@fail_cleanly
def predict(obj, texts: tuple[str, ...], as_json: bool) -> None:
    """Label TEXTS with the champion: label and its probability."""
    from daemon.errors import NoChampionError
    from retrain.evaluation import Predictor

    ctx = context(obj)
    champion = ctx.registry.get_alias("champion")
    if champion is None:
        from daemon.cli.status import running_cycle
        from daemon.state.locks import DAEMON_LOCK, Locks

        holder, cycle = Locks(ctx.store).holder(DAEMON_LOCK), running_cycle(ctx)
        raise NoChampionError(ctx.settings.mlflow.model_name, holder.owner if holder else None,
                              f"cycle {cycle['cycle_id']}, {cycle['phase']}" if holder and cycle else None)
    predictor = Predictor(ctx.models.path(champion.version), max_length=ctx.settings.model.max_length)
    ids, probs = predictor.predict(list(texts))
    rows = [{"text": t, "label": predictor.labels[i], "score": round(float(p[i]), 4), "version": champion.version}
            for t, i, p in zip(texts, ids, probs)]
    emit(rows, as_json, "\n".join(f"{r['label']:<9} {r['score']:.3f}  {r['text']}" for r in rows))


@cli.command()
@click.option("--host", help="Address to listen on (default serve.host, 127.0.0.1; 0.0.0.0 exposes it).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (default serve.port, 8085; 0 = any).")
@click.pass_obj
@fail_cleanly
def serve(obj, host: str | None, port: int | None) -> None:
    """Serve the champion over HTTP until Ctrl-C or SIGTERM, following the alias as it moves.

    POST /predict {"texts": [...], "source": "..."} answers the model version and, per text, the label, its
    score and every class's probability; POST /invocations takes MLflow's scoring formats. GET /healthz,
    /readyz (503 until a version is loaded) and /metrics (Prometheus). Every serve.poll_seconds the server
    asks where @champion points; a new version is loaded beside the served one and swapped in between two
    batches, and one that fails to load is not swapped in (the old one goes on; alert serve.load_failed).
    A sample of served texts (serve.sample_rate) is recorded for the daemon's live monitors."""
    from daemon import memory
    from daemon.serving.server import Server

    memory.limit_arenas()
    server = Server(context(obj, "serve"), host=host, port=port)
    sock = server.bind()
    where = f"http://{server.bound[0]}:{server.bound[1]}"
    click.echo(f"cltool serve: listening on {where} (POST /predict, /invocations; GET /healthz, /readyz, /metrics)"
               + ("; bearer token required" if server.ctx.settings.serve.token else ""), err=True)
    server.run(sock)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--since", metavar="WHEN", help="Only batches scored since then: 30m, 12h, 7d, 2w or an ISO date/time.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the PNG timeline (default: <state_dir>/drift-timeline.png).")
@click.pass_obj
@fail_cleanly
def drift(obj, as_json: bool, since: str | None, plot_path: Path | None) -> None:
    """Recent drift state per detector (score, threshold, drifted, alert, severity) and a PNG timeline."""
    from daemon.cli.drift_view import collect, parse_since, plot, render

    ctx = context(obj)
    try:
        start = parse_since(since, ctx.clock())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    data = collect(ctx, start)
    data["plot"] = None
    if data["detectors"]:
        data["plot"] = str(plot(data, plot_path or ctx.settings.state_dir / "drift-timeline.png"))
    emit(data, as_json, render(data) + (f"\ntimeline: {data['plot']}" if data["plot"] else ""))


cli.add_command(db)


def main() -> None:
    # Before anything imports mlflow or transformers: no telemetry, no hub, no progress-bar noise.
    for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "DISABLE_MLFLOW_INTEGRATION": "TRUE",
                       # transformers reads this at import: no loading/saving bars in a daemon's log
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1"}.items():
        os.environ.setdefault(key, value)
    cli(prog_name="cltool")


if __name__ == "__main__":
    main()
