"""What each part of the package needs: NumPy alone for the core, a named extra for the rest.

A missing package is simulated in a fresh interpreter by ``sys.modules[name] = None``, which
makes ``import name`` fail as it does where the package is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
OPTIONAL = ("torch", "safetensors", "jax", "optax", "numba", "triton", "matplotlib", "rich",
            "typer", "sklearn", "gymnasium", "scipy")


def _python(code: str, blocked: tuple[str, ...] = (), env: dict[str, str] | None = None):
    prelude = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environment.update(PYTHONPATH=str(SRC), **(env or {}))
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, env=environment)


def test_the_core_steps_with_numpy_alone():
    """spec, reference and rmsprop.numpy import and step with every optional package absent,
    and import none of them."""
    result = _python("""
        import numpy as np
        import rmsprop, rmsprop.numpy, rmsprop.reference, rmsprop.spec
        params = {"w": np.ones(3, dtype=np.float32)}
        opt = rmsprop.numpy.RMSprop(params, lr=0.1, momentum=0.9)
        grads = [np.array([1.0, -2.0, 0.5], dtype=np.float32)] * 3
        for g in grads:
            opt.step({"w": g})
        spec = rmsprop.resolve(lr=0.1, momentum=0.9)
        expected, _ = rmsprop.reference.run(np.ones(3), grads, spec, [0.1] * 3)
        assert np.allclose(params["w"], expected, rtol=1e-6), (params["w"], expected)
        print(sorted({m.split(".")[0] for m, v in sys.modules.items() if v} & set(%r)))
    """ % (OPTIONAL,), blocked=OPTIONAL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module, blocked, extra", [
    ("rmsprop.torch", ("torch",), "torch"),
    ("rmsprop.checkpoint", ("safetensors",), "torch"),
    ("rmsprop.optax", ("optax",), "jax"),
    ("rmsprop.optax", ("jax",), "jax"),
    ("rmsprop.cli", ("typer",), "lab"),
    ("rmsprop.experiments", ("matplotlib",), "lab"),
])
def test_a_part_whose_extra_is_missing_names_the_extra(module, blocked, extra):
    result = _python(f"import {module}", blocked=blocked)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: {module if module != 'rmsprop.cli' else 'the rmsprop command'} needs ")
    assert f"pip install 'rmsprop[{extra}]'" in last, last


@pytest.mark.slow  # 3-6 s (a compiler or a subprocess): the whole suite runs it
def test_the_torch_drop_in_without_numba_runs_torch_s_path():
    """No numba: impl="auto" takes the loop path with no error, impl_of says so, and the
    numbers are torch.optim.RMSprop's, bit for bit."""
    result = _python("""
        import torch
        from rmsprop.torch import RMSprop
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(40))
        q = torch.nn.Parameter(p.detach().clone())
        ours = RMSprop([p], lr=1e-2, momentum=0.9, centered=True)
        theirs = torch.optim.RMSprop([q], lr=1e-2, momentum=0.9, centered=True)
        for _ in range(10):
            g = torch.randn(40)
            p.grad, q.grad = g.clone(), g.clone()
            ours.step()
            theirs.step()
        print(ours.impl_of(ours.param_groups[0]), torch.equal(p, q))
    """, blocked=("numba",))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["loop", "True"]


def test_importing_the_torch_drop_in_does_not_import_dynamo():
    """torch.compile's machinery (torch._dynamo, seconds to import) is loaded on the first
    fused step, not by ``import rmsprop.torch``."""
    result = _python("""
        import rmsprop.torch, rmsprop.checkpoint
        print("torch._dynamo" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


def test_the_declared_ranges_hold_the_tested_releases():
    """Core: NumPy 2 only (NEP 50 promotion is what float32 exactness needs); the torch
    extra's range holds the release pinned by constraints-cpu.txt and the one installed."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == ["numpy>=2"]
    torch_req = next(Requirement(r) for r in project["optional-dependencies"]["torch"]
                     if r.startswith("torch"))
    pins = [Requirement(line) for line in (ROOT / "constraints-cpu.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    pinned = next(str(s.version) for r in pins if r.name == "torch" for s in r.specifier)
    assert torch_req.specifier.contains(pinned), (torch_req, pinned)
    assert torch_req.specifier.contains(version("torch").split("+")[0])


def _cache_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["NUMBA_CACHE_DIR", "XDG_CACHE_HOME"])
def test_numba_caches_the_kernels_outside_the_package(tmp_path, where):
    """NUMBA_CACHE_DIR when set, else numba's user-wide cache directory; never the package."""
    package_before = _cache_files(SRC / "rmsprop")
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    if where == "NUMBA_CACHE_DIR":
        env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-dir")
    result = _python("""
        import torch
        from rmsprop.torch import RMSprop
        p = torch.nn.Parameter(torch.ones(8))
        opt = RMSprop([p], impl="fused", momentum=0.5, amsgrad=True)
        p.grad = torch.ones(8)
        opt.step()
    """, env=env)
    assert result.returncode == 0, result.stderr
    target = tmp_path / ("numba-dir" if where == "NUMBA_CACHE_DIR" else "xdg/numba")
    assert _cache_files(target), list(tmp_path.rglob("*"))
    assert _cache_files(SRC / "rmsprop") <= package_before
