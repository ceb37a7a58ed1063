"""One typed settings model: TOML file < CLTOOL_* environment variables < CLI flags.

The file is found through `--config`, then `CLTOOL_CONFIG`, then `./cltool.toml`; without one the
embedded defaults apply. Relative paths are taken from the config file's folder (the working
directory when there is no file), so a config folder can be moved as a whole.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from daemon.drift.config import SuiteConfig
from daemon.errors import ConfigError, ConfigFileError
from registry.policy import GatePolicy
from registry.urls import mask_url
from retrain.config import ModelConfig, ReplayConfig, TrainConfig

# The file the settings sources read; a context variable so that loading stays re-entrant.
_TOML_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("cltool_toml", default=None)


class _Section(BaseModel):
    model_config = {"extra": "forbid", "validate_assignment": True}


class TriggerSection(_Section):
    min_new_rows: int = Field(200, ge=1, description="Start a cycle once this many new train rows are waiting.")
    interval_seconds: int = Field(
        3600, ge=0, description="Also start a cycle this often when any new rows wait (0 = only by row count)."
    )
    poll_seconds: float = Field(5.0, gt=0, le=3600, description="How often the inbox is scanned.")
    misfire_grace_seconds: int = Field(60, ge=1, description="A job late by more than this is skipped, not run.")
    retry_backoff_seconds: float = Field(
        30.0, ge=0, description="After a failed cycle, wait this long before the next try; doubled after each "
                                "further failure in a row (an explicit `cltool retrain` does not wait).")
    retry_backoff_max_seconds: float = Field(1800.0, ge=0, description="The longest wait between two tries.")


class GateSection(GatePolicy):
    """The gate's policy (registry/policy.py) plus the one knob the daemon uses to assemble its evidence."""

    regression_max_rows: int = Field(
        2000, ge=10, description="Cap on the regression suite: the past test rows with the lowest row hashes, "
                                "a uniform sample that stays the same while history grows."
    )


class ModelSection(ModelConfig):
    """The model's settings (retrain/config.py) plus how long the daemon keeps a loaded model in memory."""

    keep_loaded_seconds: float = Field(
        120, ge=0,
        description="A model the daemon loaded for scoring (drift, probation, the gate) is released after this many "
                    "seconds unused, and its memory handed back; the next batch loads it again (MiniLM: about a "
                    "second). 0 releases it when each job ends. After the demo the idle daemon went from 1,220 to 796 MiB "
                    "when it released them (bench/results/light/release).",
    )


class WatchSection(_Section):
    enabled: bool = Field(True, description="After a promotion, compare the new and previous champion on new batches.")
    min_rows: int = Field(100, ge=10, description="Rows since the promotion before the comparison starts.")
    strikes: int = Field(2, ge=1, le=20, description="Consecutive significantly-worse checks that roll back.")
    max_rows: int = Field(2000, ge=10, description="Rows after which the new champion's probation ends.")


class InboxSection(_Section):
    bad_rows: Literal["reject_file", "drop_rows"] = Field(
        "reject_file", description="A file with some bad rows: quarantine all of it, or keep its good rows."
    )
    max_text_chars: int = Field(20000, ge=1, description="Texts longer than this are bad rows.")
    conflicting_labels: Literal["reject", "allow"] = Field(
        "reject", description="The same text with two different labels, within a file or against a recorded row: "
                              "'reject' makes the new rows bad rows (then bad_rows decides), 'allow' keeps both.")


