"""The pairwise judge: two answers to one instruction, a verdict label `[[A>B]]`, read from the end.

One module for every pairwise evaluation (AlpacaEval 2.0, Arena-Hard-Auto, the Fig. 3
comparison on the Multifaceted Bench); what differs between them is the `Protocol`, the set of
verdict labels the judge may write:

    PREFERENCE  [[A>B]] [[A=B]] [[B>A]]                      AlpacaEval (a tie counts 0.5)
    GRADED      [[A>>B]] [[A>B]] [[A=B]] [[B>A]] [[B>>A]]    Arena-Hard-Auto's five labels
    OUTCOMES    [[A>B]] [[B>A]] [[BOTH GOOD]] [[BOTH BAD]]   the paper's Fig. 3 four outcomes

A `PairTask` is one (instruction, candidate answer, opponent answer); judging it makes one
`Game` per order shown: both orders (`orders="both"`, Arena-Hard and Fig. 3) or one order drawn
from the seed and recorded (`orders="random"`, AlpacaEval). A game keeps the label as the judge
wrote it (`verdict`, A = the answer shown first) and the same label from the candidate's side
(`outcome`, the candidate as A), so both orders of an item compare directly
(`position_consistency`).

The verdict is the LAST label in the answer (an explanation may quote labels before it); an
answer without one is re-asked with a new seed up to `judge.max_reasks` times, then recorded
unscored with its raw text, never counted as a tie. With `judge.constrained` (small local judges)
the answer is JSON `{"explanation", "verdict"}` under a schema whose verdict is an enum of the
labels, rewritten as `explanation [[verdict]]` and read by the same parser; a server that
ignores the schema is re-asked with the free-text protocol, as in `judging`.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from janus_align.config.schema import JudgeConfig
from janus_align.evaluate.judging import complete_unique, ignored_schema
from janus_align.llm import ChatRequest, ChatResult, LLMEngine
from janus_align.seeding import derive_seed

Order = Literal["candidate_first", "opponent_first"]
ORDERS: tuple[Order, Order] = ("candidate_first", "opponent_first")


@dataclass(frozen=True)
class Protocol:
    """A pairwise protocol: its name and its verdict labels with what each means (shown to the judge)."""

    name: str
    labels: dict[str, str]
    symmetric: frozenset[str]  # labels that read the same with A and B swapped

    def swap(self, label: str) -> str:
        """The label with A and B exchanged: `A>>B` <-> `B>>A`; `A=B`, `BOTH GOOD` stay."""
        return label if label in self.symmetric else label.translate(str.maketrans("AB", "BA"))


PREFERENCE = Protocol(
    "preference",
    {"A>B": "Response A is better", "A=B": "they are equally good", "B>A": "Response B is better"},
    frozenset({"A=B"}),
)
GRADED = Protocol(
    "graded",
    {
        "A>>B": "Response A is significantly better",
        "A>B": "Response A is slightly better",
        "A=B": "they are about the same",
        "B>A": "Response B is slightly better",
        "B>>A": "Response B is significantly better",
    },
    frozenset({"A=B"}),
)
OUTCOMES = Protocol(
    "outcomes",
    {
        "A>B": "Response A is better",
        "B>A": "Response B is better",
        "BOTH GOOD": "both responses are good and neither is clearly better",
        "BOTH BAD": "both responses are bad and neither is clearly better",
    },
    frozenset({"BOTH GOOD", "BOTH BAD"}),
)

PAIRWISE_SYSTEM = (
    "You are a fair and impartial judge. You compare two responses to the same instruction and decide "
    "which is better, regardless of the order they are shown in and of their length."
)

# Our wording; the layout (task, instruction, optional reference, the two responses) follows
# the pairwise judges of AlpacaEval and Arena-Hard-Auto.
PAIRWISE_TEMPLATE = """###Task Description:
You are given an instruction{reference_clause} and two responses to it, Response A and Response B.
1. Write a short explanation comparing how well each response follows the instruction: helpfulness, correctness, relevance and level of detail.
2. Then give your verdict as exactly one of these labels:
{label_lines}
{output_rule}

###Instruction:
{instruction}
{reference_block}
###Response A:
{response_a}

###Response B:
{response_b}

###Explanation:"""

_OUTPUT_TEXT = '3. End your answer with the label, for example: "Explanation: ... Verdict: [[{example}]]".'
_OUTPUT_JSON = '3. Answer with a JSON object: {{"explanation": "(your explanation)", "verdict": "(one label without the brackets)"}}.'

TEMPLATE_VERSION = (
    "pairwise-v1-"
    + hashlib.sha256(
        "\x00".join([PAIRWISE_SYSTEM, PAIRWISE_TEMPLATE, _OUTPUT_TEXT, _OUTPUT_JSON]).encode()
    ).hexdigest()[:8]
)
_JSON_OVERHEAD_TOKENS = 20


