"""In-flight (continuous) batching of Qwen3 on CPU with PyTorch: the CPU twin of TensorRT-LLM.

Requests join the running batch at token boundaries and leave it as soon as they emit the end id
or reach their token limit, so a short request is never held behind a long one. Each new request
is prefilled alone from its embeddings (text ids plus prompt-table rows for the audio), then its
KV cache is left-padded and merged into the batch cache; every step decodes all running rows at
once with per-row positions and an attention mask over the padding. Greedy decoding, as NeMo's
``SALM.generate`` (the end id is not emitted, as TensorRT-LLM's executor does not emit it).

Why a hand-written loop: transformers' continuous-batching manager takes token ids only, while
audio enters as embeddings; this loop takes ``inputs_embeds`` natively (see
``../shared/reference/cpu-serving-notes.md`` for the measurements that informed the choice).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

log = logging.getLogger(__name__)

#: Called with (new token ids, finished). The engine calls it from its own thread.
TokenCallback = Callable[[list[int], bool], None]


@dataclass
class GenerationRequest:
    embeds: torch.Tensor  # [L, hidden] prompt embeddings (audio rows already in place)
    max_new_tokens: int
    end_id: int
    on_tokens: TokenCallback
    is_cancelled: Callable[[], bool] = lambda: False
    on_error: Callable[[Exception], None] | None = None
    sampling: "Sampling | None" = None  # None: greedy (NeMo's default)
    #: Called once when the request leaves the engine: outcome ("completed" | "cancelled" |
    #: "failed") and the number of tokens generated (statistics, metrics).
    on_finish: Callable[[str, int], None] | None = None
    on_admit: Callable[[], None] | None = None  # called when the request takes a batch slot
    # engine state
    generated: list[int] = field(default_factory=list)
    position: int = 0
    generator: torch.Generator | None = None
    in_slot: bool = False  # holds a row of the running batch


@dataclass(frozen=True)
class Sampling:
    """Temperature / nucleus sampling for one request (TensorRT-LLM's ``temperature``,
    ``runtime_top_p``, ``seed``); a seeded request is reproducible whatever it is batched with."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


def choose_token(logits: torch.Tensor, sampling: Sampling | None, gen: torch.Generator | None) -> int:
    """Greedy argmax, or a draw from the temperature-scaled, top-p-truncated distribution."""
    if sampling is None or sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < sampling.top_p  # the smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


def splice_prompt_table(embedding: torch.nn.Embedding, ids: torch.Tensor, table: torch.Tensor | None) -> torch.Tensor:
    """Embeddings for ``ids`` where ids >= vocab rows address rows of ``table`` (TRT-LLM's convention)."""
    vocab = embedding.num_embeddings
    fake = ids >= vocab
    if bool(fake.any()):
        if table is None:
            raise ValueError(f"input ids reach {int(ids.max())} >= vocab size {vocab} but no prompt table was given")
        rows = ids[fake] - vocab
        if int(rows.max()) >= table.shape[0]:
            raise ValueError(f"input id {int(ids.max())} addresses prompt-table row {int(rows.max())}, "
                             f"but the table has {table.shape[0]} rows")
    out = embedding(ids.clamp(max=vocab - 1))
    if bool(fake.any()):
        out[fake] = table[ids[fake] - vocab].to(out.dtype)
    return out


