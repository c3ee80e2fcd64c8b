"""How pruning fine-tunes: :func:`plan_finetune` is the one owner of that decision.

Every entry point hands it a PruneConfig (fine-tuning fields may be unset) plus a TrainConfig
(honoured whole; a contradicting PruneConfig field is refused) or a few training keys, and gets
every choice made, the TrainConfig that trains and one line saying why. Defaults measured in
benchmarks/results/prune-vs-plain.md: :data:`DEFAULT_FINETUNE_EPOCHS` epochs, KD, BN re-estimation,
LR rewinding (Renda et al. 2020: the parent's recorded recipe on a fresh one-cycle; LeNet-5 at 4x
MACs, the LR alone: 1e-3 86.7 %, 5e-3 88.7 %); unrecorded: AdamW from :data:`FINETUNE_LR`, cosine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from compress.models.errors import UsageError
from compress.pruning.config import (
    DATA_FREE_CRITERION,
    DEFAULT_CRITERION,
    FINETUNE_LR,
    PruneConfig,
)
from compress.training.config import TrainConfig

# Epochs of fine-tuning after the cut when none are asked for and the training data is known:
# the budget benchmarks/prune_vs_plain.py measures (LeNet-5 recovers most of a 4x cut in it).
DEFAULT_FINETUNE_EPOCHS = 5
DEFAULT_SCHEDULE = "cosine"  # from the low peak LR when the parent's recipe is unknown
REWIND_SCHEDULE = "onecycle"  # a fresh warm-up and decay at the parent's own peak LR
# TrainConfig fields fine-tuning takes from the parent's recorded recipe (LR rewinding).
REWOUND = ("optimizer", "lr", "weight_decay", "momentum", "channels_last")

# TrainConfig fields a PruneConfig decides, and where to set them instead.
_OWNED_BY_PRUNING = {
    "epochs": "finetune_epochs (after each step) and final_finetune_epochs (after the last)",
    "schedule": "finetune_schedule",
    "label_smoothing": "label_smoothing of the pruning config",
    "seed": "seed of the pruning config",
    "checkpoint_dir": "nothing: fine-tuning after pruning keeps no checkpoint",
    "resume": "nothing: fine-tuning after pruning keeps no checkpoint",
}

FinetuneRequest = TrainConfig | Mapping[str, Any] | Callable[..., object] | None


@dataclass(frozen=True)
class SourceFacts:
    """What the policy needs to know about the model being pruned (None: not recorded)."""

    trained: bool = True  # not `--weights random`
    data_known: bool = True  # its training data set is known (its card, or the caller's)
    augmented: bool | None = None  # trained with random flips and crops
    recipe: Mapping[str, Any] | None = None  # the TrainConfig fields of its card


@dataclass(frozen=True)
class FinetunePlan:
    """What runs: the resolved PruneConfig, the TrainConfig (None: no fine-tuning, or a
    callable owns it) and one line saying what was chosen and why."""

    config: PruneConfig
    train: TrainConfig | None
    said: str

    @property
    def epochs(self) -> int:
        return _epochs(self.config)


def _with_lr(cfg: PruneConfig, finetune: FinetuneRequest) -> tuple[PruneConfig, FinetuneRequest]:
    """`cfg.finetune_lr` (`--lr`) joins the training keys, as a recipe's `lr`; refused beside a
    whole TrainConfig or callable (their lr is theirs) or a different `lr` key."""
    lr = cfg.finetune_lr
    if lr is None:
        return cfg, finetune
    if finetune is not None and not isinstance(finetune, Mapping):
        raise UsageError(
            "--lr sets the default fine-tuning recipe's learning rate; a TrainConfig or callable "
            "given as `finetune` brings its own",
            hint="set the TrainConfig's lr, or drop finetune_lr",
        )
    keys = dict(finetune or {})
    if keys.setdefault("lr", lr) != lr:
        raise UsageError(f"--lr {lr:g} and the fine-tuning key lr {keys['lr']:g} disagree")
    return replace(cfg, finetune_lr=None), keys


def plan_finetune(
    cfg: PruneConfig,
    finetune: FinetuneRequest = None,
    facts: SourceFacts | None = None,
    *,
    default_epochs: int = DEFAULT_FINETUNE_EPOCHS,
) -> FinetunePlan:
    """Decide the fine-tuning after pruning. `finetune`: a TrainConfig (used whole), training keys
    over the default recipe (lr, optimizer, device...), a callable(model, epochs) owning its loop,
    or None. `default_epochs`: when no epochs are given anywhere and the data is known."""
    facts = facts or SourceFacts()
    cfg, finetune = _with_lr(cfg, finetune)
    if callable(finetune) and not isinstance(finetune, TrainConfig):
        unset = cfg.finetune_epochs is None and cfg.final_finetune_epochs is None
        cfg = replace(cfg, finetune_epochs=0, final_finetune_epochs=0) if unset else cfg
        plan = FinetunePlan(_resolved(cfg, None, kd=False, facts=facts), None, "")
        return replace(plan, said=f"fine-tuning {plan.epochs} epochs with the given callable")
    if isinstance(finetune, TrainConfig):
        cfg, said = _honour(cfg, finetune)
        train: TrainConfig | None = finetune
    else:
        keys = dict(finetune or {})
        for key in keys:
            if key in _OWNED_BY_PRUNING:
                raise UsageError(
                    f"{key!r} of the fine-tuning after pruning is not a training option here",
                    hint=f"set {_OWNED_BY_PRUNING[key]}",
                )
        cfg, said = _default_epochs(cfg, facts, default_epochs)
        train = _train_config(cfg, keys, facts)
        if _epochs(cfg) and facts.recipe:
            said += (
                f"; the parent's recipe rewound: {train.optimizer} peak lr {train.lr:g}, "
                f"{train.schedule}"
            )
    if _epochs(cfg) and not facts.data_known:
        raise UsageError(
            "fine-tuning after pruning needs the data set the model was trained on",
            hint="give --dataset/--data-dir (or data=) for the data it was trained on, or "
            "--finetune-epochs 0",
        )
    train = train if _epochs(cfg) else None
    # replace() re-runs PruneConfig's checks (KD without epochs, the sparse-learning budget)
    resolved = _resolved(cfg, train, kd=train is not None, facts=facts)
    if cfg.criterion is None:
        said += f"; channels ranked by {resolved.criterion}"
    return FinetunePlan(resolved, train, said)


def _epochs(cfg: PruneConfig) -> int:
    return max(cfg.finetune_epochs or 0, cfg.final_finetune_epochs or 0)


def _with_epochs(cfg: PruneConfig, each: int, final: int) -> PruneConfig:
    """The epochs asked for (None as 0), or `each` and `final` when none were."""
    if cfg.finetune_epochs is not None or cfg.final_finetune_epochs is not None:
        each, final = cfg.finetune_epochs or 0, cfg.final_finetune_epochs or 0
    return replace(cfg, finetune_epochs=each, final_finetune_epochs=final)


def _honour(cfg: PruneConfig, tc: TrainConfig) -> tuple[PruneConfig, str]:
    """A whole TrainConfig: its epochs and schedule run; a PruneConfig that says otherwise is
    refused."""
    cfg = _with_epochs(cfg, 0, tc.epochs)
    if _epochs(cfg) != tc.epochs:
        raise UsageError(
            f"the fine-tuning TrainConfig has epochs={tc.epochs} but the PruneConfig asks "
            f"for finetune_epochs={cfg.finetune_epochs}, "
            f"final_finetune_epochs={cfg.final_finetune_epochs}",
            hint="give the epochs in one place (leave the PruneConfig's unset)",
        )
    for field, mine, theirs in (
        ("finetune_schedule", cfg.finetune_schedule, tc.schedule),
        ("label_smoothing", cfg.label_smoothing or None, tc.label_smoothing or None),
    ):
        if mine is not None and mine != theirs:
            raise UsageError(
                f"PruneConfig.{field}={mine!r} contradicts the fine-tuning TrainConfig "
                f"({theirs!r})",
                hint="set it in one of the two",
            )
    cfg = replace(cfg, finetune_schedule=tc.schedule, label_smoothing=tc.label_smoothing)
    return cfg, (
        f"fine-tuning {tc.epochs} epochs as the given TrainConfig says (lr {tc.lr:g}, "
        f"{tc.schedule})"
    )


def _default_epochs(cfg: PruneConfig, facts: SourceFacts, default: int) -> tuple[PruneConfig, str]:
    if cfg.finetune_epochs is not None or cfg.final_finetune_epochs is not None:
        n = _epochs(cfg)
        return _with_epochs(cfg, 0, 0), (
            f"fine-tuning {n} epochs as asked" if n else "no fine-tuning, as asked"
        )
    if not facts.trained:
        return _with_epochs(cfg, 0, 0), "no fine-tuning: the weights are untrained"
    if not facts.data_known or not default:
        why = "the training data of this model is unknown" if default else "none asked for"
        return _with_epochs(cfg, 0, 0), (
            f"no fine-tuning ({why}): accuracy lost to the cut is not recovered; add "
            "--finetune-epochs N with --dataset/--data-dir of its training data"
        )
    return _with_epochs(cfg, 0, default), (
        f"fine-tuning {default} epochs by default (the budget measured against torch-pruning's "
        "plain recipe in BENCHMARKS.md; --finetune-epochs N to change, 0 to skip)"
    )


def _train_config(cfg: PruneConfig, keys: dict[str, Any], facts: SourceFacts) -> TrainConfig:
    """The default fine-tuning recipe (the parent's, rewound, where its card records it) with
    the given training keys on top."""
    recipe = dict(facts.recipe or {})
    base = {"lr": FINETUNE_LR} | {k: recipe[k] for k in REWOUND if k in recipe}
    smoothing = recipe.get("label_smoothing", 0.0)
    return TrainConfig(
        **(base | keys),
        epochs=_epochs(cfg),
        schedule=cfg.finetune_schedule or (REWIND_SCHEDULE if recipe else DEFAULT_SCHEDULE),
        label_smoothing=smoothing if cfg.label_smoothing is None else cfg.label_smoothing,
        seed=cfg.seed,
    )


def _resolved(
    cfg: PruneConfig, train: TrainConfig | None, *, kd: bool, facts: SourceFacts
) -> PruneConfig:
    """The ranking (Taylor where trained weights meet known data, else L2), KD (on whenever a
    TrainConfig fine-tunes), augmentation (as the parent was trained) and label smoothing (the
    TrainConfig's) decided, so the card records what ran."""
    ranking = DEFAULT_CRITERION if facts.trained and facts.data_known else DATA_FREE_CRITERION
    return replace(
        cfg,
        criterion=cfg.criterion or ranking,
        kd=kd if cfg.kd is None else cfg.kd,
        augment=bool(facts.augmented) if cfg.augment is None else cfg.augment,
        label_smoothing=train.label_smoothing if train else (cfg.label_smoothing or 0.0),
    )
