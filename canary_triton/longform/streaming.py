"""Partial transcripts that concatenate exactly to the final one.

Tokens arrive a few at a time. Decoding each piece alone would break NeMo's rule (decode the whole
sequence, drop special tokens, strip) and byte-level BPE characters split across tokens. Instead
the whole sequence so far is decoded with the final rule, and the new text is sent only once the
decoded prefix is stable (the earlier text is a prefix of the new one).
"""

from __future__ import annotations

from typing import Callable, Sequence


class TranscriptStream:
    def __init__(self, decode: Callable[[Sequence[int]], str]):
        self.decode = decode
        self.ids: list[int] = []
        self.sent = ""

    def push(self, tokens: Sequence[int]) -> str:
        """Add tokens; return the text to send now (may be empty)."""
        self.ids.extend(int(t) for t in tokens)
        text = self.decode(self.ids)
        # Hold back text that may still change: an incomplete UTF-8 character decodes to U+FFFD,
        # and trailing whitespace is stripped until something follows it.
        stable = text.rstrip("\ufffd")
        if not stable.startswith(self.sent):
            return ""
        delta, self.sent = stable[len(self.sent) :], stable
        return delta

    def finish(self) -> str:
        """The rest of the final transcript (everything not sent yet)."""
        final = self.decode(self.ids)
        if not final.startswith(self.sent):  # cannot happen for a prefix-stable decoder; be exact anyway
            raise RuntimeError("partial transcripts diverged from the final transcript")
        delta, self.sent = final[len(self.sent) :], final
        return delta
