"""Where every stage reads and writes, relative to the project root (DVC runs stages there).

The one place a file of the pipeline is spelled: dvc.yaml names the same paths (tests/test_paths.py
checks every out, metric, plot and data dep of dvc.yaml against this module), and no stage spells
another's files.
"""

from __future__ import annotations

from pathlib import Path

# Raw inputs, tracked by DATA_DVC_FILE
DATA = Path("data")
DATA_DVC_FILE = Path("data.dvc")
INSTRUCTIONS_DIR = DATA / "instructions"
BENCH_DATA = DATA / "bench"
BENCH_PROMPTS = BENCH_DATA / "prompts.jsonl"
RUBRIC_EXAMPLES = BENCH_DATA / "rubric_examples.json"
TAXONOMY_DIR = DATA / "taxonomy"
TAXONOMY = TAXONOMY_DIR / "preferences.yaml"
CALIBRATION_DATA = DATA / "calibration"
JUDGE_CALIBRATION = CALIBRATION_DATA / "judge.jsonl"  # known grades a judge must meet (evaluate/reliability.py)
ALPACA_EVAL_DATA = DATA / "alpaca_eval"
ALPACA_EVAL_SET = ALPACA_EVAL_DATA / "alpaca_eval.json"  # the official evaluation-set format
ARENA_HARD_DATA = DATA / "arena_hard"
ARENA_HARD_QUESTIONS = ARENA_HARD_DATA / "question.jsonl"

ARTIFACTS = Path("artifacts")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")

# Models
MODELS = ARTIFACTS / "models"
BASE_MODEL = MODELS / "base"

# Synthesis (instructions, preferences, system_messages, responses, assemble)
SYNTH = ARTIFACTS / "synth"
INSTRUCTIONS = SYNTH / "instructions.jsonl"
INSTRUCTIONS_REMOVED = SYNTH / "instructions_removed.jsonl"
PREFERENCE_SETS = SYNTH / "preference_sets.jsonl"
SYSTEM_MESSAGES = SYNTH / "system_messages.jsonl"
SYNTH_RESPONSES = SYNTH / "responses.jsonl"  # the gold responses (evaluation's are RESPONSES_DIR)
# Full records under metrics/ are plain outputs (cache: false); the headline numbers DVC shows
# are the few files `headline_metrics` writes (COLLECTION_METRICS, VALIDATION_RESULT, ...).
INSTRUCTIONS_METRICS = METRICS / "instructions.json"
SYNTHESIS_METRICS = METRICS / "synthesis.json"
COLLECTION_METRICS = METRICS / "collection.json"
# The stages that call the teacher, in pipeline order: each writes stage_record() (rejects, stats).
GENERATING_STAGES = ("preferences", "system_messages", "responses")

# The collection (assemble) and its checks (validate)
COLLECTION = ARTIFACTS / "collection"
SPLITS = ("sft", "sft_small", "dpo", "orpo", "rm")
TRL_SUBDIR = "trl"  # inside each split folder: the TRL-native files (trl_file)
DATA_DOCS = REPORTS / "data_docs"
VALIDATION_METRICS = METRICS / "validation.json"
VALIDATION_RESULT = METRICS / "validation_result.json"

# The Multifaceted Bench (bench)
BENCH = ARTIFACTS / "bench"
BENCH_FILE = BENCH / "bench.jsonl"
BENCH_METRICS = METRICS / "bench.json"

# Training (tune, train_*)
TUNE = ARTIFACTS / "tune"
BEST_PARAMS = TUNE / "best_params.json"
TUNE_METRICS = METRICS / "tune.json"

# Evaluation (generate, judge, report), per candidate model
EVAL = ARTIFACTS / "eval"
RESPONSES_DIR = EVAL / "responses"
JUDGMENTS_DIR = EVAL / "judgments"
OFFICIAL_DIR = EVAL / "official"
EVAL_METRICS_DIR = METRICS / "eval"
LEADERBOARD = METRICS / "leaderboard.json"
SCORES_METRICS = METRICS / "scores.json"
PER_DIMENSION_PLOT = PLOTS / "per_dimension.csv"
PER_SOURCE_PLOT = PLOTS / "per_source.csv"
REPORT_DIR = REPORTS / "eval"
REPORT_HTML = REPORT_DIR / "report.html"
REPORT_MARKDOWN = REPORT_DIR / "report.md"

# Pairwise evaluations (pairwise: Fig. 3; alpaca_eval and arena_hard: one stage per model)
PAIRWISE_DIR = EVAL / "pairwise"
PAIRWISE_METRICS = METRICS / "pairwise.json"
ALPACA_EVAL_DIR = EVAL / "alpaca_eval"
ALPACA_EVAL_METRICS_DIR = METRICS / "alpaca_eval"
ARENA_HARD_DIR = EVAL / "arena_hard"
ARENA_HARD_METRICS_DIR = METRICS / "arena_hard"
# The other evaluations (mt_bench, realtoxicity), per candidate model
MT_BENCH_DATA = DATA / "mt_bench"
MT_BENCH_QUESTIONS = MT_BENCH_DATA / "question.jsonl"
REALTOXICITY_DATA = DATA / "realtoxicity"
REALTOXICITY_PROMPTS = REALTOXICITY_DATA / "prompts.jsonl"
MT_BENCH_DIR = EVAL / "mt_bench"
REALTOXICITY_DIR = EVAL / "realtoxicity"
MT_BENCH_METRICS_DIR = METRICS / "mt_bench"
REALTOXICITY_METRICS_DIR = METRICS / "realtoxicity"


