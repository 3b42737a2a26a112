"""Word error rate, pooled over a set as the Open ASR Leaderboard does (total edits / total words)."""

from __future__ import annotations

from typing import Callable, Sequence

# whisper_normalizer (the client extra) is imported on first use of the leaderboard's normaliser.


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def simple_normalize(text: str) -> str:
    """Lower-case and drop punctuation; the leaderboard's Whisper normaliser is used by the client."""
    keep = "".join(c if c.isalnum() or c.isspace() or c == "'" else " " for c in text.lower())
    return " ".join(keep.split())


def leaderboard_normalize(text: str) -> str:
    """The Open ASR Leaderboard's normaliser: Whisper's English text normaliser (spellings,
    numbers, contractions), from the ``whisper-normalizer`` package (client extra)."""
    return _english_normalizer()(text)


_NORMALIZER = None


def _english_normalizer():
    global _NORMALIZER
    if _NORMALIZER is None:
        try:
            from whisper_normalizer.english import EnglishTextNormalizer
        except ImportError:  # pragma: no cover - the client extra installs it
            raise ImportError(
                "WER with the leaderboard's normaliser needs whisper-normalizer: pip install 'canary-triton[client]'"
            ) from None
        _NORMALIZER = EnglishTextNormalizer()
    return _NORMALIZER


def wer(refs: Sequence[str], hyps: Sequence[str], normalize: Callable[[str], str] = simple_normalize) -> float:
    """Pooled WER: sum of word edits over the sum of reference words."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = words = 0
    for r, h in zip(refs, hyps):
        rw, hw = normalize(r).split(), normalize(h).split()
        edits += edit_distance(rw, hw)
        words += len(rw)
    return edits / max(words, 1)
