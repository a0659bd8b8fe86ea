"""The report stage on hand-made judgments: leaderboard numbers, win/tie matrix, plots, HTML, MLflow."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench_samples import judgment, official_rows, set_params, write_jsonl
from conftest import make_project, run_janus
from janus_align import tracking
from janus_align.bench.schema import bench_item
from janus_align.config import Params
from janus_align.errors import JanusError
from janus_align.evaluate.report import ModelResult, leaderboard, load_model_result
from janus_align.evaluate.responses import Response
from janus_align.seeding import derive_seed

# Per-item verdicts (the same for all 4 rubrics) of three models on 5 items.
VERDICTS = {
    "alpha": [5, 4, 4, 3, None],
    "beta": [4, 4, 2, 3, 2],
    "gamma": [1, 1, 1, 1, 1],
}


def _judgments(model: str) -> list:
    return [
        judgment(f"bench-{n}", rubric, verdict, model=model, feedback=f"feedback {model} {n} {rubric}", raw="...")
        for n, verdict in enumerate(VERDICTS[model])
        for rubric in range(4)
    ]


def _responses(model: str) -> list[dict]:
    return [{"id": f"bench-{n}", "source": "x", "model": model, "response": "r" * (10 * (n + 1))} for n in range(5)]


def test_leaderboard_scores_cis_and_win_tie_loss_matrix():
    items = [bench_item(row, "row", i) for i, row in enumerate(official_rows(5))]
    results = [
        ModelResult(m, _judgments(m), {r["id"]: Response(r["id"], r["response"]) for r in _responses(m)}, items)
        for m in VERDICTS
    ]
    params = Params.model_validate({"report": {"bootstrap_samples": 500, "tie_margin": 0.0}})
    board = leaderboard(results, params)
    alpha = board["models"]["alpha"]
    assert alpha["overall"] == pytest.approx(4.0)  # (5+4+4+3)/4: the unscored item is left out
    assert alpha["unscored"] == 4 and alpha["unscored_rate"] == pytest.approx(0.2)
    assert alpha["ci_low"] <= 4.0 <= alpha["ci_high"] and alpha["ci_low"] >= 3.0 and alpha["ci_high"] <= 5.0
    assert board["models"]["gamma"]["ci_low"] == board["models"]["gamma"]["ci_high"] == 1.0
    assert alpha["per_source"] == {
        "AlpacaEval": 5.0,
        "FLASK": 4.0,
        "Koala": 4.0,
        "MT-Bench": 3.0,
        "Self-Instruct": None,
    }
    assert alpha["per_dimension"]["style"] == pytest.approx(4.0)
    assert alpha["mean_response_length"] == 30.0
    assert board["ranking"] == ["alpha", "beta", "gamma"]
    matrix = board["win_tie_loss"]
    # alpha vs beta on the 4 items both scored: 5>4 win, 4=4 tie, 4>2 win, 3=3 tie.
    assert {k: matrix["alpha"]["beta"][k] for k in ("win", "tie", "loss", "n")} == {
        "win": 2,
        "tie": 2,
        "loss": 0,
        "n": 4,
    }
    assert {k: matrix["beta"]["alpha"][k] for k in ("win", "tie", "loss")} == {"win": 0, "tie": 2, "loss": 2}
    assert {k: matrix["beta"]["gamma"][k] for k in ("win", "tie", "loss", "n")} == {
        "win": 5,
        "tie": 0,
        "loss": 0,
        "n": 5,
    }
    loose = leaderboard(results, Params.model_validate({"report": {"tie_margin": 2.0, "bootstrap_samples": 50}}))
    assert loose["win_tie_loss"]["alpha"]["beta"]["tie"] == 4
    # The models' lengths differ: the LC score is the pooled fit's intercept, beside the raw mean.
    # alpha's 20% unscored is within the default limit; above a stricter one it is listed, not ranked.
    assert 3.0 < alpha["length_controlled"] < 5.0 and board["length_control"]["items"] == 14
    assert board["contenders"] == ["alpha", "beta", "gamma"] and alpha["lengths"]["median"] == 30.0
    strict = leaderboard(
        results, Params.model_validate({"judge": {"max_unscored_rate": 0.1}, "report": {"bootstrap_samples": 50}})
    )
    assert strict["ranking"][-1] == "alpha" and "alpha" not in strict["contenders"]
    assert strict["models"]["alpha"]["contender"] is False


@pytest.mark.slow
def test_report_stage_writes_leaderboard_plots_html_and_one_mlflow_run_per_model(tmp_path):
    project = make_project(tmp_path / "project")
    set_params(project, "generate", candidates=list(VERDICTS))
    write_jsonl(project / "artifacts/bench/bench.jsonl", official_rows(5))
    for model in VERDICTS:
        write_jsonl(project / f"artifacts/eval/judgments/{model}.jsonl", [j.model_dump() for j in _judgments(model)])
        write_jsonl(project / f"artifacts/eval/responses/{model}.jsonl", _responses(model))
    done = run_janus(project, "report", timeout=300)
    assert "report alpha: 4.000" in done.stdout and "unscored 4/20 (20.0%)" in done.stdout

    board = json.loads((project / "metrics/leaderboard.json").read_text())
    assert set(board["models"]) == {"alpha", "beta", "gamma"}
    assert board["models"]["alpha"]["overall"] == pytest.approx(4.0)
    assert board["win_tie_loss"]["alpha"]["beta"]["win"] == 2
    with (project / "plots/per_dimension.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:3] == ["model", "dimension", "score"] and len(rows) == 3 * 4
    with (project / "plots/per_source.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:3] == ["model", "source", "score"] and len(rows) == 3 * 5
    html = (project / "reports/eval/report.html").read_text()
    assert (
        html.count("data:image/png;base64,") == 4 and "<table>" in html and "alpha" in html
    )  # overall, lengths, per dimension, per source
    assert "length-controlled" in html and "Judge reliability" in html and "Response length" in html
    markdown = (project / "reports/eval/report.md").read_text()
    assert "| 1 | alpha | 4.00 |" in markdown
    assert all(
        (project / "reports/eval" / f"{name}.png").stat().st_size > 1000
        for name in ("overall", "per_dimension", "per_source")
    )

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["janus"], output_format="list")
    report_run = next(r for r in runs if r.info.run_name == "report")
    evaluate = {r.info.run_name: r for r in runs if r.info.run_name.startswith("evaluate-")}
    assert set(evaluate) == {"evaluate-alpha", "evaluate-beta", "evaluate-gamma"}
    alpha = evaluate["evaluate-alpha"]
    assert alpha.data.tags["mlflow.parentRunId"] == report_run.info.run_id
    assert alpha.data.tags["stage"] == "evaluate" and alpha.data.metrics["overall"] == pytest.approx(4.0)
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(alpha.info.run_id)}
    assert "per_item.json" in artifacts
    assert {a.path for a in client.list_artifacts(alpha.info.run_id, "report")} >= {
        "report/report.html",
        "report/report.md",
    }
    table = json.loads(Path(client.download_artifacts(alpha.info.run_id, "per_item.json", str(tmp_path))).read_text())
    assert {"prompt", "system", "response", "rubric_scores", "feedback"} <= set(table["columns"])
    assert len(table["data"]) == 5


def test_every_interval_resamples_whole_items_so_correlated_rubrics_widen_it():
    """Six items whose four rubrics all check `style` and agree within each item (5,5,5,5 or
    1,1,1,1): resampling rubrics one by one would count 24 independent scores, resampling items
    counts the 6 there are. The report's interval is the item (cluster) bootstrap, by hand here."""
    rows = official_rows(6)
    for row in rows:
        row["preference_set"] = [{**entry, "dimension": "style"} for entry in row["preference_set"]]
    items = [bench_item(row, "row", i) for i, row in enumerate(rows)]
    verdicts = [5, 1, 5, 1, 5, 5]
    judgments = [judgment(item.id, r, v, dimension="style") for item, v in zip(items, verdicts) for r in range(4)]
    params = Params.model_validate({"report": {"bootstrap_samples": 2000, "confidence": 0.9}})
    board = leaderboard([ModelResult("m", judgments, {i.id: Response(i.id, "x") for i in items}, items)], params)
    ci = board["models"]["m"]["per_dimension_ci"]["style"]

    def interval(values, seed):
        rng = np.random.default_rng(seed)
        means = np.asarray(values, dtype=float)[rng.integers(0, len(values), size=(2000, len(values)))].mean(axis=1)
        return tuple(np.quantile(means, [0.05, 0.95]))

    seed = derive_seed(params.seed, "bootstrap", "m", "dimension", "style")
    by_item = interval([float(v) for v in verdicts], seed)  # each item's 4 equal rubric scores travel together
    by_rubric = interval([float(v) for v in verdicts for _ in range(4)], seed)
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx(by_item)
    assert by_item[1] - by_item[0] > 1.5 * (by_rubric[1] - by_rubric[0])
    # The overall interval, over the same items, is that same item bootstrap.
    overall_seed = derive_seed(params.seed, "bootstrap", "m", "overall")
    assert (board["models"]["m"]["ci_low"], board["models"]["m"]["ci_high"]) == pytest.approx(
        interval([float(v) for v in verdicts], overall_seed)
    )


