"""`janus check` says what the pipeline lacks before any stage loads a model: here, API keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_project, run_janus
from janus_align.config import Params

KEY_ENV = "OPENAI_API_KEY"  # what profiles/paper.yaml names in every api_key_env


@pytest.fixture
def paper_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project on the paper profile (teacher, judge and an external candidate through the API)."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    return make_project(tmp_path / "project", profile="paper")


def edit_params(project: Path, **base_urls: str) -> None:
    """Set `base_url` of the named settings (teacher, judge, generate) in the project's params."""
    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    sections = {"teacher": raw["teacher"], "judge": raw["judge"]["llm"], "generate": raw["generate"]["external_llm"]}
    for name, url in base_urls.items():
        sections[name]["base_url"] = url
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_check_without_the_key_fails_naming_each_api_setting_and_the_variable(paper_project: Path) -> None:
    done = run_janus(paper_project, "check", check=False, timeout=60)
    assert done.returncode == 2, done.stdout
    assert "3 API setting(s) without a key" in done.stderr and "Traceback" not in done.stderr
    for setting in ("teacher", "judge.llm", "generate.external_llm"):
        assert f"  {setting}: backend openai" in done.stderr
    assert done.stderr.count(f"${KEY_ENV}") == 3


def test_check_with_the_key_passes_and_never_prints_it(paper_project: Path) -> None:
    secret = "sk-janus-check-7d2a91"
    done = run_janus(paper_project, "check", check=False, timeout=60, **{KEY_ENV: secret})
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr


def test_check_accepts_a_server_of_ones_own_without_a_key(paper_project: Path) -> None:
    edit_params(paper_project, teacher="http://127.0.0.1:8080/v1", generate="http://localhost:8000/v1")
    done = run_janus(paper_project, "check", check=False, timeout=60)
    assert done.returncode == 2
    assert "1 API setting(s) without a key" in done.stderr and "  judge.llm: backend openai" in done.stderr
    edit_params(paper_project, judge="http://127.0.0.1:8081/v1")
    assert run_janus(paper_project, "check", check=False, timeout=60).returncode == 0


def test_a_base_url_on_api_openai_com_still_needs_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from janus_align.plan import missing_api_keys

    monkeypatch.delenv(KEY_ENV, raising=False)
    params = Params.model_validate(
        {"generate": {"external": ["gpt-4o"], "external_llm": {"base_url": "https://api.openai.com/v1"}}}
    )
    assert missing_api_keys(params) == [
        f"generate.external_llm: backend openai (model gpt-4o) needs the API key in ${KEY_ENV}, which is not set "
        "(or set base_url to a local OpenAI-compatible server)"
    ]


def test_the_default_profile_calls_no_api() -> None:
    from janus_align.plan import missing_api_keys

    assert missing_api_keys(Params()) == []


def test_a_server_named_by_openai_base_url_is_the_one_keyed_planned_and_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$OPENAI_BASE_URL (the openai SDK's own variable) names the server as base_url does: its
    answers are cached under its URL, never as api.openai.com's, and a loopback one needs no key."""
    from janus_align.config.schema import OpenAIConnection
    from janus_align.llm.openai_backend import openai_model_id
    from janus_align.plan import describe_plan, missing_api_keys

    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    params = Params.model_validate({"generate": {"external": ["gpt-4o"]}})
    assert openai_model_id(params.generate.external_llm, "gpt-4o") == "openai:https://api.openai.com/v1:gpt-4o"
    assert missing_api_keys(params)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8199/v1/")
    assert missing_api_keys(params) == []
    from_env = openai_model_id(params.generate.external_llm, "gpt-4o")
    named = openai_model_id(OpenAIConnection(base_url="http://127.0.0.1:8199/v1"), "gpt-4o")
    assert from_env == named == "openai:http://127.0.0.1:8199/v1:gpt-4o"
    paper = Params.model_validate(yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text()))
    assert "at http://127.0.0.1:8199/v1 (" in describe_plan(paper)
