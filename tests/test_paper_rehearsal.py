"""The paper profile, rehearsed: a fresh clone, `janus use-profile paper && janus use-profile
rehearsal`, and `dvc repro` of every stage against the simulated OpenAI API.

The overlay (profiles/rehearsal.yaml) swaps in only what cannot run here: the server (the
simulator, named by OPENAI_BASE_URL as a user would name a proxy), a tiny random Mistral for
Mistral-7B, the bundled instructions for the hub's, CPU for GPUs, and small counts. So the
paper's own choices run for real: generated preference sets, the free-text judge with repeats,
the `mistral_inst` format, packing, full fine-tuning, the external baseline through the API.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import janus_env, run_janus
from janus_align.simulated_api import SimulatedAPI
from test_pipeline_e2e import fresh_clone


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_paper_profile_rehearsal_runs_every_stage_against_the_simulated_api(tmp_path: Path) -> None:
    project = fresh_clone(tmp_path / "clone")
    run_janus(project, "setup-data")
    run_janus(project, "use-profile", "paper")
    layered = run_janus(project, "use-profile", "rehearsal").stdout
    assert "profile paper + overlay rehearsal" in layered
    params = yaml.safe_load((project / "params.yaml").read_text())
    # The paper's choices survive the overlay.
    assert params["profile"] == "paper"
    assert params["synth"]["preference_mode"] == "generated"
    assert params["judge"]["constrained"] is False and params["judge"]["repeats"] == 3
    assert params["model"]["prompt_format"] == "mistral_inst"
    assert params["train"]["common"]["packing"] is True
    candidates = [*params["generate"]["candidates"], *params["generate"]["external"]]
    assert params["generate"]["external"], "the paper's external baseline, answered through the API"
    assert params["teacher"]["backend"] == "openai_batch" and params["teacher"]["base_url"] is None
    assert params["judge"]["llm"]["backend"] == "openai"

    # Short latencies and batches that finish in a second: the lifecycle, not the wait.
    with SimulatedAPI(latency_median_s=0.01, batch_complete_after_s=0.5, seed=0) as api:
        env = janus_env(OPENAI_API_KEY="rehearsal-fake-key", OPENAI_BASE_URL=api.base_url)
        done = subprocess.run(
            ["janus", "preload", "--", "dvc", "repro"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=1100,
        )
        assert done.returncode == 0, f"dvc repro exited {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
        stats = api.stats()

    status = subprocess.run(["dvc", "status"], cwd=project, env=janus_env(), capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout + status.stderr

    config = json.loads((project / "artifacts" / "models" / "base" / "config.json").read_text())
    assert config["architectures"] == ["MistralForCausalLM"]

    # Generated mode: one teacher request per instruction wrote all three of its sets.
    synthesis = json.loads((project / "metrics" / "synthesis.json").read_text())
    preferences = synthesis["stages"]["preferences"]
    assert preferences["units"] == params["synth"]["num_instructions"]
    assert preferences["rows_out"] == 3 * preferences["units"]
    assert synthesis["teacher"] == f"openai:{api.base_url}:{params['teacher']['model']}"
    assert json.loads((project / "metrics" / "validation.json").read_text())["success"] is True
    for split in ("sft", "dpo", "orpo", "rm"):
        assert (project / "artifacts" / "collection" / split / "train.parquet").is_file()

    # The free-text judge: every verdict read from `[RESULT] n`, by the simulated server's model.
    for candidate in candidates:
        judgments = read_jsonl(project / "artifacts" / "eval" / "judgments" / f"{candidate}.jsonl")
        assert judgments, candidate
        assert {row["repeat"] for row in judgments} == {0, 1, 2}
        assert all(row["verdict"] is not None and "[RESULT]" in row["raw"] for row in judgments), candidate
        assert all(api.base_url in row["judge_model"] for row in judgments)

    board = json.loads((project / "metrics" / "leaderboard.json").read_text())
    assert set(candidates) <= set(board["models"])
    register = json.loads((project / "metrics" / "register.json").read_text())
    assert register["champion_version"] is not None

    # The teacher's stages went through the Batch API, the judge and the external baseline through
    # chat completions.
    assert stats["batches"] > 0 and stats["batch_requests"] >= preferences["units"]
    assert stats["endpoints"].get("POST /v1/chat/completions", 0) > 0, stats["endpoints"]
    assert stats["rate_limited"] == 0
