"""Training under torchrun (DDP, gloo on CPU): identical weights on every rank, the same shapes
as one process, exact resume with the same world size, clear errors for bad setups and for a
rank that stops responding. The torchrun runs are real subprocesses on the committed subset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compress.distributed import collectives, sharding
from compress.distributed import group as ddp
from compress.models.artifacts.artifact import load_model, read_card
from compress.models.data.datasets import load_data
from compress.models.errors import UnsupportedError, UsageError
from compress.models.zoo.registry import create_model, spec_of
from compress.training.fit import TrainConfig, fit
from tests.conftest import FASHION_MINI

ROOT = Path(__file__).resolve().parents[1]
MINI = FASHION_MINI
DDP_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", ddp.BACKEND_ENV)


def torchrun(
    args: list[str], nproc: int = 2, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc_per_node N ARGS` (python -m torch.distributed.run)."""
    full_env = {k: v for k, v in os.environ.items() if k not in DDP_ENV}
    full_env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)} | (env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", *args]
    return subprocess.run(
        cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture
def no_torchrun_env(monkeypatch):
    for k in DDP_ENV:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


# ----------------------------------------------------------------------------- in-process units


def test_shards_cover_the_data_once_and_reshuffle_per_epoch():
    n, world = 11, 3
    train = [sharding.ShardSampler(n, r, world, seed=5) for r in range(world)]
    epoch0 = [list(s) for s in train]
    assert {len(s) for s in epoch0} == {4}  # padded: every rank runs the same steps
    assert set().union(*map(set, epoch0)) == set(range(n))
    for s in train:
        s.set_epoch(1)
    assert [list(s) for s in train] != epoch0
    assert [list(s) for s in train] == [list(s) for s in train]  # seeded, repeatable
    evals = [
        list(sharding.ShardSampler(n, r, world, shuffle=False, pad=False)) for r in range(world)
    ]
    assert sorted(i for e in evals for i in e) == list(
        range(n)
    )  # evaluation: each sample exactly once


def test_single_process_is_a_no_op(no_torchrun_env):
    info, device = ddp.setup("cpu")
    assert not info.active and info.is_main and device == torch.device("cpu")
    assert collectives.all_reduce_sums([1.0, 2.0]) == [1.0, 2.0]
    assert sharding.train_sampler(10, 0, 0) is None and sharding.eval_sampler(10) is None
    assert collectives.on_main(lambda: 7) == 7


def test_backend_the_device_cannot_use_is_refused(no_torchrun_env):
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", ddp.BACKEND_ENV: "nccl"}
    for k, v in env.items():
        no_torchrun_env.setenv(k, v)
    with pytest.raises(UnsupportedError, match="nccl backend needs CUDA"):
        ddp.setup("cpu")
    no_torchrun_env.setenv(ddp.BACKEND_ENV, "mpi")
    with pytest.raises(UsageError, match="unknown backend"):
        ddp.setup("cpu")
    no_torchrun_env.delenv(ddp.BACKEND_ENV)
    no_torchrun_env.setenv(ddp.TIMEOUT_ENV, "soon")
    with pytest.raises(UsageError, match="COMPRESS_DIST_TIMEOUT"):
        ddp.setup("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_each_rank_gets_its_own_gpu(no_torchrun_env):
    count = torch.cuda.device_count()
    with pytest.raises(UnsupportedError, match="GPU"):
        ddp._rank_device(torch.device("cuda"), count)
    assert ddp._rank_device(torch.device("cuda"), count - 1) == torch.device("cuda", count - 1)


# ----------------------------------------------------------------------------- torchrun, CLI


@pytest.fixture(scope="module")
def ddp_trained(tmp_path_factory) -> Path:
    """LeNet-5 trained for 2 epochs by 2 gloo processes through the CLI."""
    out = tmp_path_factory.mktemp("ddp") / "lenet5"
    args = ["train", "--model", "lenet5", "--data-dir", str(MINI), "--epochs", "2", "--amp"]
    args += [
        "off",
        "--batch-size",
        "64",
        "--lr",
        "5e-3",
        "--out",
        str(out),
        "--json",
        f"{out}.json",
    ]
    r = torchrun(["-m", "compress", *args])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("trained lenet5") == 1  # only rank 0 prints the result
    return out


def test_torchrun_train_keeps_ranks_identical(ddp_trained, mini_data):
    card = read_card(ddp_trained)
    dist = card.distributed  # type: ignore[attr-defined]
    assert dist["world_size"] == 2 and dist["backend"] == "gloo"
    assert dist["weights_identical_across_ranks"] and len(set(dist["rank_digests"])) == 1
    model, _ = load_model(ddp_trained)
    assert dist["rank_digests"][0] == collectives.state_digest(model)  # the saved weights are them
    fit_record = card.history[-1]["fit"]
    assert fit_record["world_size"] == 2 and fit_record["dist_backend"] == "gloo"
    assert shapes(model) == shapes(create_model("lenet5"))
    assert card.metrics["test"]["top1"] > 0.3  # it learned (chance is 0.1)
    summary = json.loads(Path(str(ddp_trained) + ".json").read_text())
    assert summary["metrics"]["test"]["samples"] == 300  # sharded evaluation, merged
    assert not Path(str(ddp_trained) + ".checkpoint").exists()


def test_torchrun_prune_with_finetune_matches_one_process(ddp_trained, mini_data, tmp_path):
    out = tmp_path / "pruned"
    args = ["--ratio", "0.5", "--finetune-epochs", "1", "--criterion", "taylor"]
    args += ["--no-latency", "--data-dir", str(MINI), "--amp", "off", "--batch-size", "64"]
    r = torchrun(["-m", "compress", "prune", "--model", str(ddp_trained), "--out", str(out), *args])
    assert r.returncode == 0, r.stdout + r.stderr
    card = read_card(out)
    dist = card.distributed  # type: ignore[attr-defined]
    assert dist["world_size"] == 2 and dist["weights_identical_across_ranks"]
    pruned, _ = load_model(out)
    assert dist["rank_digests"][0] == collectives.state_digest(pruned)

    from compress.pruning.prune import PruneConfig, prune

    single, _ = load_model(ddp_trained)
    data = load_data(mini_data, spec_of(single))
    tune = TrainConfig(epochs=1, lr=1e-3, schedule="cosine", amp="off")
    prune(single, PruneConfig(ratio=0.5, finetune_epochs=1, criterion="taylor"), data=data,
          finetune=tune)  # fmt: skip
    assert shapes(pruned) == shapes(single)
    assert shapes(pruned) != shapes(create_model("lenet5"))


@pytest.mark.slow  # 14 s: two more torchrun processes; the int4 grid itself is tested fast
def test_torchrun_distill_on_the_int4_grid_keeps_ranks_identical(ddp_trained, tmp_path):
    from compress.training.int4_grid import on_grid

    out = tmp_path / "student"
    args = ["distill", "-t", str(ddp_trained), "-s", str(ddp_trained), "--out", str(out)]
    args += ["--data-dir", str(MINI), "--epochs", "1", "--amp", "off", "--int4-layers", "fc1,conv2"]
    r = torchrun(["-m", "compress", *args])
    assert r.returncode == 0, r.stdout + r.stderr
    dist = read_card(out).distributed  # type: ignore[attr-defined]
    assert dist["world_size"] == 2 and dist["weights_identical_across_ranks"]
    model, _ = load_model(out)
    assert on_grid(model.fc1.weight, 32) and on_grid(model.conv2.weight, 32)
    assert not on_grid(model.fc2.weight, 32)


def test_torchrun_with_a_backend_the_device_cannot_use_fails_clearly(tmp_path):
    args = ["train", "--model", "lenet5", "--data-dir", str(MINI), "--epochs", "1"]
    args += ["--device", "cpu", "--out", str(tmp_path / "x")]
    r = torchrun(["-m", "compress", *args], env={ddp.BACKEND_ENV: "nccl"})
    assert r.returncode != 0
    assert r.stderr.count("error: the nccl backend needs CUDA") == 2  # one line per rank
    assert "exitcode  : 4" in r.stderr  # UnsupportedError's exit code, as torchrun reports it
    assert "/compress/" not in r.stderr  # no traceback from our code (torchrun prints its own)
    assert not (tmp_path / "x").exists()


def test_torchrun_runs_a_whole_recipe_with_one_writer(tmp_path):
    """`torchrun -m compress run`: every rank trains and prunes (DDP), rank 0 alone exports,
    benchmarks and writes records and the report; a rerun with --resume skips every stage."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""name: ddp-run
model: lenet5
data: {{dataset: fashion-mnist, data_dir: {MINI}, batch_size: 64}}
stages:
  - train: {{epochs: 1, amp: "off", lr: 5.0e-3}}
  - prune: {{ratio: 0.25, round_to: null, finetune_epochs: 1, amp: "off"}}
  - export: {{}}
  - bench: {{batch_sizes: [1], runtimes: [ort-cpu], iters: 4}}
"""
    )
    out = tmp_path / "run"
    r = torchrun(["-m", "compress", "run", str(recipe), "--out", str(out)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("done in") == 1  # rank 0 alone prints the summary
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if (out / n).is_dir()] == [
        "01-train",
        "02-prune",
        "03-export",
        "04-bench",
    ]
    assert {"report.html", "report.json", "report.md"} <= set(names)
    assert not [n for n in names if n.startswith(".") or "rank" in n]  # no scratch left behind
    report = json.loads((out / "report.json").read_text())
    assert [s["kind"] for s in report["stages"]] == ["train", "prune", "export", "bench"]
    for name in ("01-train", "02-prune"):
        dist = read_card(out / name).distributed  # type: ignore[attr-defined]
        assert dist["world_size"] == 2 and dist["weights_identical_across_ranks"]
    assert (out / "03-export" / "model.onnx").is_file()
    bench = json.loads((out / "04-bench" / "bench.json").read_text())
    # every artifact of the run measured once (not once per rank)
    assert [r["model"] for r in bench["results"]] == ["01-train", "02-prune", "03-export"]
    again = torchrun(["-m", "compress", "run", str(recipe), "--out", str(out), "--resume"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((out / "report.json").read_text())["stages"][0].get("resumed") is True


# ----------------------------------------------------------------------------- torchrun, library

RESUME_SCRIPT = """
import json, sys
import torch
from compress.distributed import collectives
from compress.distributed import group as ddp
from compress.distributed import sharding
from compress.training.fit import TrainConfig, fit
from compress.models.data.datasets import DataConfig, load_data
from compress.models.zoo.registry import create_model

out, mini = sys.argv[1], sys.argv[2]
bundle = load_data(DataConfig(dataset="fashion-mnist", data_dir=mini, batch_size=64),
                   create_model("lenet5").spec)

class Interrupted:
    # every rank stops at the same point: when epoch 2's batches are asked for
    def __getattr__(self, name):
        return getattr(bundle, name)
    def loader(self, split, epoch=0, **kw):
        if split == "train" and epoch == 1:
            raise KeyboardInterrupt
        return bundle.loader(split, epoch=epoch, **kw)

def run(ck, data=bundle, resume=False):
    torch.manual_seed(0)
    model = create_model("lenet5")
    fit(model, data, TrainConfig(epochs=2, lr=5e-3, amp="off", checkpoint_dir=ck, resume=resume))
    return model

full = run(out + "/full")
try:
    run(out + "/cut", data=Interrupted())
except KeyboardInterrupt:
    pass
resumed = run(out + "/cut", resume=True)
diff = max((a - b).abs().max().item() for a, b in zip(full.state_dict().values(),
                                                      resumed.state_dict().values()))

# Pruning importance: each rank's gradients on its own shard, all-reduced before deciding.
import torch.nn.functional as F
from compress.pruning.graph import accumulate_gradients, make_importance

def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])

shard = sharding.train_sampler(len(bundle.train), 0, 0)
full.zero_grad()
for i, (x, y) in enumerate(bundle.loader("train", sampler=shard)):
    if i == 2:
        break
    F.cross_entropy(full(x), y).backward()
mine = grads(full)
expected = sum(collectives.gather_objects(mine)) / ddp.world_size()
accumulate_gradients(full, make_importance("taylor"), bundle, 2)
reduced = grads(full)
hessian_samples = accumulate_gradients(full, make_importance("hessian"), bundle, 2)
json.dump({"full": collectives.state_digest(full), "resumed": collectives.state_digest(resumed), "diff": diff,
           "world": ddp.world_size(), "local_grad": mine.sum().item(),
           "reduced_grad": reduced.sum().item(),
           "reduced_vs_mean": (reduced - expected).abs().max().item(),
           "hessian_samples": [hessian_samples]},
          open(f"{out}/rank{ddp.rank()}.json", "w"))
"""


def test_ddp_resumes_exactly_with_its_world_size_and_prunes_from_all_ranks(tmp_path, mini_data):
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    r = torchrun([str(script), str(tmp_path), str(MINI)])
    assert r.returncode == 0, r.stdout + r.stderr
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert all(x["world"] == 2 for x in ranks)
    assert ranks[0]["full"] == ranks[1]["full"]  # DDP kept the ranks identical
    assert ranks[0]["resumed"] == ranks[1]["resumed"]
    assert ranks[0]["diff"] < 1e-5  # resumed == uninterrupted
    # Pruning importance: different shards per rank, one all-reduced gradient for the decision.
    assert ranks[0]["local_grad"] != ranks[1]["local_grad"]
    assert ranks[0]["reduced_grad"] == ranks[1]["reduced_grad"]
    assert ranks[0]["reduced_vs_mean"] < 1e-5 and ranks[1]["reduced_vs_mean"] < 1e-5
    assert ranks[0]["hessian_samples"] == [2 * 2 * 16]  # 2 ranks x 2 batches x 16 samples
    ck = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng_ranks"]) == 2
    # The same checkpoint resumed by one process: a clear usage error, nothing trained.
    cfg = TrainConfig(epochs=2, amp="off", checkpoint_dir=str(tmp_path / "cut"), resume=True)
    model = create_model("lenet5")
    with pytest.raises(UsageError, match="run of 2 process"):
        fit(model, load_data(mini_data, spec_of(model)), cfg)


HANG_SCRIPT = """
import sys, time
import torch.nn.functional as F
from compress.distributed import group as ddp
from compress.training.fit import TrainConfig, fit
from compress.models.data.datasets import DataConfig, load_data
from compress.models.errors import CompressError
from compress.models.zoo.registry import create_model

model = create_model("lenet5")
data = load_data(DataConfig(dataset="fashion-mnist", data_dir=sys.argv[1], batch_size=32),
                 model.spec)
seen = [0]

def loss_fn(logits, y, x):
    seen[0] += 1
    if ddp.rank() == 1 and seen[0] == 3:
        time.sleep(120)  # this rank hangs mid-epoch
    return F.cross_entropy(logits, y)

try:
    fit(model, data, TrainConfig(epochs=1, amp="off"), loss_fn=loss_fn)
except CompressError as e:
    print(f"rank {ddp.rank()} error: {e}", flush=True)
    sys.exit(e.exit_code)
"""


def test_a_hanging_rank_times_out_instead_of_blocking_forever(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANG_SCRIPT)
    t0 = time.perf_counter()
    r = torchrun([str(script), str(MINI)], env={ddp.TIMEOUT_ENV: "4"}, timeout=100)
    assert r.returncode != 0
    assert "rank 0 error: rank 0: another rank stopped responding" in r.stdout, r.stdout + r.stderr
    assert time.perf_counter() - t0 < 90


def test_torchrun_factorize_has_one_writer_and_identical_ranks(ddp_trained, tmp_path):
    """factorize runs in the stage frame like the others: every rank fine-tunes with DDP,
    rank 0 alone writes --out, and the card proves the ranks ended equal."""
    out = tmp_path / "fact"
    args = ["factorize", "--model", str(ddp_trained), "--data-dir", str(MINI)]
    args += ["--param-target", "0.5", "--epochs", "1", "--out", str(out)]
    r = torchrun(["-m", "compress", *args])
    assert r.returncode == 0, r.stdout + r.stderr
    dist = read_card(out).distributed  # type: ignore[attr-defined]
    assert dist["world_size"] == 2 and dist["weights_identical_across_ranks"] is True
    assert not list(tmp_path.glob(".fact*"))  # no rank left a temporary behind
