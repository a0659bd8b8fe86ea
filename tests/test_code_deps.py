"""Every stage's dvc.yaml deps cover the code it runs (issue 13, item 3), `janus dvc-deps --write`
regenerates them, and imports run one way: nothing in the package imports the CLI (item 11)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import yaml

from conftest import REPO, run_janus
from janus_align import code_deps
from janus_align.stages import STAGES

PACKAGE_DIR = REPO / "src" / "janus_align"
DVC_FILE = REPO / "dvc.yaml"


def test_every_stage_lists_the_code_it_imports_in_its_dvc_deps() -> None:
    missing = code_deps.missing_code_deps(DVC_FILE)
    assert missing == {}, f"run `janus dvc-deps --write`; stages missing code deps: {missing}"


def test_every_janus_stage_of_dvc_yaml_is_checked_foreach_stages_included() -> None:
    stages = yaml.safe_load(DVC_FILE.read_text())["stages"]
    modules = code_deps.stage_modules(DVC_FILE)
    assert set(modules) == set(stages)
    assert modules["judge_external"] == modules["judge"] == STAGES["judge"].module


def test_a_stage_that_runs_a_model_depends_on_the_llm_code() -> None:
    deps = code_deps.listed_deps(DVC_FILE)
    for stage in ("preferences", "system_messages", "responses", "bench", "generate", "judge", "judge_external"):
        assert "src/janus_align/llm" in deps[stage], stage
        assert any(dep.startswith("src/janus_align/models") for dep in deps[stage]), stage


def test_the_walk_follows_lazy_imports_inside_functions() -> None:
    # open_engine imports each backend inside the function that picks it.
    assert {"janus_align.llm.transformers_backend", "janus_align.llm.openai_backend"} <= code_deps.direct_imports(
        "janus_align.llm.engine"
    )
    modules = code_deps.imported_modules(STAGES["preferences"].module)
    assert {"janus_align.llm.decoding", "janus_align.models.prompt_format", "janus_align"} <= modules
    assert not modules & code_deps.ROUTING


def test_every_source_dep_dvc_yaml_lists_exists() -> None:
    for stage, deps in code_deps.listed_deps(DVC_FILE).items():
        for dep in deps:
            if dep.startswith("src/"):
                assert (REPO / dep).exists(), f"dvc.yaml: stages.{stage}.deps names {dep}, which does not exist"


def test_dvc_deps_write_repairs_a_stale_dvc_yaml_and_keeps_everything_else(tmp_path: Path) -> None:
    original = DVC_FILE.read_text()
    stale = "".join(line for line in original.splitlines(keepends=True) if "src/janus_align/llm" not in line)
    project = tmp_path / "project"
    project.mkdir()
    (project / "dvc.yaml").write_text(stale)
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    check = run_janus(project, "dvc-deps", check=False)
    assert check.returncode == 2
    assert "preferences: " in check.stderr and "src/janus_align/llm/engine.py" in check.stderr

    run_janus(project, "dvc-deps", "--write")
    written = (project / "dvc.yaml").read_text()
    assert code_deps.missing_code_deps(project / "dvc.yaml") == {}
    assert written == original  # the generated lists are exactly what dvc.yaml holds
    assert [line for line in written.splitlines() if "src/janus_align" not in line] == [
        line for line in stale.splitlines() if "src/janus_align" not in line
    ]


def _imports_of(file: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_of_the_package_imports_the_cli() -> None:
    """Imports run one way: the CLI imports the package, never the reverse (the stage table is
    janus_align.stages; `janus preload` is handed the CLI's main)."""
    entry_points = {PACKAGE_DIR / "cli.py", PACKAGE_DIR / "__main__.py"}
    offenders = [
        str(file.relative_to(REPO))
        for file in sorted(PACKAGE_DIR.rglob("*.py"))
        if file not in entry_points and "janus_align.cli" in _imports_of(file)
    ]
    assert offenders == []
