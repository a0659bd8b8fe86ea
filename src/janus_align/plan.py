"""What the current params will run, in words: printed by `janus check`."""

from __future__ import annotations

from janus_align.config import LLMSettings, Params, TransformersSettings
from janus_align.config.schema import LlamaCppSettings


def _llm(config: LLMSettings) -> str:
    if isinstance(config, TransformersSettings):
        return f"transformers:{config.model} ({config.dtype}, batch {config.batch_size})"
    if isinstance(config, LlamaCppSettings):
        return f"llama_cpp:{config.model} (slots {config.max_concurrency})"
    return f"openai:{config.model} at {config.base_url or 'api.openai.com'} (concurrency {config.max_concurrency})"


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
    ]
    return "\n".join(lines)
