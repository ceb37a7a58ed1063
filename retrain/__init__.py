"""Pure machine learning for cltool: rows to datasets, replay sampling, fine-tuning, evaluation.

Knows nothing of MLflow, schedules or inbox files. Importing it loads no model and starts nothing.

- `modeling`   where models come from: PACKAGED_BASE, resolve_base, load_for_training, build_tiny_model
- `data`       rows (text, label[, weight]) → tokenized `datasets.Dataset`
- `replay`     which past train rows to replay: ReplayPolicy, ClassBalancedReplay, make_replay
- `train`      TrainConfig, fine_tune → TrainResult (transformers.Trainer, early stopping on val macro-F1)
- `evaluation` Predictor, score (JSON report), negative_flip_rate
- `metrics`    local `evaluate` metric modules (no Hub) and their cached loader
- `devices`    resolve_device: "cpu" / "cuda" / None (auto)
- `defaults`   defaults shared with the daemon's config (MAX_LENGTH)
- `errors`     RetrainError and its subclasses
"""
