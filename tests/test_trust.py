"""Code named by a file (a card, a recipe) runs only with consent, and only unchanged.

The "evil" factory is a working model factory with one extra line that writes a marker file
when its module is executed: the marker's absence proves that nothing of the file ran.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from compress.models.artifacts.artifact import CODE, load_model, new_card, read_card, save_model
from compress.models.errors import UntrustedCodeError
from compress.models.zoo.registry import create_model
from compress.models.zoo.usercode import sha256_bytes
from tests.conftest import cli

FACTORY = """
from pathlib import Path
from torch import nn
Path({marker!r}).write_text("ran")

def build(num_classes=10, in_channels=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, num_classes),
    )
"""


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """(factory file, marker path); the marker is absent until the file runs."""
    marker = tmp_path / "MARKER"
    f = tmp_path / "src" / "evil.py"
    f.parent.mkdir()
    f.write_text(FACTORY.format(marker=str(marker)))
    return f, marker


@pytest.fixture
def art(tmp_path: Path, evil: tuple[Path, Path]) -> Path:
    """An artifact made from the evil factory (typed by its maker, so it ran then)."""
    f, marker = evil
    m = create_model(f"{f}:build", num_classes=10)
    out = save_model(m, tmp_path / "art", new_card(m))
    marker.unlink()
    return out


def test_artifact_stores_its_code_with_the_hash(art, evil):
    card = read_card(art)
    src = evil[0].read_bytes()
    assert card.code is not None and card.code.file == CODE and card.code.factory == "build"
    assert card.code.sha256 == sha256_bytes(src) == card.files[CODE]["sha256"]
    assert (art / CODE).read_bytes() == src and card.code.origin == str(evil[0])


def test_card_code_refused_without_consent_and_nothing_runs(art, evil, mini_data):
    _, marker = evil
    r = cli("eval", "--model", str(art), "--data-dir", mini_data.data_dir)
    assert r.exit_code == 3 and not marker.exists()
    sha = sha256_bytes((art / CODE).read_bytes())
    line = " ".join(r.output.split())  # rich wraps long lines
    assert str(art / CODE) in line and sha in line and "--trust-code" in line
    assert "Traceback" not in r.output
    with pytest.raises(UntrustedCodeError, match="--trust-code"):
        load_model(art)
    assert not marker.exists()


def test_card_code_loads_with_consent(art, evil, mini_data):
    _, marker = evil
    r = cli("eval", "--model", str(art), "--trust-code", "--data-dir", mini_data.data_dir)
    assert r.exit_code == 0, r.output
    assert marker.exists() and "top-1" in r.output


def test_card_naming_an_outside_file_is_refused(art, evil, tmp_path):
    """The issue's case: a card whose architecture names another .py file, no code section."""
    f, marker = evil
    card_path = art / "card.json"
    card = json.loads(card_path.read_text())
    card.pop("code")
    card["architecture"]["name"] = f"{f}:build"
    card_path.write_text(json.dumps(card))
    with pytest.raises(UntrustedCodeError, match=sha256_bytes(f.read_bytes())):
        load_model(art)
    assert not marker.exists()
    model, loaded = load_model(art, trust_code=True)
    assert marker.exists()
    # Re-saving an older card's model stores the code it ran, with its hash.
    again = save_model(model, tmp_path / "again", loaded)
    assert (again / CODE).read_bytes() == f.read_bytes()
    assert read_card(again).code.sha256 == sha256_bytes(f.read_bytes())  # type: ignore[union-attr]


def test_changed_code_is_refused_even_with_consent(art, evil, tmp_path, mini_data):
    f, marker = evil
    (art / CODE).write_text((art / CODE).read_text().replace('"ran"', '"RAN"'))  # same size
    with pytest.raises(UntrustedCodeError, match="not the code the model was made with"):
        load_model(art, trust_code=True)
    r = cli("eval", "--model", str(art), "--trust-code", "--data-dir", mini_data.data_dir)
    assert r.exit_code == 3 and not marker.exists() and "--weights" in r.output
    # The user's own, explicit choice of factory loads the weights (structure from the card).
    r = cli(
        "eval", "--model", f"{f}:build", "--weights", str(art), "--data-dir", mini_data.data_dir
    )
    assert r.exit_code == 0, r.output


