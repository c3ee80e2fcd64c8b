"""What `prune` is asked to do: PruneConfig, validated on construction."""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.models.errors import InvalidInputError, UsageError
from compress.models.jsontypes import JsonObject
from compress.models.options import check_options, option

log = logging.getLogger(__name__)

CRITERIA = ("l1", "l2", "bn-scale", "taylor", "hessian", "lamp", "fpgm", "random")
DATA_CRITERIA = ("taylor", "hessian")
# Taylor (Molchanov et al. 2019) where training data is at hand, else L2: on LeNet-5 (3 seeds, 5
# epochs) +0.9 / +1.7 pt over L2 at 4x / 8x MACs (benchmarks/results/prune-as-typed.md).
DEFAULT_CRITERION = "taylor"
DATA_FREE_CRITERION = "l2"
SCHEDULES = ("onecycle", "cosine", "constant")
SPARSE_METHODS = ("group-norm", "growing-reg")
_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
TARGETS = ("ratio", "target_macs", "target_params", "target_latency_ms", "layer_ratios")
# No target: halve the MACs (every zoo CNN reaches it, fine-tuning recovers most accuracy).
DEFAULT_TARGET = ("target_macs", "2x")
SENSITIVITY_JSON = "sensitivity.json"
FINETUNE_LR = 1e-3  # peak LR of fine-tuning after pruning: the weights are trained already
# Images re-estimating BatchNorm statistics after a cut: stable, seconds even for ResNet-50.
BN_RECALIBRATION_IMAGES = 2560
DEFAULT_RATIO_TOLERANCE = 0.05


class TargetUnreachableError(UsageError):
    """A MACs, parameter or latency target that pruning within the limits cannot meet."""


def _flag(field: str) -> str:
    """The CLI option of a PruneConfig field (layer ratios come from --from-sensitivity)."""
    if field == "layer_ratios":
        return "--from-sensitivity (layer ratios)"
    return "--" + field.replace("_", "-")


def parse_amount(value: float | int | str, option: str) -> tuple[str, float]:
    """`"2x"` -> ("factor", 2.0); `1.5e8`, `"150M"`, `"20k"` -> ("abs", value)."""
    s = str(value).strip().lower().replace("_", "")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)(x?)", s)
    if not m or (m.group(2) and m.group(3)):
        raise UsageError(
            f"{option}: cannot read {value!r}",
            hint="give an absolute number (1.5e8, 150M, 20k) or a reduction factor like 2x",
        )
    number = float(m.group(1)) * _SUFFIX.get(m.group(2), 1.0)
    if m.group(3):
        if not number > 1:
            raise UsageError(f"{option}: a reduction factor must be > 1x, got {value!r}")
        return "factor", number
    if not number > 0:
        raise UsageError(f"{option} must be > 0, got {value!r}")
    return "abs", number


