"""The documentation site's examples run, and every page it lists exists (the site itself is
built with warnings as errors by .ci/run: `mkdocs build --strict`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.+?)```", page.read_text(), re.S)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md") if _python_blocks(p)))
def test_the_python_examples_of_a_page_run(page, tmp_path, monkeypatch):
    """In order, in one namespace that holds the ``model`` and ``optimizer`` the pages speak
    of, in a scratch folder (the examples write files)."""
    torch = pytest.importorskip("torch")
    from rmsprop.torch import RMSprop

    monkeypatch.chdir(tmp_path)
    model = torch.nn.Linear(4, 2)
    optimizer = RMSprop(model.parameters(), lr=1e-2)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    namespace: dict = {"model": model, "optimizer": optimizer}
    for block in _python_blocks(DOCS / page):
        exec(compile(block, page, "exec"), namespace)
    if "opt" in namespace:  # the example stepped: the state it made is there
        assert namespace["opt"].state


def test_the_navigation_names_only_pages_that_exist():
    config = (ROOT / "mkdocs.yml").read_text()
    pages = re.findall(r":\s+(\S+\.md)\s*$", config, re.M)
    assert "index.md" in pages and "api/torch.md" in pages
    assert [p for p in pages if not (DOCS / p).is_file()] == []
