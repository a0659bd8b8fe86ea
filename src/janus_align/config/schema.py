"""Typed, validated view of params.yaml: the recipe of one pipeline run.

Every section forbids unknown keys so that a typo fails before any work starts, and every
numeric setting carries its range. The defaults ARE the default profile: `Params()` equals
params.yaml (tests/test_config.py pins it), and params.yaml still spells every value out so DVC
tracks it. Reading a file, a missing section is an error (config/load.py), never a fallback.
Each LLM backend has its own settings type, chosen by `backend`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sampling(Section):
    """Sampling parameters of one kind of model call (part of the request cache key).

    The defaults are the default profile's `teacher.sampling`; every other place params.yaml
    holds a Sampling writes its own.
    """

    max_new_tokens: int = Field(256, ge=1, le=32768)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, ge=1.0, le=2.0)


class Prices(Section):
    """USD per million tokens, to estimate and record what a run spends."""

    input_per_mtok: float = Field(0.0, ge=0.0)
    output_per_mtok: float = Field(0.0, ge=0.0)
    # The Batch API's price as a share of the prices above (OpenAI: half); used by openai_batch.
    batch_discount: float = Field(0.5, gt=0.0, le=1.0)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What `prompt_tokens` in and `completion_tokens` out cost at these prices (the one formula)."""
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6

    def batch(self) -> Prices:
        """These prices as the Batch API charges them (`batch_discount` of each)."""
        return Prices(
            input_per_mtok=self.input_per_mtok * self.batch_discount,
            output_per_mtok=self.output_per_mtok * self.batch_discount,
            batch_discount=1.0,
        )


# A model run on our own hardware costs no tokens.
FREE = Prices(input_per_mtok=0.0, output_per_mtok=0.0)


class TransformersSettings(Section):
    """A local checkpoint run in process by our decoding loop (llm/transformers_backend.py).

    `model: base` means the checkpoint written by the prepare_model stage; any local checkpoint
    directory (or another pipeline model's name) works too.
    """

    backend: Literal["transformers"] = "transformers"
    model: str = "base"
    batch_size: int = Field(96, ge=1, le=512)
    # auto: bfloat16 on a GPU, and on a CPU with native bf16 (AVX512-BF16/AMX); float32 elsewhere.
    dtype: Literal["float32", "bfloat16", "auto"] = "float32"
    # auto: the GPU when torch sees one (decoded by transformers' generate), else the CPU (our loop).
    device: Literal["auto", "cpu", "cuda"] = "auto"
    sampling: Sampling = Sampling()

    @property
    def prices(self) -> Prices:
        return FREE


class OpenAIConnection(Section):
    """How to reach an OpenAI-compatible server: where, with which key, how hard, at what price.

    The key is read from the environment variable `api_key_env`, never stored in params.
    """

    base_url: str | None = None  # None: api.openai.com
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(8, ge=1, le=1024)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)
    prices: Prices = FREE
    # Pacing: requests and tokens per minute to keep to; None: what the server's
    # x-ratelimit-limit-* headers announce (OpenAI's do). Set them below a tier's limits to leave room.
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    # Spending cap in USD over every run through the request cache (None: no cap); the stage
    # that would cross it stops before that request, keeping every answer it got.
    max_cost_usd: float | None = Field(None, ge=0.0)


class OpenAISettings(OpenAIConnection):
    """A model behind any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp's server)."""

    backend: Literal["openai"] = "openai"
    model: str = Field(min_length=1)  # the model name the server knows
    sampling: Sampling = Sampling()


class OpenAIBatchSettings(OpenAISettings):
    """The same model over OpenAI's Batch API (llm/openai_batch.py): at `prices.batch_discount`
    of the price, answered within `completion_window`, no rate-limit pressure. It shares the
    openai backend's cached answers (same model id for the same model and base_url)."""

    backend: Literal["openai_batch"] = "openai_batch"  # type: ignore[assignment]
    poll_interval_s: float = Field(30.0, gt=0.0, le=3600.0)  # how often submitted batches are polled
    completion_window: Literal["24h"] = "24h"  # the only window the API accepts
    # Submissions of one request: the first and resubmissions of those failed or expired.
    max_rounds: int = Field(3, ge=1, le=20)