def render_pairwise_prompt(
    protocol: Protocol,
    instruction: str,
    response_a: str,
    response_b: str,
    reference: str | None = None,
    constrained: bool = False,
) -> str:
    """The judge's user turn for one ordered pair."""
    lines = "\n".join(f"[[{label}]]: {meaning}" for label, meaning in protocol.labels.items())
    example = next(iter(protocol.labels))
    return PAIRWISE_TEMPLATE.format(
        reference_clause=", a reference answer" if reference else "",
        label_lines=lines,
        output_rule=_OUTPUT_JSON if constrained else _OUTPUT_TEXT.format(example=example),
        instruction=instruction,
        reference_block=f"\n###Reference Answer:\n{reference}\n" if reference else "",
        response_a=response_a,
        response_b=response_b,
    )


def verdict_schema(protocol: Protocol, max_new_tokens: int) -> dict[str, Any]:
    """JSON schema of a constrained verdict: the explanation capped so the JSON always closes."""
    return {
        "type": "object",
        "properties": {
            "explanation": {"type": "string", "maxLength": max(8, max_new_tokens - _JSON_OVERHEAD_TOKENS)},
            "verdict": {"type": "string", "enum": list(protocol.labels)},
        },
        "required": ["explanation", "verdict"],
        "additionalProperties": False,
    }


def _label_pattern(protocol: Protocol) -> re.Pattern[str]:
    # Longest first, so `A>>B` is never read as `A>B`.
    alternatives = "|".join(
        re.escape(label).replace(r"\ ", r"\s+") for label in sorted(protocol.labels, key=len, reverse=True)
    )
    return re.compile(r"\[\[\s*(" + alternatives + r")\s*\]\]", re.IGNORECASE)


def parse_pairwise(text: str | None, protocol: Protocol) -> str | None:
    """The last verdict label in the answer (canonical spelling), or None when there is none.

    >>> parse_pairwise("A quotes [[B>A]] as wrong. Verdict: [[A>>B]]", GRADED)
    'A>>B'
    >>> parse_pairwise("both fine [[both good]]", OUTCOMES)
    'BOTH GOOD'
    >>> parse_pairwise("[[A>>B]]", PREFERENCE) is None
    True
    """
    if not text:
        return None
    found = list(_label_pattern(protocol).finditer(text))
    if not found:
        return None
    written = re.sub(r"\s+", " ", found[-1].group(1).upper())
    return written if written in protocol.labels else None


def pairwise_text(result: ChatResult) -> str:
    """The answer as text to read the label from: constrained JSON becomes `explanation [[verdict]]`."""
    parsed = result.parsed
    if isinstance(parsed, dict) and "verdict" in parsed:
        return f"{parsed.get('explanation', '')} [[{parsed['verdict']}]]"
    return result.text


def explanation_of(text: str | None, protocol: Protocol) -> str:
    """The judge's explanation: its text before the last label."""
    if not text:
        return ""
    found = list(_label_pattern(protocol).finditer(text))
    body = text[: found[-1].start()] if found else text
    return re.sub(r"^\s*explanation\s*:\s*", "", body, flags=re.IGNORECASE).strip().removesuffix("Verdict:").strip()


@dataclass(frozen=True)
class PairTask:
    """One comparison: the candidate's and the opponent's answer to one instruction.

    An answer of None (generation failed, or no answer for this item) makes the task's games
    unscored with the reason recorded."""

    id: str
    instruction: str
    candidate: str
    opponent: str
    candidate_answer: str | None
    opponent_answer: str | None
    reference: str | None = None


