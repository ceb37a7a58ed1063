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