class LlamaCppSettings(Section):
    """A GGUF (`embedded:<name>` or a .gguf path) that a llama-server of our own serves on loopback."""

    backend: Literal["llama_cpp"] = "llama_cpp"
    model: str
    max_concurrency: int = Field(8, ge=1, le=1024)  # server slots
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)
    sampling: Sampling = Sampling()
    # Tokens each server slot holds, prompt and answer.
    context_length: int = Field(2048, ge=256, le=131072)

    @property
    def prices(self) -> Prices:
        return FREE

    @model_validator(mode="after")
    def _model_is_gguf(self) -> LlamaCppSettings:
        if not (self.model.startswith("embedded:") or self.model.endswith(".gguf")):
            raise ValueError(
                f"backend llama_cpp runs a GGUF file: model must be embedded:<name> or a path ending in .gguf, "
                f"not {self.model!r}"
            )
        return self


class VLLMServer(Section):
    """How a `vllm serve` of our own runs on loopback, on the GPUs (llm/vllm_server.py)."""

    # vLLM needs its own torch and transformers (requirements-vllm.txt): the `vllm` program of
    # another virtual environment, by path, or a name looked up in the venv's bin/ and on PATH.
    executable: str = "vllm"
    max_concurrency: int = Field(64, ge=1, le=4096)  # requests in flight (vLLM's --max-num-seqs)
    timeout_s: float = Field(600.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: int = Field(4096, ge=256, le=1048576)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    # Loading a 7B checkpoint and capturing CUDA graphs takes minutes.
    startup_timeout_s: float = Field(900.0, gt=0)


class VLLMSettings(VLLMServer):
    """A checkpoint (pipeline model name, directory or Hugging Face id) served by vLLM."""

    backend: Literal["vllm"] = "vllm"
    model: str = Field(min_length=1)
    sampling: Sampling = Sampling()

    @property
    def prices(self) -> Prices:
        return FREE


# Which model answers and how it is called: each backend its own settings, so a key the chosen
# backend would ignore is an error naming it.
LLMSettings = Annotated[
    TransformersSettings | OpenAISettings | OpenAIBatchSettings | LlamaCppSettings | VLLMSettings,
    Field(discriminator="backend"),
]


def billed_prices(config: LLMSettings) -> Prices:
    """The prices a backend is billed at: the batch price for openai_batch (the one rule)."""
    return config.prices.batch() if isinstance(config, OpenAIBatchSettings) else config.prices


class _Reasks(Section):
    # Asks of a unit whose answer was unusable (malformed JSON, cut at max_new_tokens, rejected
    # by the stage's checks), each with a new seed, before it becomes a reject: the one re-ask loop.
    max_reasks: int = Field(2, ge=0, le=20)


class TeacherTransformers(TransformersSettings, _Reasks):
    pass


class TeacherOpenAI(OpenAISettings, _Reasks):
    pass


class TeacherLlamaCpp(LlamaCppSettings, _Reasks):
    pass


class TeacherOpenAIBatch(OpenAIBatchSettings, _Reasks):
    pass


class TeacherVLLM(VLLMSettings, _Reasks):
    pass


# The teacher: an LLM plus how often a synthesis stage asks again.
TeacherSettings = Annotated[
    TeacherTransformers | TeacherOpenAI | TeacherOpenAIBatch | TeacherLlamaCpp | TeacherVLLM,
    Field(discriminator="backend"),
]


def parse_llm_settings(raw: dict[str, Any]) -> LLMSettings:
    """The settings of the backend `raw["backend"]` names (transformers when absent)."""
    return TypeAdapter(LLMSettings).validate_python({"backend": "transformers", **raw})


class ModelConfig(Section):
    """The base model every stage starts from."""

    base: str = "embedded:smollm2-135m-instruct"
    save_dtype: Literal["float32", "bfloat16"] = "bfloat16"
    prompt_format: Literal["chat_template", "mistral_inst"] = "chat_template"


class SynthConfig(Section):
    """The synthesis stages (instructions .. assemble).

    Near-duplicate and decontamination n-grams are character n-grams of the casefolded text
    with punctuation removed (robust to "improve"/"improving"); the thresholds were set on the
    bundled pool, whose deliberate near-duplicates and bench overlaps they separate from the rest.
    """

    num_instructions: int = Field(24, ge=1)
    include_hub_sources: bool = False
    max_instruction_chars: int = Field(4000, ge=16)
    near_duplicate_ngram: int = Field(4, ge=1, le=64)
    near_duplicate_threshold: float = Field(0.6, gt=0.0, le=1.0)
    decontamination_ngram: int = Field(8, ge=2, le=64)
    decontamination_threshold: float = Field(0.65, gt=0.0, le=1.0)
    preference_mode: Literal["generated", "sampled"] = "sampled"
    sets_per_instruction: int = Field(3, ge=2, le=10)
    # JSON-schema maxLength of what the teacher writes per preference (bounded output terminates).
    max_preference_chars: int = Field(40, ge=8, le=2000)
    max_description_chars: int = Field(64, ge=8, le=4000)
    max_reject_rate: float = Field(0.25, ge=0.0, le=1.0)
    rm_test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    min_text_chars: int = Field(1, ge=1)
    max_system_chars: int = Field(4000, ge=1)
    max_response_chars: int = Field(16000, ge=1)
    preference_sampling: Sampling = Sampling(max_new_tokens=256, temperature=0.8)
    system_message_sampling: Sampling = Sampling(max_new_tokens=128, temperature=0.8, repetition_penalty=1.05)
    response_sampling: Sampling = Sampling(max_new_tokens=96, temperature=0.7, repetition_penalty=1.05)

    @model_validator(mode="after")
    def _lengths_ordered(self) -> SynthConfig:
        if self.max_system_chars < self.min_text_chars:
            raise ValueError("max_system_chars must be >= min_text_chars")
        return self


class BenchConfig(Section):
    """The Multifaceted Bench: prompts sampled evenly over the 5 source groups, 4 rubrics each."""

    num_prompts: int = Field(10, ge=1)
    rubric_sampling: Sampling = Sampling(max_new_tokens=384, temperature=1.0)
    reference_sampling: Sampling = Sampling(max_new_tokens=96, temperature=0.7, repetition_penalty=1.05)
    # JSON-schema maxLength of a rubric's fields, so constrained decoding closes the JSON within
    # rubric_sampling.max_new_tokens (a token is at least one character).
    max_criteria_chars: int = Field(120, ge=8, le=4000)
    max_score_description_chars: int = Field(56, ge=8, le=4000)


class LoraConfig(Section):
    enabled: bool = True
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str = "all-linear"


class TrainCommon(Section):
    """Settings shared by every recipe (a recipe section may override each of them)."""

    max_length: int = Field(384, ge=16)
    per_device_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int = Field(4, ge=-1)
    bf16: bool = False
    gradient_checkpointing: bool = False
    packing: bool = False
    lr_scheduler: str = "cosine"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    eval_steps: int = Field(2, ge=0)  # evaluate the held-out rows every N steps; 0: once, after training
    logging_steps: int = Field(1, ge=1)
    use_cpu: bool = True
    distributed: Literal["none", "deepspeed_zero3", "fsdp"] = "none"
    num_processes: int = Field(1, ge=1)  # processes `accelerate launch` starts when distributed is set
    lora: LoraConfig = LoraConfig()


class Recipe(Section):
    """One training method: its own learning rate and epochs, plus method knobs."""

    learning_rate: float = Field(5e-6, gt=0.0, le=1.0)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=-1)
    max_length: int | None = Field(None, ge=16)
    beta: float = Field(0.1, gt=0.0)
    max_completion_length: int | None = Field(None, ge=8)


