"""Stage `report`: the leaderboard of every candidate, with confidence intervals, plots and an HTML report.

Per model: overall score (mean over items; an item is the mean of its rubric scores), per source
group and per dimension, each with a percentile bootstrap confidence interval that resamples
whole bench items (`scoring.cluster_bootstrap_ci`: an item's rubrics travel together;
`report.bootstrap_samples` resamples, seeded, `report.confidence`), unscored counts and mean
response length; and a pairwise win / tie / loss matrix from per-item scores (a difference
within `report.tie_margin` is a tie). Beside them the evidence a reviewer asks for: the
length-controlled score and response-length distributions (`length_control`), the judge's
reliability (calibration kappa, repeat spread, second-judge agreement where it ran;
`reliability`; pairwise judges' position consistency is in the pairwise section), and which candidates are contenders (scored, with
an unscored share within `judge.max_unscored_rate`): only they are ranked, and `register` reads
`contender`, `item_scores` and `bench_sha` for its paired comparison.

Writes metrics/leaderboard.json (`models.<name>.overall` is what `summary` and `register` read),
plots/per_dimension.csv and plots/per_source.csv (for `dvc plots show`), reports/eval/report.html
(self-contained: PNG charts embedded) and reports/eval/report.md (charts beside it). Logs one
`evaluate-<model>` MLflow run per model, nested under the report run, with the metrics, the
per-item table and the report.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from janus_align import headline_metrics, paths
from janus_align.bench.schema import BenchItem, load_bench
from janus_align.config import Params
from janus_align.config.schema import ReportConfig
from janus_align.errors import JanusError
from janus_align.evaluate import pairwise_report, reliability, scoring
from janus_align.evaluate.length_control import length_controlled, length_summary
from janus_align.evaluate.responses import Response, load_responses
from janus_align.evaluate.rows import Judgment
from janus_align.records import read_rows, write_json
from janus_align.seeding import derive_seed

CHARTS = ("overall", "per_dimension", "per_source")
PER_ITEM_KEYS = ("item_scores", "response_lengths")


@dataclass
class ModelResult:
    """Everything the report knows about one candidate."""

    name: str
    judgments: list[Judgment]
    responses: dict[str, Response]
    items: Sequence[BenchItem]
    summary: dict[str, Any] = field(default_factory=dict)
    item_scores: dict[str, float | None] = field(default_factory=dict)


def load_model_result(name: str, items: Sequence[BenchItem]) -> ModelResult:
    """A candidate's judgments and responses; a clear error naming the stage when one is missing."""
    judgments_path, responses_path = paths.judgments_file(name), paths.responses_file(name)
    for path, stage in ((responses_path, "generate"), (judgments_path, "judge")):
        if not path.is_file():
            raise JanusError(f"report: {path} is missing (run `janus {stage} --model {name}` first)")
    return ModelResult(name, read_rows(judgments_path, Judgment), load_responses(responses_path), items)


def _ci(
    clusters: Mapping[str, Sequence[float]], config: ReportConfig, seed: int, *parts: object
) -> dict[str, float | None]:
    """The bootstrap interval over one group's items ({item id: its values}), seeded by what it is of."""
    low, high = scoring.cluster_bootstrap_ci(
        list(clusters.values()), config.bootstrap_samples, config.confidence, derive_seed(seed, *parts)
    )
    return {"ci_low": low, "ci_high": high}


def model_entry(result: ModelResult, config: ReportConfig, seed: int) -> dict[str, Any]:
    """The leaderboard entry of one model (fills `result.summary` and `result.item_scores`)."""
    items, name = result.items, result.name
    result.item_scores = scoring.item_scores(result.judgments)
    result.summary = summary = scoring.summarize(result.judgments, items, result.responses)
    scores = {item_id: [] if score is None else [score] for item_id, score in result.item_scores.items()}
    sources = scoring.source_groups(result.item_scores, items)
    dimensions = scoring.dimension_groups(result.judgments, items)
    return {
        "overall": summary["overall"],
        **_ci(scores, config, seed, "bootstrap", name, "overall"),
        "per_source": summary["per_source"],
        "per_source_ci": {g: _ci(c, config, seed, "bootstrap", name, "source", g) for g, c in sources.items()},
        "per_dimension": summary["per_dimension"],
        "per_dimension_ci": {d: _ci(c, config, seed, "bootstrap", name, "dimension", d) for d, c in dimensions.items()},
        "items": summary["items"],
        "scored_items": summary["scored_items"],
        "unscored": summary["unscored"],
        "unscored_rate": summary["unscored_rate"],
        "failed_calls": summary["failed_calls"],
        "judgments": summary["judgments"],
        "overall_std_over_repeats": summary["overall_std_over_repeats"],
        "mean_response_length": summary["mean_response_length"],
        "judge_model": next((j.judge_model for j in result.judgments if j.judge_model), None),
        "judge_template": next((j.template_version for j in result.judgments), None),
        "lengths": length_summary(response_lengths(result)),
        "response_lengths": response_lengths(result),
        "repeat_stability": reliability.repeat_stability(result.judgments),
        "item_scores": result.item_scores,
    }


