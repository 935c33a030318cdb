"""`rmsprop report` writes one self-contained page that a real browser loads, images and all.

Needs Debian's Chromium: ``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from rmsprop import cli

pytestmark = pytest.mark.slow  # runs every experiment, then a browser

CHECK = """<script>
function rmspropCheck() {
  const imgs = Array.from(document.images);
  const out = document.createElement('pre');
  out.id = 'imgcheck';
  out.textContent = JSON.stringify({count: imgs.length,
    widths: imgs.map(i => (i.complete ? i.naturalWidth : -1))});
  document.body.appendChild(out);
}
if (document.readyState === 'complete') rmspropCheck();
else window.addEventListener('load', rmspropCheck);
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed for the HTML report test: "
                "run `apt-get update && apt-get install -y chromium`")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(cli.app, ["report", "--out", str(out), "--quick", "--jobs", "2",
                                          "--only", "adam-beta1-zero", "--only", "graves-nesterov"])
    assert result.exit_code == 0, result.output
    return out / "report.html"


def test_report_is_self_contained(report, tmp_path):
    text = report.read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == 2
    assert all(src.startswith("data:image/png;base64,") for src in images)
    for name in ("adam-beta1-zero", "graves-nesterov"):
        assert f'id="{name}"' in text
        # the experiment's JSON is embedded in the page, and it is the file written beside it
        block = re.search(rf'<script type="application/json" id="json-{name}">(.*?)</script>',
                          text, re.S)
        assert block, name
        embedded = json.loads(block.group(1))
        assert embedded["verdict"] == json.loads((report.parent / f"{name}.json").read_text())["verdict"]
        assert html.escape(embedded["claim"]) in text
    assert text.count('class="verdict-badge ') >= 4  # summary + sections
    assert 'id="untested"' in text  # what the article says that nothing tests
    # self-contained: it still works with nothing beside it
    alone = tmp_path / "alone.html"
    alone.write_text(text)
    assert "<table>" in alone.read_text()


def test_report_loads_in_headless_chromium_with_every_image(report, tmp_path):
    browser = _chromium()
    page = tmp_path / "checked.html"
    page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "profile"
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', done.stdout)
    assert found, "the check script did not run: " + done.stdout[-1000:]
    check = json.loads(found.group(1))
    assert check["count"] == 2
    assert all(width > 100 for width in check["widths"]), check
    assert "rmsprop: the article" in done.stdout  # the title rendered