def test_moved_artifact_and_its_onnx_export_load_without_the_original_file(
    art, evil, tmp_path, mini_data
):
    f, marker = evil
    onnx_art = tmp_path / "onnx"
    r = cli("export", "--model", str(art), "--trust-code", "--out", str(onnx_art))
    assert r.exit_code == 0, r.output
    m, _ = load_model(art, trust_code=True)
    moved, moved_onnx = tmp_path / "elsewhere" / "a", tmp_path / "elsewhere" / "o"
    shutil.copytree(art, moved)
    shutil.copytree(onnx_art, moved_onnx)
    shutil.rmtree(art), shutil.rmtree(onnx_art), shutil.rmtree(f.parent)
    marker.unlink()
    # ONNX needs no code: eval and bench never import the factory, no consent asked.
    r = cli("eval", "--model", str(moved_onnx), "--data-dir", mini_data.data_dir)
    assert r.exit_code == 0, r.output
    r = cli(
        "bench", "--model", str(moved_onnx), "-r", "ort-cpu", "--batch-sizes", "1",
        "--iters", "2", "--warmup", "0",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli("doctor", "--model", str(moved_onnx))
    assert r.exit_code == 0, r.output
    assert not marker.exists() and not (moved_onnx / CODE).exists()
    # The PyTorch artifact runs its own copy of the code, with consent.
    loaded, _ = load_model(moved, trust_code=True)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(m(x), loaded(x)) and marker.exists()


def test_resaved_artifact_carries_the_code(art, tmp_path, mini_data):
    """A stage on a user-model artifact writes the same code (hash) into its output."""
    out = tmp_path / "pruned"
    r = cli(
        "prune", "--model", str(art), "--trust-code", "--ratio", "0.25", "--out", str(out),
        "--data-dir", mini_data.data_dir, "--finetune-epochs", "0",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert read_card(out).code.sha256 == read_card(art).code.sha256  # type: ignore[union-attr]
    assert (out / CODE).read_bytes() == (art / CODE).read_bytes()


def test_recipe_factory_needs_consent(evil, tmp_path):
    f, marker = evil
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {f}:build\nstages:\n  - train: {{epochs: 1}}\n")
    r = cli("run", str(recipe), "--out", str(tmp_path / "o"), "--dry-run")
    assert r.exit_code == 3 and "--trust-code" in " ".join(r.output.split()) and not marker.exists()
    r = cli("run", str(recipe), "--out", str(tmp_path / "o"), "--dry-run", "--trust-code")
    assert r.exit_code == 0, r.output
    recipe.write_text(recipe.read_text() + "trust_code: true\n")
    r = cli("run", str(recipe), "--out", str(tmp_path / "o"), "--dry-run")
    assert r.exit_code == 0, r.output
    assert not marker.exists()  # a dry run validates, it runs no model code


def test_recipe_artifact_with_code_needs_consent(art, evil, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {art}\nstages:\n  - quantize: {{method: fp16}}\n")
    r = cli("run", str(recipe), "--out", str(tmp_path / "o"), "--dry-run")
    assert r.exit_code == 3 and str(art / CODE) in " ".join(r.output.split())
    assert not evil[1].exists()


def test_resume_never_follows_a_path_from_a_stage_record(tmp_path):
    from compress.pipeline.runner import RECORD, completed_record

    folder = tmp_path / "01-train"
    folder.mkdir()
    (folder / RECORD).write_text(json.dumps({"input_hash": "h", "artifact": "/elsewhere/evil"}))
    assert completed_record(folder, "h")["artifact"] == str(folder)  # type: ignore[index]


def test_readme_documents_what_is_trusted():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Security", 1)[1].split("\n## ", 1)[0]
    assert "--trust-pickle" in section and "--trust-code" in section
    assert "sha-256" in section.lower() and "trust_code" in section


def test_onnx_probe_ignores_a_lookalike_package_in_the_working_directory(tmp_path, monkeypatch):
    """The ONNX probe child runs our compress.export.runtimes.runner, not an `export/` folder where the user is."""
    from compress.export.runtimes.probe import probe_in_subprocess

    marker = tmp_path / "MARKER"
    fake = tmp_path / "cwd" / "export"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "runtime.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    onnx = tmp_path / "m.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),), str(onnx), dynamo=False)
    monkeypatch.chdir(tmp_path / "cwd")
    report = probe_in_subprocess(onnx, "ort-cpu", 1)
    assert report and not marker.exists()


def test_tune_best_recipes_take_only_the_recipes_search_keys(tmp_path):
    """A shared study storage may hold trials with any params: `model` must not leak into
    best-*.yaml (a recipe the user will run)."""
    import optuna

    from compress.pipeline.recipe import parse_recipe
    from compress.pipeline.tune import TuneConfig, tune

    recipe = parse_recipe(
        "name: s\nmodel: lenet5\nstages:\n  - train: {epochs: 1}\n  - prune: {ratio: 0.3}\n"
        "search:\n  prune.ratio: {low: 0.2, high: 0.8}\n"
    )
    db = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=db, study_name="s", direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"prune.ratio": 0.5, "model": "/x/evil.py:build"},
            distributions={
                "prune.ratio": optuna.distributions.FloatDistribution(0.2, 0.8),
                "model": optuna.distributions.CategoricalDistribution(["/x/evil.py:build"]),
            },
            value=0.9,
        )
    )
    res = tune(recipe, TuneConfig(trials=1, objectives=("accuracy",), storage=db), tmp_path)
    best = Path(res.best_recipes["accuracy"]).read_text()
    assert "evil" not in best and "model: lenet5" in best and "ratio: 0.5" in best
