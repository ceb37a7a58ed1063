"""The MLflow side of cltool: runs, registered versions, aliases, the promotion gate.

The only package that imports mlflow, and it never imports `retrain` or `daemon`. Importing any
module here connects to nothing and imports neither mlflow nor torch; they load on first use.

- `gate`      — pure promotion gate: two evaluation reports -> PROMOTE / REJECT / WAIT (no mlflow)
- `policy`    — `GatePolicy`: the gate's thresholds, declared once (the daemon's `[gate]` embeds it)
- `evidence`  — `EvaluationReport`, `PartReport`: the typed per-row evidence the gate decides on
- `models`    — `ModelRegistry`: log candidates, read versions, move the champion/challenger/
                previous_champion aliases (promote, rollback), tags, descriptions, downloads
- `store`     — opening the tracking + registry store (SQLite folder, experiment, reachability)
- `candidate` — one candidate as an MLflow run + transformers LoggedModel + registered version
- `download`  — a registered version back as one `from_pretrained` folder
- `limits`    — params/tags/metrics flattened and clipped to what MLflow accepts
- `records`   — `VersionInfo`, `AliasMove`: plain views handed to the daemon
- `plots`     — figures attached to a run (confusion matrix)
- `errors`    — `RegistryError` and its subclasses
"""
