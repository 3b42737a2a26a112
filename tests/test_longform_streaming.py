"""Partial transcripts: stable prefixes of NeMo's decoding that concatenate to the final text."""

from __future__ import annotations

from canary_triton.checkpoint.reader import checkpoint_tokenizer
from canary_triton.longform.streaming import TranscriptStream


def test_pieces_concatenate_to_the_final_transcript(oracle_trained):
    tok = checkpoint_tokenizer(oracle_trained.info)
    for text in ["one two three", "turn on the light", "  leading and trailing  ", "naïve café — ünïcödé 数字"]:
        ids = tok.encode(text)
        for step in (1, 2, 3):
            stream = TranscriptStream(tok.decode)
            pieces = [stream.push(ids[i : i + step]) for i in range(0, len(ids), step)]
            pieces.append(stream.finish())
            assert "".join(pieces) == tok.decode(ids)
            assert all("\ufffd" not in p for p in pieces)


def test_text_is_sent_as_soon_as_it_is_stable(oracle_trained):
    tok = checkpoint_tokenizer(oracle_trained.info)
    stream = TranscriptStream(tok.decode)
    first = stream.push(tok.encode("one"))
    assert first == "one"
    assert stream.push(tok.encode(" two")) == " two"
    assert stream.finish() == ""
