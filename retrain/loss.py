"""The update's loss: class-weighted cross-entropy plus optional distillation towards the champion.

`ContinualTrainer` is `transformers.Trainer` with this loss; the teacher's columns ride along in the
batch and never reach the model.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import Trainer

from retrain.sampling import ShuffledLengthBatches


def class_weights(train_labels: list[int], n_classes: int) -> torch.Tensor:
    """Inverse class frequency ("balanced": n / (k * count)), capped to [0.1, 10] so a class with a
    handful of rows cannot dominate either; 1 for a class with no rows."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(np.clip(weights, 0.1, 10.0), dtype=torch.float32)


def continual_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weight: torch.Tensor | None = None,
    teacher_probs: torch.Tensor | None = None,
    teacher_mask: torch.Tensor | None = None,
    distill_alpha: float = 0.0,
    temperature: float = 2.0,
) -> torch.Tensor:
    """Cross-entropy, weighted per class, plus an optional distillation term.

    The weighted CE is a weighted mean (sum of w·CE over sum of w, w = the row's class weight), as
    `cross_entropy(weight=...)` computes it. The distillation term is
    `alpha · T² · KL(teacher_T || student_T)` averaged over the rows whose `teacher_mask` is 1: it
    pulls the update towards the champion's answers on replayed rows (learning without forgetting).
    """
    logits = logits.float()
    weight = class_weight.to(logits.device) if class_weight is not None else None
    loss = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
    if distill_alpha > 0 and teacher_probs is not None and teacher_mask is not None and teacher_mask.sum() > 0:
        mask = teacher_mask.to(logits.device).float()
        teacher = torch.softmax(torch.log(teacher_probs.to(logits.device).float().clamp_min(1e-8)) / temperature, -1)
        student = torch.log_softmax(logits / temperature, -1)
        kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - student)).sum(-1)
        loss = loss + distill_alpha * temperature**2 * (kl * mask).sum() / mask.sum()
    return loss


class ContinualTrainer(Trainer):
    """Trainer whose loss is `continual_loss`; the teacher columns of a batch never reach the model."""

    EXTRA = ("teacher_probs", "teacher_mask")

    def __init__(self, *args, class_weight=None, distill_alpha=0.0, temperature=2.0, length_grouped=False,
                 **kwargs):  # noqa: ANN001
        super().__init__(*args, **kwargs)
        self.class_weight, self.distill_alpha, self.temperature = class_weight, distill_alpha, temperature
        self.length_grouped = length_grouped

    def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001, ANN202 (Trainer's hook)
        """`length_grouped`: batches of similar lengths in random order (retrain/sampling.py)."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.length_grouped or dataset is None:
            return super()._get_train_sampler(train_dataset)
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return ShuffledLengthBatches(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                     self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        extra = {name: inputs.get(name) for name in self.EXTRA}
        model_inputs = {k: v for k, v in inputs.items() if k not in self.EXTRA and k != "labels"}
        outputs = model(**model_inputs)
        loss = continual_loss(outputs["logits"], inputs["labels"], self.class_weight, extra["teacher_probs"],
                              extra["teacher_mask"], self.distill_alpha, self.temperature)
        return (loss, outputs) if return_outputs else loss
