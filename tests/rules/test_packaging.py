"""The installed package can't be shadowed: models/ and export/ install as compress.models and
compress.export, so a user's own `models/` or `export/` package (the most common folder names in
an ML project) is never imported in their place.

The wheel is built from a copy of the sources (nothing written into the checkout), installed (not
editable) into a fresh venv whose dependencies come from the test's own environment, and run from
a folder holding its own `models/` and `export/` packages that fail loudly when imported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAP = "raise ImportError('the user folder {name}/ was imported instead of compress.{name}')\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fresh venv's python, the built wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("compress", "models", "export"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    dist = tmp / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(dist), str(src)], check=True, capture_output=True)
    (wheel,) = dist.glob("compress-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies (torch, onnxruntime, ...) from this environment; compress itself from the wheel.
    deps = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "zz-deps.pth").write_text(deps + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True)
    return python, wheel


def test_the_wheel_holds_no_top_level_models_or_export(installed: tuple[Path, Path]) -> None:
    names = zipfile.ZipFile(installed[1]).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"compress"}
    assert "compress/models/zoo/registry.py" in names
    assert "compress/export/bench/measure.py" in names


def test_a_users_models_and_export_folders_do_not_shadow_ours(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    python, _ = installed
    for name in ("models", "export"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(TRAP.format(name=name))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    zoo = subprocess.run(
        [str(python), "-m", "compress", "models"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert zoo.returncode == 0, zoo.stderr
    assert "resnet50" in zoo.stdout
    api = (
        "import compress, sys\n"
        "from compress.models.zoo.registry import create_model\n"
        "m = create_model('lenet5')\n"
        "print(compress.__file__, compress.PruneConfig().__class__.__name__,"
        " sum(p.numel() for p in m.parameters()))\n"
    )
    r = subprocess.run(
        [str(python), "-c", api], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    where, config, params = r.stdout.split()
    assert Path(where).is_relative_to(python.parent.parent), where  # the wheel, not the checkout
    assert config == "PruneConfig" and int(params) > 10_000
