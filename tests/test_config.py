"""params.yaml validation: every bad setting fails before any work, naming its key path and value."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_janus
from janus_align.config import ConfigError, OpenAISettings, Params, Prices, TransformersSettings, load_params
from janus_align.config.load import parse_params, read_yaml
from janus_align.config.profiles import deep_merge, profile_params
from janus_align.config.schema import TeacherTransformers
from janus_align.errors import JanusError

DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


def with_setting(key_path: str, value: object) -> dict:
    """The default params with one key (dotted path) set to `value`."""
    raw = copy.deepcopy(DEFAULT)
    *parents, last = key_path.split(".")
    section = raw
    for part in parents:
        section = section[part]
    section[last] = value
    return raw


def error_for(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    return str(caught.value)


@pytest.mark.parametrize(
    ("key_path", "value", "expected"),
    [
        ("teacher.batch_size", 0, "teacher.batch_size: must be >= 1, got 0"),
        ("teacher.sampling.temperature", 3.5, "teacher.sampling.temperature: must be <= 2, got 3.5"),
        ("synth.rm_test_fraction", 1.0, "synth.rm_test_fraction: must be < 1, got 1.0"),
        ("judge.repeats", 0, "judge.repeats: must be >= 1, got 0"),
        ("report.confidence", 0, "report.confidence: must be > 0, got 0"),
    ],
)
def test_out_of_range_value_names_key_path_bound_and_value(key_path, value, expected):
    assert expected in error_for(with_setting(key_path, value))


@pytest.mark.parametrize(
    ("key_path", "value", "expected"),
    [
        ("teacher.batch_size", "many", "teacher.batch_size: must be a valid integer"),
        ("judge.llm.batch_size", 2.5, "judge.llm.batch_size: must be a valid integer"),
        ("train.common.bf16", "maybe", "train.common.bf16: must be a valid boolean"),
        ("generate.candidates", "base", "generate.candidates: must be a valid list"),
        ("teacher.sampling", [1, 2], "teacher.sampling: must be a valid dictionary"),
        (
            "teacher.backend",
            "anthropic",
            "teacher.backend: must be 'transformers', 'openai', 'openai_batch', 'llama_cpp' or 'vllm', got 'anthropic'",
        ),
        ("model.base", None, "model.base: must be a valid string, got None"),
    ],
)
def test_wrong_type_names_key_path_and_value(key_path, value, expected):
    message = error_for(with_setting(key_path, value))
    assert expected in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("key_path", "expected"),
    [
        ("teaher", "teaher: unknown key (did you mean 'teacher'?)"),
        ("teacher.bach_size", "teacher.bach_size: unknown key (did you mean 'batch_size'?)"),
        ("judge.llm.sampling.temprature", "judge.llm.sampling.temprature: unknown key (did you mean 'temperature'?)"),
        ("train.sft.nonsense_knob", "train.sft.nonsense_knob: unknown key"),
    ],
)
def test_unknown_key_names_key_path(key_path, expected):
    assert expected in error_for(with_setting(key_path, 1))


def test_every_bad_key_is_reported_at_once_with_the_file_name():
    raw = with_setting("teacher.batch_size", 0)
    raw["judge"]["repeats"] = "three"
    raw["bogus"] = True
    message = error_for(raw)
    assert message.startswith("params.yaml: 3 invalid setting(s)")
    for key in ("teacher.batch_size", "judge.repeats", "bogus"):
        assert f"\n  {key}: " in message


def test_cross_field_rule_names_its_section():
    message = error_for(with_setting("tune.learning_rate", {"low": 1e-3, "high": 1e-5, "log": True}))
    assert "tune.learning_rate: high (1e-05) must be >= low (0.001)" in message


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    lines = (REPO / "params.yaml").read_text().splitlines()
    bad_line = next(i for i, line in enumerate(lines) if line.startswith("  batch_size:"))
    lines[bad_line] = "  batch_size: [8"  # an unclosed flow sequence
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"params\.yaml:(\d+):\d+: not valid YAML") as caught:
        load_params(path)
    reported = int(str(caught.value).split("params.yaml:")[1].split(":")[0])
    assert abs(reported - (bad_line + 1)) <= 1  # the parser notices at the line or the next one


def repeat_key(text: str, after: str, repeated: str) -> tuple[str, int, int]:
    """`text` with line `repeated` inserted after the line starting with `after` (which holds the
    same key): the edited text, the first line and the repeated line, both 1-based."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(after))
    lines.insert(first + 1, repeated)
    return "\n".join(lines) + "\n", first + 1, first + 2