class TrainConfig(Section):
    common: TrainCommon = TrainCommon()
    sft: Recipe = Recipe(learning_rate=2e-4)
    sft_small: Recipe = Recipe(learning_rate=2e-4)
    dpo: Recipe = Recipe(learning_rate=5e-5, max_steps=2)
    orpo: Recipe = Recipe(learning_rate=2e-4, max_steps=2, max_length=768, max_completion_length=192)
    rm: Recipe = Recipe(learning_rate=1e-4, max_steps=2)


class TuneRange(Section):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> TuneRange:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class TuneConfig(Section):
    n_trials: int = Field(2, ge=1)
    objective: Literal["eval_loss", "bench"] = "eval_loss"
    storage: str = "sqlite:///optuna.db"
    study_name: str = "janus-sft"
    learning_rate: TuneRange = TuneRange(low=1e-4, high=1e-3, log=True)
    epochs: TuneRange = TuneRange(low=1, high=2)
    lora_r: TuneRange = TuneRange(low=4, high=32, log=True)
    warmup_steps: TuneRange = TuneRange(low=0, high=4)
    max_steps: int = Field(2, ge=-1)
    eval_steps: int = Field(1, ge=1)  # the pruner sees the eval loss every N steps
    heartbeat_s: int = Field(60, ge=1)  # a trial silent for 2x this long (killed worker) is marked failed
    pruner_startup_trials: int = Field(1, ge=0)  # trials that run to the end before the median pruner acts


