"""The built wheel works without a source checkout: package data inside, CLI runs from anywhere.

    .venv/bin/python -m pytest tests/test_wheel.py -q

Builds the wheel offline (pip wheel --no-build-isolation, from a copy of pyproject.toml, README.md
and src/, so the checkout gets no build/ or egg-info), installs it with --no-deps into a fresh
venv that borrows this environment's dependencies through a .pth line (the editable install's
own .pth is not processed, so the checkout's src/ stays off the path), then runs
`landmark-lora --help` and `landmark-lora sample-data` in an empty temp folder. About 3 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "landmark_lora"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="pip wheel --no-build-isolation needs setuptools in this venv")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "dist"), str(src)], cwd=tmp, timeout=180)
    (built,) = (tmp / "dist").glob("landmark_lora-*.whl")
    return built


def test_wheel_holds_every_module_and_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("landmark_lora/data/landmarks.yaml", "landmark_lora/serving_model.py",
                 "landmark_lora/data/toyworld/model_index.json",
                 "landmark_lora/data/toyworld/unet/diffusion_pytorch_model.safetensors",
                 "landmark_lora/data/toyworld/vae/diffusion_pytorch_model.safetensors",
                 "landmark_lora/data/toyworld/text_encoder/model.safetensors",
                 "landmark_lora/data/toyworld/tokenizer/vocab.json"):
        assert must in names, f"{must} is not in {wheel.name}: check [tool.setuptools.package-data] in pyproject.toml"
    # Every module and data file of the source tree ships (a new subfolder without __init__.py would not).
    source = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    missing = sorted(source - names)
    assert not missing, (f"in src/ but not in the wheel: {missing[:10]} (a package folder needs __init__.py; "
                         "data files need a pattern in [tool.setuptools.package-data])")
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"landmark_lora", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, (
        f"the wheel ships more than the package: {sorted(tops)} (tools/ and tests/ stay in the checkout)")


def test_installed_cli_runs_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
                .strip())
    # This environment's dependencies (torch, mlflow, ...) without installing them again, offline.
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_deps_from_test_env.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         cwd=tmp_path, timeout=180)

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "params.yaml").write_text("sample_data:\n  poses_per_view: 1\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    where = _run([str(py), "-c", "import importlib.resources as r, landmark_lora; "
                  "print(landmark_lora.__file__); print(r.files('landmark_lora') / 'data' / 'landmarks.yaml')"],
                 cwd=work, env=env).split()
    assert all(Path(p).resolve().is_relative_to(venv.resolve()) for p in where), (
        f"landmark_lora was imported from {where}, not from the installed wheel in {venv}")

    cli = str(venv / "bin" / "landmark-lora")
    assert "sample-data" in _run([cli, "--help"], cwd=work, env=env)
    out = _run([cli, "sample-data"], cwd=work, env=env)
    assert "rendered" in out, out
    photos = list((work / "data" / "incoming").rglob("*.jpg"))
    assert photos and (work / "data" / "incoming" / "metadata.csv").is_file(), out