class MlflowSection(_Section):
    tracking_uri: str = Field("", description="Tracking + registry URI; empty = sqlite:///<state_dir>/mlflow.db.")
    artifact_location: str = Field("", description=(
        "Where a new experiment's artifacts go; empty = the tracking server's default artifact root "
        "(http(s) tracking URIs), else <state_dir>/mlartifacts."))
    model_name: str = Field("cltool-sentiment", min_length=1, description="Registered model name.")
    weights_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float16",
        description="How a registered version's weights are stored: float16 or bfloat16 halve each version (88 MB "
                    "-> 44 MB for MiniLM); models still compute in float32, and the gate judges the stored weights. "
                    "float16 flipped none of 968 PhraseBank test predictions against float32, bfloat16 one "
                    "(bench/results/weights_dtype).",
    )
    experiment: str = Field("cltool", min_length=1, description="Experiment that holds the cycle runs.")
    keep_versions: int = Field(
        20, ge=0,
        description="Retention: the newest N registered versions keep their weights, and so does every version "
                    "that holds an alias or is among the last keep_champions champions; older versions lose their "
                    "weights after each cycle (their run, metrics and reports stay; `cltool prune`). 0 = keep all.",
    )
    keep_champions: int = Field(
        10, ge=0,
        description="Retention: the N versions that were champion most recently keep their weights as rollback "
                    "targets (besides every alias holder); an older former champion loses its weights, never its "
                    "run or registry entry. 0 = every former champion keeps its weights.",
    )
    keep_runs: int = Field(
        200, ge=0,
        description="Retention: older than the newest N versions, a version that never was champion and holds no "
                    "alias is removed from the registry with its MLflow run and reports (its decision, reasons and "
                    "metrics stay in the event log; an embedded store is then collected by `mlflow gc`, a tracking "
                    "server by its operator). 0 = keep all; else at least keep_versions.",
    )

    @model_validator(mode="after")
    def _runs_outlive_weights(self) -> MlflowSection:
        if self.keep_runs and (self.keep_versions == 0 or self.keep_runs < self.keep_versions):
            raise ValueError(f"mlflow.keep_runs = {self.keep_runs} would remove versions whose weights "
                             f"mlflow.keep_versions = {self.keep_versions} keeps: set keep_runs to 0 (keep every run) "
                             f"or to at least keep_versions")
        return self


class StoreSection(_Section):
    url: str = Field("", description="State store SQLAlchemy URL; empty = sqlite:///<state_dir>/state.db.")
    lock_wait_seconds: float = Field(
        30.0, ge=0, le=3600, description="How long promote/rollback/a cycle wait for another alias move to finish."
    )
    lease_seconds: float = Field(
        60.0, ge=3, le=3600, description="The leader's lease, renewed every third of it: a standby daemon on another "
                                         "host takes over this long after the leader stopped renewing it (on the "
                                         "same host, as soon as the leader's process is gone).")


class LogSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="One line per event: text, or JSON for collectors.")


class DriftSection(SuiteConfig):
    """The detectors' thresholds (daemon/drift/config.py) plus which rows the daemon scores them on."""

    enabled: bool = Field(True, description="Score every accepted batch for drift before it is trained on.")
    reference: Literal["champion", "rolling"] = Field(
        "champion", description="What 'normal' is: the champion's data (rows of the batches it was trained on), "
        "or rolling (the batches just before the scored one)."
    )
    window_batches: int = Field(5, ge=1, le=1000, description="rolling reference: how many earlier batches it holds.")
    min_reference_rows: int = Field(50, ge=2, description="Fewer reference rows than this: the batch is not scored.")
    max_rows: int = Field(
        2000, ge=10, description="Rows of a batch the champion labels and embeds (a seeded sample above this)."
    )
    reference_max_rows: int = Field(
        1000, ge=10, description="Reference rows the champion labels and embeds (a seeded sample above this)."
    )
    open_after: int = Field(2, ge=1, le=100, description="Consecutive drifted batches that open an alert.")
    close_after: int = Field(2, ge=1, le=100, description="Consecutive clean batches that close it.")
    trigger_retrain: bool = Field(
        True, description="When an alert opens, request a retrain (never a promotion: the gate still decides)."
    )


class ObserveSection(_Section):
    enabled: bool = Field(True, description="Serve /metrics, /healthz and /readyz while the daemon runs.")
    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to listen on (0.0.0.0 exposes it beyond this host)."
    )
    port: int = Field(9464, ge=0, le=65535, description="Port to listen on (0 = any free port; the log names it).")
    refresh_seconds: float = Field(15.0, gt=0, le=3600, description="How often metrics are re-read from the event log.")
    webhook_url: str = Field("", pattern=r"^(https?://\S+)?$",
                             description="POST drift alerts here as JSON with a Slack-style 'text' (an http(s) URL; "
                                         "empty = off). Its path is treated as a secret: never logged or recorded.")
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=300, description="Timeout of one webhook POST.")
    webhook_retries: int = Field(3, ge=0, le=20, description="Retries of a failed POST, with exponential backoff.")



