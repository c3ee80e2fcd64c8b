"""torch-compile never runs eager behind our back: many batch sizes share one graph, and a
recompile limit that is hit becomes a failed case, not an eager figure labelled compiled."""

from __future__ import annotations

import numpy as np
import pytest

from compress.export.runtimes import torch_compile
from compress.export.runtimes.runner import torch_runner
from compress.models.errors import UnsupportedError
from compress.models.zoo.registry import create_model


@pytest.mark.slow
def test_many_batch_sizes_compile_within_the_limit_and_match_eager(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = create_model("lenet5").eval()
    runner = torch_runner(model, "torch-compile")
    caplog.set_level(logging.INFO, logger="compress.export.runtimes.torch_compile")
    # deploy's shapes (eval 512 / 392, timing 1 / 32) and more than recompile_limit (8) others
    sizes = [512, 392, 1, 32, *range(2, 12)]
    assert len(sizes) > torch._dynamo.config.recompile_limit
    for bs in sizes:
        x = np.random.default_rng(bs).standard_normal((bs, 1, 28, 28)).astype(np.float32)
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(runner.run(x), want, atol=1e-4, rtol=1e-3)
    # batch 1 is its own graph; batches >= 2 share dynamic-batch graphs (conv splits at 16)
    graphs = counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 3
    # a "compiled" line for each graph really compiled, none for shapes that reuse one
    assert sum("compiled" in r.getMessage() for r in caplog.records) == graphs


@pytest.mark.slow
def test_a_hit_recompile_limit_fails_instead_of_running_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    runner = torch_runner(create_model("lenet5"), "torch-compile")
    runner.run(np.zeros((1, 1, 28, 28), np.float32))
    monkeypatch.setattr(torch_compile, "RECOMPILE_LIMIT", 1)
    # batch 4 needs a second graph: dynamo's default would run it eager, silently
    with pytest.raises(UnsupportedError, match="recompile limit"):
        runner.run(np.zeros((4, 1, 28, 28), np.float32))
    torch._dynamo.reset()
