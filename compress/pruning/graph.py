"""Glue to torch-pruning (DepGraph finds the coupled layers): a pruner whose ratio follows one
progress knob, cached importance, dry-run planning of what ratio f would remove (then pruning
exactly that), and gradients for data-driven criteria.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.distributed import collectives, sharding
from compress.models.data.datasets import DataBundle
from compress.models.errors import CompressError, UnsupportedError, UsageError
from compress.pruning.achieved import aligned_keep
from compress.pruning.config import DEFAULT_RATIO_TOLERANCE, PruneConfig
from compress.pruning.flops import CONV_TYPES, in_out

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Shared pruning progress f in [0, 1]; every scheduled ratio is `base * f`."""

    f: float = 0.0


class Scaled:
    """Stands in for torch-pruning's per-step ratio list: any index reads `base * progress.f`."""

    def __init__(self, base: float, progress: Progress) -> None:
        self.base, self.progress = base, progress

    def __getitem__(self, step: int) -> float:
        return self.base * self.progress.f


class CachedImportance:
    """Importance computed once per group until the model changes: planning calls it often."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: dict[tuple[int, Any, int], torch.Tensor | None] = {}
        self.protect: Callable[[Any, torch.Tensor], torch.Tensor] | None = None

    def __call__(self, group: Any) -> torch.Tensor | None:
        item = group[0]
        key = (id(item.dep.target.module), item.dep.handler, len(item.idxs))
        if key not in self.cache:
            imp = self.inner(group)
            if imp is not None:  # under torchrun rank 0's ranking decides for every rank
                imp = self.protect(group, imp) if self.protect else imp
                imp = collectives.broadcast_(imp.contiguous())
            self.cache[key] = imp
        return self.cache[key]


@lru_cache(maxsize=1)
def pruner_class() -> type:
    import torch_pruning as tp

    class Pruner(tp.pruner.BasePruner):  # type: ignore[misc, name-defined]
        tolerance = DEFAULT_RATIO_TOLERANCE

        def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
            # torch-pruning rounds the kept count *down*, pruning more than asked (up to half
            # of a narrow layer); keep more instead, and only within the tolerance.
            keep = current_channels - n_pruned
            return current_channels - aligned_keep(keep, current_channels, round_to, self.tolerance)

    return Pruner


def make_importance(criterion: str) -> Any:
    """The torch-pruning importance estimator for a criterion name."""
    import torch_pruning as tp

    imp = tp.importance
    factories: dict[str, Callable[[], Any]] = {
        "l1": lambda: imp.MagnitudeImportance(p=1),
        "l2": lambda: imp.MagnitudeImportance(p=2),
        "bn-scale": imp.BNScaleImportance,
        "taylor": imp.GroupTaylorImportance,
        "hessian": imp.GroupHessianImportance,
        "lamp": lambda: imp.LAMPImportance(p=2),
        "fpgm": imp.FPGMImportance,
        "random": imp.RandomImportance,
    }
    return factories[criterion]()


def find_module(model: nn.Module, name: str, option: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or not name:
        close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see `compress info --model M`"
        raise UsageError(f"{option} {name!r}: the model has no module of that name", hint=hint)
    return modules[name]


def ignored_modules(model: nn.Module, ignore: list[str]) -> list[nn.Module]:
    """The classifier head plus the modules named in `ignore`."""
    head = getattr(getattr(model, "spec", None), "classifier", "")
    out = [find_module(model, head, "the classifier")] if head else []
    return out + [find_module(model, n, "--ignore") for n in ignore]


def build_pruner(
    model: nn.Module,
    cfg: PruneConfig,
    x: torch.Tensor,
    importance: Any,
    progress: Progress,
    base: float,
) -> tuple[Any, list[str]]:
    """A torch-pruning pruner whose ratio follows `progress`; returns it and its warnings."""
    ratio_dict = {
        find_module(model, n, "layer ratio for"): r for n, r in (cfg.layer_ratios or {}).items()
    }
    cls = pruner_class()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pruner = cls(
                model,
                x,
                importance=importance,
                global_pruning=cfg.global_pruning,
                pruning_ratio=base,
                pruning_ratio_dict=ratio_dict or None,
                max_pruning_ratio=cfg.max_layer_ratio,
                iterative_steps=10**9,
                iterative_pruning_ratio_scheduler=lambda r, _steps: Scaled(r, progress),
                ignored_layers=ignored_modules(model, cfg.ignore),
                round_to=cfg.round_to,  # PruneConfig: None (off) or > 1
                isomorphic=cfg.isomorphic and cfg.global_pruning,
            )
        except CompressError:
            raise
        except Exception as e:
            raise UnsupportedError(
                f"torch-pruning could not trace this model: {type(e).__name__}: {e}",
                hint="layers built from functional calls or custom autograd ops can't be "
                "traced; --ignore the module involved or rewrite it with nn modules",
            ) from e
    pruner.tolerance = cfg.tolerance
    notes = [str(w.message).splitlines()[0] for w in caught]
    for n in notes:
        log.warning("torch-pruning: %s", n)
    return pruner, notes


def prunable_groups(pruner: Any) -> Iterator[tuple[str, nn.Module, int]]:
    """(root layer name, root module, channels) of every group the pruner may shrink."""
    dg = pruner.DG
    names = {m: n for n, m in pruner.model.named_modules()}
    for group in dg.get_all_groups(
        ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types
    ):
        root = group[0].dep.target.module
        yield names.get(root, "?"), root, int(dg.get_out_channels(root) or 0)


def plan(pruner: Any, progress: Progress, f: float) -> dict[nn.Module, tuple[int, int]]:
    """(in, out) channels every affected module would have at progress `f`; nothing pruned."""
    progress.f = f
    dg = pruner.DG
    out_rm: Counter[nn.Module] = Counter()
    in_rm: Counter[nn.Module] = Counter()
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            m = dep.target.module
            if not isinstance(m, nn.Module):
                continue
            if dg.is_out_channel_pruning_fn(dep.handler):
                out_rm[m] += len(idxs)
            elif dg.is_in_channel_pruning_fn(dep.handler):
                in_rm[m] += len(idxs)
    plan = {}
    for m in set(out_rm) | set(in_rm):
        cin, cout = in_out(m)
        coupled = cin == cout and (
            not isinstance(m, (nn.Linear, *CONV_TYPES)) or getattr(m, "groups", 1) == cin > 1
        )
        if coupled:  # norms and depthwise convs: one channel count
            n = cin - max(in_rm[m], out_rm[m])
            plan[m] = (n, n)
        else:
            plan[m] = (cin - in_rm[m], cout - out_rm[m])
    return plan


def search(metric: Callable[[float], float], goal: float, lo: float, hi: float) -> float | None:
    """Smallest f in [lo, hi] with metric(f) <= goal, or None. A coarse scan first (global
    pruning is not monotone near its limits), then bisection inside the first bracket."""
    if metric(lo) <= goal:
        return lo
    prev, f = lo, lo
    while f < hi:
        f = min(hi, f + 0.05)
        if metric(f) <= goal:
            break
        prev = f
    else:
        return None
    while f - prev > 1e-3:
        mid = (prev + f) / 2
        if metric(mid) <= goal:
            f = mid
        else:
            prev = mid
    return f


def accumulate_gradients(model: nn.Module, importance: Any, data: DataBundle, batches: int) -> int:
    """Gradients for Taylor (summed over `batches`, averaged over ranks) or, for Hessian, the
    mean squared per-sample gradient over every rank's samples, left in each `.grad` (where
    torch-pruning's importance reads it). Returns the samples seen (all ranks together)."""
    model.eval()  # BatchNorm running statistics stay untouched
    model.zero_grad(set_to_none=True)
    shard = sharding.train_sampler(len(data.train), data.config.shuffle_seed, 0)  # torchrun
    loader = data.loader("train", sampler=shard)
    if not hasattr(importance, "accumulate_grad"):  # Taylor
        seen = 0
        for x, y in itertools.islice(loader, batches):
            F.cross_entropy(model(x), y).backward()
            seen += len(y)
        collectives.average_gradients(model.parameters())  # every rank's data, one decision
        return int(collectives.all_reduce_sums([seen])[0])
    # Hessian: torch-pruning 1.6's accumulate_grad keys by name but tests by parameter, so it
    # keeps only the last sample; accumulate here and hand it the mean through `.grad`, which
    # its importance reads when its own accumulator is empty.
    importance.zero_grad()
    sums, seen = _squared_gradient_sums(model, loader, batches)
    for g in sums.values():
        collectives.all_reduce_(g)
    total = collectives.all_reduce_sums([seen])[0]
    for p, g in sums.items():
        p.grad = g / max(total, 1.0)
    return int(total)


def _squared_gradient_sums(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], batches: int
) -> tuple[dict[nn.Parameter, torch.Tensor], int]:
    """Per parameter, the sum of squared per-sample gradients over 16 samples per batch."""
    sums: dict[nn.Parameter, torch.Tensor] = {}
    seen = 0
    for x, y in itertools.islice(loader, batches):
        losses = F.cross_entropy(model(x[:16]), y[:16], reduction="none")
        for j, loss in enumerate(losses):
            model.zero_grad(set_to_none=True)
            loss.backward(retain_graph=j < len(losses) - 1)
            for p in model.parameters():
                if p.grad is not None:
                    g = p.grad.detach().pow(2)
                    sums[p] = sums[p] + g if p in sums else g
        seen += len(losses)
    model.zero_grad(set_to_none=True)
    return sums, seen
