"""Where every stage reads and writes, relative to the project root (DVC runs stages there).

dvc.yaml names the same paths; keeping them here means no stage spells another's files.
"""

from pathlib import Path

DATA = Path("data")
INSTRUCTIONS_DIR = DATA / "instructions"
BENCH_PROMPTS = DATA / "bench" / "prompts.jsonl"
RUBRIC_EXAMPLES = DATA / "bench" / "rubric_examples.json"
TAXONOMY = DATA / "taxonomy" / "preferences.yaml"

ARTIFACTS = Path("artifacts")
MODELS = ARTIFACTS / "models"
BASE_MODEL = MODELS / "base"
SYNTH = ARTIFACTS / "synth"
COLLECTION = ARTIFACTS / "collection"
BENCH = ARTIFACTS / "bench"
TUNE = ARTIFACTS / "tune"
EVAL = ARTIFACTS / "eval"

METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")

# Outside every DVC output: DVC deletes a stage's outputs before re-running it, and paid
# requests must survive that.
LLM_CACHE = Path(".cache") / "llm.sqlite"


def model_dir(name: str) -> Path:
    """Checkpoint directory of a named model (`base`, `sft`, `dpo`, ...)."""
    return MODELS / name
