"""Knowledge distillation: train a student on a frozen teacher's softened outputs.

`distill(student, teacher, data, DistillConfig(...))`: Hinton et al. (2015) KD, optionally with
feature matching (`compress.distillation.features`), on top of `compress.training.fit.fit`. The
teacher stays frozen in eval mode; without augmentation its logits are computed once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.distillation.features import FeatureDistiller, Pair, parse_pairs
from compress.models.data.datasets import DataBundle
from compress.models.data.images import TensorImages
from compress.models.errors import InvalidInputError, UsageError
from compress.models.jsontypes import JsonObject
from compress.models.options import check_options, option
from compress.models.zoo.registry import ModelSpec, spec_of
from compress.models.zoo.spec import eval_mode
from compress.training import int4_grid
from compress.training.fit import FitResult, Hooks, LossFn, TrainConfig, fit
from compress.training.precision import AmpPolicy, resolve_amp, resolve_device

log = logging.getLogger(__name__)
CACHE_MAX_BYTES = 512 << 20  # teacher logits kept in memory at most


@dataclass
class DistillConfig:
    """KD settings; `features`: None (off), "auto", or (teacher_layer, student_layer) pairs.
    T=2, alpha=0.5 matched or beat T=4, alpha=0.7 in every LeNet-5 run (distill-amp.md)."""

    temperature: float = option(2.0, "Softmax temperature T for the teacher term (> 0).", above=0)
    alpha: float = option(
        0.5,
        "Weight of the teacher term in [0, 1]; 1 - alpha weighs the labels.",
        min=0,
        max=1,
        hint="alpha weighs the teacher term; 1 - alpha weighs the hard-label loss",
    )
    epochs: int | None = option(None, "Epochs (None: the TrainConfig's).", cli=False)
    lr: float | None = option(None, "Peak learning rate (None: the TrainConfig's).", cli=False)
    features: list[Pair] | str | None = option(
        None,
        "Also match feature maps: `auto`, or teacher_layer:student_layer[,...]; "
        "1x1-conv adapters bridge different widths.",
        flag="--feature-distill",
    )
    feature_weight: float = option(1.0, "Weight of the feature loss.", min=0)
    cache_teacher: bool | None = option(
        None, "Cache the teacher's logits (None: when exact and it pays).", cli=False
    )
    int4_layers: list[str] | None = option(
        None,
        "Linear or convolution layers (module names, comma-separated, e.g. "
        "fc1.first) trained on the int4 grid `compress quantize` stores them on "
        "(MatMulNBits for Linear), so it stores them in int4 without rounding "
        "loss (it picks them up from the card).",
    )
    int4_block_size: int = option(
        32,
        "Weights per int4 scale for --int4-layers (a power of 2 >= 16; match "
        "quantize's --block-size).",
    )

    def __post_init__(self) -> None:
        check_options(self, flags=True)
        if self.epochs is not None and self.epochs < 0:
            raise UsageError(f"--epochs must be >= 0, got {self.epochs}")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be > 0, got {self.lr}")
        if isinstance(self.features, str):
            self.features = parse_pairs(self.features)
        elif self.features is not None:
            self.features = [_pair(p) for p in self.features]
        if isinstance(self.int4_layers, str):
            self.int4_layers = [n.strip() for n in self.int4_layers.split(",") if n.strip()]
        if self.int4_layers:
            int4_grid.check_block_size(self.int4_block_size)

    def train_config(self, base: TrainConfig | None) -> TrainConfig:
        """The TrainConfig fit runs with: `base` with this config's epochs and lr applied."""
        mine = {k: v for k in ("epochs", "lr") if (v := getattr(self, k)) is not None}
        return replace(base or TrainConfig(), **mine)


def _pair(p: Sequence[str]) -> Pair:
    if len(p) != 2 or not all(isinstance(n, str) and n for n in p):
        raise UsageError(f"feature pair must be (teacher_layer, student_layer), got {p!r}")
    return (p[0], p[1])


