"""`rmsprop report` writes one self-contained page that a real browser loads, images and all.

Needs Debian's Chromium: ``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

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
    result = CliRunner().invoke(cli.app, ["report", "--out", str(out), "--quick",
                                          "--only", "memory", "--only", "cold-start"])
    assert result.exit_code == 0, result.output
    return out / "report.html"


def test_report_is_self_contained(report, tmp_path):
    text = report.read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == 2
    assert all(src.startswith("data:image/png;base64,") for src in images)
    for name in ("memory", "cold-start"):
        assert f'id="{name}"' in text
    assert text.count('class="pass"') + text.count('class="fail"') >= 4  # summary + sections
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