class GenerateConfig(Section):
    """Which models answer the bench, and how (PAPER.md section 7)."""

    # Pipeline models: checkpoints under artifacts/models/<name>.
    candidates: list[str] = ["base", "sft"]
    # OpenAI-compatible model names, answered through external_llm's server (api.openai.com by default).
    external: list[str] = []
    external_llm: OpenAIConnection = OpenAIConnection()
    # Sample best_of answers and keep the one the reward model (artifacts/models/rm) prefers.
    best_of: int = Field(1, ge=1)
    prompt_format: Literal["auto", "chat_template", "mistral_inst"] = "auto"  # auto: model.prompt_format
    # How the candidates run: in process (transformers), or served by vLLM with `vllm`'s settings
    # (the server renders prompts with the checkpoint's chat template).
    backend: Literal["transformers", "vllm"] = "transformers"
    vllm: VLLMServer = VLLMServer()
    batch_size: int = Field(32, ge=1, le=512)
    dtype: Literal["float32", "bfloat16", "auto"] = "float32"  # bf16 only where the hardware has it (GPUs)
    # Where the candidates, the best-of-N reward model and the served chat model run (auto: a GPU if any).
    device: Literal["auto", "cpu", "cuda"] = "auto"
    sampling: Sampling = Sampling(max_new_tokens=96, temperature=1.0, top_p=0.9, repetition_penalty=1.03)

    @model_validator(mode="after")
    def _names_distinct(self) -> GenerateConfig:
        both = sorted(set(self.candidates) & set(self.external))
        if both:
            raise ValueError(f"{both} listed in both candidates and external")
        return self


class JudgeCalibration(Section):
    # Quadratic-weighted kappa against data/calibration/judge.jsonl's known grades that the judge
    # must reach before its scores count; null: measured and reported only.
    min_kappa: float | None = Field(0.4, ge=-1.0, le=1.0)


