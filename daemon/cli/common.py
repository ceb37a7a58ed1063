"""What every `cltool` command shares: its settings from --config/--set, the context it opens, its errors as
one line and an exit code, and --json output."""

from __future__ import annotations

import getpass
import json
import socket
import sys
from functools import wraps
from typing import Any

import click

from daemon.config import load_settings
from daemon.errors import (
    CltoolError,
    ConfigError,
    ConfigFileError,
    LockHeldError,
)


def actor() -> str:
    """Who ran the command, for the event log: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def fail_cleanly(command):
    """Turn the project's errors into a one-line message and an exit code; nothing else prints tracebacks."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        from registry.errors import RegistryError
        from retrain.errors import RetrainError

        try:
            return command(*args, **kwargs)
        except (ConfigError, ConfigFileError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except LockHeldError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(3)
        except (CltoolError, RegistryError, RetrainError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def settings_from(obj: dict[str, Any]):
    overrides: dict[str, Any] = {}
    for item in obj.get("sets", ()):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(item, item, "KEY=VALUE, e.g. --set train.epochs=1")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = overrides
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    for key in ("state_dir", "inbox_dir"):
        if obj.get(key):
            overrides[key] = obj[key]
    settings = load_settings(obj.get("config"), **overrides)
    from daemon.logs import configure

    configure(settings.log.level, settings.log.format)
    return settings


def context(obj: dict[str, Any], role: str = "cli", refuse_outdated: bool = True):
    from daemon.context import open_context
    from daemon.state.locks import default_owner

    return open_context(settings_from(obj), default_owner(role), refuse_outdated=refuse_outdated)


def emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)
