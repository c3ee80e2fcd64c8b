"""Shared fixtures: the committed Fashion-MNIST subset and a small trained LeNet-5 artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

FASHION_MINI = Path(__file__).parent / "data" / "fashion-mini"


@pytest.fixture
def mini_data():
    """DataConfig over the committed 800+300-image Fashion-MNIST subset."""
    from models.data import DataConfig

    return DataConfig(dataset="fashion-mnist", data_dir=str(FASHION_MINI), batch_size=64)


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory) -> Path:
    """A LeNet-5 artifact trained for a few epochs on the subset (seconds)."""
    from compress.stages.common import ModelRef
    from compress.stages.train import run_train
    from compress.training.fit import TrainConfig
    from models.data import DataConfig

    out = tmp_path_factory.mktemp("art") / "lenet5"
    data = DataConfig(dataset="fashion-mnist", data_dir=str(FASHION_MINI), batch_size=64)
    run_train(ModelRef("lenet5"), TrainConfig(epochs=4, lr=5e-3, amp="off"), data, out)
    return out
