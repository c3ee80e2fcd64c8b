"""YAML recipes: a model, its data, and an ordered list of stages, validated before any work.

    name: lenet5-fashion
    model: lenet5
    data: {dataset: fashion-mnist}
    max_drop: 0.5            # whole-run gate: test top-1 points lost vs the baseline
    stages:
      - train: {epochs: 12}
      - prune: {ratio: 0.5, finetune_epochs: 3}
      - quantize: {method: ptq-static}
      - bench: {batch_sizes: [1, 32]}
      - deploy: {max_drop: 0.5}  # fastest runtime x precision x threads within the gate

Errors name the key and its line. `--set stage.key=value` overrides (stage = kind or `name:`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compress.models.disk.durable import write_text
from compress.models.errors import InvalidInputError, UsageError
from compress.models.jsontypes import JsonObject

TOP_KEYS = {
    *("name", "description", "model", "weights", "num_classes", "in_channels", "input_size"),
    *("data", "max_drop", "stages", "search", "seed", "trust_code"),
}
DATA_KEYS = {
    *("dataset", "data_dir", "batch_size", "eval_batch_size", "val_size", "seed", "limit"),
    *("augment", "workers"),
}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so `amp: off` stays the string "off"."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class RecipeError(InvalidInputError):
    """A recipe that can't run: bad YAML, unknown stage or key, wrong type, impossible order."""


@dataclass
class StageSpec:
    """One stage of a recipe: its kind (train, prune, …), a unique name, and raw options."""

    kind: str
    name: str
    options: dict[str, Any]
    line: int | None = None


@dataclass
class Recipe:
    """A parsed recipe; stage options are validated by the pipeline's stage table."""

    name: str
    model: str
    stages: list[StageSpec]
    data: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    shape: dict[str, Any] = field(default_factory=dict)  # num_classes, in_channels, input_size
    max_drop: float | None = None
    search: dict[str, Any] = field(default_factory=dict)
    trust_code: bool = False  # consent to run the Python factory the model names
    source: str = "<recipe>"
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str) -> str:
        line = self.lines.get(path)
        return f"{self.source}:{line}" if line else self.source

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if name in (s.name, s.kind):
                return s
        raise UsageError(
            f"recipe has no stage {name!r}; stages: " + ", ".join(s.name for s in self.stages)
        )


def _lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Map dotted key paths (list items by index) to 1-based line numbers."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            out.update(_lines(v, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            path = f"{prefix}[{i}]"
            out[path] = v.start_mark.line + 1
            out.update(_lines(v, path))
    return out


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, parse and structurally validate a recipe file, then apply `--set` overrides."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found")
    return parse_recipe(path.read_text(), source=str(path), overrides=overrides)


