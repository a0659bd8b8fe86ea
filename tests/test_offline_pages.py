"""Pages the project writes for people render without the network: no remote script or style."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from bench_samples import official_rows
from janus_align.bench.schema import bench_item
from janus_align.config import Params
from janus_align.evaluate.report import ModelResult, draw_charts, leaderboard, render_html
from janus_align.evaluate.responses import Response
from janus_align.validate import validate
from test_report import VERDICTS, _judgments, _responses
from test_validate import BUNDLED_BENCH_PROMPTS, collection, write_collection

REPO = Path(__file__).resolve().parents[1]
# What a browser fetches by itself: scripts, stylesheets, images, CSS url(); plain links are fine.
REMOTE_ASSET = re.compile(
    r"<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*[\"']?https?://|url\(\s*[\"']?https?://", re.IGNORECASE
)


def remote_assets(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in [*root.rglob("*.html"), *root.rglob("*.css")]:
        hits = [m.group(0) for m in REMOTE_ASSET.finditer(path.read_text(encoding="utf-8"))]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def test_data_docs_load_nothing_from_the_network_and_the_index_lists_every_split(tmp_path, monkeypatch):
    (tmp_path / "data" / "bench").mkdir(parents=True)
    shutil.copy(BUNDLED_BENCH_PROMPTS, tmp_path / "data" / "bench" / "prompts.jsonl")
    monkeypatch.chdir(tmp_path)
    write_collection(tmp_path, collection(instructions=4))
    validate.run(Params())
    docs = tmp_path / "reports" / "data_docs"
    assert remote_assets(docs) == {}  # GX's pages took Bootstrap, jQuery, Vega and fonts from CDNs
    index = (docs / "index.html").read_text()
    for split in ("sft", "sft_small", "dpo", "orpo", "rm"):
        # The index is a static table now (GX's was built by JavaScript from a CDN): each split, its pages.
        assert f"<td>janus_{split}</td>" in index and (docs / "expectations" / f"janus_{split}.html").is_file()
    links = re.findall(r"href='(validations/[^']+)'", index)
    assert len(links) == 5 and all((docs / link).is_file() for link in links)
    page = (docs / links[0]).read_text()
    assert "<table" in page and "static/styles/janus_offline.css" in page


def test_the_report_shows_every_dvc_plot_as_an_image_and_loads_nothing_remote(tmp_path):
    """`dvc plots show` needs vega from a CDN; the report draws each declared plot itself."""
    items = [bench_item(row, "row", i) for i, row in enumerate(official_rows(5))]
    results = [
        ModelResult(m, _judgments(m), {r["id"]: Response(r["id"], r["response"]) for r in _responses(m)}, items)
        for m in VERDICTS
    ]
    board = leaderboard(results, Params.model_validate({"report": {"bootstrap_samples": 50}}))
    charts = draw_charts(board, tmp_path)
    page = render_html(board, charts, "judge@test")
    declared = [
        Path(next(iter(p))).stem for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]["plots"]
    ]
    assert declared == ["per_dimension", "per_source"]
    for name in declared:
        assert charts[name].stat().st_size > 1000 and f"<img alt='{name}' src='data:image/png;base64," in page
    assert REMOTE_ASSET.search(page) is None


@pytest.mark.parametrize("text", ["<script src='https://cdn.x/y.js'></script>", '<link href="http://a/b.css">'])
def test_the_check_itself_sees_remote_assets(text):
    assert REMOTE_ASSET.search(text)
