"""Feature distillation: match a student's intermediate feature maps to its teacher's.

Forward hooks capture each paired module's output; a learned adapter (1x1 conv for maps, linear
for vectors) bridges different widths, average pooling different sizes; the loss is the MSE per
pair (FitNets-style hints). `auto` pairs the end of every resolution stage when both models share
their module names (a pruned student and its dense parent), else the last feature map of each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from compress.models.errors import InvalidInputError, UsageError

log = logging.getLogger(__name__)
Pair = tuple[str, str]


def parse_pairs(text: str | None) -> list[Pair] | str | None:
    """`--feature-distill`: `auto`, or `teacher_layer:student_layer[,...]` (a bare name pairs
    a layer with the same-named one)."""
    if text is None or text.strip() in ("", "off", "none"):
        return None
    if text.strip() == "auto":
        return "auto"
    pairs: list[Pair] = []
    for item in text.split(","):
        t, _, s = item.strip().partition(":")
        if not t or (_ and not s):
            raise UsageError(
                f"--feature-distill: bad pair {item.strip()!r}",
                hint="use auto, or teacher_layer:student_layer[,...] (e.g. layer3:layer3)",
            )
        pairs.append((t, s or t))
    return pairs


class FeatureShape(NamedTuple):
    """A module's output on the probe batch (shape without the batch dimension)."""

    name: str
    shape: tuple[int, ...]


def record_outputs(
    model: nn.Module, x: torch.Tensor, names: Sequence[str] | None = None
) -> list[FeatureShape]:
    """Run `x` through `model` and list the tensor outputs of its modules in firing order
    (containers after their children); `names` restricts which modules are watched."""
    seen: list[FeatureShape] = []
    modules = dict(model.named_modules())
    watch = [n for n in (names if names is not None else modules) if n]
    handles = []
    for n in watch:

        def hook(_m: nn.Module, _i: object, out: object, n: str = n) -> None:
            if isinstance(out, torch.Tensor):
                seen.append(FeatureShape(n, tuple(out.shape[1:])))

        handles.append(modules[n].register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def stage_ends(model: nn.Module, x: torch.Tensor) -> list[FeatureShape]:
    """The last module output at each spatial resolution (4D maps only), in order."""
    ends: list[FeatureShape] = []
    for f in record_outputs(model, x):
        if len(f.shape) != 3:
            continue
        if ends and ends[-1].shape[1:] == f.shape[1:]:
            ends[-1] = f
        elif not any(e.shape[1:] == f.shape[1:] for e in ends):
            ends.append(f)
    return ends


def auto_pairs(
    teacher: nn.Module, student: nn.Module, xt: torch.Tensor, xs: torch.Tensor
) -> list[Pair]:
    """Stage ends of both models: all of them when names agree, else the last of each."""
    t, s = stage_ends(teacher, xt), stage_ends(student, xs)
    if not t or not s:
        raise UsageError(
            "--feature-distill auto: no 4D feature maps found in "
            + ("the teacher" if not t else "the student"),
            hint="name the layers explicitly: teacher_layer:student_layer",
        )
    if [f.name for f in t] == [f.name for f in s]:
        return [(a.name, b.name) for a, b in zip(t, s, strict=True)]
    return [(t[-1].name, s[-1].name)]


class _Capture:
    """Keeps the latest output of one module (the last call if the module is reused)."""

    def __init__(self, module: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.handle: RemovableHandle = module.register_forward_hook(self._hook)

    def _hook(self, _m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            self.value = out


def make_adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """1x1 conv (maps) or linear (vectors) from student width to teacher width; identity
    when widths agree."""
    if len(student_shape) != len(teacher_shape) or len(student_shape) not in (1, 3):
        raise InvalidInputError(
            f"feature distillation pairs a {len(teacher_shape) + 1}-D teacher output with a "
            f"{len(student_shape) + 1}-D student output",
            hint="pair feature maps with feature maps (N,C,H,W) or vectors with vectors (N,C)",
        )
    cs, ct = student_shape[0], teacher_shape[0]
    if cs == ct:
        return nn.Identity()
    maps = len(student_shape) == 3
    return nn.Conv2d(cs, ct, kernel_size=1, bias=False) if maps else nn.Linear(cs, ct, bias=False)


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two maps to the smaller one's size."""
    if a.ndim != 4 or a.shape[-2:] == b.shape[-2:]:
        return a, b
    hw = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    return F.adaptive_avg_pool2d(a, hw), F.adaptive_avg_pool2d(b, hw)


class FeatureDistiller:
    """Hooks on paired teacher/student modules plus the adapters; `loss()` after a forward
    of both gives the summed per-pair MSE."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        pairs: list[Pair] | str,
        probe_teacher: torch.Tensor,
        probe_student: torch.Tensor,
    ) -> None:
        if pairs == "auto":
            pairs = auto_pairs(teacher, student, probe_teacher, probe_student)
            log.info("feature distillation pairs (auto): %s", pairs)
        assert not isinstance(pairs, str)
        self.pairs: list[Pair] = list(pairs)
        t_shapes = _shapes(teacher, [t for t, _ in self.pairs], probe_teacher, "teacher")
        s_shapes = _shapes(student, [s for _, s in self.pairs], probe_student, "student")
        self.adapters = nn.ModuleList(make_adapter(s_shapes[s], t_shapes[t]) for t, s in self.pairs)
        self.shapes = [(t_shapes[t], s_shapes[s]) for t, s in self.pairs]
        tm, sm = dict(teacher.named_modules()), dict(student.named_modules())
        self._t = [_Capture(tm[t]) for t, _ in self.pairs]
        self._s = [_Capture(sm[s]) for _, s in self.pairs]

    def loss(self) -> torch.Tensor:
        terms = []
        for adapter, t, s in zip(self.adapters, self._t, self._s, strict=True):
            if t.value is None or s.value is None:
                raise RuntimeError("feature distillation: a hooked layer produced no output")
            a, b = match_spatial(adapter(s.value.float()), t.value.detach().float())
            terms.append(F.mse_loss(a, b))
        return sum(terms[1:], terms[0])  # summed in pair order

    def remove(self) -> None:
        for c in (*self._t, *self._s):
            c.handle.remove()
            c.value = None

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "teacher": t,
                "student": s,
                "teacher_shape": list(ts),
                "student_shape": list(ss),
                "adapter": type(a).__name__,
            }
            for (t, s), (ts, ss), a in zip(self.pairs, self.shapes, self.adapters, strict=True)
        ]


def _shapes(
    model: nn.Module, names: list[str], x: torch.Tensor, who: str
) -> dict[str, tuple[int, ...]]:
    """Output shape of each named module on the probe batch; clear errors for bad names."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules or not n]
    if missing:
        sample = ", ".join(n for n in list(modules)[1:13])
        raise UsageError(
            f"--feature-distill: the {who} has no layer {missing[0]!r}",
            hint=f"{who} layers include: {sample}, ...",
        )
    found = dict(record_outputs(model, x, names))
    if silent := [n for n in names if n not in found]:
        raise UsageError(f"--feature-distill: {who} layer {silent[0]!r} returns no tensor")
    return found
