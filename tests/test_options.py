"""Config checks declared on the fields (`option(min=..., choices=..., hint=...)`): one function
enforces them for every config; the message names the field, the bound and the value."""

import math

import pytest

from compress.distillation.distill import DistillConfig
from compress.models.errors import UsageError
from compress.pruning.config import PruneConfig
from compress.training.config import TrainConfig


def test_a_bound_names_field_bound_value_and_the_fields_hint():
    with pytest.raises(UsageError, match=r"^--finetune-epochs must be >= 0, got -1") as e:
        PruneConfig(ratio=0.5, finetune_epochs=-1)  # PruneConfig names flags (flags=True)
    assert e.value.hint == "--finetune-epochs 0 skips it"


def test_an_interval_and_its_hint():
    with pytest.raises(UsageError, match=r"alpha must be in \[0, 1\], got 2") as e:
        DistillConfig(alpha=2.0)
    assert e.value.hint is not None and "1 - alpha" in e.value.hint


def test_choices_list_the_allowed_values():
    with pytest.raises(UsageError, match="optimizer must be one of adamw, sgd, got 'lion'"):
        TrainConfig(optimizer="lion")


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_a_bounded_float_must_be_finite(value):
    with pytest.raises(UsageError, match="lr must be > 0"):
        TrainConfig(lr=value)


def test_values_inside_the_bounds_pass():
    cfg = TrainConfig(lr=1e-3, optimizer="sgd", epochs=0)
    assert (cfg.lr, cfg.optimizer, cfg.epochs) == (1e-3, "sgd", 0)
