"""The knobs every drift monitor reads, declared once.

`SuiteConfig` holds the detectors' thresholds; the daemon's `[drift]` settings section extends it
with what only the daemon needs (which reference, how many rows, hysteresis), and the detectors
take their constructor defaults from `DEFAULTS`, so a default lives in exactly one place.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field, model_validator


class SuiteConfig(BaseModel):
    """Thresholds and sample sizes of the six monitors (see daemon/drift/suite.py)."""

    model_config = {"extra": "forbid", "validate_assignment": True}

    alpha: float = Field(0.01, gt=0, lt=1, description="Significance level of every drift test.")
    label_psi: float = Field(0.2, ge=0, description="PSI a label or prediction mix must also reach to count as drift.")
    text_psi: float = Field(0.1, ge=0, description="PSI a text statistic (length, unknown words, links) must reach.")
    mmd_max_rows: int = Field(300, ge=2, description="Embeddings per side in the MMD test (bounds its cost).")
    mmd_permutations: int = Field(200, ge=10, description="Permutations behind the MMD p-value.")
    surge_label: str = Field("negative", min_length=1, description="Class whose share rising is a surge.")
    surge_min_lift: float = Field(0.10, ge=0, lt=1, description="Rise of that class's share (absolute) that matters.")
    max_f1_drop: float = Field(
        0.10, ge=0, le=1, description="Live macro-F1 this far below the champion's regression macro-F1 is drift."
    )
    seed: int = Field(0, ge=0, description="Seed for row sampling and permutations, so a score replays exactly.")

    @model_validator(mode="after")
    def _permutations_can_reach_alpha(self) -> "SuiteConfig":
        # The smallest permutation p-value is 1/(permutations+1): with fewer, MMD could never fire.
        if (self.mmd_permutations + 1) * self.alpha > 1:
            return self
        raise ValueError(f"mmd_permutations = {self.mmd_permutations} is too few for alpha = {self.alpha}: "
                         f"expected at least {math.ceil(1 / self.alpha)}")


DEFAULTS = SuiteConfig()
