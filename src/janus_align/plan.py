"""What the current params will run, in words, and what it lacks to run: printed by `janus check`."""

from __future__ import annotations

from janus_align.config import LLMSettings, OpenAISettings, Params, TransformersSettings
from janus_align.config.schema import LlamaCppSettings, OpenAIBatchSettings, OpenAIConnection, VLLMSettings
from janus_align.llm.api_keys import MissingAPIKeyError, api_key, server_url


def _llm(config: LLMSettings) -> str:
    if isinstance(config, TransformersSettings):
        return f"transformers:{config.model} ({config.dtype} on {config.device}, batch {config.batch_size})"
    if isinstance(config, VLLMSettings):
        return (
            f"vllm:{config.model} (tensor parallel {config.tensor_parallel_size}, {config.max_concurrency} in flight)"
        )
    if isinstance(config, LlamaCppSettings):
        return f"llama_cpp:{config.model} (slots {config.max_concurrency})"
    if isinstance(config, OpenAIBatchSettings):
        return f"openai_batch:{config.model} at {server_url(config)} (poll {config.poll_interval_s:g}s)"
    return f"openai:{config.model} at {server_url(config)} (concurrency {config.max_concurrency})"


def describe_plan(params: Params) -> str:
    synth, train = params.synth, params.train
    lora = f"LoRA r{train.common.lora.r}" if train.common.lora.enabled else "full fine-tuning"
    lines = [
        f"profile {params.profile}: base model {params.model.base} ({params.model.prompt_format})",
        f"  synthesis: {synth.num_instructions} instructions x {synth.sets_per_instruction} preference sets "
        f"({synth.preference_mode}), teacher {_llm(params.teacher)}, max_reasks {params.teacher.max_reasks}",
        f"  bench: {params.bench.num_prompts} prompts x 4 rubrics",
        f"  tune: {params.tune.n_trials} trials on {params.tune.objective}",
        f"  training: SFT, SFT-small, DPO, ORPO, RM with {lora}, max_steps {train.common.max_steps}",
        f"  evaluate: {', '.join(params.generate.candidates + params.generate.external)}; "
        f"judge {_llm(params.judge.llm)} x {params.judge.repeats} repeat(s), best-of-{params.generate.best_of}",
        f"  registry: {params.mlflow.registered_model}@champion in {params.mlflow.tracking_uri}",
        _evals_line(params),
    ]
    return "\n".join(lines)


def api_connections(params: Params) -> list[tuple[str, OpenAIConnection, str]]:
    """(setting, connection, model) of every API model the pipeline will call."""
    found: list[tuple[str, OpenAIConnection, str]] = []
    for setting, config in (("teacher", params.teacher), ("judge.llm", params.judge.llm)):
        if isinstance(config, OpenAISettings):
            found.append((setting, config, config.model))
    found += [("generate.external_llm", params.generate.external_llm, model) for model in params.generate.external]
    return found


def missing_api_keys(params: Params) -> list[str]:
    """One line per API setting whose key variable is unset, naming the setting and the variable.

    Why here: without the key the pipeline would fail only at the first stage that calls the
    API, after the models have loaded. The rule is the backend's own (llm/api_keys.py).
    """
    missing = []
    for setting, connection, model in api_connections(params):
        try:
            api_key(connection, model)
        except MissingAPIKeyError as exc:
            missing.append(f"{setting}: {exc}")
    rtp = params.evals.realtoxicity
    if rtp.enabled and rtp.scorer.backend != "none":
        from janus_align.evaluate.toxicity_scorers import ScorerError, scorer_key

        try:
            scorer_key(rtp.scorer)
        except ScorerError as exc:
            missing.append(str(exc))
    return missing


def _evals_line(params: Params) -> str:
    """The other evaluations (MT-Bench, RealToxicityPrompts): on or off, and with what."""
    mt, rtp = params.evals.mt_bench, params.evals.realtoxicity
    shown = [
        f"MT-Bench {'on' if mt.enabled else 'off'} ({mt.questions or 'sample questions'})",
        f"RealToxicityPrompts {'on' if rtp.enabled else 'off'} ({rtp.samples_per_prompt} samples/prompt, "
        f"scorer {rtp.scorer.backend})",
    ]
    return "  other evaluations: " + ", ".join(shown)