@dataclass
class PruneConfig:
    """What to prune and how far; each field's help (`compress prune --help`) says what it does.

    At most one target (none: :data:`DEFAULT_TARGET`, said in one log line). Fields left None
    are decided by :func:`compress.pruning.policy.plan_finetune`. `max_layer_ratio` is checked
    before each step (global pruning in one step may overshoot it). `sparse_epochs` are taken
    from `final_finetune_epochs`, which must keep one epoch for after the cut.
    """

    ratio: float | None = option(
        None,
        "Fraction of channels removed from every prunable layer, 0 <= R < 1. Parameters shrink by "
        "about 1-(1-R)^2 (each weight loses input and output channels): 0.5 keeps ~25 % of them.",
        min=0,
        below=1,
    )
    target_macs: float | str | None = option(
        None, "MACs per image to reach: absolute (150M, 1.5e8) or a reduction (2x)."
    )
    target_params: float | str | None = option(
        None, "Parameters to reach: absolute (1M, 2e5) or a reduction (4x)."
    )
    target_latency_ms: float | None = option(
        None,
        "onnxruntime CPU latency (ms, batch --latency-batch, --latency-threads) to reach; pruned "
        "in rounds, measuring after each, until met (an error says so if it can't be).",
        above=0,
    )
    layer_ratios: dict[str, float] | None = option(
        None, "{layer name: ratio} for the listed layers only.", cli=False
    )
    from_sensitivity: str | None = option(
        None,
        "sensitivity.json (or its directory) from `compress sensitivity`: each layer gets the "
        "largest ratio whose val top-1 drop alone was <= --max-drop.",
    )
    sensitivity_max_drop: float = option(
        1.0, "With --from-sensitivity: allowed drop per layer, in points.", flag="--max-drop"
    )
    criterion: str | None = option(
        None,
        "How channels are ranked: l1, l2, bn-scale, taylor, hessian, lamp, fpgm "
        "or random. Default: taylor (gradients of 4 training batches) for trained"
        " weights with known data, else l2 (the measured choice: BENCHMARKS.md).",
        show_default=False,
        choices=CRITERIA,
    )
    global_pruning: bool = option(
        False,
        "Rank channels across all layers (global) or prune each layer by the same ratio.",
        flag="--global/--local",
    )
    steps: int = option(1, "Prune in N increments.", min=1)
    finetune_epochs: int | None = option(
        None,
        "Fine-tuning epochs after each step (0: none). Default: 5 epochs after the last step where "
        "the model's training data is known (its card names it, or --dataset is given), none for "
        "untrained weights; the choice is said in one line.",
        show_default=False,
        min=0,
        hint="--finetune-epochs 0 skips it",
    )
    final_finetune_epochs: int | None = option(
        None,
        "Fine-tuning epochs after the last step.",
        show_default=False,
        min=0,
        hint="--final-finetune-epochs 0 skips it",
    )
    kd: bool | None = option(
        None,
        "Fine-tune by distilling from the unpruned model (T=2, alpha=0.5) or with"
        " plain cross-entropy. Default: on whenever there are fine-tuning epochs "
        "(measured: +0.0-0.2 pt at equal learning rate; BENCHMARKS.md).",
        flag="--kd/--no-kd",
        show_default=False,
    )
    kd_temperature: float = option(
        2.0, "Softmax temperature of the distillation while fine-tuning.", cli=False, above=0
    )
    kd_alpha: float = option(
        0.5, "Weight of the teacher term while fine-tuning.", cli=False, min=0, max=1
    )
    bn_recalibration: int = option(
        BN_RECALIBRATION_IMAGES,
        "Training images whose forward passes re-estimate BatchNorm statistics "
        "after every cut (adaptive BN, no gradient step; 0 = off).",
        min=0,
    )
    round_to: int | None = option(
        8,
        "Align kept channel counts to multiples of this (1 = off) by keeping more, never fewer; a "
        "layer is aligned only where that stays within the ratio tolerance.",
        min=1,
    )
    ratio_tolerance: float | None = option(
        None,
        "How far each layer's removed fraction (and a MACs/params target's) may fall from what was "
        "asked. Default 0.05, beyond it a warning names the layers; given, it is a limit: a "
        "request the channel counts can't meet is refused.",
        show_default=False,
        min=0,
        below=1,
    )
    ignore: list[str] = option(
        help="Layer never pruned (repeatable), on top of the classifier head.",
        factory=list,
        cli="repeat",
    )
    max_layer_ratio: float = option(
        1.0, "No layer loses more than this fraction of its channels.", above=0, max=1
    )
    isomorphic: bool = option(
        False,
        "With --global: rank channels only against groups of the same structure "
        "(torch-pruning isomorphic pruning).",
    )
    finetune_schedule: str | None = option(
        None,
        "Fine-tuning learning-rate schedule of its own: onecycle, cosine or constant (default: "
        "one-cycle when the parent's recipe is rewound, else cosine).",
        choices=SCHEDULES,
    )
    label_smoothing: float | None = option(
        None,
        "Label smoothing while fine-tuning / sparse learning (default: the parent's, else 0).",
        show_default=False,
        min=0,
        below=1,
    )
    augment: bool | None = option(
        None,
        "Random flips and crops of the training images while tuning. Default: as "
        "the parent was trained (its card; off when not recorded).",
        flag="--augment/--no-augment",
        show_default=False,
    )
    sparse_epochs: int = option(
        0,
        "Epochs of sparse learning before the cut, taken from --final-finetune-epochs "
        "(torch-pruning group regulariser, weight decay off).",
        min=0,
        hint="--sparse-epochs 0 skips it",
    )
    sparse_method: str = option(
        "group-norm",
        "group-norm (GroupNormPruner) or growing-reg (GrowingRegPruner).",
        choices=SPARSE_METHODS,
    )
    sparse_reg: float = option(5e-4, "Sparse-learning regularisation coefficient (> 0).")
    latency_batch: int = option(1, "Batch size of latency measurements.", min=1)
    latency_threads: int = option(2, "onnxruntime / torch threads of latency measurements.", min=1)
    importance_batches: int = option(
        4, "Training batches whose gradients rank channels (taylor, hessian).", cli=False, min=1
    )
    seed: int = option(0, "Seed of the channel ranking and fine-tuning.", cli=False)
    latency: bool = option(True, "Measure latency before/after (onnxruntime and torch eager).")
    finetune_lr: float | None = option(  # FINETUNE_LR in the help: test_cli_options checks it
        None,
        "Fine-tuning peak learning rate (default: the parent's, from its card, else 0.001).",
        flag="--lr",
        show_default=False,
    )

    def __post_init__(self) -> None:
        self._resolve_target()
        self._check_values()

    def _resolve_target(self) -> None:
        """Layer ratios from a sensitivity report; exactly one target (the default when none)."""
        if self.from_sensitivity is not None:
            ratios = ratios_from_sensitivity(
                load_report(self.from_sensitivity), self.sensitivity_max_drop / 100
            )
            if self.layer_ratios is not None and self.layer_ratios != ratios:
                raise UsageError("give layer_ratios or from_sensitivity, not both")
            self.layer_ratios = ratios
        given = [n for n in TARGETS if getattr(self, n) is not None]
        if not given:
            name, value = DEFAULT_TARGET
            setattr(self, name, value)
            given = [name]
            log.info(
                "no pruning target given: using %s %s (half the MACs per image); choose one "
                "with --ratio, --target-macs, --target-params, --target-latency-ms or "
                "--from-sensitivity",
                _flag(name),
                value,
            )
        if len(given) != 1:
            what = " and ".join(_flag(n) for n in given)
            raise UsageError(
                f"give exactly one pruning target, got {what}",
                hint="--ratio R, --target-macs X, --target-params X, --target-latency-ms MS "
                "or --from-sensitivity FILE",
            )

    def _check_values(self) -> None:
        check_options(self, flags=True)
        for name in ("target_macs", "target_params"):
            if getattr(self, name) is not None:
                parse_amount(getattr(self, name), _flag(name))
        for name, r in (self.layer_ratios or {}).items():
            if not 0 <= r < 1:
                raise UsageError(f"ratio of layer {name!r} must be in [0, 1), got {r}")
        given = (self.finetune_epochs, self.final_finetune_epochs)
        if self.kd and given != (None, None) and not any(given):
            raise UsageError(
                "--kd distills during fine-tuning, but no fine-tuning epochs were given",
                hint="add --finetune-epochs N (after each step) or --final-finetune-epochs N",
            )
        if self.round_to == 1:
            self.round_to = None  # 1 = off
        if self.ratio is not None and self.ratio > self.max_layer_ratio:
            raise UsageError(
                f"--ratio {self.ratio} exceeds --max-layer-ratio {self.max_layer_ratio}"
            )
        if not (math.isfinite(self.sparse_reg) and self.sparse_reg > 0):
            raise UsageError(
                f"--sparse-reg must be a positive number, got {self.sparse_reg}",
                hint="torch-pruning uses 1e-4 to 5e-4",
            )
        final = self.final_finetune_epochs
        if self.sparse_epochs and final is not None and self.sparse_epochs >= final:
            raise UsageError(
                f"--sparse-epochs {self.sparse_epochs} does not fit the budget of "
                f"--final-finetune-epochs {final}: sparse learning counts in it and at "
                "least one epoch must fine-tune after the cut",
                hint=f"give --final-finetune-epochs {self.sparse_epochs + 1} or more, "
                "or fewer --sparse-epochs",
            )
        if self.isomorphic and not self.global_pruning:
            raise UsageError("--isomorphic ranks channels globally: add --global")

    @property
    def tolerance(self) -> float:
        """The ratio tolerance in force (:data:`DEFAULT_RATIO_TOLERANCE` when not given)."""
        return DEFAULT_RATIO_TOLERANCE if self.ratio_tolerance is None else self.ratio_tolerance

    @property
    def target_kind(self) -> str:
        """ratio, macs, params, latency or layers."""
        given = [n for n in TARGETS[:4] if getattr(self, n) is not None]
        return given[0].removeprefix("target_").removesuffix("_ms") if given else "layers"

    def count_goal(self, start: float) -> float:
        """The MACs or parameters a macs / params target asks for, from the unpruned `start`."""
        name = f"target_{self.target_kind}"
        how, number = parse_amount(getattr(self, name), _flag(name))
        return start / number if how == "factor" else number


