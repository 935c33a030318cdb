"""The README's set-up commands and .ci/run cannot drift apart; its Python examples run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_the_readme_test_command():
    install_and_run, install_and_test = readme_commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == install_and_test
    assert "pytest" in install_and_test and "pip install" in install_and_run


def test_main_job_command_names_something_that_exists():
    install_and_run = readme_commands()[0]
    for path in re.findall(r"python (\S+\.py)", install_and_run):
        assert (ROOT / path).is_file(), path
    assert "rmsprop demo" in install_and_run


def test_python_examples_run_in_order():
    """The README's Python blocks, run one after the other in one namespace (later blocks use
    the model of the first), do what their text says."""
    import torch

    blocks = re.findall(r"```python\n(.+?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    opt, model = namespace["opt"], namespace["model"]
    model(torch.randn(4, 10)).pow(2).mean().backward()
    opt.step()
    # 10 elements, under min_8bit_size: the state stays float32
    assert opt.state[model.weight]["square_avg"].dtype == torch.float32
    assert opt.param_groups[0]["state_precision"] == "8bit"
    import jax.numpy as jnp

    tx = namespace["tx"]
    params = {"w": jnp.ones(3)}
    updates, _ = tx.update(params, tx.init(params), params)
    assert updates["w"].shape == (3,) and bool(jnp.all(updates["w"] < 0))