@pytest.mark.parametrize(
    ("after", "repeated", "key_path"),
    [
        ("seed: 42", "seed: 43", "seed"),
        ("  batch_size:", "  batch_size: 4", "teacher.batch_size"),
        ("    logging_steps:", "    logging_steps: 2", "train.common.logging_steps"),
    ],
    ids=["top-level", "in-a-section", "two-levels-down"],
)
def test_a_repeated_key_is_an_error_naming_both_lines_and_its_path(tmp_path, after, repeated, key_path):
    text, first, second = repeat_key((REPO / "params.yaml").read_text(), after, repeated)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_params(tmp_path / "params.yaml")
    message = str(caught.value)
    assert f"params.yaml:{second}:" in message
    assert f"key {key_path} is repeated: line {first} and line {second}" in message


def test_a_repeated_key_in_a_list_item_names_its_index(tmp_path):
    (tmp_path / "params.yaml").write_text("generate:\n  candidates:\n    - name: a\n      name: b\n")
    with pytest.raises(ConfigError, match=r"key generate\.candidates\[0\]\.name is repeated: line 3 and line 4"):
        load_params(tmp_path / "params.yaml")


def test_a_yaml_merge_may_override_the_keys_it_brings_in(tmp_path):
    (tmp_path / "anchors.yaml").write_text("base: &b\n  x: 1\nother:\n  <<: *b\n  x: 2\n")
    assert read_yaml(tmp_path / "anchors.yaml") == {"base": {"x": 1}, "other": {"x": 2}}


def test_a_repeated_key_in_a_profile_overlay_names_the_overlay_and_both_lines(tmp_path):
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    (tmp_path / "profiles" / "twice.yaml").write_text("teacher:\n  batch_size: 2\n  batch_size: 3\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml:3:3: .*key teacher\.batch_size is repeated: line 2 and line 3"):
        profile_params("twice", base=REPO / "params.yaml", profiles_dir=tmp_path / "profiles")


def test_a_repeated_key_in_the_taxonomy_names_the_file_and_both_lines(tmp_path):
    from janus_align.inputs import InputError, load_taxonomy

    taxonomy = tmp_path / "preferences.yaml"
    taxonomy.write_text("dimensions:\n  style: {}\n  style: {}\n")
    with pytest.raises(
        InputError, match=r"preferences\.yaml:3:3: .*key dimensions\.style is repeated: line 2 and line 3"
    ):
        load_taxonomy(taxonomy)


def test_missing_params_file_and_non_mapping_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params(tmp_path / "list.yaml")


def test_config_errors_are_user_errors():
    assert issubclass(ConfigError, JanusError)  # the CLI prints them without a traceback


@pytest.mark.parametrize("profile", ["ci", "paper"])
def test_every_profile_validates(profile):
    merged = profile_params(profile, base=REPO / "params.yaml", profiles_dir=REPO / "profiles")
    params = Params.model_validate(merged)
    assert params.profile == profile


def test_the_defaults_are_the_default_profile():
    """One source of truth: a model built from schema.py's defaults IS params.yaml (which still
    spells every key out, for DVC)."""
    assert Params() == load_params(REPO / "params.yaml")


@pytest.mark.parametrize(
    "section", ["judge", "teacher", "judge.llm", "generate.external_llm", "synth.response_sampling"]
)
def test_a_missing_section_is_an_error_naming_it_not_the_defaults(tmp_path, section):
    raw = copy.deepcopy(DEFAULT)
    *parents, last = section.split(".")
    holder = raw
    for part in parents:
        holder = holder[part]
    del holder[last]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(
        ConfigError, match=rf"params\.yaml: 1 invalid setting\(s\)\n  {section}: required section is missing"
    ):
        load_params(tmp_path / "params.yaml")