def parse_recipe(text: str, source: str = "<recipe>", overrides: list[str] | None = None) -> Recipe:
    try:
        doc = yaml_load(text)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise RecipeError(f"{source}: invalid YAML: {e}".replace("\n", " ")) from e
    lines = _lines(node) if node is not None else {}
    if not isinstance(doc, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with `model:` and `stages:`")
    if unknown := sorted(set(doc) - TOP_KEYS):
        k = unknown[0]
        raise RecipeError(
            f"{source}:{lines.get(k, '?')}: unknown key {k!r}; allowed: "
            + ", ".join(sorted(TOP_KEYS))
        )
    recipe = _build(doc, source, lines)
    for ov in overrides or []:
        apply_override(recipe, ov)
    return recipe


def _build(doc: dict[str, Any], source: str, lines: dict[str, int]) -> Recipe:
    def need(key: str, typ: type | tuple[type, ...], default: Any = None) -> Any:
        """`doc[key]` if it has type `typ` (a bool is no number), `default` if absent or null."""
        v = doc.get(key)
        if v is None:
            return default
        if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
            want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise RecipeError(
                f"{source}:{lines.get(key, '?')}: {key!r} must be {want}, got {type(v).__name__} {v!r}"
            )
        return v

    for key in ("model", "stages"):
        if doc.get(key) is None:
            raise RecipeError(f"{source}: missing required key {key!r}")
    data = need("data", dict, {})
    if bad := sorted(set(data) - DATA_KEYS):
        raise RecipeError(
            f"{source}:{lines.get('data.' + bad[0], '?')}: unknown data key "
            f"{bad[0]!r}; allowed: {', '.join(sorted(DATA_KEYS))}"
        )
    raw_stages, max_drop = need("stages", list), need("max_drop", (int, float))
    if not raw_stages:
        raise RecipeError(f"{source}: `stages:` is empty")
    stages = [_stage(item, i, source, lines) for i, item in enumerate(raw_stages)]
    names = [s.name for s in stages]
    if dup := next((n for n in names if names.count(n) > 1), None):
        raise RecipeError(f"{source}: two stages are named {dup!r}; give one a `name:`")
    return Recipe(
        name=need("name", str, Path(source).stem),
        model=need("model", str),
        stages=stages,
        data=data,
        weights=need("weights", str),
        shape={k: need(k, int) for k in ("num_classes", "in_channels", "input_size") if k in doc},
        max_drop=None if max_drop is None else float(max_drop),
        search=need("search", dict, {}),
        trust_code=need("trust_code", bool, False),
        source=source,
        lines=lines,
    )


def _stage(item: Any, i: int, source: str, lines: dict[str, int]) -> StageSpec:
    where = f"{source}:{lines.get(f'stages[{i}]', '?')}"
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, dict) or len(item) != 1:
        raise RecipeError(
            f"{where}: each stage is `- kind: {{options}}`, e.g. `- prune: {{ratio: 0.5}}`"
        )
    kind, opts = next(iter(item.items()))
    opts = dict(opts or {})
    if not isinstance(opts, dict):
        raise RecipeError(f"{where}: options of stage {kind!r} must be a mapping")
    name = str(opts.pop("name", kind))
    return StageSpec(kind=str(kind), name=name, options=opts, line=lines.get(f"stages[{i}]"))


def apply_override(recipe: Recipe, override: str) -> None:
    """`stage.key=value` (value parsed as YAML), or `data.key=value` / `max_drop=value`."""
    target, sep, raw = override.partition("=")
    if not sep or not target:
        raise UsageError(f"--set expects stage.key=value, got {override!r}")
    try:
        value = yaml_load(raw)
    except yaml.YAMLError as e:
        raise UsageError(f"--set {override!r}: value is not valid YAML") from e
    head, _, key = target.partition(".")
    if head == "data" and key:
        if key not in DATA_KEYS:
            raise UsageError(f"--set {override!r}: unknown data key {key!r}")
        recipe.data[key] = value
    elif head == "max_drop" and not key:
        if value is not None and not isinstance(value, (int, float)):
            raise UsageError(f"--set {override!r}: max_drop must be a number of points or null")
        recipe.max_drop = None if value is None else float(value)
    elif head == "model" and not key:
        recipe.model = str(value)
    elif key:
        recipe.stage(head).options[key] = value
    else:
        raise UsageError(f"--set {override!r}: expected stage.key=value")


def recipe_to_dict(recipe: Recipe) -> JsonObject:
    """The recipe as YAML-ready data (overrides applied), for writing best trials back out."""
    doc: dict[str, Any] = {"name": recipe.name, "model": recipe.model}
    if recipe.weights:
        doc["weights"] = recipe.weights
    if recipe.trust_code:
        doc["trust_code"] = True
    doc |= recipe.shape
    if recipe.data:
        doc["data"] = dict(recipe.data)
    if recipe.max_drop is not None:
        doc["max_drop"] = recipe.max_drop
    doc["stages"] = [
        {s.kind: ({"name": s.name} if s.name != s.kind else {}) | dict(s.options)}
        for s in recipe.stages
    ]
    return doc


def dump_recipe(recipe: Recipe, path: str | Path, header: str = "") -> Path:
    path = Path(path)
    text = yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
    write_text(path, (f"# {header}\n" if header else "") + text)
    return path