class ContinuousBatcher:
    """A background thread that runs every submitted request to completion, in-flight batched."""

    def __init__(self, model, max_batch: int = 16, threads: int | None = None):
        self.model = model.eval()
        self.max_batch = max_batch
        self.threads = threads
        self._queue: "queue.Queue[GenerationRequest | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.steps = 0  # decode steps run (statistics)
        self.max_rows_seen = 0
        self.active = 0  # requests holding a batch slot now
        self.outcomes = {"completed": 0, "cancelled": 0, "failed": 0}
        self.tokens_generated = 0

    # -- public ---------------------------------------------------------------------------------
    def start(self) -> "ContinuousBatcher":
        self._thread = threading.Thread(target=self._run, name="llm-continuous-batcher", daemon=True)
        self._thread.start()
        return self

    def submit(self, req: GenerationRequest) -> None:
        if self._stopping.is_set():
            raise RuntimeError("the LLM engine is stopping")
        self._queue.put(req)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- engine ---------------------------------------------------------------------------------
    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        running: list[GenerationRequest] = []
        cache = None
        mask: torch.Tensor | None = None
        last: torch.Tensor | None = None  # [B] last token of each running row
        while True:
            # Admit new requests at this token boundary (block only when idle).
            admitted: list[GenerationRequest] = []
            try:
                while len(running) + len(admitted) < self.max_batch:
                    item = self._queue.get(block=not running and not admitted)
                    if item is None:
                        self._finish_all(running, admitted)
                        return
                    admitted.append(item)
            except queue.Empty:
                pass
            for req in admitted:
                if req.is_cancelled():  # cancelled while queued: no prefill, no slot
                    self._safe_callback(req, [], True)
                    self._finished(req, "cancelled")
                    continue
                try:
                    first, req_cache = self._prefill(req)
                except Exception as e:  # a bad request must not stop the engine
                    log.exception("prefill failed")
                    self._safe_callback(req, [], True, error=e)
                    self._finished(req, "failed")
                    continue
                if self._emit(req, first):
                    continue  # finished at its first token
                cache, mask, last = self._merge(cache, mask, last, req_cache, first)
                running.append(req)
                req.in_slot = True
                self.active += 1
                if req.on_admit is not None:
                    try:
                        req.on_admit()
                    except Exception:  # metrics must never stop the engine
                        log.exception("admit callback failed")
            if not running:
                cache = mask = last = None
                continue
            self.max_rows_seen = max(self.max_rows_seen, len(running))
            try:
                tokens, cache, mask = self._step(running, cache, mask, last)
            except Exception as e:
                log.exception("decode step failed")
                self._finish_all(running, [], error=e)
                running, cache, mask, last = [], None, None, None
                continue
            self.steps += 1
            keep = [i for i, (req, tok) in enumerate(zip(running, tokens)) if not self._emit(req, tok)]
            if len(keep) != len(running):
                running = [running[i] for i in keep]
                if not running:
                    cache = mask = last = None
                    continue
                cache, mask = self._select(cache, mask, keep)
            last = torch.tensor([r.generated[-1] for r in running], dtype=torch.long)

    def _emit(self, req: GenerationRequest, token: int) -> bool:
        """Record one token; True when the request is finished (and has been told so)."""
        if token == req.end_id:
            self._safe_callback(req, [], True)
            self._finished(req, "completed")
            return True
        req.generated.append(token)
        self.tokens_generated += 1
        cancelled = req.is_cancelled()
        done = len(req.generated) >= req.max_new_tokens or cancelled
        self._safe_callback(req, [token], done)
        if done:
            self._finished(req, "cancelled" if cancelled else "completed")
        return done

    def _finished(self, req: GenerationRequest, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if req.in_slot:
            req.in_slot = False
            self.active -= 1
        if req.on_finish is not None:
            try:
                req.on_finish(outcome, len(req.generated))
            except Exception:  # metrics must never stop the engine
                log.exception("finish callback failed")

    @staticmethod
    def _safe_callback(req: GenerationRequest, tokens: list[int], done: bool, error: Exception | None = None) -> None:
        try:
            if error is not None and req.on_error is not None:
                req.on_error(error)
            else:
                req.on_tokens(tokens, done)
        except Exception:  # the sender may be gone (client cancelled); the engine goes on
            log.exception("token callback failed")

    def _finish_all(self, running, admitted, error: Exception | None = None) -> None:
        for req in list(running) + list(admitted):
            self._safe_callback(req, [], True, error=error)
            self._finished(req, "failed" if error is not None else "completed")

    @torch.no_grad()
    def _prefill(self, req: GenerationRequest):
        embeds = req.embeds.to(self.model.dtype)[None]
        out = self.model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)  # only the last position's logits
        req.position = embeds.shape[1]
        req.generator = req.sampling.generator() if req.sampling is not None else None
        return choose_token(out.logits[0, -1], req.sampling, req.generator), out.past_key_values

    def _merge(self, cache, mask, last, new_cache, first: int):
        new_len = new_cache.get_seq_length()
        new_mask = torch.ones(1, new_len, dtype=torch.long)
        if cache is None:
            return new_cache, new_mask, torch.tensor([first], dtype=torch.long)
        old_len = mask.shape[1]
        total = max(old_len, new_len)
        for old_layer, new_layer in zip(cache.layers, new_cache.layers):
            old_layer.keys = _left_pad(old_layer.keys, total)
            old_layer.values = _left_pad(old_layer.values, total)
            old_layer.keys = torch.cat([old_layer.keys, _left_pad(new_layer.keys, total)], dim=0)
            old_layer.values = torch.cat([old_layer.values, _left_pad(new_layer.values, total)], dim=0)
        mask = torch.cat([_left_pad(mask, total, dim=1), _left_pad(new_mask, total, dim=1)], dim=0)
        return cache, mask, torch.cat([last, torch.tensor([first], dtype=torch.long)])

    @torch.no_grad()
    def _step(self, running: list[GenerationRequest], cache, mask: torch.Tensor, last: torch.Tensor):
        embeds = self.model.get_input_embeddings()(last)[:, None, :]
        positions = torch.tensor([[r.position + len(r.generated) - 1] for r in running], dtype=torch.long)
        mask = torch.cat([mask, torch.ones(len(running), 1, dtype=mask.dtype)], dim=1)
        out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]
        tokens = [choose_token(logits[i], r.sampling, r.generator) for i, r in enumerate(running)]
        return tokens, out.past_key_values, mask

    def _select(self, cache, mask: torch.Tensor, keep: list[int]):
        idx = torch.tensor(keep, dtype=torch.long)
        mask = mask.index_select(0, idx)
        # Drop columns that are padding for every remaining row.
        first_used = int((mask.sum(0) > 0).long().argmax())
        mask = mask[:, first_used:]
        for layer in cache.layers:
            layer.keys = layer.keys.index_select(0, idx)[:, :, first_used:]
            layer.values = layer.values.index_select(0, idx)[:, :, first_used:]
        return cache, mask


def _left_pad(t: torch.Tensor, length: int, dim: int = 2) -> torch.Tensor:
    pad = length - t.shape[dim]
    if pad <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = pad
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)


class CancelRegistry:
    """Request ids of forwarded requests stopped by a ``stop`` request (see contract.STOP).

    An order may arrive before the request it cancels (they travel separately), so keys are kept
    for ``ttl_s``; at most ``max_keys`` are held (oldest dropped first)."""

    def __init__(self, ttl_s: float = 600.0, max_keys: int = 100_000):
        import collections

        self.ttl_s, self.max_keys = ttl_s, max_keys
        self._keys: "collections.OrderedDict[str, float]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def cancel(self, key: str) -> None:
        import time

        now = time.monotonic()
        with self._lock:
            self._keys[key] = now
            self._keys.move_to_end(key)
            while self._keys and (len(self._keys) > self.max_keys or next(iter(self._keys.values())) < now - self.ttl_s):
                self._keys.popitem(last=False)

    def is_cancelled(self, key: str | None) -> bool:
        if key is None:
            return False
        with self._lock:
            return key in self._keys
