from __future__ import annotations

import pytest

from daemon.cli.config_file import render_toml
from daemon.config import Settings, load_settings
from daemon.errors import ConfigError, ConfigFileError

REQUIRED_KEYS = ["state_dir", "inbox_dir", "labels", "model.base", "model.max_length", "train.epochs",
                 "train.batch_size", "train.learning_rate", "train.seed", "replay.ratio", "trigger.min_new_rows",
                 "trigger.interval_seconds", "mlflow.tracking_uri", "mlflow.model_name"]


def _get(settings: Settings, dotted: str):
    node = settings
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def test_every_required_key_exists_with_a_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    for key in REQUIRED_KEYS:
        _get(settings, key)  # raises AttributeError if a key is missing
    assert settings.labels == ["negative", "neutral", "positive"]
    assert settings.state_dir == tmp_path / "state"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"


def test_file_then_env_then_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cltool.toml").write_text('[train]\nepochs = 4\nbatch_size = 8\n[replay]\nratio = 2.0\n')
    assert load_settings().train.epochs == 4
    monkeypatch.setenv("CLTOOL_TRAIN__EPOCHS", "6")
    settings = load_settings()
    assert (settings.train.epochs, settings.train.batch_size, settings.replay.ratio) == (6, 8, 2.0)
    flagged = load_settings(train={"epochs": 2})
    assert (flagged.train.epochs, flagged.train.batch_size) == (2, 8)


def test_config_found_through_env_var_and_paths_relative_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "my.toml").write_text('state_dir = "s"\ninbox_dir = "/abs/inbox"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLTOOL_CONFIG", str(folder / "my.toml"))
    settings = load_settings()
    assert settings.state_dir == folder / "s"
    assert str(settings.inbox_dir) == "/abs/inbox"


@pytest.mark.parametrize("text, key, fragment", [
    ("[train]\nepochs = 0\n", "train.epochs", "greater than or equal to 1"),
    ("[replay]\nratio = -0.5\n", "replay.ratio", "greater than or equal to 0"),
    ("[train]\ndevice = \"tpu\"\n", "train.device", "'auto', 'cpu' or 'cuda'"),
    ("[train]\nepoch = 3\n", "train.epoch", "no such setting"),
    ("labels = [\"a\", \"a\"]\n", "labels", "distinct"),
])
def test_bad_value_names_key_value_and_what_is_allowed(tmp_path, text, key, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert caught.value.key == key
    assert key in message and fragment in message


def test_missing_config_file_and_broken_toml_are_clear(tmp_path):
    with pytest.raises(ConfigFileError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\n")
    with pytest.raises(ConfigFileError, match="broken.toml"):
        load_settings(broken)


def test_alias_must_point_at_a_label(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('label_aliases = { "up" = "bullish" }\n')
    with pytest.raises(ConfigError, match="label_aliases.up"):
        load_settings(path)


def test_rendered_file_is_commented_and_loads_to_the_defaults(tmp_path):
    text = render_toml()
    path = tmp_path / "cltool.toml"
    path.write_text(text)
    assert text.count("# ") > 30  # every key carries its description
    loaded = load_settings(path)
    defaults = Settings()
    assert loaded.model_dump(exclude={"state_dir", "inbox_dir"}) == defaults.model_dump(exclude={"state_dir", "inbox_dir"})
    assert loaded.state_dir == tmp_path / "state"


def test_scheduler_busy_skips_are_not_logged_but_other_warnings_are(monkeypatch):
    import logging
    import os

    monkeypatch.delenv("MLFLOW_CONFIGURE_LOGGING", raising=False)
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)

    from daemon.logs import configure

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO", "text")
        configure("INFO", "text")  # idempotent: one filter, not two
        seen: list[str] = []
        catcher = logging.Handler()
        catcher.emit = lambda record: seen.append(record.getMessage())
        root.addHandler(catcher)
        scheduler_log = logging.getLogger("apscheduler.scheduler")
        scheduler_log.warning('Execution of job "cycle" skipped: maximum number of running instances reached (1)')
        scheduler_log.warning('Run time of job "cycle" was missed by 0:01:00')
        scheduler_log.info('Adding job tentatively -- it will be properly scheduled when the scheduler starts')
        logging.getLogger("transformers.distributed.tensor_parallel").warning("The following layers were not sharded")
        assert seen == ['Run time of job "cycle" was missed by 0:01:00']
        assert len(scheduler_log.filters) == 1
        assert os.environ["MLFLOW_CONFIGURE_LOGGING"] == "false"  # MLflow's lines come through ours
        assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"  # stdout stays --json's
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_each_section_is_its_packages_own_config_type(tmp_path, monkeypatch):
    from daemon.drift.config import SuiteConfig
    from registry.policy import GatePolicy
    from retrain.config import ModelConfig, ReplayConfig, TrainConfig

    monkeypatch.chdir(tmp_path)
    settings = load_settings(train={"precision": "bf16", "lora_rank": 4, "distill_alpha": 0.5, "warmup_ratio": 0.2})
    # Declared once: the daemon hands these very objects to fine_tune, prepare_update, the gate, the suite.
    assert isinstance(settings.train, TrainConfig) and isinstance(settings.model, ModelConfig)
    assert isinstance(settings.replay, ReplayConfig)
    assert isinstance(settings.gate, GatePolicy) and isinstance(settings.drift, SuiteConfig)
    config = settings.train
    assert (config.precision, config.lora_rank, config.distill_alpha) == ("bf16", 4, 0.5)
    assert config.warmup_ratio == 0.2


@pytest.mark.parametrize("text, key", [
    ("[train]\nlabel_smoothing = 0.1\n", "train.label_smoothing"),
    ("[train]\nlayer_lr_decay = 0.9\n", "train.layer_lr_decay"),
    ("[train]\nema_decay = 0.99\n", "train.ema_decay"),
    ("[replay]\nweight = 0.5\n", "replay.weight"),
])
def test_a_removed_key_fails_at_start_up_saying_it_was_removed(tmp_path, text, key):
    path = tmp_path / "old.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == key
    assert f"{key} was removed" in str(caught.value) and "delete it" in str(caught.value)


def test_public_dump_masks_every_secret_url(tmp_path):
    from registry.urls import mask_url

    settings = load_settings(state_dir=str(tmp_path), store={"url": "postgresql+psycopg://cltool:s3cret@db:5432/cltool"},
                             mlflow={"tracking_uri": "https://ci:t0ken@mlflow.example/"},
                             observe={"webhook_url": "https://hooks.slack.com/services/T0/B0/XyZsecret"})
    shown = settings.public_dump()
    assert shown["store"]["url"] == "postgresql+psycopg://cltool:***@db:5432/cltool"
    assert shown["mlflow"]["tracking_uri"] == "https://ci:***@mlflow.example/"
    assert shown["observe"]["webhook_url"] == "https://hooks.slack.com/***"
    assert "s3cret" not in str(shown) and "t0ken" not in str(shown) and "XyZsecret" not in str(shown)
    assert settings.store.url.endswith("s3cret@db:5432/cltool")  # the settings themselves are untouched
    assert mask_url("https://ghp_token@github.com/x") == "https://***@github.com/x"
    assert mask_url("sqlite:////tmp/state.db") == "sqlite:////tmp/state.db" and mask_url("") == ""
