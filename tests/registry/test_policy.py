"""The gate's policy type: declared once, strict from Python, lax (and located) inside a settings model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from registry.errors import InvalidPolicyError
from registry.policy import GatePolicy, expected


class Settings(BaseModel):
    """Stands in for the daemon's Settings, which embeds the policy as its [gate] section."""

    gate: GatePolicy = GatePolicy()


class Section(GatePolicy):
    """Stands in for the daemon's GateSection: the policy plus one daemon-only field."""

    regression_max_rows: int = Field(2000, ge=10, description="Cap on the regression suite.")
    share: float = Field(0.5, gt=0, lt=1, description="A field with exclusive bounds.")


def test_inside_a_settings_model_strings_from_the_environment_coerce():
    assert Settings(gate={"max_forgetting": "0.02", "min_fresh_rows": "30"}).gate == GatePolicy(
        max_forgetting=0.02, min_fresh_rows=30)


def test_inside_a_settings_model_a_bad_value_is_located_at_the_field():
    with pytest.raises(ValidationError) as caught:
        Settings(gate={"max_forgetting": 5})
    assert [error["loc"] for error in caught.value.errors()] == [("gate", "max_forgetting")]


def test_a_stored_config_validates_laxly():
    assert GatePolicy.model_validate({"seed": "3", "confidence": 0.9}) == GatePolicy(seed=3, confidence=0.9)


def test_direct_construction_is_strict_and_names_field_value_and_range():
    with pytest.raises(InvalidPolicyError, match=r"GatePolicy.max_forgetting = '0.02' is not allowed: "
                                                 r"expected a number in \[0.0, 1.0\]"):
        GatePolicy(max_forgetting="0.02")
    with pytest.raises(InvalidPolicyError, match=r"GatePolicy.min_fresh_rows = True .* an integer >= 1"):
        GatePolicy(min_fresh_rows=True)
    with pytest.raises(InvalidPolicyError, match=r"GatePolicy.max_forgetingg = 0.1 is not allowed: expected one of "
                                                 r"its fields \(max_forgetting, "):
        GatePolicy(max_forgetingg=0.1)
    assert GatePolicy(max_forgetting=0).max_forgetting == 0.0  # an int is a number


def test_a_subclass_is_strict_too_and_names_itself():
    with pytest.raises(InvalidPolicyError, match=r"Section.regression_max_rows = 20.0 is not allowed: "
                                                 r"expected an integer >= 10"):
        Section(regression_max_rows=20.0)
    with pytest.raises(InvalidPolicyError, match=r"Section.max_wait_rows = 5 .* >= min_fresh_rows \(20\)"):
        Section(max_wait_rows=5)
    with pytest.raises(InvalidPolicyError, match=r"Section.share = 1.0 .* expected a number in \(0.0, 1.0\)"):
        Section(share=1.0)
    assert Section(regression_max_rows=30).to_dict()["regression_max_rows"] == 30


def test_expected_text_follows_the_field_constraints():
    fields = Section.model_fields
    assert expected(fields["bootstrap_samples"]) == "an integer in [100, 100000]"
    assert expected(fields["seed"]) == "an integer >= 0"
    assert expected(fields["min_fresh_gain"]) == "a number in [-1.0, 1.0]"
    assert expected(fields["share"]) == "a number in (0.0, 1.0)"


def test_every_field_says_what_it_does_for_cltool_init():
    assert all(field.description for field in GatePolicy.model_fields.values())


def test_a_policy_is_frozen():
    with pytest.raises(ValidationError):
        GatePolicy().seed = 3
