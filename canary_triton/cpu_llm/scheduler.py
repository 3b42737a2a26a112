"""The in-flight batcher's scheduler: which requests hold a row of the batch, on plain data only.

No tensors here (and no torch import), so its rules are unit-tested alone; the model runner
(``llm_runner``) owns the tensors and is told what to do. As vLLM separates its Scheduler from
its ModelRunner.

Rules:

- **Rows.** At most ``max_rows`` requests run at once; each holds one row of the runner's KV
  cache. Running requests always hold rows ``0 .. n-1`` (compact), so the runner decodes a plain
  slice of its cache: when a request leaves row ``i``, the request in the last row moves into
  ``i`` (:class:`Move`, one row's cache copied, never the whole cache).
- **Capacity.** A request needs ``prompt_len + max_new_tokens`` positions of its row; more than
  ``max_positions`` is refused when it is added (:class:`CapacityError`, a one-line reason).
- **Admission** is first come, first served at token boundaries: every waiting request that has
  a free row is admitted together (the runner prefills them as one batch). A request cancelled
  while it waited is dropped before it takes a row (never prefilled).
- **Finish.** The end id finishes a request without being emitted (as TensorRT-LLM's executor):
  ``stop``; any other token is emitted, and the request finishes once it has ``max_new_tokens``
  tokens (``length``) or is cancelled (``cancelled``; checked after each token, between steps: it
  stops at its next token). The reasons are ``contract.FinishReason``, vLLM's vocabulary.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

from canary_triton.contract import FinishReason

#: Every way a request leaves the engine (``contract.FinishReason``: stop and length are the
#: successes; cancelled, aborted and error are answered as errors).
OUTCOMES: tuple[FinishReason, ...] = tuple(FinishReason)


class CapacityError(ValueError):
    """A request that can never fit a row (prompt + tokens above the row's positions)."""


class Schedulable(Protocol):
    """What the scheduler reads and writes on a request (``llm_batcher.GenerationRequest``)."""

    max_new_tokens: int
    end_id: int
    generated: list[int]
    row: int | None

    @property
    def prompt_len(self) -> int: ...

    def is_cancelled(self) -> bool: ...


@dataclass(frozen=True)
class Move:
    """The request in row ``src`` now holds row ``dst``: the runner copies that row's cache."""

    src: int
    dst: int
    length: int  # positions of the row that are in use


@dataclass(frozen=True)
class Admission:
    admitted: list  # requests given rows this boundary, in row order (prefill them together)
    dropped: list  # requests cancelled while waiting (finished as cancelled, no row taken)


@dataclass(frozen=True)
class Token:
    """What one new token means for its request."""

    emit: bool  # the token is part of the output (False for the end id)
    finished: FinishReason | None  # why the request is done after it, else None


@dataclass
class Scheduler:
    max_rows: int
    max_positions: int
    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)  # running[i] holds row i

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_positions < 2:
            raise ValueError(f"max_rows must be >= 1 and max_positions >= 2, got {self.max_rows}, {self.max_positions}")

    # -- queue ----------------------------------------------------------------------------------
    def add(self, req: Schedulable) -> None:
        need = req.prompt_len + req.max_new_tokens
        if req.prompt_len < 1:
            raise CapacityError("the prompt is empty")
        if need > self.max_positions:
            raise CapacityError(
                f"the prompt ({req.prompt_len} positions) plus {req.max_new_tokens} new tokens "
                f"needs {need} positions; the LLM engine's limit is {self.max_positions}"
            )
        req.row = None
        self.waiting.append(req)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def admit(self) -> Admission:
        """Give free rows to waiting requests, first come first served."""
        admitted, dropped = [], []
        while self.waiting and len(self.running) < self.max_rows:
            req = self.waiting.popleft()
            if req.is_cancelled():
                dropped.append(req)
                continue
            req.row = len(self.running)
            self.running.append(req)
            admitted.append(req)
        return Admission(admitted, dropped)

    # -- tokens ---------------------------------------------------------------------------------
    def on_token(self, req: Schedulable, token: int) -> Token:
        """Record one generated token of a running request (does not free its row: see release)."""
        if token == req.end_id:
            return Token(emit=False, finished=FinishReason.STOP)
        req.generated.append(token)
        if req.is_cancelled():
            return Token(emit=True, finished=FinishReason.CANCELLED)
        return Token(emit=True, finished=FinishReason.LENGTH if len(req.generated) >= req.max_new_tokens else None)

    @staticmethod
    def positions(req: Schedulable) -> int:
        """Positions of the request's row that hold cache: the prompt and every generated token
        but the last (whose key/value the next decode step writes)."""
        return req.prompt_len + max(len(req.generated) - 1, 0)

    def release(self, req: Schedulable) -> Move | None:
        """Free the request's row; the last row's request moves into it (returned) if needed."""
        row = req.row
        if row is None or row >= len(self.running) or self.running[row] is not req:
            raise ValueError("release of a request that holds no row")
        last = self.running.pop()
        req.row = None
        if last is req:
            return None
        self.running[row] = last
        last.row = row
        return Move(src=len(self.running), dst=row, length=self.positions(last))

    def release_all(self) -> list:
        """Every running and waiting request, rows freed (engine stop or a failed step)."""
        out = list(self.running) + list(self.waiting)
        for req in out:
            req.row = None
        self.running.clear()
        self.waiting.clear()
        return out


#: For tests and callers that build requests without torch.
@dataclass
class PlainRequest:
    prompt_len: int
    max_new_tokens: int
    end_id: int = -1
    cancelled: Callable[[], bool] = lambda: False
    generated: list[int] = field(default_factory=list)
    row: int | None = None

    def is_cancelled(self) -> bool:
        return self.cancelled()
