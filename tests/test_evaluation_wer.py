"""canary_triton/evaluation/wer.py: word edit distance, the two normalisers, pooled WER."""

from __future__ import annotations

import pytest

from canary_triton.evaluation.wer import edit_distance, leaderboard_normalize, simple_normalize, wer


@pytest.mark.parametrize(
    "ref, hyp, edits",
    [
        ("", "", 0),
        ("a b c", "a b c", 0),
        ("a b c", "a x c", 1),  # substitution
        ("a b c", "a c", 1),  # deletion
        ("a c", "a b c", 1),  # insertion
        ("a b c", "", 3),
        ("", "a b", 2),
        ("kitten sat", "sitting sat down", 2),
        ("a b c d", "b c d a", 2),  # a rotation: one deletion, one insertion
    ],
)
def test_edit_distance_counts_word_substitutions_insertions_and_deletions(ref, hyp, edits):
    assert edit_distance(ref.split(), hyp.split()) == edits
    assert edit_distance(hyp.split(), ref.split()) == edits  # symmetric


def test_simple_normalize_lowercases_drops_punctuation_keeps_apostrophes():
    assert simple_normalize("Hello, World!") == "hello world"
    assert simple_normalize("  It's   TWO-part\ttext.  ") == "it's two part text"
    assert simple_normalize("...") == ""
    assert simple_normalize("Café 42") == "café 42"


def test_leaderboard_normalize_is_whispers_english_normaliser():
    assert leaderboard_normalize("Hello, World!") == "hello world"
    assert leaderboard_normalize("Mr. Smith's colour") == "mister smith is color"  # titles, contractions, spelling
    assert leaderboard_normalize("twenty-five percent") == "25%"
    assert leaderboard_normalize("") == ""


def test_wer_pools_edits_over_reference_words():
    # 1 edit in 4 words and 2 edits in 2 words: pooled 3 / 6, not the mean of 0.25 and 1.0
    assert wer(["the cat sat down", "hello there"], ["the cat sat", "yellow where"]) == pytest.approx(0.5)
    assert wer(["a b"], ["a b"]) == 0.0
    assert wer(["a"], ["b c d"]) == 3.0  # insertions can take WER above 1


def test_wer_normalises_both_sides_first():
    assert wer(["Hello, World!"], ["hello world"]) == 0.0
    assert wer(["twenty five"], ["25"], normalize=leaderboard_normalize) == 0.0
    assert wer(["twenty five"], ["25"]) == 1.0  # the simple normaliser leaves numbers as written
    assert wer(["A B"], ["a b"], normalize=lambda s: s) == 1.0


def test_wer_of_empty_references():
    assert wer([], []) == 0.0
    assert wer([""], [""]) == 0.0
    assert wer([""], ["extra words"]) == 2.0  # no reference words: edits over max(words, 1)
    assert wer(["", "a b"], ["x", "a b"]) == 0.5


def test_wer_refuses_lists_of_different_lengths():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
