"""Training on real data improves accuracy; checkpoints resume; bad configs are usage errors."""

from __future__ import annotations

import pytest
import torch

from compress.models.data.datasets import load_data
from compress.models.errors import UsageError
from compress.models.zoo.registry import create_model
from compress.training.evaluate import evaluate, torch_predictor
from compress.training.fit import TrainConfig, fit


def test_short_real_training_improves_accuracy(mini_data):
    model = create_model("lenet5")
    data = load_data(mini_data, model.spec)
    before = evaluate(torch_predictor(model), data.loader("test"), 10).top1
    result = fit(model, data, TrainConfig(epochs=5, lr=5e-3, amp="off"))
    after = evaluate(torch_predictor(model), data.loader("test"), 10).top1
    assert after > before + 0.25, (before, after)
    assert after > 0.5
    assert len(result.epochs) == 5 and result.val_top1 is not None


class StopAfter:
    """Hooks that interrupt training after `n` epochs, like a Ctrl-C."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_start(self, epoch, epochs, batches):
        pass

    def on_batch(self, loss):
        pass

    def on_epoch_end(self, epoch, metrics):
        if epoch + 1 == self.n:
            raise KeyboardInterrupt


def test_resume_continues_an_interrupted_run(mini_data, tmp_path):
    data = load_data(mini_data, create_model("lenet5").spec)
    ck = str(tmp_path / "ck")
    cfg = dict(epochs=3, amp="off", checkpoint_dir=ck)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(create_model("lenet5"), data, TrainConfig(**cfg), hooks=StopAfter(2))
    resumed = create_model("lenet5")
    r = fit(resumed, data, TrainConfig(**cfg, resume=True))
    assert r.resumed_from == 2 and [e["epoch"] for e in r.epochs] == [1, 2, 3]
    torch.manual_seed(0)
    uninterrupted = create_model("lenet5")
    fit(uninterrupted, data, TrainConfig(epochs=3, amp="off"))
    for a, b in zip(resumed.parameters(), uninterrupted.parameters(), strict=True):
        assert (a - b).abs().max() < 1e-4
    with pytest.raises(UsageError, match="3-epoch run"):
        fit(
            create_model("lenet5"),
            data,
            TrainConfig(epochs=5, amp="off", checkpoint_dir=ck, resume=True),
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": -1}, "epochs must be >= 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"optimizer": "lion"}, "optimizer must be one of"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
    ],
)
def test_invalid_train_config_is_a_usage_error(kwargs, match):
    with pytest.raises(UsageError, match=match):
        TrainConfig(**kwargs)


def test_explicit_cuda_without_gpu_is_unsupported(mini_data):
    import torch

    from compress.models.errors import UnsupportedError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; this checks the CPU-only error")
    with pytest.raises(UnsupportedError, match="no CUDA GPU"):
        fit(
            create_model("lenet5"),
            load_data(mini_data, create_model("lenet5").spec),
            TrainConfig(epochs=1, device="cuda"),
        )
