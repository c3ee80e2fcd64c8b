"""Reference models trained by our recipes on Fashion-MNIST, next to the published table.

Issue #9, item 1. For each model, the recipe's own `train` stage (or, with --full, the whole
recipe) runs through `compress run` on the real Fashion-MNIST split, so the figures are those
a user of the recipe gets. Epochs can be cut to fit a CPU budget (--epochs MODEL=N); the table
says how many ran. Prints a Markdown table and writes OUT/reference.json.

Usage:
  OMP_NUM_THREADS=1 python benchmarks/reference_accuracy.py --out runs/ref \
      --models lenet5 alexnet --epochs alexnet=4 --set train.channels_last=true
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from compress.pipeline.recipe import dump_recipe, load_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "lenet5": "recipes/lenet5-fashion.yaml",
    "alexnet": "recipes/alexnet-fashion.yaml",
    "vgg16": "recipes/vgg16-fashion.yaml",
    "resnet50": "recipes/resnet50-fashion.yaml",
}
# The Fashion-MNIST benchmark table as cited by issue #9 (zalandoresearch/fashion-mnist README).
PUBLISHED = {
    "lenet5": ("2 Conv <100K parameters", 92.5),
    "alexnet": ("AlexNet", 89.9),
    "vgg16": ("VGG16", 93.5),
    "resnet50": ("ResNet18 (no ResNet-50 entry)", 94.9),
}


def recipe_for(
    model: str, out: Path, epochs: int | None, sets: list[str], full: bool
) -> tuple[Path, int]:
    """The model's recipe, cut to its train stage unless `full`, with overrides applied;
    returns its path and the train stage's epochs."""
    overrides = list(sets) + ([f"train.epochs={epochs}"] if epochs is not None else [])
    recipe = load_recipe(ROOT / RECIPES[model], overrides)
    if not full:
        recipe.stages = [s for s in recipe.stages if s.kind == "train"]
    path = out / f"{model}.yaml"
    dump_recipe(recipe, path, header=f"from {RECIPES[model]} by benchmarks/reference_accuracy.py")
    return path, int(recipe.stage("train").options.get("epochs", 15))


def run(model: str, recipe: Path, epochs: int, out: Path, resume: bool) -> dict[str, Any]:
    """`compress run` in a child process; returns the train stage's row plus wall time."""
    run_dir = out / model
    again = "--resume" if resume and run_dir.exists() else "--overwrite"
    cmd = [sys.executable, "-m", "compress", "run", str(recipe), "--out", str(run_dir), again]
    t0 = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    wall = time.perf_counter() - t0
    if rc not in (0, 5):  # 5: a quality gate failed; the report is still written
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {rc}")
    report = json.loads((run_dir / "report.json").read_text())
    train = next(s for s in report["stages"] if s["kind"] == "train")
    summary = train["summary"]
    return {
        "model": model,
        "epochs": epochs,
        "params": summary["params"],
        "test_top1": train["test_top1"],
        "val_top1": train["val_top1"],
        "train_seconds": round(train["seconds"], 1),  # the first run's, when resumed
        "run_seconds": round(wall, 1),
        "precision": summary.get("amp_reason", summary.get("precision")),
        "run_dir": str(run_dir),
        "gates_passed": rc == 0,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | epochs | params | test top-1 % | published (model, %) | train wall s | run wall s |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        name, pub = PUBLISHED[r["model"]]
        lines.append(
            f"| {r['model']} | {r['epochs']} | {r['params']:,} | {r['test_top1'] * 100:.2f} "
            f"| {name} {pub} | {r['train_seconds']} | {r['run_seconds']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--epochs", nargs="*", default=[], help="MODEL=N: cut a recipe's epochs")
    p.add_argument("--set", nargs="*", default=[], dest="sets", help="recipe overrides for all")
    p.add_argument("--full", action="store_true", help="run the whole recipe, not just train")
    p.add_argument("--resume", action="store_true", help="keep finished stages of OUT/MODEL")
    args = p.parse_args()
    epochs = {k: int(v) for k, v in (e.split("=", 1) for e in args.epochs)}
    args.out.mkdir(parents=True, exist_ok=True)
    result_path = args.out / "reference.json"
    rows: list[dict[str, Any]] = []
    for model in args.models:
        recipe, n = recipe_for(model, args.out, epochs.get(model), args.sets, args.full)
        row = run(model, recipe, n, args.out, args.resume)
        # read just before writing: another invocation may have added rows meanwhile
        rows = json.loads(result_path.read_text()) if result_path.exists() else []
        rows = [r for r in rows if r["model"] != model] + [row]
        result_path.write_text(json.dumps(rows, indent=2))
        print(table([row]), flush=True)
    print(table(rows))
    sys.exit(0)


if __name__ == "__main__":
    main()
