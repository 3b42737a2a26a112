"""The in-flight batcher's model runner: Qwen3 prefill and decode on a KV cache held per row.

The runner owns the tensors; the scheduler (``llm_scheduler``) decides which requests hold which
rows. It runs the Hugging Face ``Qwen3ForCausalLM``'s own modules (norms, projections, rotary
table, MLP, LM head) layer by layer, with its own attention over a static cache:

- **KV cache**: per layer one K and one V tensor ``[rows, kv_heads, capacity, head_dim]`` in the
  model's dtype, for up to ``rows`` = the engine's batch. Row ``r`` holds its request's
  positions ``0 .. n-1`` from index 0 (no left padding, no per-request concatenation). The time
  capacity starts at one block and, when an admitted request needs more, grows to the next
  power-of-two number of blocks (at most ``max_positions``): a handful of reallocations over the
  engine's life, never one per request. The rows allocated grow the same way (powers of two up
  to the engine's batch) as requests take them. Every row has the capacity of the longest, so
  when the engine goes idle the cache goes back to one row of one block: a burst, or one long
  request (40 s of audio, a long text prompt), does not hold its memory for good.
- **Prefill**: requests admitted together run as one right-padded batch (causal mask plus each
  row's length); only the last real position of each row goes through the LM head.
- **Decode**: one token per running row (rows ``0 .. n-1``), each at its own position; its key and
  value are written at that position of its row, and attention reads ``[:n, :, :max_len]``, a
  plain slice of the cache.

Memory (KV, per position of one row): ``2 x layers x kv_heads x head_dim x bytes``. Canary-Qwen's
Qwen3-1.7B (28 layers, 8 KV heads of 128): 229,376 B in fp32, 114,688 B in bf16. The CPU ASR
engine's 32 rows at a typical capacity of 128-256 positions (up to ~10 s of audio + the output):
0.47-0.94 GB bf16; at 1,024 (40 s of audio): 3.8 GB bf16, 7.5 GB fp32. LLM mode's 16 rows x 2,048
(the longest text prompt + the longest output): 3.8 GB bf16, 7.5 GB fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# transformers (its Qwen3 rotary helper) is imported at the first step: importing this module,
# as the llm model's engine does, does not load transformers before the weights are loaded.

#: Positions per cache block: capacity grows in whole blocks (a power of two of them).
CACHE_BLOCK = 128


@dataclass(frozen=True)
class LoraWeights:
    """The ASR adapter applied at run time: per layer, per adapted projection (``q_proj``,
    ``v_proj``), ``A`` [r, in] and ``B`` [out, r]; rows with the adapter add
    ``scale * (x @ A^T) @ B^T`` to the base projection, the others do not, in one batch."""

    scale: float
    layers: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]

    @property
    def rank(self) -> int:
        """``r``: rows of the ``A`` matrices (0 when no layer is adapted)."""
        return next((int(a.shape[0]) for mats in self.layers.values() for a, _ in mats.values()), 0)

    def describe(self) -> str:
        names = sorted({n for mats in self.layers.values() for n in mats})
        return f"r={self.rank}, scale {self.scale:g}, on {'/'.join(names)} of {len(self.layers)} layers"


@dataclass(frozen=True)
class RunnerShape:
    layers: int
    kv_heads: int
    heads: int
    head_dim: int
    hidden: int

    @classmethod
    def of(cls, config) -> "RunnerShape":
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(
            config.num_hidden_layers,
            config.num_key_value_heads,
            config.num_attention_heads,
            head_dim,
            config.hidden_size,
        )

    def kv_bytes_per_position(self, dtype: torch.dtype) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.empty((), dtype=dtype).element_size()


class KvCache:
    """Per-layer K/V tensors ``[allocated rows, kv_heads, capacity, head_dim]``, grown on demand in
    both dimensions up to ``rows`` x ``max_positions`` and given back when the engine is idle."""

    def __init__(self, shape: RunnerShape, rows: int, max_positions: int, dtype: torch.dtype):
        self.shape, self.rows, self.max_positions, self.dtype = shape, rows, max_positions, dtype
        self.capacity = 0  # positions per row allocated now
        self.allocated_rows = 0  # rows allocated now (a power of two, at most ``rows``)
        self.reallocations = 0  # growths of the capacity after the first allocation (statistics, tests)
        self.row_growths = 0  # growths of the allocated rows (statistics, tests)
        self.shrinks = 0  # returns to one row of one block (statistics, tests)
        self.peak_capacity = 0  # the most positions per row it has held
        self.peak_rows = 0  # the most rows it has held
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.reserve(1)

    def reserve(self, positions: int, rows: int = 1) -> None:
        """Make room for ``positions`` per row in rows ``0 .. rows - 1`` (each dimension grows to a
        power of two: blocks of positions, rows), keeping what the rows hold."""
        if positions <= self.capacity and rows <= self.allocated_rows:
            return
        if positions > self.max_positions:
            raise ValueError(f"{positions} positions exceed the cache's limit of {self.max_positions}")
        if rows > self.rows:
            raise ValueError(f"{rows} rows exceed the cache's {self.rows}")
        cap = self.capacity
        if positions > cap:
            blocks = 1 << max(0, math.ceil(math.log2(math.ceil(positions / CACHE_BLOCK))))
            cap = min(self.max_positions, blocks * CACHE_BLOCK)
        n = max(self.allocated_rows, min(self.rows, 1 << max(0, math.ceil(math.log2(rows)))))
        s = self.shape
        new_k = [torch.zeros(n, s.kv_heads, cap, s.head_dim, dtype=self.dtype) for _ in range(s.layers)]
        new_v = [torch.zeros(n, s.kv_heads, cap, s.head_dim, dtype=self.dtype) for _ in range(s.layers)]
        for old, new in zip(self.k + self.v, new_k + new_v):
            new[: self.allocated_rows, :, : self.capacity] = old
        self.reallocations += bool(self.capacity) and cap > self.capacity
        self.row_growths += bool(self.allocated_rows) and n > self.allocated_rows
        self.k, self.v, self.capacity, self.allocated_rows = new_k, new_v, cap, n
        self.peak_capacity = max(self.peak_capacity, cap)
        self.peak_rows = max(self.peak_rows, n)

    def shrink(self) -> None:
        """Back to one row of one block (call only when no row holds a request: their contents
        are dropped): an idle engine holds ~one block of memory, whatever the last burst grew."""
        if self.capacity > CACHE_BLOCK or self.allocated_rows > 1:
            self.k, self.v, self.capacity, self.allocated_rows = [], [], 0, 0
            self.shrinks += 1
            self.reserve(1)

    def move(self, src: int, dst: int, length: int) -> None:
        for t in self.k + self.v:
            t[dst, :, :length] = t[src, :, :length]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class ModelRunner:
    """Prefill and decode of a Hugging Face Qwen3 on a :class:`KvCache` of ``rows`` rows."""

    def __init__(self, model, rows: int, max_positions: int, lora: LoraWeights | None = None):
        cfg = model.config
        if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or ["full_attention"]):
            raise ValueError("the LLM engine supports full attention only (no sliding-window layers)")
        self.model = model.eval()
        self.inner = model.model
        self.dtype = next(model.parameters()).dtype
        self.shape = RunnerShape.of(cfg)
        limit = int(getattr(cfg, "max_position_embeddings", max_positions))
        self.max_positions = min(max_positions, limit)
        self.cache = KvCache(self.shape, rows, self.max_positions, self.dtype)
        self.scaling = self.shape.head_dim**-0.5
        self.lora = lora
        self._adapter: torch.Tensor | None = None  # [n] bool: rows of this call that use the adapter

    @property
    def embedding(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    # -- one layer ------------------------------------------------------------------------------
    def _proj(self, li: int, name: str, module, x: torch.Tensor) -> torch.Tensor:
        y = module(x)
        ab = self.lora.layers.get(li, {}).get(name) if self.lora is not None and self._adapter is not None else None
        if ab is None or not bool(self._adapter.any()):
            return y
        a, b = ab
        delta = (x @ a.T) @ b.T  # [n, T, out]: r = 128 is small next to the projection itself
        if bool(self._adapter.all()):
            return y + self.lora.scale * delta
        # A mixed batch: every row computes the delta, LLM-mode rows multiply it by 0 (dense ops;
        # indexing the adapter rows instead made index_put a multi-second step at 16 rows).
        keep = (self._adapter.to(y.dtype) * self.lora.scale).view(-1, *([1] * (y.dim() - 1)))
        return y + keep * delta

    def _qkv(self, li: int, layer, x: torch.Tensor, positions: torch.Tensor):
        """x [n, T, hidden] -> q [n, heads, T, d], k/v [n, kv_heads, T, d] (rotary applied)."""
        from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

        attn = layer.self_attn
        n, t, _ = x.shape
        d = self.shape.head_dim
        q = attn.q_norm(self._proj(li, "q_proj", attn.q_proj, x).view(n, t, -1, d)).transpose(1, 2)
        k = attn.k_norm(self._proj(li, "k_proj", attn.k_proj, x).view(n, t, -1, d)).transpose(1, 2)
        v = self._proj(li, "v_proj", attn.v_proj, x).view(n, t, -1, d).transpose(1, 2)
        cos, sin = self._rotary
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _finish_layer(self, layer, residual: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
        h = residual + layer.self_attn.o_proj(attn_out)
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """h [n, hidden] -> float32 logits [n, vocab]."""
        return self.model.lm_head(self.inner.norm(h)).float()

    # -- prefill --------------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, first_row: int, embeds: list[torch.Tensor], adapter: list[bool] | None = None) -> torch.Tensor:
        """Prefill rows ``first_row .. first_row + len(embeds) - 1`` (one request each, embeds
        ``[L_i, hidden]``) as one right-padded batch; float32 logits ``[n, vocab]`` of each row's
        last position. ``adapter``: which rows add the run-time LoRA (default all, when loaded)."""
        n = len(embeds)
        self._adapter = torch.tensor(adapter if adapter is not None else [True] * n)
        lengths = torch.tensor([e.shape[0] for e in embeds])
        t = int(lengths.max())
        self.cache.reserve(t, first_row + n)
        x = torch.zeros(n, t, self.shape.hidden, dtype=self.dtype)
        for i, e in enumerate(embeds):
            x[i, : e.shape[0]] = e.to(self.dtype)
        positions = torch.arange(t)[None].expand(n, t)
        self._rotary = self.inner.rotary_emb(x, positions)
        j = torch.arange(t)
        mask = (j[None, :] <= j[:, None])[None] & (j[None, None, :] < lengths[:, None, None])  # [n, T, T]
        mask = mask[:, None]  # [n, 1, T, T]
        rows = slice(first_row, first_row + n)
        h = x
        for li, layer in enumerate(self.inner.layers):
            q, k, v = self._qkv(li, layer, layer.input_layernorm(h), positions)
            self.cache.k[li][rows, :, :t] = k
            self.cache.v[li][rows, :, :t] = v
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=self.shape.heads != self.shape.kv_heads
            )
            h = self._finish_layer(layer, h, out.transpose(1, 2).reshape(n, t, -1))
        return self._logits(h[torch.arange(n), lengths - 1])

    # -- decode ---------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, adapter: list[bool] | None = None) -> torch.Tensor:
        """One step of rows ``0 .. n-1``: ``tokens`` [n] (each row's last token) at ``positions``
        [n] (where its key/value goes); float32 logits ``[n, vocab]``."""
        n = tokens.shape[0]
        self._adapter = torch.tensor(adapter if adapter is not None else [True] * n)
        length = int(positions.max()) + 1
        self.cache.reserve(length, n)
        x = self.embedding(tokens)[:, None, :].to(self.dtype)  # [n, 1, hidden]
        self._rotary = self.inner.rotary_emb(x, positions[:, None])
        rows = torch.arange(n)
        s = self.shape
        g = s.heads // s.kv_heads
        masked = torch.arange(length)[None, :] > positions[:, None]  # [n, L] True where not attended
        bias = torch.zeros(n, 1, 1, length, dtype=torch.float32).masked_fill_(masked[:, None, None], float("-inf"))
        h = x
        for li, layer in enumerate(self.inner.layers):
            q, k, v = self._qkv(li, layer, layer.input_layernorm(h), positions[:, None])
            kc, vc = self.cache.k[li], self.cache.v[li]
            kc[rows, :, positions] = k[:, :, 0]
            vc[rows, :, positions] = v[:, :, 0]
            keys, values = kc[:n, :, :length], vc[:n, :, :length]  # views, no copy
            qg = q.reshape(n, s.kv_heads, g, s.head_dim)  # the g query heads sharing each KV head
            scores = torch.matmul(qg, keys.transpose(-1, -2)).float() * self.scaling + bias  # [n, kv, g, L]
            probs = torch.softmax(scores, dim=-1).to(self.dtype)
            out = torch.matmul(probs, values).reshape(n, 1, -1)  # [n, 1, heads * d]
            h = self._finish_layer(layer, h, out)
        return self._logits(h[:, 0])

    def move(self, src: int, dst: int, length: int) -> None:
        self.cache.move(src, dst, length)
