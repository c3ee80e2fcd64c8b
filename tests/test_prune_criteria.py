"""How pruning ranks and re-trains channels: every criterion, the Hessian's per-sample gradients,
KD fine-tuning from the unpruned model, and what a criterion or fine-tuning needs (data, BatchNorm)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from compress.models.data.datasets import load_data
from compress.models.errors import UsageError
from compress.models.zoo.registry import create_model
from compress.pruning.graph import accumulate_gradients, make_importance
from compress.pruning.prune import CRITERIA, PruneConfig, prune
from compress.training.fit import TrainConfig
from tests.conftest import USER_MODEL, params


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_prunes_the_user_model(criterion, mini_data):
    m = create_model(USER_MODEL)
    data = load_data(mini_data, m.spec) if criterion in ("taylor", "hessian") else None
    cfg = PruneConfig(ratio=0.4, criterion=criterion, importance_batches=1)
    res = prune(m, cfg, data=data)
    assert res.after.params < 0.75 * res.before.params
    assert m(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_hessian_accumulates_every_sample(mini_data):
    """`.grad` holds the mean squared per-sample gradient over 16 samples of each batch."""
    from compress.distributed import sharding

    m = create_model("lenet5")
    data = load_data(mini_data, m.spec)
    imp = make_importance("hessian")
    assert accumulate_gradients(m, imp, data, batches=2) == 32  # 16 samples from each of 2 batches
    assert all(p.grad is not None for p in m.parameters())
    got = m.fc3.bias.grad.clone()
    shard = sharding.train_sampler(len(data.train), data.config.shuffle_seed, 0)
    want = torch.zeros_like(m.fc3.bias)
    for i, (x, y) in enumerate(data.loader("train", sampler=shard)):
        if i == 2:
            break
        for xi, yi in zip(x[:16], y[:16], strict=True):
            m.zero_grad()
            nn.functional.cross_entropy(m(xi[None]), yi[None]).backward()
            want += m.fc3.bias.grad.pow(2)
    torch.testing.assert_close(got, want / 32, rtol=1e-4, atol=1e-7)


def test_hessian_importance_reads_the_accumulated_gradients(mini_data):
    """torch-pruning's Hessian importance scores channels from `.grad`: w² · g summed over
    conv1's output channels and conv2's matching input channels."""
    import torch_pruning as tp

    m = create_model("lenet5")
    imp = make_importance("hessian")
    accumulate_gradients(m, imp, load_data(mini_data, m.spec), batches=1)
    dg = tp.DependencyGraph().build_dependency(m, example_inputs=torch.randn(1, 1, 28, 28))
    group = dg.get_pruning_group(m.conv1, tp.prune_conv_out_channels, idxs=list(range(6)))
    scores = imp(group)
    w1, w2 = m.conv1.weight.detach(), m.conv2.weight.detach()
    own = (w1.pow(2) * m.conv1.weight.grad).sum((1, 2, 3))
    own += (w2.pow(2) * m.conv2.weight.grad).sum((0, 2, 3))
    assert scores.shape == (6,)
    assert torch.argsort(scores).tolist() == torch.argsort(own).tolist()


def test_kd_finetunes_each_step_from_the_unpruned_model(mini_data, monkeypatch):
    """kd=True: every fine-tuning round distills from the model as it was before pruning."""
    import compress.distillation.distill as distill_mod

    seen = []
    real = distill_mod.distill

    def spy(student, teacher, data, cfg, train_cfg=None, **kw):
        seen.append((params(teacher), params(student), cfg.epochs, cfg.temperature, cfg.alpha))
        return real(student, teacher, data, cfg, train_cfg, **kw)

    monkeypatch.setattr(distill_mod, "distill", spy)
    m = create_model("lenet5")
    dense = params(m)
    cfg = PruneConfig(ratio=0.5, steps=2, finetune_epochs=1, kd=True, kd_temperature=3.0)
    tune = TrainConfig(epochs=1, lr=1e-3, amp="off")
    prune(m, cfg, data=load_data(replace(mini_data, limit=128), m.spec), finetune=tune)
    assert [s[0] for s in seen] == [dense, dense]  # the same unpruned teacher both times
    assert seen[0][1] > seen[1][1] == params(m)  # the student shrinks step by step
    assert {s[2:] for s in seen} == {(1, 3.0, 0.5)}
    with pytest.raises(UsageError, match="callable owns its loss"):
        prune(create_model("lenet5"), cfg, finetune=lambda model, epochs: None)


def test_kd_is_the_default_whenever_a_train_config_fine_tunes(mini_data, monkeypatch):
    """The measured best path (KD from the parent, BENCHMARKS.md) is the default: kd=None
    distills when a TrainConfig fine-tunes, kd=False fine-tunes with plain cross-entropy, and a
    fine-tuning callable (which owns its loss) is left alone rather than refused."""
    import compress.distillation.distill as distill_mod

    calls = []
    real = distill_mod.distill

    def spy(student, teacher, data, cfg, train_cfg=None, **kw):
        calls.append(cfg.temperature)
        return real(student, teacher, data, cfg, train_cfg, **kw)

    monkeypatch.setattr(distill_mod, "distill", spy)
    assert PruneConfig(ratio=0.5).kd is None
    tune = TrainConfig(epochs=1, lr=1e-3, amp="off")
    m = create_model("lenet5")
    data = load_data(replace(mini_data, limit=128), m.spec)
    prune(m, PruneConfig(ratio=0.5, final_finetune_epochs=1), data=data, finetune=tune)
    assert calls == [2.0]
    prune(create_model("lenet5"), PruneConfig(ratio=0.5, final_finetune_epochs=1, kd=False),
          data=data, finetune=tune)  # fmt: skip
    assert calls == [2.0]
    tuned = []
    prune(create_model("lenet5"), PruneConfig(ratio=0.5, final_finetune_epochs=1),
          finetune=lambda model, epochs: tuned.append(epochs))  # fmt: skip
    assert tuned == [1] and calls == [2.0]


def test_data_criteria_and_finetune_need_data():
    m = create_model("lenet5")
    with pytest.raises(UsageError, match="needs training data"):
        prune(m, PruneConfig(ratio=0.5, criterion="taylor"))
    with pytest.raises(UsageError, match="needs the data set"):
        prune(m, PruneConfig(ratio=0.5, finetune_epochs=1))


def test_bn_scale_without_batchnorm_is_refused():
    with pytest.raises(UsageError, match="no BatchNorm"):
        prune(create_model("lenet5"), PruneConfig(ratio=0.5, criterion="bn-scale"))
