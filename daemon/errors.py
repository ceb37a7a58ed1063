"""The daemon's error tree. Each error builds its message from the values that caused it.

Only `daemon.cli.main` turns these into exit codes and messages; library code raises.
"""

from __future__ import annotations

from pathlib import Path


class CltoolError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(CltoolError, ValueError):
    """A setting has a value that is not allowed."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"config: {key} = {value!r} is not allowed: expected {expected}")


class ConfigFileError(CltoolError, FileNotFoundError):
    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(f"config file {path}: {problem}")


class LockHeldError(CltoolError, RuntimeError):
    """Another process holds a lock we need (a second daemon, or a promote racing a cycle)."""

    def __init__(self, name: str, owner: str, since: str, hint: str = "") -> None:
        self.name, self.owner = name, owner
        message = f"lock '{name}' is held by {owner} since {since}"
        super().__init__(f"{message}. {hint}".strip() if hint else message)


class QuarantinedError(CltoolError, ValueError):
    """An inbox file was rejected; it now sits in quarantine with a reason file."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path.name} quarantined: {reason} (see {path}.reason.json)")


class NoChampionError(CltoolError, LookupError):
    def __init__(self, model_name: str, daemon: str | None = None, cycle: str | None = None) -> None:
        if cycle is not None:  # the running daemon is training the first model right now
            hint = f"the daemon ({daemon}) is training one now ({cycle}); `cltool status` shows when it is decided"
        elif daemon is not None:
            hint = (f"the daemon ({daemon}) trains one once enough labeled rows wait in its inbox "
                    "(`cltool status` shows them)")
        else:
            hint = "ingest a batch and run a cycle (`cltool ingest FILE` then `cltool run --once`)"
        super().__init__(f"model '{model_name}' has no champion yet: {hint}")


class PromotionRefused(CltoolError, ValueError):
    def __init__(self, version: str, why: str) -> None:
        self.version = version
        super().__init__(f"version {version} not promoted: {why}")


class VersionRemovedError(CltoolError, LookupError):
    """A version retention removed from MLflow (mlflow.keep_runs): only the event log remembers it."""

    def __init__(self, version: str, reason: str) -> None:
        self.version = version
        super().__init__(f"version {version} was removed from MLflow by retention ({reason}); its decision: "
                         f"`cltool history --type decision --limit 1000`")


class SchemaOutdatedError(CltoolError, RuntimeError):
    """The state store's schema is older than this cltool's: someone has to upgrade it first."""

    def __init__(self, url: str, current: str, head: str) -> None:
        self.current, self.head = current, head
        super().__init__(f"state store {url} is at schema revision {current}, this cltool needs {head}: start the "
                         "daemon (it upgrades at start-up, under its leader lock) or run `cltool db upgrade`")


class SchemaAheadError(CltoolError, RuntimeError):
    """The state store was upgraded by a newer cltool than this one."""

    def __init__(self, url: str, current: str, head: str) -> None:
        super().__init__(f"state store {url} is at schema revision {current}, newer than this cltool knows "
                         f"(its newest is {head}): run the cltool version that upgraded it")


class SchemaUpgradeError(CltoolError, RuntimeError):
    """A migration failed; on PostgreSQL its transaction was rolled back whole."""

    def __init__(self, url: str, current: str | None, head: str, cause: BaseException) -> None:
        super().__init__(f"state store {url}: upgrading schema revision {current} to {head} failed, nothing "
                         f"was changed: {type(cause).__name__}: {cause}")