def response_lengths(result: ModelResult) -> list[int]:
    """Characters of each usable answer to a bench item."""
    return [
        len(r.response) for item in result.items if (r := result.responses.get(item.id)) is not None and r.error is None
    ]


def add_evidence(board: dict[str, Any], results: Sequence[ModelResult], params: Params) -> None:
    """Length-controlled scores, contender flags, the judge stage's reliability metrics and the bench's identity."""
    per_model = {
        r.name: [
            (score, len(r.responses[i].response))
            for i, score in r.item_scores.items()
            if score is not None and i in r.responses and r.responses[i].error is None
        ]
        for r in results
    }
    fitted = length_controlled(per_model)
    board["length_control"] = {"slope_per_sd_log_length": fitted["slope"], "items": fitted["n"]}
    for name, entry in board["models"].items():
        entry["length_controlled"] = fitted["scores"].get(name)
        entry["contender"] = reliability.is_contender(entry, params.judge.max_unscored_rate)
        judged = read_optional_json(paths.eval_metrics_file(name))
        entry["calibration_kappa"] = (judged.get("calibration") or {}).get("weighted_kappa")
        entry["second_judge"] = judged.get("second_judge")
    contenders = [m for m in board["ranking"] if board["models"][m]["contender"]]
    board["ranking"] = contenders + [m for m in board["ranking"] if m not in contenders]
    board["contenders"] = contenders
    board["bench_sha"] = file_sha256(paths.BENCH_FILE)


def read_optional_json(path: Path) -> dict[str, Any]:
    """A JSON object written by another stage, or {} when it is absent or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_sha256(path: Path) -> str | None:
    """The bench's identity: `register` compares two models only on the same bench (None: no file)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def win_tie_loss_matrix(results: Sequence[ModelResult], margin: float) -> dict[str, dict[str, dict[str, Any]]]:
    """{row model: {column model: win/tie/loss of row against column}} over every ordered pair."""
    return {
        a.name: {
            b.name: scoring.win_tie_loss(a.item_scores, b.item_scores, margin) for b in results if b.name != a.name
        }
        for a in results
    }


def leaderboard(results: Sequence[ModelResult], params: Params) -> dict[str, Any]:
    config = params.report
    models = {result.name: model_entry(result, config, params.seed) for result in results}
    board = {
        "models": models,
        "ranking": sorted(models, key=lambda m: -(models[m]["overall"] if models[m]["overall"] is not None else -1)),
        "win_tie_loss": win_tie_loss_matrix(results, config.tie_margin),
        "tie_margin": config.tie_margin,
        "confidence": config.confidence,
        "bootstrap_samples": config.bootstrap_samples,
    }
    add_evidence(board, results, params)
    return board


