"""Pure machine learning for cltool: rows to datasets, replay sampling, fine-tuning, evaluation.

Knows nothing of MLflow, schedules or inbox files. Importing it loads no model and starts nothing.

- `config`     the settings, declared once: ModelConfig, TrainConfig, ReplayConfig (the daemon embeds them)
- `modeling`   where models come from: PACKAGED_BASE, resolve_base, load_for_training, build_tiny_model
- `data`       rows (text, label[, teacher_probs]) → tokenized `datasets.Dataset`
- `replay`     which past train rows to replay: ReplayPolicy, ClassBalancedReplay, make_replay(ReplayConfig)
- `update`     the one update recipe: prepare_update → UpdateRows (new + replay, val, replay state)
- `loss`       continual_loss, class_weights, ContinualTrainer
- `train`      fine_tune → TrainResult (transformers.Trainer, early stopping on val macro-F1)
- `evaluation` Predictor, score (JSON report), negative_flip_rate
- `metrics`    local `evaluate` metric modules (no Hub) and their cached loader
- `devices`    resolve_device: "auto" / "cpu" / "cuda"
- `defaults`   defaults shared with the daemon's config (MAX_LENGTH)
- `errors`     RetrainError and its subclasses
"""
