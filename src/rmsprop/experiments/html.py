"""One self-contained HTML page for a set of experiment results.

Every plot is embedded as a base64 ``data:`` URI and every experiment's JSON as a
``<script type="application/json">`` block, so the page can be mailed or opened offline without
the files beside it. Contradictions come first; a last section lists what the article says that
no experiment tests.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import platform
from pathlib import Path
from typing import Sequence

from ._base import Result, Table
from ._protocol import VERDICTS, headline
from .untested import UNTESTED

__all__ = ["render_report", "write_report", "headline", "ordered"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d2330; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } .meta { color: #667; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.88rem; }
th, td { border: 1px solid #ccd; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #eef1f6; }
.verdict-badge { color: #fff; padding: 0.1rem 0.5rem; border-radius: 0.3rem; font-weight: 600; }
.reproduced { background: #1f7a3a; } .contradicted { background: #b3261e; }
.inconclusive { background: #8a6d00; }
blockquote { border-left: 4px solid #99a; margin: 0.5rem 0; padding: 0.2rem 0.8rem; }
pre.json { max-height: 20rem; overflow: auto; font-size: 0.75rem; background: #f5f6f8; }
section { border-top: 2px solid #dde; margin-top: 2rem; padding-top: 0.5rem; }
.claim { font-style: italic; } .verdict { font-family: ui-monospace, monospace; font-size: 0.85rem;
  background: #f5f6f8; padding: 0.5rem; border-radius: 0.3rem; }
img { max-width: 100%; height: auto; border: 1px solid #e3e5ea; }
.notes li { color: #5a4a00; }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in table.rows)
    caption = f"<caption>{html.escape(table.title)}</caption>" if table.title else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(verdict: str) -> str:
    return f'<span class="verdict-badge {html.escape(verdict)}">{html.escape(verdict)}</span>'


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def ordered(results: Sequence[Result]) -> list[Result]:
    """Contradictions first, then inconclusive, then reproduced (stable within each)."""
    rank = {v: i for i, v in enumerate(VERDICTS)}
    return sorted(results, key=lambda r: rank.get(r.verdict, len(rank)))


def _section(r: Result) -> list[str]:
    doc = json.loads(Path(r.json).read_text())
    seeds = ("deterministic (nothing random)" if doc.get("deterministic")
             else f"{len(doc['seeds'])} paired seeds: {', '.join(map(str, doc['seeds']))}")
    parts = [f'<section id="{html.escape(r.name)}">',
             f"<h2>{html.escape(r.name)} {_badge(r.verdict)}</h2>",
             f'<p class="meta">article, section "{html.escape(doc["section"])}":</p>',
             f'<blockquote class="claim">{html.escape(r.claim)}</blockquote>',
             f"<p><b>Hypothesis tested:</b> {html.escape(doc['hypothesis'])}</p>",
             f"<p><b>Seeds:</b> {html.escape(seeds)}; {doc['settings']['steps']} steps"
             f"{' (demo settings)' if doc['settings']['quick'] else ''}.</p>"]
    crit = Table(["figure", "mean", "95% interval", "n", "claim", "threshold's rationale"],
                 [[c["figure"], _num(doc["figures"][c["figure"]]["mean"]),
                   f"[{_num(doc['figures'][c['figure']]['low'])}, "
                   f"{_num(doc['figures'][c['figure']]['high'])}]",
                   doc["figures"][c["figure"]]["n"], f"{c['op']} {c['threshold']:g}", c["why"]]
                  for c in doc["criteria"]], title="judged figures")
    parts.append(_table(crit))
    parts.append('<ul class="verdict">' + "".join(f"<li>{html.escape(x)}</li>" for x in r.reasons)
                 + "</ul>")
    if doc["optimizers"]:
        parts.append(_table(Table(
            ["optimizer", "lr grid", "best lr", "on the grid's edge", "score at the best lr"],
            [[name, ", ".join(f"{v:.3g}" for v in o["lr_grid"]), f"{o['best_lr']:.3g}",
              "YES" if o["best_lr_on_edge"] else "no",
              f"{_num(o['best']['mean'])} [{_num(o['best']['low'])}, {_num(o['best']['high'])}]"]
             for name, o in doc["optimizers"].items()], title="tuning (each optimizer its own grid)")))
    other = [k for k in doc["figures"] if k not in {c["figure"] for c in doc["criteria"]}]
    if other:
        parts.append(_table(Table(["other figure (not judged)", "mean", "95% interval"],
                                  [[k, _num(doc["figures"][k]["mean"]),
                                    f"[{_num(doc['figures'][k]['low'])}, "
                                    f"{_num(doc['figures'][k]['high'])}]"] for k in other])))
    if doc["sanity"]:
        parts.append(_table(Table(["sanity check (never the verdict)", "holds"],
                                  [[k, "yes" if v else "NO"] for k, v in doc["sanity"].items()])))
    for png in r.pngs:
        parts.append(_image(png, f"{r.name} plot"))
    for table in r.tables:
        parts.append(_table(table))
    if r.notes:
        parts.append('<ul class="notes">' + "".join(
            f"<li>{html.escape(n)}</li>" for n in r.notes) + "</ul>")
    embedded = json.dumps(doc, indent=1).replace("</", "<\\/")
    parts.append(f'<script type="application/json" id="json-{html.escape(r.name)}">'
                 f"{embedded}</script>")
    parts.append(f"<details><summary>the JSON ({html.escape(Path(r.json).name)}, embedded)"
                 f'</summary><pre class="json">{html.escape(json.dumps(doc, indent=1))}</pre>'
                 f"</details>")
    parts.append(f'<p class="meta">{r.seconds:.1f} s</p></section>')
    return parts


def render_report(results: Sequence[Result], *, title: str = "rmsprop: the article's claims, run") -> str:
    """The HTML text of the report."""
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    total = sum(r.seconds for r in results)
    results = ordered(results)
    rows = "".join(
        f'<tr><td><a href="#{html.escape(r.name)}">{html.escape(r.name)}</a></td>'
        f"<td>{_badge(r.verdict)}</td><td>{html.escape(r.finding)}</td>"
        f"<td>{'deterministic' if not r.seeds else len(r.seeds)}</td><td>{r.seconds:.1f}</td></tr>"
        for r in results)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{now} &middot; {html.escape(platform.platform())} &middot; '
        f"{total:.0f} s in all</p>",
        f'<p class="headline"><b>{html.escape(headline(results))}</b></p>',
        "<table><thead><tr><th>experiment</th><th>verdict</th><th>judged figures (mean "
        "[95% interval]) against the claim</th><th>seeds</th><th>seconds</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>",
    ]
    for r in results:
        parts.extend(_section(r))
    parts.append('<section id="untested"><h2>What the article says that no experiment tests</h2>'
                 + _table(Table(["sentence (verbatim)", "why not tested"],
                                [list(row) for row in UNTESTED])) + "</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: Sequence[Result], path: Path) -> Path:
    """Write :func:`render_report` to ``path``."""
    path = Path(path)
    path.write_text(render_report(results), encoding="utf-8")
    return path
