"""What every command and job works with, built once from the settings: stores, registry, inbox."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from daemon.config import Settings
from daemon.ingest.inbox import Inbox
from daemon.promotion.aliases import AliasKeeper
from daemon.scores import CachedPredictor, ScoreCache
from daemon.state.store import StateStore, utcnow
from registry.models import ModelRegistry

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    store: StateStore
    registry: ModelRegistry
    keeper: AliasKeeper
    inbox: Inbox
    owner: str
    clock: Callable[[], datetime] = utcnow
    stop: threading.Event = field(default_factory=threading.Event)
    # Loaded models by registered version, most recently used last (see `predictor`), and when each was last used.
    _predictors: OrderedDict[str, Any] = field(default_factory=OrderedDict, repr=False)
    _used_at: dict[str, float] = field(default_factory=dict, repr=False)
    _loading: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # What each version already said of a text: one champion pass per text for drift, probation and the gate.
    scores: ScoreCache = field(default_factory=ScoreCache, repr=False)

    # The champion and, on probation, the version it replaced: what the jobs of one daemon score with.
    PREDICTORS_KEPT = 2

    @property
    def models(self) -> "ModelCache":
        return ModelCache(self.settings.work_dir / "models", self.registry)

    def predictor(self, version: str):  # noqa: ANN201 (a retrain.evaluation.Predictor; torch loads lazily)
        """The registered `version` loaded for scoring, on `train.device`, shared by the drift monitor,
        the probation watch and the cycle so that each loads a model once, not once per batch. Keeps the
        `PREDICTORS_KEPT` most recently used versions. Jobs run one at a time (the scheduler's cycle job),
        so the models are not shared across threads. Answers from `scores` what the version already scored.
        A model unused for `model.keep_loaded_seconds` is released by `release_idle_models`."""
        with self._loading:
            self._used_at[version] = time.monotonic()
            if version in self._predictors:
                self._predictors.move_to_end(version)
                return self._predictors[version]
            from retrain.evaluation import (
                Predictor,  # imports torch: not for `cltool status` and friends
            )

            s = self.settings
            device = None if s.train.device == "auto" else s.train.device
            predictor = Predictor(self.models.path(version), device=device, max_length=s.model.max_length)
            self._predictors[version] = CachedPredictor(predictor, version, self.scores)
            while len(self._predictors) > self.PREDICTORS_KEPT:
                self._used_at.pop(self._predictors.popitem(last=False)[0], None)
            return self._predictors[version]

    def loaded_models(self) -> list[str]:
        """The versions held in memory, least recently used first."""
        with self._loading:
            return list(self._predictors)

    def release_idle_models(self, idle_seconds: float | None = None) -> list[str]:
        """Drop the models unused for `idle_seconds` (default `model.keep_loaded_seconds`); returns their
        versions. A job still scoring with one keeps its reference, so this never pulls a model from under
        it; the memory goes once that job lets go (then `daemon.memory.trim` hands it back to the system)."""
        limit = self.settings.model.keep_loaded_seconds if idle_seconds is None else idle_seconds
        now = time.monotonic()
        with self._loading:
            idle = [v for v in self._predictors if now - self._used_at.get(v, now) >= limit]
            for version in idle:
                del self._predictors[version]
                self._used_at.pop(version, None)
        if idle:
            log.info("released loaded model(s) %s after %.0f s unused (model.keep_loaded_seconds)",
                     ", ".join(f"v{v}" for v in idle), limit)
        return idle


def open_context(settings: Settings, owner: str, clock: Callable[[], datetime] = utcnow,
                 refuse_outdated: bool = True) -> Context:
    """`refuse_outdated=False` for the daemon and `cltool db upgrade`: they upgrade an older store (see
    `daemon.state.schema`); every other command refuses one with SchemaOutdatedError."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = StateStore(settings.store_url, refuse_outdated=refuse_outdated)
    registry = ModelRegistry(settings.tracking_uri, settings.mlflow.model_name,
                             experiment=settings.mlflow.experiment, artifact_location=settings.artifact_location)
    keeper = AliasKeeper(store, registry, owner, lock_wait=settings.store.lock_wait_seconds)
    return Context(settings, store, registry, keeper, Inbox(settings, store, clock), owner, clock)


class ModelCache:
    """Registered versions unpacked once under state/work/models/v<N>, reused by cycles and `predict`."""

    STALE_PARTIAL_SECONDS = 6 * 3600  # a download folder this old was left by a crash

    def __init__(self, root: Path, registry: ModelRegistry) -> None:
        self.root, self.registry = root, registry

    def path(self, version: str) -> Path:
        target = self.root / f"v{version}"
        if (target / "config.json").is_file():
            return target
        # A folder of this process's own: several processes may share the cache (the daemon's `predict`,
        # `cltool serve` replicas on one host) and download the same version at once.
        partial = self.root / f".v{version}.{os.getpid()}-{threading.get_ident()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            unpacked = self.registry.download_model(version, partial)
            if target.exists() and not (target / "config.json").is_file():
                shutil.rmtree(target, ignore_errors=True)  # a broken folder left by an older cltool
            try:
                Path(unpacked).rename(target)  # a crash mid-download leaves a .partial folder, never a broken v<N>
            except OSError:
                if not (target / "config.json").is_file():  # not "another process was first": a real failure
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def evict(self, version: str) -> None:
        shutil.rmtree(self.root / f"v{version}", ignore_errors=True)

    def prune(self, keep: set[str]) -> None:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.name.startswith("."):  # a download: another process's may be in flight
                try:
                    stale = time.time() - folder.stat().st_mtime > self.STALE_PARTIAL_SECONDS
                except FileNotFoundError:
                    continue
                if stale:
                    shutil.rmtree(folder, ignore_errors=True)
            elif folder.name.removeprefix("v") not in keep:
                shutil.rmtree(folder, ignore_errors=True)