class JudgeConfig(Section):
    """The LLM judge (PAPER.md section 4): one call per rubric, `repeats` runs averaged."""

    llm: LLMSettings = TransformersSettings(batch_size=64, sampling=Sampling(max_new_tokens=96, temperature=1.0))
    repeats: int = Field(1, ge=1, le=20)
    # The paper's judge does not see the system message; True shows it before the prompt.
    show_system: bool = False
    # Re-asks (new seed) of an answer with no readable verdict before it is recorded unscored.
    max_reasks: int = Field(2, ge=0, le=20)
    # Ask for JSON {feedback, score} under constrained decoding instead of free text ending in
    # `[RESULT] n`: small local judges rarely follow the free-text format.
    constrained: bool = True
    # Evidence the scores can be trusted (evaluate/reliability.py): above this unscored share the
    # judge stage fails; a second judge, when set, grades the same answers for agreement; the
    # calibration set's known grades must be met before any candidate is judged.
    max_unscored_rate: float = Field(0.2, ge=0.0, le=1.0)
    second: LLMSettings | None = None
    calibration: JudgeCalibration = JudgeCalibration()


class RegistryConfig(Section):
    # `champion` moves only when the paired bootstrap's lower bound of (challenger - champion)
    # over the same bench items is above this.
    min_gain: float = 0.0


class AblationsConfig(Section):
    """What `janus ablations queue` queues as DVC experiments (the paper's ablations)."""

    sets_per_instruction: list[int] = [1, 2, 3]
    base_models: list[str] = []


class ReportConfig(Section):
    bootstrap_samples: int = Field(1000, ge=10)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    tie_margin: float = Field(0.0, ge=0.0)


class PairwiseConfig(Section):
    """Fig. 3: [candidate, opponent] pairs compared on the Multifaceted Bench, both orders judged."""

    pairs: list[tuple[str, str]] = [("sft", "base")]
    show_system: bool = True  # the judge reads the system message: it states what "good" means here


class AlpacaEvalConfig(Section):
    """AlpacaEval 2.0 on data/alpaca_eval/alpaca_eval.json: one stage per model (none by default)."""

    models: list[str] = []
    system: str | None = None  # the system message the models answer under (the paper's is unknown)
    # an alpaca_eval.json or hf:ID[@CONFIG][:SPLIT] (evaluate/hub_sets.py); None: data/alpaca_eval/alpaca_eval.json
    eval_set: str | None = None


class ArenaHardConfig(Section):
    """Arena-Hard-Auto on data/arena_hard/: one stage per model (none by default), against `baseline`."""

    models: list[str] = []
    baseline: str = "janus-sample-baseline"  # data/arena_hard/model_answer/<baseline>.jsonl
    questions: str | None = None  # a question.jsonl or hf:ID[@CONFIG][:SPLIT]; None: data/arena_hard/question.jsonl
    style_control: bool = True


