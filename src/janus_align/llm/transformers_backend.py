"""In-process backend: a local checkpoint run by our batched decoding loop (llm/decoding.py).

Requests are sorted by prompt length and decoded in as few batches as `batch_size` allows,
whatever their kind: each row keeps its own schema or regex, sampling and random stream (seeded
by `ChatRequest.stream_seed`, so an answer does not depend on its batch; llm/sampling.py), and
different requests share a decoding step's fixed cost. Structured output uses
xgrammar: it compiles a JSON schema into a token mask applied at every step, so even a 135M
model returns schema-valid JSON (lm-format-enforcer does the same but is several times slower
per token; outlines drags in a much larger dependency tree). A `response_regex` is compiled
and applied the same way (one line of text: `[^\n\r]+`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from janus_align.config.schema import TransformersSettings
from janus_align.llm.decoding import DECODING_VERSION, Decoded, sample_batch
from janus_align.llm.types import Admit, ChatRequest, ChatResult, ResultCallback
from janus_align.models.checkpoint import load_causal_lm, load_tokenizer, resolve_dtype
from janus_align.models.prompt_format import ADD_SPECIAL_TOKENS, PromptFormat, render_messages


def checkpoint_fingerprint(path: str | Path) -> str:
    """Identity of a checkpoint's weights, so a retrained model never reuses cached answers."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.json")):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


class TransformersBackend:
    """Runs a local checkpoint in process with our batched decoding loop (llm/decoding.py)."""

    def __init__(self, path: str | Path, config: TransformersSettings, prompt_format: PromptFormat = "chat_template"):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"model checkpoint {self.path} does not exist (run the prepare_model stage)")
        self.config = config
        self.prompt_format = prompt_format
        self.tokenizer = load_tokenizer(self.path, padding_side="left")
        self.model = load_causal_lm(self.path, config.dtype)
        # What the cache key holds for "the model": the weights, the dtype they run in and the
        # decoding code's version, so no answer computed under other settings is served.
        self.model_id = (
            f"{self.path.name}@{checkpoint_fingerprint(self.path)}"
            f"/{resolve_dtype(config.dtype)}/decoding-v{DECODING_VERSION}"
        )
        if prompt_format != "chat_template":
            # The same messages render to a different prompt: keep their cached answers apart.
            self.model_id += f"/{prompt_format}"
        self._grammars: dict[str, Any] = {}
        self._compiler: Any = None
        self._eos_ids = self._stop_ids()

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = self.model.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured])
        return sorted(i for i in ids if i is not None)

    def render(self, request: ChatRequest) -> str:
        text = render_messages(self.tokenizer, list(request.messages), self.prompt_format)
        if self.prompt_format == "mistral_inst":
            # Training moves the space after [/INST] into the answer's first token
            # (train.datasets.literal_prompt); the model must read the same tokens here.
            text = text.rstrip(" ")
        return text

    def _grammar(self, request: ChatRequest) -> Any:
        """The compiled xgrammar grammar of the request's schema or regex (None: unconstrained)."""
        schema, regex = request.response_schema, request.response_regex
        if schema is None and regex is None:
            return None
        import xgrammar as xgr

        # Keys keep the schema's order: the grammar writes the fields in it (a weak model that must
        # write "description" before "preference", as sorted keys had it, describes nothing).
        text = regex if regex is not None else json.dumps(schema)
        key = f"regex:{text}" if regex is not None else f"json:{text}"
        if key not in self._grammars:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size)
                self._compiler = xgr.GrammarCompiler(info)
            if regex is not None:
                # The end-of-sequence token is allowed exactly where the regex can end.
                self._grammars[key] = self._compiler.compile_regex(text)
            else:
                # No free whitespace: with it, a weak model can fill max_new_tokens with blanks
                # and never close the JSON; compact separators keep bounded schemas terminating.
                self._grammars[key] = self._compiler.compile_json_schema(text, any_whitespace=False)
        return self._grammars[key]

    def generate(self, requests: list[ChatRequest], on_result: ResultCallback, admit: Admit | None = None) -> None:
        """Answer `requests` in batches; `admit` is not asked (a local model costs nothing per call)."""
        prompts = [self.render(r) for r in requests]
        # Every kind of request in one batch (each row keeps its own schema, regex and sampling):
        # a decoding step's fixed cost is shared. Shortest prompts first, so a split batch pads less.
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        # Even batches (70 requests at batch_size 64: 35 + 35, not 64 + 6): each batch's
        # decoding steps cost a fixed part, so a small trailing batch is nearly a full one.
        size = -(-len(order) // -(-len(order) // self.config.batch_size)) if order else 1
        for start in range(0, len(order), size):
            batch = order[start : start + size]

            def report(row: int, result: ChatResult, batch: list[int] = batch) -> None:
                on_result(batch[row], result)  # the batch's row -> the caller's request index

            self._generate_batch([requests[i] for i in batch], [prompts[i] for i in batch], report)

    def _generate_batch(self, requests: list[ChatRequest], prompts: list[str], on_result: ResultCallback) -> None:
        """Decode one batch; each row's result goes to `on_result` (batch index) as soon as it ends."""
        encoded = self.tokenizer(prompts, add_special_tokens=ADD_SPECIAL_TOKENS[self.prompt_format])["input_ids"]
        started = time.perf_counter()

        def finished(row: int, decoded: Decoded) -> None:
            result = ChatResult(
                str(self.tokenizer.decode(decoded.tokens, skip_special_tokens=True)),  # one sequence: a str
                len(encoded[row]),
                len(decoded.tokens) + decoded.finished,  # the stop token counts, as the API backends count it
                # The wait for this answer, as an API call's latency is: the batch's time so far.
                time.perf_counter() - started,
            )
            on_result(row, result)

        sample_batch(
            self.model,
            encoded,
            self.tokenizer.pad_token_id,
            [r.sampling for r in requests],
            self._eos_ids,
            # Each row's own stream: its answer does not depend on the batch it landed in.
            seeds=[r.stream_seed() for r in requests],
            grammar=[self._grammar(r) for r in requests],
            on_row=finished,
        )

    def close(self) -> None:
        """Drop the model and grammars so a stage that loads several models keeps one in memory."""
        self._grammars.clear()
        self._compiler = None
        self.__dict__.pop("model", None)  # closing twice is harmless
        gc.collect()
