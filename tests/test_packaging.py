"""The wheel ships ``fastnn/kernels/`` (from the top-level ``kernels/`` folder) and the
bundled data, and nothing at the top level besides ``fastnn``."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """Build a wheel from a copy of the source tree (the checkout stays clean), offline,
    with the setuptools already installed (about a second)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here (pip install 'setuptools>=68' wheel)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for name in ("fastnn", "kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*cmd, "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0 and "No module named" in proc.stderr and "wheel" in proc.stderr:
        pytest.skip(f"cannot build wheels offline here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("fastnn-*.whl")
    with zipfile.ZipFile(whl) as zf:
        yield zf


def test_wheel_ships_kernels_inside_the_package(wheel):
    names = wheel.namelist()
    assert "fastnn/kernels/__init__.py" in names
    for src in (ROOT / "kernels").glob("*.py"):
        assert f"fastnn/kernels/{src.name}" in names
    for src in (ROOT / "kernels").glob("*.cu"):
        assert f"fastnn/kernels/{src.name}" in names
    assert not any(n.startswith("kernels/") for n in names)


def test_wheel_ships_the_data_and_every_subpackage(wheel):
    names = set(wheel.namelist())
    assert "fastnn/data/churn.csv.gz" in names
    for init in ROOT.glob("fastnn/**/__init__.py"):
        if "__pycache__" in init.parts:
            continue
        assert init.relative_to(ROOT).as_posix() in names, f"{init} is not packaged"
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"fastnn"}


def test_wheel_declares_the_console_script(wheel):
    (ep,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(ep).decode()
    assert re.search(r"^fastnn\s*=\s*fastnn\.cli:main", text, re.M)


def test_installed_kernels_resolve_to_the_kernels_folder():
    import fastnn.kernels

    assert Path(fastnn.kernels.__file__).resolve().parent == (ROOT / "kernels").resolve()


def test_no_code_imports_a_bare_kernels_package():
    bad = []
    pattern = re.compile(r"^\s*(from\s+kernels\b|import\s+kernels\b)", re.M)
    for path in [*ROOT.glob("fastnn/**/*.py"), *ROOT.glob("kernels/*.py")]:
        if pattern.search(path.read_text(encoding="utf-8")):
            bad.append(str(path.relative_to(ROOT)))
    assert not bad, f"import fastnn.kernels, not kernels: {bad}"