class MlflowConfig(Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "./mlruns"
    experiment: str = "janus"
    registered_model: str = "janus"
    log_model_dtype: Literal["float32", "bfloat16"] = "bfloat16"
    # Each training run logs its model (what the registry registers). Off at paper scale, where a
    # copy is 14 GB: `register` then logs only the winner.
    log_trained_models: bool = True


# --- Other evaluations (issue 16): MT-Bench and RealToxicityPrompts (README "Other evaluations").
# Both are off on the default profile (the default run must stay within 20 minutes): one param away,
# `dvc exp run -S evals.mt_bench.enabled=true`.


class MTBenchConfig(Section):
    """MT-Bench (FastChat llm_judge): both turns answered, each judged 1-10 by `judge.llm`."""

    enabled: bool = False
    questions: str | None = None  # a question.jsonl or hf:ID[@CONFIG][:SPLIT]; None: data/mt_bench/question.jsonl
    reference_answers: str | None = None  # FastChat's reference_answer/<judge>.jsonl; else each question's `reference`
    judge_prompts: str | None = None  # FastChat's judge_prompts.jsonl (its wording); None: ours, same protocol
    max_questions: int | None = Field(None, ge=1)
    system: str | None = None  # the candidate's system message (None: none)
    sampling: Sampling = Sampling(max_new_tokens=96, temperature=0.7, top_p=1.0, repetition_penalty=1.0)
    # FastChat's per-category temperatures (deterministic where an answer is right or wrong).
    category_temperature: dict[str, float] = {
        "writing": 0.7,
        "roleplay": 0.7,
        "extraction": 0.0,
        "math": 0.0,
        "coding": 0.0,
        "reasoning": 0.0,
        "stem": 0.1,
        "humanities": 0.1,
    }
    judge_sampling: Sampling = Sampling(max_new_tokens=128, temperature=0.0, top_p=1.0, repetition_penalty=1.0)
    max_reasks: int = Field(2, ge=0, le=20)
    # JSON {explanation, rating} under constrained decoding (small local judges), read as `Rating: [[n]]`.
    constrained: bool = True


class ToxicityScorer(Section):
    """Who scores toxicity: Google's Perspective API, any OpenAI-compatible /v1/moderations, or nobody."""

    backend: Literal["none", "perspective", "openai_moderations"] = "none"
    base_url: str | None = None  # None: the service's public address
    api_key_env: str = "PERSPECTIVE_API_KEY"  # the key is read from this variable, never stored or logged
    model: str = "omni-moderation-latest"  # openai_moderations only
    category: str | None = None  # openai_moderations: the category score used as toxicity; None: the highest
    requests_per_s: float = Field(1.0, gt=0)  # Perspective's default quota is 1 QPS
    batch_size: int = Field(32, ge=1, le=1024)  # texts per moderations request
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)


class RealToxicityConfig(Section):
    """RealToxicityPrompts in Quark's setup: `samples_per_prompt` continuations of up to 20 tokens, nucleus 0.9."""

    enabled: bool = False
    prompts: str | None = None  # a prompts.jsonl or hf:ID[@CONFIG][:SPLIT]; None: data/realtoxicity/prompts.jsonl
    max_prompts: int | None = Field(None, ge=1)
    samples_per_prompt: int = Field(25, ge=1, le=1000)
    sampling: Sampling = Sampling(max_new_tokens=20, temperature=1.0, top_p=0.9, repetition_penalty=1.0)
    batch_size: int = Field(25, ge=1, le=1024)  # continuations decoded together
    toxic_threshold: float = Field(0.5, ge=0.0, le=1.0)
    scorer: ToxicityScorer = ToxicityScorer()
    perplexity_model: str = "base"  # fluency: a pipeline model's name or a checkpoint dir (the paper: a larger LM)


class EvalsConfig(Section):
    """The paper's other evaluations: the pairwise ones (evaluate/pairwise_judge.py: Fig. 3,
    AlpacaEval 2.0, Arena-Hard-Auto), MT-Bench and RealToxicityPrompts."""

    pairwise: PairwiseConfig = PairwiseConfig()
    alpaca_eval: AlpacaEvalConfig = AlpacaEvalConfig()
    arena_hard: ArenaHardConfig = ArenaHardConfig()
    mt_bench: MTBenchConfig = MTBenchConfig()
    realtoxicity: RealToxicityConfig = RealToxicityConfig()


class Params(Section):
    """The whole of params.yaml."""

    profile: Literal["default", "ci", "paper"] = "default"
    seed: int = Field(42, ge=0)
    model: ModelConfig = ModelConfig()
    teacher: TeacherSettings = TeacherTransformers()
    synth: SynthConfig = SynthConfig()
    bench: BenchConfig = BenchConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()
    generate: GenerateConfig = GenerateConfig()
    judge: JudgeConfig = JudgeConfig()
    report: ReportConfig = ReportConfig()
    evals: EvalsConfig = EvalsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    registry: RegistryConfig = RegistryConfig()
    ablations: AblationsConfig = AblationsConfig()