def test_a_judgments_file_with_a_renamed_key_fails_naming_its_file_and_line(tmp_path, monkeypatch):
    """`verdict` renamed to `score`: an error naming file:line, not a file of unscored verdicts."""
    monkeypatch.chdir(tmp_path)
    items = [bench_item(row, "row", i) for i, row in enumerate(official_rows(2))]
    rows = [j.model_dump() for j in _judgments("alpha")[:8]]
    rows[5]["score"] = rows[5].pop("verdict")
    write_jsonl(tmp_path / "artifacts/eval/judgments/alpha.jsonl", rows)
    write_jsonl(tmp_path / "artifacts/eval/responses/alpha.jsonl", _responses("alpha")[:2])
    with pytest.raises(JanusError, match=r"artifacts/eval/judgments/alpha\.jsonl:6: .*(verdict|score)"):
        load_model_result("alpha", items)


def test_mlflow_metrics_are_the_finite_numbers_of_the_flattened_entry():
    entry = {"overall": 3.5, "judge_model": "j", "per_source": {"Alpha-nlg (art)": 4, "Koala": None}, "ok": True}
    assert tracking.metrics(entry) == {"overall": 3.5, "per_source.Alpha-nlg _art_": 4.0}
    assert tracking.metrics({"loss": float("nan"), "steps": 3}, "final/") == {"final/steps": 3.0}