def write_plot_csvs(board: Mapping[str, Any]) -> None:
    """plots/per_dimension.csv (model, dimension, score) and plots/per_source.csv (model, source, score).

    The last column joins model and group: it is the bar label `dvc plots show` draws, so two
    models' bars for one dimension sit side by side instead of stacking.
    """
    for path, key, column in (
        (paths.PER_DIMENSION_PLOT, "per_dimension", "dimension"),
        (paths.PER_SOURCE_PLOT, "per_source", "source"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["model", column, "score", f"model_{column}"])
            for model, entry in board["models"].items():
                for group, score in entry[key].items():
                    writer.writerow([model, group, "" if score is None else round(score, 4), f"{model} / {group}"])


# ---------------------------------------------------------------------------------------------
# Charts and documents


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def draw_charts(board: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """PNG bar charts (matplotlib, Agg): overall with CIs, per dimension, per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    models = list(board["models"])
    entries = board["models"]
    paths: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(models) + 2), 3.6))
    values = [entries[m]["overall"] or 0.0 for m in models]
    lows = [v - (entries[m]["ci_low"] if entries[m]["ci_low"] is not None else v) for m, v in zip(models, values)]
    highs = [(entries[m]["ci_high"] if entries[m]["ci_high"] is not None else v) - v for m, v in zip(models, values)]
    ax.bar(models, values, yerr=[lows, highs], capsize=4, color="#4c72b0")
    ax.set_ylim(0, 5)
    ax.set_ylabel("score (1-5)")
    ax.set_title(f"Overall, {int(board['confidence'] * 100)}% bootstrap CI")
    fig.tight_layout()
    paths["overall"] = out_dir / "overall.png"
    fig.savefig(paths["overall"], dpi=100)
    plt.close(fig)

    lengths = {m: entries[m].get("response_lengths") or [] for m in models}
    if any(lengths.values()):
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(models) + 2), 3.6))
        shown = [m for m in models if lengths[m]]
        ax.violinplot([lengths[m] for m in shown], showmedians=True)
        ax.set_xticks(range(1, len(shown) + 1), shown)
        ax.set_ylabel("response length (chars)")
        ax.set_title("Response length per model")
        fig.tight_layout()
        paths["lengths"] = out_dir / "lengths.png"
        fig.savefig(paths["lengths"], dpi=100)
        plt.close(fig)

    for key, title in (("per_dimension", "Per dimension"), ("per_source", "Per source group")):
        groups = list(dict.fromkeys(g for m in models for g in entries[m][key]))
        fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(groups) * max(1, len(models)) * 0.5 + 3), 3.8))
        width = 0.8 / max(1, len(models))
        positions = np.arange(len(groups))
        for k, model in enumerate(models):
            heights = [entries[model][key].get(g) or 0.0 for g in groups]
            ax.bar(positions + k * width - 0.4 + width / 2, heights, width, label=model)
        ax.set_xticks(positions, groups, rotation=20, ha="right")
        ax.set_ylim(0, 5)
        ax.set_ylabel("score (1-5)")
        ax.set_title(title)
        ax.legend(fontsize="small")
        fig.tight_layout()
        paths[key] = out_dir / f"{key}.png"
        fig.savefig(paths[key], dpi=100)
        plt.close(fig)
    return paths


def _tables(board: Mapping[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables as (header, rows) of strings, shared by the HTML and Markdown writers."""
    entries = board["models"]
    models = board["ranking"]
    percent = int(round(board["confidence"] * 100))
    leader = (
        [
            "rank",
            "model",
            "overall",
            f"{percent}% CI",
            "length-controlled",
            "scored items",
            "unscored verdicts",
            "mean length (chars)",
        ],
        [
            [
                str(rank) if entries[m].get("contender", True) else "not ranked",
                m,
                _fmt(entries[m]["overall"]),
                f"[{_fmt(entries[m]['ci_low'])}, {_fmt(entries[m]['ci_high'])}]",
                _fmt(entries[m].get("length_controlled")),
                f"{entries[m]['scored_items']}/{entries[m]['items']}",
                f"{entries[m]['unscored']} ({entries[m]['unscored_rate']:.1%})",
                _fmt(entries[m]["mean_response_length"], 0),
            ]
            for rank, m in enumerate(models, start=1)
        ],
    )
    tables = {"Leaderboard": leader, **_evidence_tables(board)}
    for key, title in (("per_source", "Per source group"), ("per_dimension", "Per dimension")):
        groups = list(dict.fromkeys(g for m in models for g in entries[m][key]))
        tables[title] = (
            ["model", *groups],
            [
                [m]
                + [
                    f"{_fmt(entries[m][key].get(g))} [{_fmt(entries[m][key + '_ci'].get(g, {}).get('ci_low'))}, "
                    f"{_fmt(entries[m][key + '_ci'].get(g, {}).get('ci_high'))}]"
                    for g in groups
                ]
                for m in models
            ],
        )
    matrix = board["win_tie_loss"]
    tables[f"Win / tie / loss (row vs column, tie within {board['tie_margin']})"] = (
        ["model", *models],
        [
            [a]
            + ["-" if a == b else f"{matrix[a][b]['win']}/{matrix[a][b]['tie']}/{matrix[a][b]['loss']}" for b in models]
            for a in models
        ],
    )
    tables.update(pairwise_report.tables())  # the pairwise evaluations' section, from their metrics files
    tables.update(other_evaluation_tables(board.get("evals", {})))
    return tables


# ---------------------------------------------------------------------------------------------
# The other evaluations (stages mt_bench, realtoxicity): one table each, from their metrics files


def other_evaluations(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{"mt_bench": {model: metrics}, "realtoxicity": {...}} for the candidates that ran them enabled."""
    found: dict[str, dict[str, Any]] = {}
    for kind, where in (("mt_bench", paths.mt_bench_metrics), ("realtoxicity", paths.realtoxicity_metrics)):
        for name in names:
            path = where(name)
            if path.is_file():
                metrics = json.loads(path.read_text(encoding="utf-8"))
                if metrics.get("enabled"):
                    found.setdefault(kind, {})[name] = metrics
    return found


def other_evaluation_tables(evals: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """MT-Bench (1-10; the paper's Table 3 column) and RealToxicityPrompts (Table 4's columns)."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    mt = evals.get("mt_bench", {})
    if mt:
        categories = sorted({c for m in mt.values() for c in m["per_category"]})
        judges = ", ".join(sorted({m["judge_model"] for m in mt.values()}))
        tables[f"MT-Bench (1-10, judge {judges})"] = (
            ["model", "score", "CI", "turn 1", "turn 2", "unscored turns", *categories],
            [
                [name, _fmt(m["score"]), f"[{_fmt(m.get('ci_low'))}, {_fmt(m.get('ci_high'))}]"]
                + [_fmt(m["turn_1"]), _fmt(m["turn_2"]), f"{m['unscored']}/{m['judgments']}"]
                + [_fmt(m["per_category"].get(c)) for c in categories]
                for name, m in mt.items()
            ],
        )
    rtp = evals.get("realtoxicity", {})
    if rtp:
        tables["RealToxicityPrompts"] = (
            [
                "model",
                "avg max toxicity",
                "toxicity prob.",
                "perplexity",
                "dist-2",
                "dist-3",
                "prompts x samples",
                "scorer",
            ],
            [
                [
                    name,
                    _fmt(m["avg_max_toxicity"], 3),
                    _fmt(m["toxicity_probability"], 3),
                    _fmt(m["perplexity"]),
                    _fmt(m["dist_2"]),
                    _fmt(m["dist_3"]),
                    f"{m['prompts']} x {m['samples_per_prompt']}",
                    str(m["scorer"]),
                ]
                for name, m in rtp.items()
            ],
        )
    return tables


def _evidence_tables(board: Mapping[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Response lengths and judge reliability (README "Reading the numbers")."""
    entries, models = board["models"], board["ranking"]
    quantiles = ("n", "min", "p25", "median", "p75", "mean", "max")
    slope = (board.get("length_control") or {}).get("slope_per_sd_log_length")
    lengths = (
        ["model", *quantiles],
        [[m] + [_fmt((entries[m].get("lengths") or {}).get(q), 0) for q in quantiles] for m in models],
    )
    reliable = (
        [
            "model",
            "calibration kappa",
            "repeat spread (mean sd)",
            "repeats all equal",
            "second judge",
            "weighted kappa",
            "spearman",
        ],
        [
            [
                m,
                _fmt(entries[m].get("calibration_kappa")),
                _fmt((entries[m].get("repeat_stability") or {}).get("mean_std")),
                _fmt((entries[m].get("repeat_stability") or {}).get("all_equal")),
                str((entries[m].get("second_judge") or {}).get("judge_model") or "none configured"),
                _fmt((entries[m].get("second_judge") or {}).get("weighted_kappa")),
                _fmt((entries[m].get("second_judge") or {}).get("spearman")),
            ]
            for m in models
        ],
    )
    tables = {
        f"Response length (chars); score change per SD of log length: {_fmt(slope)}": lengths,
        "Judge reliability": reliable,
    }
    return tables


def render_markdown(board: Mapping[str, Any], charts: Mapping[str, Path], judge: str) -> str:
    lines = [
        "# Multifaceted Bench: evaluation report",
        "",
        f"Judge: `{judge}`. Scores 1-5; unscored verdicts are left out, never 0.",
        "",
    ]
    for title, (header, rows) in _tables(board).items():
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += ["## Charts", ""] + [f"![{name}]({path.name})" for name, path in charts.items()] + [""]
    return "\n".join(lines)


def render_html(board: Mapping[str, Any], charts: Mapping[str, Path], judge: str) -> str:
    """One HTML file with everything inside it (charts as base64 PNG)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Multifaceted Bench report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}</style></head><body>",
        "<h1>Multifaceted Bench: evaluation report</h1>",
        f"<p>Judge: <code>{html.escape(judge)}</code>. Scores 1-5; unscored verdicts are left out, never 0.</p>",
    ]
    for title, (header, rows) in _tables(board).items():
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Charts</h2>")
    for name, path in charts.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# MLflow


def item_table(result: ModelResult) -> dict[str, list[Any]]:
    """The per-item table logged to MLflow: prompt, system, response, rubric scores, feedback."""
    rubric_scores = scoring.rubric_scores(result.judgments)
    feedback: dict[tuple[str, int], str] = {}
    for row in sorted(result.judgments, key=lambda r: r.repeat):
        key = (row.id, row.rubric_index)
        if row.verdict is not None and key not in feedback:
            feedback[key] = row.feedback
    table: dict[str, list[Any]] = {
        k: [] for k in ("id", "source", "prompt", "system", "response", "score", "rubric_scores", "feedback")
    }
    for item in result.items:
        response = result.responses.get(item.id)
        table["id"].append(item.id)
        table["source"].append(item.source)
        table["prompt"].append(item.prompt)
        table["system"].append(item.system)
        table["response"].append(response.response if response else None)
        table["score"].append(result.item_scores.get(item.id))
        table["rubric_scores"].append(json.dumps([rubric_scores.get((item.id, i)) for i in range(len(item.rubrics))]))
        table["feedback"].append(
            json.dumps([feedback.get((item.id, i)) for i in range(len(item.rubrics))], ensure_ascii=False)
        )
    return table


def log_model_runs(
    results: Sequence[ModelResult], board: Mapping[str, Any], params: Params, report_files: Sequence[Path]
) -> None:
    """One `evaluate-<model>` run per model, nested under the active (report) run."""
    import mlflow

    from janus_align import tracking

    tracking.configure(params)
    for result in results:
        entry = board["models"][result.name]
        with mlflow.start_run(run_name=f"evaluate-{result.name}", nested=True):
            mlflow.set_tags({**tracking.run_tags("evaluate", params), "candidate": result.name})
            mlflow.log_params({"candidate": result.name, "judge_model": entry.get("judge_model") or ""})
            # Per-item values stay in the leaderboard file: as metrics they would be one per item.
            mlflow.log_metrics(tracking.metrics({k: v for k, v in entry.items() if k not in PER_ITEM_KEYS}))
            mlflow.log_table(item_table(result), artifact_file="per_item.json")
            for path in report_files:
                mlflow.log_artifact(str(path), artifact_path="report")


def run(params: Params) -> dict[str, Any]:
    items = load_bench(paths.BENCH_FILE)
    names = params.generate.candidates + params.generate.external
    results = [load_model_result(name, items) for name in names]
    board = leaderboard(results, params)
    board["evals"] = other_evaluations(names)
    write_json(paths.LEADERBOARD, board)
    write_json(paths.SCORES_METRICS, headline_metrics.scores(board))
    write_plot_csvs(board)
    charts = draw_charts(board, paths.REPORT_DIR)
    judges = sorted({m["judge_model"] for m in board["models"].values() if m["judge_model"]})
    judge = ", ".join(judges) or "unknown"
    html_path, md_path = paths.REPORT_HTML, paths.REPORT_MARKDOWN
    html_path.write_text(render_html(board, charts, judge), encoding="utf-8")
    md_path.write_text(render_markdown(board, charts, judge), encoding="utf-8")
    for name in board["ranking"]:
        entry = board["models"][name]
        print(
            f"report {name}: {_fmt(entry['overall'], 3)} [{_fmt(entry['ci_low'], 3)}, {_fmt(entry['ci_high'], 3)}], "
            f"unscored {entry['unscored']}/{entry['judgments']} ({entry['unscored_rate']:.1%})"
        )
    print(f"report: {html_path}, {md_path}, {paths.LEADERBOARD}")
    log_model_runs(results, board, params, [html_path, md_path, *charts.values()])
    return board
