"""The wheel and the sdist hold the package, its type marker, its data and the licence, and
nothing else: no tests, no caches (built from a copy of the working tree, caches included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE_MARKS = ("__pycache__", ".pyc", ".nbi", ".nbc", ".pytest_cache", ".hypothesis")


def _require(distribution: str) -> None:
    """Under CI a missing build tool fails the test; elsewhere it skips it. (The installed
    distribution, not ``import build``: a ``build/`` folder in the tree imports as a
    namespace package.)"""
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{distribution} is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    _require("build")
    tree = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT, tree, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".git", "build", "dist", "rmsprop-out"))
    # a cache of every kind a developer's tree has, which must not be packed
    for folder in (tree / "src" / "rmsprop", tree / "src" / "rmsprop" / "torch" / "kernels"):
        (folder / "__pycache__").mkdir(exist_ok=True)
        (folder / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"x")
        (folder / "__pycache__" / "kernel-1.py311.nbi").write_bytes(b"x")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                             str(out), str(tree)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def _no_tests_no_caches(names: list[str]) -> None:
    assert not [n for n in names if any(mark in n for mark in CACHE_MARKS)]
    assert not [n for n in names if "/tests/" in f"/{n}" or "test_" in n.rsplit("/", 1)[-1]]


def test_the_wheel_holds_the_package_its_data_and_the_licence(dists):
    from rmsprop import __version__

    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    for name in ("rmsprop/__init__.py", "rmsprop/py.typed", "rmsprop/data/hamlet.txt",
                 "rmsprop/torch/optimizer.py", "rmsprop/torch/kernels/fused_cpu.py",
                 "rmsprop/checkpoint/fileformat.py", "rmsprop/experiments/valley.py",
                 "rmsprop/torch/native/group_pass.cpp",  # compiled at first use
                 f"{info}/licenses/LICENSE", f"{info}/entry_points.txt"):
        assert name in names, name
    _no_tests_no_caches(names)
    assert metadata["Version"] == __version__
    assert metadata.get_all("Requires-Dist")[0] == "numpy>=2"
    core = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert core == ["numpy>=2"]
    assert {"torch", "jax", "fused", "triton", "lab", "test", "docs", "all"} <= set(
        metadata.get_all("Provides-Extra"))


def test_the_sdist_holds_the_sources_and_the_licence(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        names = ["/".join(n.split("/")[1:]) for n in sdist.getnames()]
    for name in ("pyproject.toml", "README.md", "LICENSE", "src/rmsprop/__init__.py",
                 "src/rmsprop/py.typed", "src/rmsprop/data/hamlet.txt",
                 "src/rmsprop/torch/native/group_pass.cpp"):
        assert name in names, name
    _no_tests_no_caches(names)
