"""split_sentences: pysbd sentences, over-long ones cut at clauses, then spaces, then characters."""

import pytest

from latentspeech.errors import TextError
from latentspeech.text import split_sentences


def test_empty_text():
    assert split_sentences("") == []
    assert split_sentences("  \n\t ") == []


def test_sentences_respect_abbreviations_and_decimals():
    text = "Dr. Smith paid $3.50 on Monday. He left at 5 p.m. sharp! Did he? Yes."
    assert split_sentences(text) == ["Dr. Smith paid $3.50 on Monday.", "He left at 5 p.m. sharp!", "Did he?", "Yes."]


def test_long_sentence_is_cut_at_clauses_first():
    text = "The first clause is here, the second clause follows; and a third one: comes last."
    chunks = split_sentences(text, max_chars=30)
    assert chunks == ["The first clause is here,", "the second clause follows;", "and a third one: comes last."]


def test_clauses_are_packed_greedily():
    chunks = split_sentences("a, b, c, d, e.", max_chars=7)
    assert chunks == ["a, b,", "c, d,", "e."]


def test_long_clause_is_cut_at_spaces_and_long_words_hard():
    words = " ".join(f"word{i}" for i in range(40))
    chunks = split_sentences(words, max_chars=25)
    assert all(len(c) <= 25 for c in chunks)
    assert " ".join(chunks) == words
    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


@pytest.mark.parametrize("max_chars", [1, 5, 17, 80, 250])
def test_every_chunk_fits_and_no_text_is_lost(max_chars):
    text = ("It was the best of times, it was the worst of times; it was the age of wisdom - "
            "it was the age of foolishness. Supercalifragilisticexpialidocious! ") * 3
    chunks = split_sentences(text, max_chars=max_chars)
    assert all(0 < len(c) <= max_chars for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")


def test_bad_max_chars():
    with pytest.raises(TextError, match="max_chars"):
        split_sentences("Hello.", max_chars=0)


def test_punctuation_alone_joins_its_sentence():
    """A closing quote the segmenter splits off is not a sentence of its own (it has nothing to say)."""
    assert split_sentences("and may be I'll be better by and by.\"") == ["and may be I'll be better by and by.\""]
    assert split_sentences("...") == ["..."]
    assert all(any(c.isalnum() for c in s) for s in split_sentences('He said: "Go." "Now!" she said. "'))


def test_punctuation_left_over_at_the_end_keeps_the_bound():
    """Punctuation with no sentence to join is cut to max_chars like any other text."""
    assert all(len(c) <= 1 for c in split_sentences(":{", max_chars=1))
    assert split_sentences(":{", max_chars=1) != []