class Game(BaseModel):
    """One judged ordering of a `PairTask` (a row of the pairwise JSONL files).

    `verdict` is the label as written (A = the answer shown first), `outcome` the same label with
    the candidate as A; both None when unscored (`error` says why).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    candidate: str
    opponent: str
    order: Order
    verdict: str | None
    outcome: str | None
    explanation: str
    raw: str | None
    error: str | None
    attempts: int
    seed: int
    candidate_chars: int
    opponent_chars: int
    protocol: str
    judge_model: str
    prompt_hash: str
    template_version: str


def drawn_order(seed: int, protocol: Protocol, task: PairTask) -> Order:
    """The order a randomized evaluation shows one task in: drawn from the seed, so it is recorded and repeatable."""
    return ORDERS[derive_seed(seed, "pairwise-order", protocol.name, task.id, task.candidate, task.opponent) % 2]


@dataclass
class _Pending:
    task: PairTask
    order: Order
    attempts: int = 0
    verdict: str | None = None
    raw: str | None = None
    read: str | None = None
    error: str | None = None
    seed: int = 0
    hash: str = ""

    def shown(self) -> tuple[str, str]:
        first, second = self.task.candidate_answer or "", self.task.opponent_answer or ""
        return (first, second) if self.order == "candidate_first" else (second, first)


def _request(protocol: Protocol, pending: _Pending, config: JudgeConfig) -> ChatRequest:
    response_a, response_b = pending.shown()
    user = render_pairwise_prompt(
        protocol, pending.task.instruction, response_a, response_b, pending.task.reference, config.constrained
    )
    sampling = config.llm.sampling
    schema = verdict_schema(protocol, sampling.max_new_tokens) if config.constrained else None
    return ChatRequest.of(user, system=PAIRWISE_SYSTEM, sampling=sampling, seed=pending.seed, response_schema=schema)


def judge_games(
    engine: LLMEngine,
    tasks: Sequence[PairTask],
    protocol: Protocol,
    config: JudgeConfig,
    seed: int,
    orders: Literal["both", "random"],
) -> list[Game]:
    """Judge every task in both orders or in one drawn order; one `Game` per order (never raises on judge failures)."""
    from janus_align.evaluate.judge_prompt import prompt_hash

    games = [
        _Pending(task, order)
        for task in tasks
        for order in (ORDERS if orders == "both" else (drawn_order(seed, protocol, task),))
    ]
    pending = []
    for game in games:
        missing = [
            n
            for n, a in (
                (game.task.candidate, game.task.candidate_answer),
                (game.task.opponent, game.task.opponent_answer),
            )
            if a is None
        ]
        if missing:
            game.error = f"no answer from {', '.join(missing)}"
        else:
            pending.append(game)
    asking = config
    for attempt in range(config.max_reasks + 1):
        if not pending:
            break
        requests = []
        for game in pending:
            task = game.task
            game.seed = derive_seed(
                seed, "pairwise", protocol.name, task.id, task.candidate, task.opponent, game.order, attempt
            )
            request = _request(protocol, game, asking)
            game.hash = prompt_hash(request)
            requests.append(request)
        results = complete_unique(
            engine, requests, f"pairwise {protocol.name}" + (f" (retry {attempt})" if attempt else "")
        )
        if asking.constrained and any(ignored_schema(result) for result in results):
            print(f"pairwise: {engine.model_id} ignores response_format; re-asks ask for the free-text verdict")
            asking = config.model_copy(update={"constrained": False})
        retry = []
        for game, result in zip(pending, results):
            game.attempts += 1
            if not result.ok and not result.text:
                game.error = result.error  # keep the text of an earlier, unreadable answer
            else:
                game.raw, game.read = result.text, pairwise_text(result)
                game.verdict = parse_pairwise(game.read, protocol)
                game.error = None if game.verdict else (result.error or "no verdict label in the judge's answer")
            if game.verdict is None:
                retry.append(game)
        pending = retry
    return [_game(game, protocol, engine.model_id) for game in games]


def _game(pending: _Pending, protocol: Protocol, judge_model: str) -> Game:
    task, verdict = pending.task, pending.verdict
    outcome = None if verdict is None else (verdict if pending.order == "candidate_first" else protocol.swap(verdict))
    return Game(
        id=task.id,
        candidate=task.candidate,
        opponent=task.opponent,
        order=pending.order,
        verdict=verdict,
        outcome=outcome,
        explanation=explanation_of(pending.read, protocol),
        raw=pending.raw,
        error=pending.error,
        attempts=pending.attempts,
        seed=pending.seed,
        candidate_chars=len(task.candidate_answer or ""),
        opponent_chars=len(task.opponent_answer or ""),
        protocol=protocol.name,
        judge_model=judge_model,
        prompt_hash=pending.hash,
        template_version=TEMPLATE_VERSION,
    )


def position_consistency(games: Sequence[Game]) -> dict[str, float | int | None]:
    """How often the two orders of one item give the same outcome (the candidate's side).

    Only items with both orders scored count (`pairs`); `rate` is None without any. A judge
    that prefers whatever it reads first scores low here whatever the answers are.
    """
    outcomes: dict[tuple[str, str, str], dict[str, str | None]] = defaultdict(dict)
    for game in games:
        outcomes[(game.id, game.candidate, game.opponent)][game.order] = game.outcome
    both = [pair for pair in outcomes.values() if all(pair.get(order) for order in ORDERS)]
    consistent = sum(1 for pair in both if pair["candidate_first"] == pair["opponent_first"])
    return {"pairs": len(both), "consistent": consistent, "rate": consistent / len(both) if both else None}


def unscored(games: Sequence[Game]) -> dict[str, float | int]:
    """How many games got no verdict."""
    missing = sum(1 for game in games if game.outcome is None)
    return {"games": len(games), "unscored": missing, "unscored_rate": missing / len(games) if games else 0.0}
