"""An evaluation set named by Hugging Face dataset id, written once into the official file its reader takes.

An evaluation's input param (`evals.alpaca_eval.eval_set`, `evals.arena_hard.questions`,
`evals.mt_bench.questions`, `evals.realtoxicity.prompts`) holds a file path or `hf:ID[@CONFIG][:SPLIT]`,
e.g. `hf:allenai/real-toxicity-prompts`. The dataset is loaded with `datasets.load_dataset` (ID may
also be a local directory laid out like the dataset's repository). ID may instead name one data
file of a repository, `hf:OWNER/NAME/FILE.json` (`.jsonl`, `.parquet`, `.csv`), read with the
matching builder from `hf://datasets/OWNER/NAME/FILE`: the way to sets whose repository still
holds a loading script, which `datasets` no longer runs (AlpacaEval 2.0:
`hf:tatsu-lab/alpaca_eval/alpaca_eval_gpt4_baseline.json`). Its rows are written unchanged into
the official file (`alpaca_eval.json`, a JSON list; `question.jsonl`, `prompts.jsonl`, one row a
line) under the stage's artifacts. The format's own
reader then reads that file, so a dataset whose columns differ from the official ones fails there,
naming the cached file, the row and the key. A cached file is reused: the hub is asked once (delete
the `hub/` folder to fetch again).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from janus_align.errors import JanusError
from janus_align.records import write_json, write_jsonl

PREFIX = "hf:"
# The `datasets` builder that reads a data file, by its suffix.
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class HubSet:
    """A parsed `hf:ID[@CONFIG][:SPLIT]` value."""

    dataset: str
    config: str | None = None
    split: str | None = None


def parse(value: str, setting: str) -> HubSet:
    """The parts of an `hf:` value; JanusError naming `setting` when it is malformed."""
    rest = value[len(PREFIX) :].strip()
    split = config = None
    # A split or config never holds "/", so a ":" or "@" followed by one belongs to the id (a path).
    head, sep, tail = rest.rpartition(":")
    if sep and tail and "/" not in tail:
        rest, split = head, tail
    head, sep, tail = rest.rpartition("@")
    if sep and tail and "/" not in tail:
        rest, config = head, tail
    if not rest or not re.fullmatch(r"[^\s@]+", rest):
        raise JanusError(f"{setting}: {value!r} is not hf:ID[@CONFIG][:SPLIT] (e.g. hf:allenai/real-toxicity-prompts)")
    return HubSet(rest, config, split)


def cached_file(hub_set: HubSet, cache_dir: Path, official_name: str) -> Path:
    """Where the set is written: one folder per id, config and split, holding the official file."""
    label = "_".join(part for part in (hub_set.dataset, hub_set.config, hub_set.split) if part)
    return cache_dir / "hub" / re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") / official_name


def resolve(value: str | None, default: Path, cache_dir: Path, official_name: str, setting: str) -> Path:
    """The file an evaluation reads: `default` when unset, the path given, or the hub set written to its cache."""
    if not value:
        return default
    if not value.startswith(PREFIX):
        return Path(value)
    hub_set = parse(value, setting)
    target = cached_file(hub_set, cache_dir, official_name)
    if not target.is_file():
        rows = load_rows(hub_set, value, setting, official_name)
        if target.suffix == ".json":
            write_json(target, rows)
        else:
            write_jsonl(target, rows)
    return target


def load_rows(hub_set: HubSet, value: str, setting: str, official_name: str) -> list[dict[str, Any]]:
    """The rows of one split of the dataset, as plain dicts (JanusError, one line, when it cannot be had)."""
    from datasets import DatasetDict, load_dataset

    builder = FILE_BUILDERS.get(Path(hub_set.dataset).suffix.lower())
    if builder is not None and hub_set.config:
        raise JanusError(f"{setting}: {value}: a data file has no @CONFIG")
    try:
        if builder is None:
            loaded = load_dataset(hub_set.dataset, hub_set.config, split=hub_set.split)
        else:  # one data file of a repository (a local file stands for it in tests)
            local = Path(hub_set.dataset).is_file()
            url = hub_set.dataset if local else f"hf://datasets/{hub_set.dataset}"
            loaded = load_dataset(builder, data_files=url, split=hub_set.split)
    except ConnectionError as exc:  # offline mode (HF_HUB_OFFLINE) or no route to the hub
        raise JanusError(
            f"{setting}: {value}: the Hugging Face hub is unreachable ({_first_line(exc)}); download the "
            f"official {official_name} and set {setting} to its path instead"
        ) from None
    except Exception as exc:  # unknown id, config or split, gated set: the library's own words, one line
        raise JanusError(f"{setting}: {value}: cannot load ({type(exc).__name__}: {_first_line(exc)})") from None
    if isinstance(loaded, DatasetDict):
        if len(loaded) != 1:
            raise JanusError(f"{setting}: {value}: name a split with :SPLIT (it has {', '.join(loaded)})")
        loaded = next(iter(loaded.values()))
    return list(loaded.to_list())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"