class ServeSection(_Section):
    """`cltool serve`: the champion behind an HTTP JSON API, and the live-traffic monitors the daemon runs."""

    host: str = Field("127.0.0.1", min_length=1,
                      description="Address `cltool serve` listens on (0.0.0.0 exposes it beyond this host).")
    port: int = Field(8085, ge=0, le=65535, description="Port `cltool serve` listens on (0 = any free port).")
    token: str = Field("", description="Bearer token every request but /healthz and /readyz must carry "
                                       "(`Authorization: Bearer ...`); empty = none. Set it through "
                                       "CLTOOL_SERVE__TOKEN rather than the file; never logged.")
    poll_seconds: float = Field(10.0, gt=0, le=3600,
                                description="How often the server asks the registry where @champion points.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies are refused (413).")
    max_texts: int = Field(256, ge=1, le=100_000, description="Most texts one request may carry (413 above).")
    max_batch: int = Field(32, ge=1, le=4096, description="Dynamic batching: texts of concurrent requests run "
                                                         "through the model together, up to this many.")
    batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="Dynamic batching: how long the first request "
                                                                  "of a batch waits for others to join it.")
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="fp32, or int8: dynamic int8 quantisation of the Linear layers on the CPU (faster; "
                            "flips a few predictions: bench/results/serve.md has both figures).")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Share of served texts recorded (with prediction and "
                                                            "source) for the live monitors; 0 = none.")
    live_window_minutes: float = Field(60.0, gt=0, description="Live monitors: the recent window scored.")
    live_baseline_hours: float = Field(24.0, gt=0, description="Live monitors: the window before it, "
                                                               "taken as normal.")
    live_min_rows: int = Field(30, ge=5, description="Live monitors: fewer rows than this in a source's window "
                                                    "(or its baseline) and the source is not scored. The surge "
                                                    "test takes drift.surge_label, drift.alpha, drift.surge_min_lift "
                                                    "and drift.open_after/close_after, like the labeled batches.")
    live_check_seconds: float = Field(300.0, gt=0, description="How often the daemon scores the live windows.")
    retention_days: float = Field(30.0, gt=0, description="Recorded served texts older than this are deleted.")


# URL settings that may carry a password (user:password@host).
SECRET_URLS = (("store", "url"), ("mlflow", "tracking_uri"), ("mlflow", "artifact_location"))


