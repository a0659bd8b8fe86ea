"""A KV cache allocated once per batch and filled in place (the decoding loop's, llm/decoding.py).

transformers' `DynamicLayer` appends by `torch.cat`, copying the whole cache of every layer at
every step: at 72 rows of 300-600 tokens that copy was a third of a decoding step. Here each
layer holds a buffer sized for prompt + `max_new_tokens`; a step writes its token in place, and
`keys`/`values` are views of the filled part, so attention is unchanged. Rows that finish leave
by swap-remove (`swap_remove_order`), copying one row instead of every row after the hole.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A layer's KV cache in a buffer sized for the whole generation."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._rows = slice(None)  # the rows the next update writes (all but during a prefill chunk)

    def allocate(self, rows: int, heads: int, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.device = device
        self._keys = torch.empty(rows, heads, self.capacity, dim, dtype=dtype, device=device)
        self._values = torch.empty(rows, heads, self.capacity, dim, dtype=dtype, device=device)
        self.is_initialized = True

    def focus(self, rows: slice, start: int, filled: int | None = None) -> None:
        """Make the next update write rows `rows` from column `start`, attending to their columns
        before it (a prefill chunk); columns `filled` to `start` are the chunk's masked padding,
        zeroed because never written: a masked score is dropped by adding -inf, which leaves a
        NaN from uninitialized memory a NaN. `focus(slice(None), end)` ends the pass."""
        if filled is not None:
            self._keys[rows, :, filled:start] = 0
            self._values[rows, :, filled:start] = 0
        self._rows, self.length = rows, start
        self.keys, self.values = self._keys[rows, :, :start], self._values[rows, :, :start]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            rows, heads, _, dim = key_states.shape
            self.allocate(rows, heads, dim, key_states.dtype, key_states.device)
        end = self.length + key_states.shape[-2]
        self._keys[self._rows, :, self.length : end] = key_states
        self._values[self._rows, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[self._rows, :, :end], self._values[self._rows, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices` (new row i = old row indices[i]), in place: only rows that change
        place are copied, and the batch shrinks to a view (see `swap_remove_order`)."""
        moved = (indices != torch.arange(len(indices))).nonzero().squeeze(1)
        for buffer in (self._keys, self._values):
            if len(moved):
                buffer[moved, :, : self.length] = buffer[indices[moved], :, : self.length]  # gathers first
        self._keys, self._values = self._keys[: len(indices)], self._values[: len(indices)]
        self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def batch_expand(self, index: torch.Tensor) -> None:
        """New row i = old row index[i]: one filled cache row becomes several (shared prefixes)."""
        for name in ("_keys", "_values"):
            filled = getattr(self, name)[index, :, : self.length]
            buffer = filled.new_empty(filled.shape[0], filled.shape[1], self.capacity, filled.shape[3])
            buffer[:, :, : self.length] = filled
            setattr(self, name, buffer)
        self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]


class PreallocatedCache(Cache):
    """One `PreallocatedLayer` per model layer, each `capacity` tokens long."""

    def __init__(self, model: Any, capacity: int):
        self.preallocated = [PreallocatedLayer(capacity) for _ in range(model.config.num_hidden_layers)]
        super().__init__(layers=list(self.preallocated))
        self._model = model

    def allocate(self, rows: int) -> None:
        """Buffers for `rows` rows, in the model's dtype and device."""
        config = self._model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        parameter = next(self._model.parameters())
        for layer in self.preallocated:
            layer.allocate(rows, heads, dim, parameter.dtype, parameter.device)

    def focus(self, rows: slice, start: int, filled: int | None = None) -> None:
        """`PreallocatedLayer.focus` on every layer."""
        for layer in self.preallocated:
            layer.focus(rows, start, filled)

    def expand(self, index: torch.Tensor) -> None:
        """`PreallocatedLayer.batch_expand` on every layer."""
        for layer in self.preallocated:
            layer.batch_expand(index)


def swap_remove_order(keep: list[int]) -> list[int]:
    """The surviving batch rows, ordered so that as few as possible move: each row that left is
    replaced by a survivor from the end of the batch (copying every row after the first that
    left, at each departure, was a quarter of a stage's time).

    >>> swap_remove_order([0, 2, 3, 4])  # row 1 left: the last row takes its place
    [0, 4, 2, 3]
    """
    size = len(keep)
    survivors = set(keep)
    holes = [row for row in range(size) if row not in survivors]
    order = list(range(size))
    for hole, mover in zip(holes, (row for row in keep if row >= size)):
        order[hole] = mover
    return order
