"""One pruning run: the pruner, the progress knob, the targets' search loops, fine-tuning."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any, TypeAlias

import torch
from torch import nn

from compress.distributed import collectives
from compress.models.data.datasets import DataBundle, synthetic_batch
from compress.models.errors import CompressError, UsageError
from compress.models.zoo.registry import spec_of
from compress.pruning.config import (
    DATA_CRITERIA,
    DATA_FREE_CRITERION,
    PruneConfig,
    TargetUnreachableError,
)
from compress.pruning.flops import Geometry
from compress.pruning.graph import (
    CachedImportance,
    Progress,
    Scaled,
    accumulate_gradients,
    build_pruner,
    make_importance,
    plan,
    prunable_groups,
    search,
)
from compress.pruning.latency import LatencyConfig, ort_latency_ms
from compress.pruning.outcome import Counts, PruneResult, SparseLearning
from compress.training.batchnorm import BnRecalibration, has_batchnorm, recalibrate_batchnorm
from compress.training.fit import Hooks, TrainConfig, fit

log = logging.getLogger(__name__)
_MAX_LATENCY_ROUNDS = 20


def example_input(model: nn.Module) -> torch.Tensor:
    """A seeded batch-1 input of the model's shape (tracing and shape checks only)."""
    return synthetic_batch(spec_of(model), 1)


Metrics: TypeAlias = dict[str, float]  # an evaluator's named scores (val_top1, test_top1)
Evaluator = Callable[[nn.Module], Metrics]
Finetune = TrainConfig | Callable[[nn.Module, int], object]


