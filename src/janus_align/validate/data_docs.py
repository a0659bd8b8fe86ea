"""Data Docs that render offline: Great Expectations' site without its CDN assets, and a static index.

GX's pages load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs, and its index
builds its one table in JavaScript, so on an offline machine the index shows two tab links and
nothing else. `publish` copies the site GX built to reports/data_docs/ and makes every page stand on
its own: the remote `<script>`/`<link>` tags and CSS `url(http...)` go (and the inline scripts, which only drive those
libraries), the logo points at the copy GX ships under static/images/, and a small local stylesheet
(static/styles/janus_offline.css) styles the tables GX renders in plain HTML. The index becomes a
static page of this run's results: per split, its row and expectation counts, every check with its
outcome, and links to GX's validation page and suite page. Links to GX's documentation stay links.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from janus_align.validate.validate import SplitResult

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?https?://[^>]*>", re.IGNORECASE)
_REMOTE_CSS_URL = re.compile(r"url\(\s*[\"']?https?://[^)]*\)", re.IGNORECASE)
_REMOTE_LOGO = re.compile(r"(<img\b[^>]*\bsrc\s*=\s*[\"'])https?://[^\"']*/([\w.-]+\.png)[^\"']*", re.IGNORECASE)
STYLESHEET = "static/styles/janus_offline.css"
OFFLINE_CSS = """\
body{font-family:sans-serif;margin:0;color:#222}
.container-fluid{padding:1em 2em}
nav img{height:40px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.ok{color:#1a7f37}.FAIL{color:#c62828;font-weight:bold}.warn{color:#b26a00}
.tab-pane{display:block!important;opacity:1!important}
.sticky,.d-none{display:none}
"""


def offline_page(text: str, to_root: str) -> str:
    """One GX page without remote scripts and styles; `to_root` is the relative path to the site root."""
    prefix = "" if to_root in ("", ".") else to_root.rstrip("/") + "/"
    text = _SCRIPT.sub("", text)
    text = _REMOTE_LINK.sub("", text)
    text = _REMOTE_LOGO.sub(lambda m: f"{m.group(1)}{prefix}static/images/{m.group(2)}", text)
    text = _REMOTE_CSS_URL.sub("none", text)
    link = f'<link rel="stylesheet" href="{prefix}{STYLESHEET}">'
    return text.replace("</head>", f"{link}\n</head>", 1) if "</head>" in text else link + text


def _page_of(site: Path, pattern: str) -> str | None:
    found = sorted(site.glob(pattern))
    return found[-1].relative_to(site).as_posix() if found else None


def index_page(site: Path, results: Sequence[SplitResult], success: bool) -> str:
    """The static index: this run's results per split, linking GX's pages for each."""
    verdict = "passed" if success else "FAILED (critical expectations)"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Data Docs: collection validation</title>",
        f"<link rel='stylesheet' href='{STYLESHEET}'></head><body><div class='container-fluid'>",
        "<h1>Data Docs: collection validation</h1>",
        f"<p>Validation {html.escape(verdict)}. Great Expectations' own pages are linked per split "
        "(they render without the network too).</p>",
        "<table><tr><th>split</th><th>suite</th><th>rows</th><th>expectations passed</th><th>failed</th>"
        "<th>pages</th></tr>",
    ]
    for result in results:
        suite = f"janus_{result.split}"
        links = []
        validation = _page_of(site, f"validations/{suite}/**/*.html")
        if validation:
            links.append(f"<a href='{html.escape(validation)}'>validation result</a>")
        if (site / "expectations" / f"{suite}.html").is_file():
            links.append(f"<a href='expectations/{html.escape(suite)}.html'>expectation suite</a>")
        parts.append(
            f"<tr><td>{html.escape(result.split)}</td><td>{html.escape(suite)}</td><td>{result.rows}</td>"
            f"<td>{result.successful}/{result.evaluated}</td><td>{len(result.failures)}</td>"
            f"<td>{' | '.join(links)}</td></tr>"
        )
    parts.append("</table>")
    for result in results:
        parts.append(f"<h2>{html.escape(result.split)}</h2><table><tr><th>outcome</th><th>check</th></tr>")
        parts += [
            f"<tr><td class='{html.escape(state)}'>{html.escape(state)}</td><td>{html.escape(line)}</td></tr>"
            for state, line in result.checks
        ]
        parts.append("</table>")
        for failure in result.failures:
            parts.append(f"<pre>{html.escape(failure.describe())}</pre>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


def publish(gx_site: Path, target: Path, results: Sequence[SplitResult], success: bool) -> Path:
    """Copy GX's built site to `target`, every page made offline, with our static index; return it."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(gx_site, target)
    for page in target.rglob("*.html"):
        to_root = os.path.relpath(target, page.parent)
        page.write_text(offline_page(page.read_text(encoding="utf-8"), to_root), encoding="utf-8")
    for sheet in target.rglob("*.css"):  # GX's own stylesheet draws a remote logo
        sheet.write_text(_REMOTE_CSS_URL.sub("none", sheet.read_text(encoding="utf-8")), encoding="utf-8")
    (target / STYLESHEET).parent.mkdir(parents=True, exist_ok=True)
    (target / STYLESHEET).write_text(OFFLINE_CSS, encoding="utf-8")
    index = target / "index.html"
    index.write_text(index_page(target, results, success), encoding="utf-8")
    return index
