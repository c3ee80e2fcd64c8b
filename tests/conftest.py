"""Shared fixtures: the committed Fashion-MNIST subset (one absolute path), its data config and
loaded splits, calibration inputs, and a small trained LeNet-5 artifact; the user model and
size helpers the pruning tests share; and `cli`, one in-process `compress` invocation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from click.testing import Result
    from torch import nn

FASHION_MINI = (Path(__file__).parent / "data" / "fashion-mini").resolve()
MINI = str(FASHION_MINI)  # the same path as a string, for CLI arguments and configs
# A user factory with depthwise convs, a concat and residuals (what the pruner must follow).
USER_MODEL = str(Path(__file__).parent / "data" / "user_model.py") + ":build"


def cli(*args: str) -> Result:
    """`compress ARGS...` run in-process (Typer's CliRunner): exit code and output, no traceback
    escapes."""
    from typer.testing import CliRunner

    from compress.cli.app import app

    return CliRunner().invoke(app, list(args))


def params(m: nn.Module) -> int:
    """Parameters counted independently of the library's own counter."""
    return sum(p.numel() for p in m.parameters())


def shapes(m: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


@pytest.fixture
def mini_data():
    """DataConfig over the committed 800+300-image Fashion-MNIST subset."""
    from compress.models.data.datasets import DataConfig

    return DataConfig(dataset="fashion-mnist", data_dir=MINI, batch_size=64)


@pytest.fixture(scope="session")
def bundle():
    """The subset's train/val/test splits shaped for LeNet-5 (batches of 64)."""
    from compress.models.data.datasets import DataConfig, load_data
    from compress.models.zoo.registry import create_model, spec_of

    spec = spec_of(create_model("lenet5"))
    return load_data(DataConfig(dataset="fashion-mnist", data_dir=MINI, batch_size=64), spec)


@pytest.fixture(scope="session")
def calib(bundle) -> np.ndarray:
    """64 seeded calibration inputs from the validation split."""
    from compress.quantization.calibration import calibration_inputs

    return calibration_inputs(bundle.val, 64, seed=0)


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory) -> Path:
    """A LeNet-5 artifact trained for a few epochs on the subset (seconds)."""
    from compress.models.data.datasets import DataConfig
    from compress.stages.common import ModelRef
    from compress.stages.train import run_train
    from compress.training.fit import TrainConfig

    out = tmp_path_factory.mktemp("art") / "lenet5"
    data = DataConfig(dataset="fashion-mnist", data_dir=MINI, batch_size=64)
    run_train(ModelRef("lenet5"), out, TrainConfig(epochs=4, lr=5e-3, amp="off"), data)
    return out