class PruneSession:
    """State of one `prune` call: the pruner, the progress knob, the counters."""

    def __init__(
        self,
        model: nn.Module,
        cfg: PruneConfig,
        x: torch.Tensor,
        data: DataBundle | None,
        finetune: Finetune | None,
        evaluator: Evaluator | None,
        hooks: Hooks | None,
    ) -> None:
        self.model, self.cfg, self.x = model, cfg, x
        self.data, self.finetune, self.evaluator, self.hooks = data, finetune, evaluator, hooks
        # the unpruned model teaches every fine-tuning round when cfg.kd
        self.teacher = copy.deepcopy(model).eval() if cfg.kd else None
        self.geometry = Geometry(model, x)
        self.progress = Progress()
        if cfg.criterion == "random":
            torch.manual_seed(cfg.seed)  # reproducible random ranking
        self.importance = CachedImportance(make_importance(cfg.criterion or DATA_FREE_CRITERION))
        base = {"ratio": cfg.ratio or 0.0, "layers": 0.0}.get(cfg.target_kind, cfg.max_layer_ratio)
        if cfg.global_pruning and cfg.target_kind not in ("ratio", "layers"):
            base = 1.0  # the global ratio itself; the layer limit is kept by `protect`
        if cfg.global_pruning:
            self.importance.protect = self.protect
        self.pruner, notes = build_pruner(model, cfg, x, self.importance, self.progress, base)
        self.groups = list(prunable_groups(self.pruner))
        self.base = base
        self.result = PruneResult(target={}, before=self.counts(), after=self.counts(), notes=notes)

    def counts(self) -> Counts:
        return Counts(self.geometry.params(self.model), self.geometry.macs(self.model))

    def keep_at_least(self, m: nn.Module, channels: int) -> int:
        init = int(self.pruner.layer_init_out_ch.get(m, channels))
        return max(1, math.ceil(init * (1 - self.cfg.max_layer_ratio) - 1e-9))

    def protect(self, group: Any, imp: torch.Tensor) -> torch.Tensor:
        """Global pruning ranks all layers together and can empty one (torch-pruning then skips
        it whole) or exceed the layer limit in one step; mark each layer's best channels as
        untouchable instead."""
        keep = self.keep_at_least(group[0].dep.target.module, len(imp))
        imp = imp.clone()
        imp[imp.topk(min(keep, len(imp))).indices] = math.inf
        return imp

    def layer_ratio(self, m: nn.Module) -> float:
        """Final ratio of the group rooted at `m` (its own entry, else the default), capped."""
        scaled = self.pruner.pruning_ratio_dict.get(m)
        r = scaled.base if isinstance(scaled, Scaled) else self.base
        return min(r, self.cfg.max_layer_ratio)

    def asked_ratios(self) -> list[tuple[str, int, float]]:
        """(layer, channels before, ratio asked) of every group a ratio target prunes."""
        ratios = [(name, c, self.layer_ratio(m)) for name, m, c in self.groups]
        return [(name, c, r) for name, c, r in ratios if r > 0 and c > 0]

    def max_progress(self) -> float:
        """Largest f that leaves every prunable layer at least one channel."""
        if self.cfg.global_pruning:
            total = sum(c for _, _, c in self.groups)
            kept = sum(self.keep_at_least(m, c) for _, m, c in self.groups)
            return max(0.0, (1 - kept / max(1, total)) / max(self.base, 1e-9) - 1e-6)
        limits = [(1 - 1 / c) / r for _, c, r in self.asked_ratios() if c * (1 - r) < 1]
        return max(0.0, min([1.0, *limits]) - 1e-6)

    def check_final_ratio(self) -> None:
        """Ratio/layer targets: refuse one that would remove every channel of a layer."""
        if self.cfg.global_pruning:
            if self.base and self.max_progress() < 1:
                limit = self.max_progress() * self.base
                raise UsageError(
                    f"a global ratio of {self.base:g} would empty layers: at most {limit:.3f} "
                    f"with --max-layer-ratio {self.cfg.max_layer_ratio:g}",
                    hint="use a smaller --ratio or a larger --max-layer-ratio",
                )
            return
        for name, c, r in self.asked_ratios():
            if int(c * (1 - r)) < 1:
                raise UsageError(
                    f"a ratio of {r:g} would remove every channel of {name!r} ({c} channels)",
                    hint=f"use a smaller ratio, --max-layer-ratio {1 - 1 / c:.2f}, "
                    f"or --ignore {name}",
                )

    def check_forward(self) -> None:
        try:
            with torch.no_grad():
                self.model.eval()
                y = self.model(self.x)
        except Exception as e:
            raise ForwardBroken(f"{type(e).__name__}: {e}") from e
        want = self.model.spec.num_classes  # type: ignore[union-attr]
        if y.shape[-1] != want:
            raise ForwardBroken(f"output has {y.shape[-1]} logits instead of {want}")

    def prepare_importance(self) -> None:
        """Fresh importance for the current weights; data-driven criteria need gradients."""
        self.importance.cache.clear()
        if self.cfg.criterion in DATA_CRITERIA:
            assert self.data is not None
            accumulate_gradients(
                self.model, self.importance.inner, self.data, self.cfg.importance_batches
            )

    def apply(self, f: float) -> None:
        """Prune the model to progress `f` (cumulative: channels are only ever removed)."""
        self.progress.f = f
        try:
            self.pruner.step()
        except CompressError:
            raise
        except Exception as e:
            raise ForwardBroken(f"{type(e).__name__}: {e}") from e
        self.importance.cache.clear()
        self.model.zero_grad(set_to_none=True)
        self.check_forward()

    def metric_at(self, kind: str) -> Callable[[float], float]:
        """The MACs or parameters pruning to progress f would leave (planned, nothing pruned)."""
        count = self.geometry.macs if kind == "macs" else self.geometry.params
        return lambda f: float(count(self.model, plan(self.pruner, self.progress, f)))

    def step_goal(self, start: float, goal: float, step: int) -> float:
        """Geometric interpolation from `start` to `goal` over the steps."""
        if goal >= start:
            return goal
        return start * (goal / start) ** (step / self.cfg.steps)

    def run_counting_step(self, kind: str, step_goal: float, f_max: float) -> None:
        self.prepare_importance()
        f = search(self.metric_at(kind), step_goal, self.progress.f, f_max)
        if f is None:
            best = self.metric_at(kind)(f_max)
            raise TargetUnreachableError(
                f"the {kind} target {step_goal:,.0f} cannot be met: pruning as far as allowed "
                f"leaves {best:,.0f}",
                hint="raise --max-layer-ratio, --ignore fewer layers, or lower --round-to",
            )
        self.apply(f)
        got = self.counts().of(kind)
        if got > step_goal:  # plan and reality differ (an op we do not model): nudge on
            self.prepare_importance()
            f2 = search(self.metric_at(kind), step_goal, f, f_max)
            if f2 is not None:
                self.apply(f2)

    def run_latency_step(self, step_goal: float, f_max: float, lat: float) -> float:
        """Prune in rounds until the measured latency (`lat` now) is <= `step_goal`."""
        rounds = 0
        while lat > step_goal:
            rounds += 1
            if self.progress.f >= f_max or rounds > _MAX_LATENCY_ROUNDS:
                raise TargetUnreachableError(
                    f"latency target {step_goal:g} ms cannot be met: pruning as far as allowed "
                    f"gives {lat:.2f} ms (batch {self.cfg.latency_batch}, "
                    f"{self.cfg.latency_threads} threads)",
                    hint="raise --max-layer-ratio, --ignore fewer layers, or relax the target",
                )
            # Latency falls more slowly than MACs (fixed costs), so aiming at the MACs the
            # latency ratio implies under-shoots and the loop converges from above; at most
            # halving the MACs per round keeps one noisy measurement from over-pruning.
            self.prepare_importance()
            macs = self.counts().macs
            macs_goal = macs * max(step_goal / lat, 0.5)
            f = search(self.metric_at("macs"), macs_goal, self.progress.f, f_max)
            f = f_max if f is None else min(f_max, max(f, self.progress.f + 0.01))
            self.apply(f)
            lat = self.latency()
        return lat

    def latency(self) -> float:
        lc = LatencyConfig(batch=self.cfg.latency_batch, threads=self.cfg.latency_threads)
        # rank 0 measures for all
        ms = collectives.on_main(lambda: ort_latency_ms(self.model, lc)[0])
        self.result.latency_trace.append(
            {"fraction": round(self.progress.f, 4), **asdict(self.counts()), "ort_ms": round(ms, 3)}
        )
        log.info("pruned to %.3f: onnxruntime %.2f ms", self.progress.f, ms)
        return ms

    def recalibrate(self) -> BnRecalibration | None:
        """Adaptive BN after a cut: re-estimate BatchNorm statistics on training images."""
        data = self.data
        if not (self.cfg.bn_recalibration and data is not None and has_batchnorm(self.model)):
            return None
        loader = data.loader("train", epoch=0)
        return recalibrate_batchnorm(self.model, loader, self.cfg.bn_recalibration)

    def tune(self, epochs: int) -> Metrics | None:
        if epochs <= 0:
            return None
        t0 = time.perf_counter()
        if isinstance(self.finetune, TrainConfig):
            assert self.data is not None
            with _augmented(self.data, bool(self.cfg.augment)):
                tc = self.train_config(epochs)
                if self.teacher is None:
                    fit(self.model, self.data, tc, hooks=self.hooks)
                else:  # knowledge distillation from the unpruned model (Hinton KD)
                    from compress.distillation.distill import DistillConfig, distill

                    t, alpha = self.cfg.kd_temperature, self.cfg.kd_alpha
                    kd = DistillConfig(epochs=tc.epochs, temperature=t, alpha=alpha)
                    distill(self.model, self.teacher, self.data, kd, tc, hooks=self.hooks)
        elif self.finetune is not None:
            self.finetune(self.model, epochs)
        self.model.to("cpu").eval()
        self.result.finetune_seconds += time.perf_counter() - t0
        return self.evaluator(self.model) if self.evaluator else None

    def train_config(self, epochs: int) -> TrainConfig:
        """The fine-tuning TrainConfig with this config's own schedule and label smoothing."""
        assert isinstance(self.finetune, TrainConfig)
        tc = replace(self.finetune, epochs=epochs, checkpoint_dir=None, resume=False)
        if self.cfg.finetune_schedule:
            tc = replace(tc, schedule=self.cfg.finetune_schedule)
        if self.cfg.label_smoothing:
            tc = replace(tc, label_smoothing=self.cfg.label_smoothing)
        return tc

    def sparse_learn(self) -> SparseLearning | None:
        """Regularised training before the first cut (cfg.sparse_epochs of the budget)."""
        if not self.cfg.sparse_epochs:
            return None
        from compress.pruning.sparse import sparse_learn

        assert self.data is not None
        t0 = time.perf_counter()
        with _augmented(self.data, bool(self.cfg.augment)):
            out = sparse_learn(
                self.model, self.cfg, self.data, self.train_config(self.cfg.sparse_epochs), self.x
            )
        self.result.finetune_seconds += time.perf_counter() - t0
        return replace(out, metrics=self.evaluator(self.model)) if self.evaluator else out


@contextmanager
def _augmented(data: DataBundle | None, on: bool) -> Iterator[None]:
    """Training images flipped/cropped at random for the duration (if `on`), then as before."""
    train = getattr(data, "train", None)
    if not on or train is None or not hasattr(train, "augment"):
        yield
        return
    before = train.augment
    train.augment = True
    try:
        yield
    finally:
        train.augment = before


class ForwardBroken(Exception):
    """Internal: the pruned model no longer runs; turned into a named UnsupportedError."""