def test_janus_check_names_a_missing_section(tmp_path):
    raw = copy.deepcopy(DEFAULT)
    del raw["judge"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    done = run_janus(tmp_path, "check", check=False, timeout=60)
    assert done.returncode != 0
    assert "judge: required section is missing" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda raw: raw["teacher"].update(base_url="http://x"), "teacher.base_url: unknown key"),
        (lambda raw: raw["teacher"].update(prices={"input_per_mtok": 1.0}), "teacher.prices: unknown key"),
        (lambda raw: raw["judge"]["llm"].update(max_reasks=1), "judge.llm.max_reasks: unknown key"),
        (lambda raw: raw["teacher"].update(backend="openai", model="gpt-x"), "teacher.batch_size: unknown key"),
        (lambda raw: raw["teacher"].update(backend="openai", model="gpt-x"), "teacher.dtype: unknown key"),
        (
            lambda raw: raw["judge"].update(llm={"backend": "llama_cpp", "model": "embedded:x", "base_url": "u"}),
            "judge.llm.base_url: unknown key",
        ),
        (lambda raw: raw["teacher"].pop("backend"), "teacher.backend: required key is missing"),
    ],
    ids=[
        "transformers-base_url",
        "transformers-prices",
        "judge-llm-max_reasks",
        "openai-batch_size",
        "openai-dtype",
        "llama_cpp-base_url",
        "no-backend",
    ],
)
def test_a_key_the_backend_ignores_is_an_error_naming_its_path(edit, expected):
    raw = copy.deepcopy(DEFAULT)
    edit(raw)
    assert expected in error_for(raw)


def test_an_overlay_that_switches_backend_replaces_the_section(tmp_path):
    merged = deep_merge(DEFAULT, {"teacher": {"backend": "openai", "model": "gpt-x", "max_reasks": 1}})
    assert merged["teacher"] == {"backend": "openai", "model": "gpt-x", "max_reasks": 1}
    assert isinstance(parse_params(merged).teacher, OpenAISettings)
    # The same backend merges key by key, as every other section does.
    assert (
        deep_merge(DEFAULT, {"teacher": {"backend": "transformers", "batch_size": 4}})["teacher"]["dtype"] == "float32"
    )
    # `janus use-profile paper` switches the teacher to openai_batch and the judge to openai and
    # leaves no transformers key.
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    run_janus(tmp_path, "use-profile", "paper")
    written = yaml.safe_load((tmp_path / "params.yaml").read_text())
    for section, backend in ((written["teacher"], "openai_batch"), (written["judge"]["llm"], "openai")):
        assert section["backend"] == backend and not {"batch_size", "dtype"} & set(section)
    paper = load_params(tmp_path / "params.yaml")
    assert isinstance(paper.teacher, OpenAISettings) and paper.teacher.max_reasks == 2


def test_external_candidates_are_called_with_the_settings_params_hold():
    from janus_align.evaluate.generate import candidate_config

    paper = Params.model_validate(profile_params("paper", base=REPO / "params.yaml", profiles_dir=REPO / "profiles"))
    config = candidate_config(paper, "gpt-4.1-mini-2025-04-14")
    external = paper.generate.external_llm
    assert isinstance(config, OpenAISettings) and config.model == "gpt-4.1-mini-2025-04-14"
    assert (
        (config.max_concurrency, config.timeout_s, config.max_retries, config.prices)
        == (external.max_concurrency, external.timeout_s, external.max_retries, external.prices)
        == (32, 600.0, 8, Prices(input_per_mtok=0.4, output_per_mtok=1.6))
    )
    assert (config.base_url, config.api_key_env) == (external.base_url, external.api_key_env)


def test_token_cost_is_one_formula_wherever_it_is_counted():
    from janus_align.llm.engine import Usage
    from janus_align.synth.estimate import priced

    prices = Prices(input_per_mtok=2.0, output_per_mtok=8.0)  # the paper profile's gpt-4.1
    assert prices.cost_usd(1_000_000, 100_000) == pytest.approx(2.8)
    paper = Params.model_validate(profile_params("paper", base=REPO / "params.yaml", profiles_dir=REPO / "profiles"))
    assert paper.teacher.prices == prices
    assert Usage(prompt_tokens=1_000_000, completion_tokens=100_000, prices=prices).cost_usd == pytest.approx(2.8)
    assert priced("s", 1, 1_000_000, 100_000, paper.teacher.prices, "m").cost() == pytest.approx(2.8)
    # A local backend has no prices key and costs nothing.
    assert load_params(REPO / "params.yaml").teacher.prices.cost_usd(10**9, 10**9) == 0.0