class Settings(BaseSettings):
    """Everything cltool can be told. Every field has a default that runs the demo."""

    model_config = SettingsConfigDict(
        env_prefix="CLTOOL_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    state_dir: Path = Field(Path("state"), description="Ledger, accepted rows, MLflow store, work folders.")
    inbox_dir: Path = Field(Path("inbox"), description="Folder watched for labeled files (CSV, JSONL, Parquet).")
    labels: list[str] = Field(
        ["negative", "neutral", "positive"], min_length=2, description="Class names, in model head order."
    )
    label_aliases: dict[str, str] = Field(
        {"bearish": "negative", "bullish": "positive", "neg": "negative", "pos": "positive"},
        description="Other spellings accepted in files, mapped to a class name (matched case-insensitively).",
    )
    model: ModelSection = ModelSection()
    train: TrainConfig = TrainConfig()
    replay: ReplayConfig = ReplayConfig()
    trigger: TriggerSection = TriggerSection()
    gate: GateSection = GateSection()
    watch: WatchSection = WatchSection()
    inbox: InboxSection = InboxSection()
    mlflow: MlflowSection = MlflowSection()
    store: StoreSection = StoreSection()
    log: LogSection = LogSection()
    drift: DriftSection = DriftSection()
    observe: ObserveSection = ObserveSection()
    serve: ServeSection = ServeSection()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        toml = _TOML_FILE.get()
        sources = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        cleaned = [label.strip() for label in labels]
        if any(not label for label in cleaned) or len(set(cleaned)) != len(cleaned):
            raise ValueError("distinct, non-empty class names")
        return cleaned

    @model_validator(mode="after")
    def _aliases_point_at_labels(self) -> "Settings":
        for alias, target in self.label_aliases.items():
            if target not in self.labels:
                raise ValueError(f"label_aliases.{alias} -> {target!r}: target must be one of {self.labels}")
        return self

    # Derived locations: one place decides where each thing lives under state_dir.
    def public_dump(self) -> dict[str, Any]:
        """The settings as JSON-able values with their secrets masked: for MLflow params and artifacts,
        logs and views. A URL's password becomes `***` (`postgresql://cltool:***@db/cltool`); a webhook
        URL keeps only its scheme and host, since its path is the secret (Slack, Teams)."""
        data = self.model_dump(mode="json")
        for section, key in SECRET_URLS:
            data[section][key] = mask_url(data[section][key])
        data["observe"]["webhook_url"] = mask_url(data["observe"]["webhook_url"], keep_path=False)
        data["serve"]["token"] = "***" if data["serve"]["token"] else ""
        return data

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Where a new experiment keeps its artifacts. None with a tracking server (`http(s)://`): the
        server's own default artifact root (proxied `mlflow-artifacts:`), which every host that can
        reach the server can read and a non-admin user may write; a local folder there would keep the
        models on the daemon's disk, out of reach of any consumer elsewhere."""
        if self.mlflow.artifact_location:
            return self.mlflow.artifact_location
        if self.tracking_uri.startswith(("http://", "https://")):
            return None
        return (self.state_dir / "mlartifacts").as_uri()

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.state_dir / 'state.db'}"

    @property
    def legacy_rows_dir(self) -> Path:
        """Where stores before schema revision 0002 kept each batch's rows (Parquet); read once, by the
        upgrade that moves them into the store."""
        return self.state_dir / "batches"

    @property
    def quarantine_dir(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def archive_dir(self) -> Path:
        return self.state_dir / "archive"

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "work"


def find_config_file(explicit: str | os.PathLike | None) -> Path | None:
    """`--config`, then CLTOOL_CONFIG, then ./cltool.toml; None means embedded defaults."""
    for candidate, origin in ((explicit, "--config"), (os.environ.get("CLTOOL_CONFIG"), "CLTOOL_CONFIG")):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise ConfigFileError(path, f"not found (given by {origin})")
            return path.resolve()
    local = Path("cltool.toml")
    return local.resolve() if local.is_file() else None


def load_settings(config: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Build the settings; a bad value raises ConfigError naming the key, the value and what is allowed."""
    path = find_config_file(config)
    token = _TOML_FILE.set(path)
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise _config_error(exc) from None
    except (ValueError, OSError) as exc:  # a TOML syntax error arrives as a plain ValueError
        raise ConfigFileError(path or Path("cltool.toml"), str(exc)) from None
    finally:
        _TOML_FILE.reset(token)
    base = path.parent if path else Path.cwd()
    for name in ("state_dir", "inbox_dir"):
        value = getattr(settings, name).expanduser()
        object.__setattr__(settings, name, value if value.is_absolute() else (base / value).resolve())
    return settings


# Settings that existed and were taken out, with why: a file that still sets one fails with this
# instead of a bare "no such setting", so the user knows it is not a typo.
REMOVED = {
    "train.label_smoothing": "no effect on the stream or ceiling benchmarks (bench/results/ceiling)",
    "train.layer_lr_decay": "no effect on the PhraseBank ceiling (bench/results/ceiling)",
    "train.ema_decay": "no effect on the PhraseBank ceiling (bench/results/ceiling)",
    "replay.weight": "replayed rows weigh as much as new ones; no benchmark row showed another weight helping",
}


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(settings)"
    expected = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        expected = "a known key (no such setting; `cltool init` writes a file listing every key)"
        if key in REMOVED:
            expected = f"no such key: {key} was removed ({REMOVED[key]}); delete it from the config"
    return ConfigError(key, first.get("input"), expected)