def load_report(path: str | Path) -> JsonObject:
    """A sensitivity.json (or the directory holding it), as read from disk."""
    p = Path(path)
    if p.is_dir():
        p = p / SENSITIVITY_JSON
    try:
        data: JsonObject = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"cannot read sensitivity report {p}: {e}") from e
    if not isinstance(data, dict) or "layers" not in data or "base_top1" not in data:
        raise InvalidInputError(f"{p} is not a sensitivity report (no layers/base_top1)")
    return data


def ratios_from_sensitivity(report: dict[str, Any], max_drop: float) -> dict[str, float]:
    """Per layer, the largest tried ratio whose val top-1 drop (fraction) is <= `max_drop`."""
    if report.get("base_top1") is None:
        raise UsageError(
            "this sensitivity report has no accuracy (the model was untrained)",
            hint="run `compress sensitivity` on a trained model",
        )
    if not 0 <= max_drop <= 1:
        raise UsageError(f"--max-drop must be 0 to 100 points, got {100 * max_drop:g}")
    out: dict[str, float] = {}
    for layer in report["layers"]:
        ok = [
            t["ratio"] for t in layer["trials"] if t["drop"] is not None and t["drop"] <= max_drop
        ]
        if ok:
            out[layer["name"]] = max(ok)
    if not out:
        raise UsageError(
            f"no layer can be pruned within a drop of {100 * max_drop:.2f} points",
            hint="raise --max-drop, or run sensitivity with smaller --ratios",
        )
    return out