@dataclass
class DistillResult:
    """What distillation did: the fit, whether teacher logits were cached, feature pairs."""

    fit: FitResult
    kd: DistillConfig
    train_config: TrainConfig
    teacher_cached: bool = False
    cache_seconds: float = 0.0
    feature_pairs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> JsonObject:
        return {**asdict(self), "cache_seconds": round(self.cache_seconds, 2)}


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Hinton KD: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, y);
    T^2 keeps the soft term's gradient scale independent of T."""
    s, t = student_logits.float(), teacher_logits.float()
    soft = F.kl_div(
        F.log_softmax(s / temperature, dim=1),
        F.log_softmax(t / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature * temperature)
    if alpha >= 1.0:
        return soft
    hard = F.cross_entropy(s, labels, label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard


def check_compatible(teacher_spec: ModelSpec, student_spec: ModelSpec) -> None:
    """Teacher and student must agree on classes and input shape (normalization may differ)."""
    if teacher_spec.num_classes != student_spec.num_classes:
        raise InvalidInputError(
            f"teacher {teacher_spec.name} has {teacher_spec.num_classes} classes but student "
            f"{student_spec.name} has {student_spec.num_classes}",
            hint="build the student for the teacher's classes (--num-classes)",
        )
    if teacher_spec.input_shape != student_spec.input_shape:
        raise InvalidInputError(
            f"teacher {teacher_spec.name} takes input {_shape(teacher_spec.input_shape)} but "
            f"student {student_spec.name} takes {_shape(student_spec.input_shape)}",
            hint="build the student for the teacher's input (--in-channels, --input-size)",
        )


def _shape(s: Sequence[int]) -> str:
    return "x".join(map(str, s))


def teacher_input(student_spec: ModelSpec, teacher_spec: ModelSpec) -> Callable[..., Any]:
    """Re-normalize student-normalized batches for the teacher when their mean/std differ."""
    if (student_spec.mean, student_spec.std) == (teacher_spec.mean, teacher_spec.std):
        return lambda x: x
    stats = (student_spec.mean, student_spec.std, teacher_spec.mean, teacher_spec.std)
    ms, ss, mt, st = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in stats)

    def convert(x: torch.Tensor) -> torch.Tensor:
        d = x.device
        return ((x * ss.to(d) + ms.to(d)) - mt.to(d)) / st.to(d)

    return convert


def check_outputs(
    teacher: nn.Module, student: nn.Module, xs: torch.Tensor, xt: torch.Tensor
) -> None:
    """One probe batch through both models: their logits must have the same shape."""
    with torch.no_grad(), eval_mode(student):
        t, s = teacher(xt), student(xs)
    if not (isinstance(t, torch.Tensor) and isinstance(s, torch.Tensor)) or t.shape != s.shape:
        raise InvalidInputError(
            f"teacher and student outputs differ on the same batch: teacher "
            f"{_out_shape(t)}, student {_out_shape(s)}",
            hint="both must return (batch, classes) logits for the same classes",
        )


def _out_shape(v: object) -> str:
    return f"({', '.join(map(str, v.shape))})" if isinstance(v, torch.Tensor) else type(v).__name__


class _RecordingImages(TensorImages):
    """The training images, remembering which indices the current batch came from."""

    def __init__(self, base: TensorImages) -> None:
        super().__init__(base.images, base.labels, base.spec, augment=base.augment)
        self.last_index: torch.Tensor | None = None

    def __getitem__(self, idx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.last_index = torch.as_tensor(idx, dtype=torch.long)
        return super().__getitem__(idx)


@dataclass
class TeacherOutputs:
    """Teacher logits for a training batch: from the per-sample cache when one was built and
    the batch is identified, else by running the frozen teacher."""

    teacher: nn.Module
    to_teacher: Callable[..., Any]
    device: torch.device
    cache: torch.Tensor | None = None
    images: _RecordingImages | None = None
    seconds: float = 0.0

    def build_cache(self, data: DataBundle, policy: AmpPolicy) -> DataBundle:
        """Compute logits for every training sample once; returns the bundle to train on."""
        base = data.train
        assert isinstance(base, TensorImages)
        t0 = time.perf_counter()
        bs, n = data.config.eval_batch_size, len(base)
        chunks = []
        with torch.no_grad(), policy.autocast(self.device):
            for i in range(0, n, bs):
                x, _ = base[list(range(i, min(i + bs, n)))]
                chunks.append(self.teacher(self.to_teacher(x.to(self.device))).float().cpu())
        self.cache = torch.cat(chunks)
        self.images = _RecordingImages(base)
        self.seconds = time.perf_counter() - t0
        log.info("cached teacher logits for %d samples in %.1f s", n, self.seconds)
        return replace(data, train=self.images)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cache is not None and self.images is not None:
            idx = self.images.last_index
            if (
                idx is not None
                and idx.ndim == 1
                and len(idx) == len(y)
                and torch.equal(self.images.labels[idx], y.cpu())
            ):
                return self.cache[idx].to(y.device)
            log.warning("teacher cache: batch not identified; running the teacher instead")
            self.cache = None
        with torch.no_grad():
            return self.teacher(self.to_teacher(x)).float()


def should_cache(cfg: DistillConfig, data: DataBundle, epochs: int, num_classes: int) -> bool:
    """Caching is exact only without augmentation and without feature hooks."""
    exact = not data.config.augment and not cfg.features and isinstance(data.train, TensorImages)
    if cfg.cache_teacher and not exact:
        raise UsageError(
            "cache_teacher needs in-memory training data without augmentation and without "
            "feature distillation"
        )
    if cfg.cache_teacher is False or not exact:
        return False
    fits = len(data.train) * num_classes * 4 <= CACHE_MAX_BYTES  # type: ignore[arg-type]
    return bool(cfg.cache_teacher) or (epochs > 1 and fits)


def _loss_fn(
    cfg: DistillConfig, smoothing: float, outputs: TeacherOutputs, features: FeatureDistiller | None
) -> LossFn:
    """The KD loss `fit` minimizes: soft teacher targets, hard labels, optional features."""

    def loss_fn(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = kd_loss(logits, outputs(x, y), y, cfg.temperature, cfg.alpha, smoothing)
        if features is not None and cfg.feature_weight > 0:
            loss = loss + cfg.feature_weight * features.loss()
        return loss

    return loss_fn


def distill(
    student: nn.Module,
    teacher: nn.Module,
    data: DataBundle,
    cfg: DistillConfig,
    train_cfg: TrainConfig | None = None,
    *,
    hooks: Hooks | None = None,
) -> DistillResult:
    """Train `student` in place from the frozen `teacher` on `data` (shaped for the student)."""
    if student is teacher:
        raise UsageError("the student and the teacher are the same model")
    tcfg = cfg.train_config(train_cfg)
    device = resolve_device(tcfg.device)
    resolve_amp(tcfg.amp, device)  # fail on an impossible --amp before any work
    s_spec, t_spec = spec_of(student), spec_of(teacher)
    check_compatible(t_spec, s_spec)
    to_teacher = teacher_input(s_spec, t_spec)
    frozen = [p.requires_grad for p in teacher.parameters()]
    teacher.eval().requires_grad_(False)
    xs = data.train[list(range(min(8, len(data.train))))][0]  # type: ignore[arg-type]
    xt = to_teacher(xs)
    check_outputs(teacher, student, xs, xt)
    features = FeatureDistiller(teacher, student, cfg.features, xt, xs) if cfg.features else None
    teacher.to(device)
    outputs = TeacherOutputs(teacher, to_teacher, device)
    train_data = data
    if cfg.int4_layers:
        int4_grid.attach(student, cfg.int4_layers, cfg.int4_block_size)
    try:
        if should_cache(cfg, data, tcfg.epochs, s_spec.num_classes):
            train_data = outputs.build_cache(data, resolve_amp(tcfg.amp, device, teacher))
        if features is not None:
            features.adapters.to(device)
        result = fit(
            student,
            train_data,
            tcfg,
            loss_fn=_loss_fn(cfg, tcfg.label_smoothing, outputs, features),
            extra_params=features.adapters.parameters() if features else (),
            hooks=hooks,
        )
    finally:
        int4_grid.snap(student)
        if features is not None:
            features.remove()
        teacher.to("cpu")
        for p, g in zip(teacher.parameters(), frozen, strict=True):
            p.requires_grad_(g)
    pairs = features.describe() if features else []
    return DistillResult(result, cfg, tcfg, outputs.cache is not None, outputs.seconds, pairs)