def test_default_params_validate_and_spell_out_every_llm_setting():
    params = load_params(REPO / "params.yaml")
    assert params.profile == "default"
    # params.yaml writes every LLM key out, so DVC tracks each of them.
    assert set(DEFAULT["teacher"]) == set(TeacherTransformers.model_fields)
    assert set(DEFAULT["judge"]["llm"]) == set(TransformersSettings.model_fields)


def test_profiles_apply_their_settings():
    ci = Params.model_validate(profile_params("ci", base=REPO / "params.yaml", profiles_dir=REPO / "profiles"))
    paper = Params.model_validate(profile_params("paper", base=REPO / "params.yaml", profiles_dir=REPO / "profiles"))
    assert ci.model.base == "tiny-random"
    assert (paper.teacher.backend, paper.teacher.max_concurrency) == ("openai_batch", 32)
    assert paper.teacher.prices.output_per_mtok > 0


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(JanusError, match="known: ci, paper"):
        profile_params("nope", base=REPO / "params.yaml", profiles_dir=REPO / "profiles")


def test_invalid_profile_overlay_names_both_files_and_the_key(tmp_path):
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    (tmp_path / "profiles" / "broken.yaml").write_text("teacher:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml(.|\n)*teacher\.batch_size: must be >= 1, got 0"):
        profile_params("broken", base=REPO / "params.yaml", profiles_dir=tmp_path / "profiles")


@pytest.mark.parametrize(
    ("edit", "key_path"),
    [
        (lambda raw: raw["teacher"].update(bach_size=4), "teacher.bach_size: unknown key"),
        (lambda raw: raw["teacher"].update(batch_size="sixteen"), "teacher.batch_size: must be a valid integer"),
        (lambda raw: raw["teacher"].update(batch_size=0), "teacher.batch_size: must be >= 1, got 0"),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range"],
)
def test_janus_check_rejects_invalid_params_fast_naming_the_key(tmp_path: Path, edit, key_path):
    raw = copy.deepcopy(DEFAULT)
    edit(raw)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    started = time.monotonic()
    done = run_janus(tmp_path, "check", check=False, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert key_path in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 5.0, f"janus check took {elapsed:.1f} s"


def test_a_profile_is_not_stacked_on_another(tmp_path):
    ci = profile_params("ci", base=REPO / "params.yaml", profiles_dir=REPO / "profiles")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(ci))
    with pytest.raises(JanusError, match=r"holds profile 'ci'; restore the default first"):
        profile_params("paper", base=tmp_path / "params.yaml", profiles_dir=REPO / "profiles")
    # An overlay without `profile:` is a tweak and layers on the current profile.
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tweak.yaml").write_text("seed: 7\n")
    tweaked = profile_params("tweak", base=tmp_path / "params.yaml", profiles_dir=tmp_path / "profiles")
    assert (tweaked["profile"], tweaked["seed"], tweaked["model"]["base"]) == ("ci", 7, "tiny-random")


def test_the_rehearsal_overlay_layers_on_the_paper_profile_and_keeps_its_choices(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    run_janus(tmp_path, "use-profile", "paper")
    assert "profile paper + overlay rehearsal" in run_janus(tmp_path, "use-profile", "rehearsal").stdout
    assert (tmp_path / "params.yaml").read_text().startswith("# profile paper + overlay rehearsal")
    rehearsal, paper = (
        load_params(tmp_path / "params.yaml"),
        Params.model_validate(profile_params("paper", base=REPO / "params.yaml", profiles_dir=REPO / "profiles")),
    )
    assert (rehearsal.profile, rehearsal.model.base, rehearsal.train.common.distributed) == (
        "paper",
        "tiny-random-mistral",
        "none",
    )
    # Only size, hardware and polling differ: the backends, models, formats and judge are the paper's.
    assert rehearsal.teacher.model_copy(update={"poll_interval_s": 30.0}) == paper.teacher.model_copy(
        update={"poll_interval_s": 30.0}
    )
    assert rehearsal.judge.model_copy(update={"calibration": paper.judge.calibration}) == paper.judge
    assert rehearsal.model.prompt_format == paper.model.prompt_format
    assert rehearsal.synth.preference_mode == "generated" and rehearsal.train.common.packing
