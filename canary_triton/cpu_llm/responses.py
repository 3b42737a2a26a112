"""The hand-off between the LLM engine thread and one request's responses (no Triton here).

The engine thread computes; it never waits on a client. Each request gets a
:class:`ResponseChannel`: the engine *pushes* its tokens (a list append under a lock, never an
IPC), and the channel's own thread *delivers* them. So a send that blocks (a caller whose stub
died, one that stops reading) holds up that request only, never the batch.

- **Coalescing.** Tokens that arrive while a send is in progress go out together in the next
  response (streaming), so a slow reader costs fewer sends, not more.
- **A bound on every send.** :meth:`ResponseChannel.abandoned` is True once a delivery has been
  in progress for longer than ``send_timeout_s``: the engine then cancels the request and frees
  its row (the thread stuck in the send is left to the IPC; nothing else waits on it).
- **Cancellation** is asked on the channel's thread (``ask_cancelled``, an IPC round trip in
  Triton), at most every ``check_period_s``, and never after the final response: the thread that
  asks is the one that sends the final response (Triton 2.51 fails when asked about an answered
  request).
- **Exactly one final response**: the tokens with the final flag, or the request's error.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelOptions:
    """How one request's responses are delivered."""

    streaming: bool  # a response per delivery (True) or one response with every token (False)
    check_period_s: float = 0.1  # how often the client's cancellation is asked (TensorRT-LLM's default period)
    send_timeout_s: float = 10.0  # a delivery in progress longer than this abandons the request


class ResponseChannel:
    """One request's responses: the engine pushes, the channel's thread delivers.

    ``deliver(tokens, final)`` sends one response (the tokens of this piece when streaming, every
    token when not); ``deliver_error(exc)`` sends the request's error as its final response;
    ``ask_cancelled()`` tells whether the client cancelled it. All three run on the channel's
    thread only."""

    def __init__(
        self,
        options: ChannelOptions,
        deliver: Callable[[list[int], bool], None],
        deliver_error: Callable[[Exception], None],
        ask_cancelled: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        name: str = "llm-response",
        warn: Callable[[str], None] = log.warning,
    ):
        self.options = options
        self._deliver, self._deliver_error, self._ask_cancelled = deliver, deliver_error, ask_cancelled
        self._clock, self._warn = clock, warn
        self._cond = threading.Condition()
        self._pending: list[int] = []
        self._done = False
        self._error: Exception | None = None
        self._client_cancelled = False
        self._broken = False  # a delivery raised: nothing more can reach the client
        self._sending_since: float | None = None  # when the delivery in progress began
        self.finished = threading.Event()  # set once the final response was delivered (or failed)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "ResponseChannel":
        self._thread.start()
        return self

    # -- the engine's side (never blocks on the client) -----------------------------------------
    def push(self, tokens: list[int], done: bool) -> None:
        """New tokens of the request; ``done``: it finished (they are its last)."""
        with self._cond:
            self._pending.extend(tokens)
            self._done = self._done or done
            self._cond.notify()

    def fail(self, error: Exception) -> None:
        """The request ends with ``error`` (its final response), whatever was pushed before."""
        with self._cond:
            self._error, self._done = error, True
            self._cond.notify()

    def abandoned(self) -> bool:
        """True once a delivery has been in progress for longer than the send timeout."""
        since = self._sending_since
        return since is not None and self._clock() - since > self.options.send_timeout_s

    def cancelled(self) -> bool:
        """Whether the engine should stop the request: its client cancelled it (as last asked on
        the channel's thread), or a delivery stalled past the send timeout."""
        return self._client_cancelled or self._broken or self.abandoned()

    # -- the channel's thread -------------------------------------------------------------------
    def _run(self) -> None:
        collected: list[int] = []  # not streaming: every token, sent once
        next_check = self._clock() + self.options.check_period_s
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._done:
                        wait = next_check - self._clock()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    tokens, self._pending = self._pending, []
                    done, error = self._done, self._error
                if error is not None:
                    self._send(self._deliver_error, error)
                    return
                if self.options.streaming:
                    if tokens or done:
                        self._send(self._deliver, tokens, done)
                else:
                    collected.extend(tokens)
                    if done:
                        self._send(self._deliver, collected, True)
                if done:
                    return
                if self._clock() >= next_check:  # never after the final response: this thread sends it
                    next_check = self._clock() + self.options.check_period_s
                    if not self._client_cancelled:
                        self._client_cancelled = self._check_cancelled()
        except Exception:  # noqa: BLE001  the client may be gone; the request ends here
            self._broken = True
            self._warn(
                f"delivering a response failed ({traceback.format_exc(limit=1).strip()}); the request is cancelled"
            )
        finally:
            self.finished.set()

    def _send(self, fn, *args) -> None:
        self._sending_since = self._clock()
        try:
            fn(*args)
        finally:
            self._sending_since = None

    def _check_cancelled(self) -> bool:
        try:
            return bool(self._ask_cancelled())
        except Exception as e:  # noqa: BLE001  a failing check counts as not cancelled
            self._warn(f"is_cancelled() failed ({e}); the request goes on")
            return False