def mt_bench_dir(model: str) -> Path:
    """One candidate's MT-Bench answers.jsonl (FastChat's model_answer format) and judgments.jsonl."""
    return MT_BENCH_DIR / model


def realtoxicity_dir(model: str) -> Path:
    """One candidate's continuations.jsonl: its continuations with their toxicity and perplexity
    (one row per prompt). A folder, as mt_bench's: a disabled stage leaves an empty file in it,
    which DVC would warn about as an output of its own."""
    return REALTOXICITY_DIR / model


def mt_bench_metrics(model: str) -> Path:
    return MT_BENCH_METRICS_DIR / f"{model}.json"


def realtoxicity_metrics(model: str) -> Path:
    return REALTOXICITY_METRICS_DIR / f"{model}.json"


# The registry (register)
REGISTER_METRICS = METRICS / "register.json"
CHAMPION_METRICS = METRICS / "champion.json"

# Outside every DVC output: DVC deletes a stage's outputs before re-running it, and paid
# requests must survive that.
LLM_CACHE = Path(".cache") / "llm.sqlite"


def model_dir(name: str) -> Path:
    """Checkpoint directory of a named model (`base`, `sft`, `dpo`, ...)."""
    return MODELS / name


def stage_record(stage: str) -> Path:
    """The folder of what a generating stage records beside its rows: `stats()` and `rejects()`.

    One DVC output per stage, never empty (the stats are always there): DVC warns about every
    empty output it saves, and a stage with no rejects is the normal case, not the user's business.
    """
    return SYNTH / "stages" / stage


def rejects(stage: str) -> Path:
    """Rows a generating stage could not produce, with the raw teacher output and the reason."""
    return stage_record(stage) / "rejects.jsonl"


def stats(stage: str) -> Path:
    """Counts, tokens, cost and wall time of one generating stage (read by `assemble`)."""
    return stage_record(stage) / "stats.json"


def split_dir(split: str) -> Path:
    """One released split of the collection (`sft`, `dpo`, ...)."""
    return COLLECTION / split


def trl_file(split: str, part: str = "train") -> Path:
    """The TRL-native file of a split's part (`train`, rm also `test`): the same rows as the
    official file, in the format TRL's trainer reads without conversion. A subfolder, so readers
    of the official files (which take every data file of the split folder) never see it."""
    return split_dir(split) / TRL_SUBDIR / f"{part}.parquet"


def responses_file(model: str) -> Path:
    """A candidate's answers to the bench (`generate`)."""
    return RESPONSES_DIR / f"{model}.jsonl"


def judgments_file(model: str) -> Path:
    """The judge's verdicts on a candidate's answers (`judge`)."""
    return JUDGMENTS_DIR / f"{model}.jsonl"


def official_file(model: str) -> Path:
    """The official evaluation JSON, named as the paper's scripts name it."""
    return OFFICIAL_DIR / f"{model}_evaluation.json"


def official_responses_file(model: str) -> Path:
    """The candidate's answers as the official evaluator reads them: {bench id: {"response": ...}}."""
    return OFFICIAL_DIR / f"{model}_responses.json"


def eval_metrics_file(model: str) -> Path:
    """A candidate's scores (`judge`), one DVC metrics file per candidate."""
    return EVAL_METRICS_DIR / f"{model}.json"


def arena_hard_baseline(model: str) -> Path:
    """A baseline's answers in the Arena-Hard-Auto answer format (an input, under data/)."""
    return ARENA_HARD_DATA / "model_answer" / f"{model}.jsonl"


def pairwise_file(pair: str) -> Path:
    """The Fig. 3 games of one `<candidate>_vs_<opponent>` pair."""
    return PAIRWISE_DIR / f"{pair}.jsonl"


def alpaca_eval_outputs(model: str) -> Path:
    """A model's AlpacaEval outputs in the format `alpaca_eval` reads."""
    return ALPACA_EVAL_DIR / f"{model}_outputs.json"


def alpaca_eval_games(model: str) -> Path:
    return ALPACA_EVAL_DIR / f"{model}_annotations.jsonl"


def alpaca_eval_metrics(model: str) -> Path:
    return ALPACA_EVAL_METRICS_DIR / f"{model}.json"


def arena_hard_answers(model: str) -> Path:
    """A model's Arena-Hard answers in the official answer format."""
    return ARENA_HARD_DIR / "model_answer" / f"{model}.jsonl"


def arena_hard_games(model: str) -> Path:
    return ARENA_HARD_DIR / "judgments" / f"{model}.jsonl"


def arena_hard_metrics(model: str) -> Path:
    return ARENA_HARD_METRICS_DIR / f"{model}.json"
