"""Property tests: the normaliser and the front end never crash on arbitrary unicode."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentspeech.errors import TextError
from latentspeech.text import TextFrontend, normalize_text, split_sentences

FE = TextFrontend()

# Arbitrary unicode (surrogates included) mixed with the characters the rules care about.
_special = st.sampled_from(list("0123456789$£€¥%&+@=#/:.,-'\"()[]!?;°½…—“”‘’ \t\n") +
                           ["Dr.", "St.", "e.g.", "p.m.", "1st", "12/03/2024", "3:30", "Dec.", "555-123-4567"])
_any_char = st.characters(blacklist_categories=())
texts = st.lists(st.one_of(_any_char, _special), max_size=40).map("".join)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(texts)
def test_normalize_never_raises(text):
    out = normalize_text(text)
    assert isinstance(out, str)
    assert out == out.strip() and "  " not in out
    out.encode("utf-8")  # no lone surrogates left


@SETTINGS
@given(texts)
def test_encode_never_raises_and_ids_in_vocab(text):
    try:
        ids = FE.encode(text)
    except TextError as e:
        assert str(e).startswith("text is empty")
        return
    assert ids
    assert all(isinstance(i, int) and 0 <= i < FE.vocab.size for i in ids)


@settings(max_examples=30, deadline=None)
@given(st.lists(texts, min_size=1, max_size=5))
def test_encode_batch_ids_in_vocab(batch):
    batch = [t for t in batch if _pronounceable(t)]
    out = FE.encode_batch(batch)
    assert len(out) == len(batch)
    assert out == [FE.encode(t) for t in batch]  # batching changes nothing
    assert all(0 <= i < FE.vocab.size for ids in out for i in ids)


def _pronounceable(text):
    try:
        FE.phonemes(text)
        return True
    except TextError:
        return False


@settings(max_examples=100, deadline=None)
@given(texts, st.integers(min_value=1, max_value=60))
def test_split_chunks_fit(text, max_chars):
    chunks = split_sentences(text, max_chars=max_chars)
    assert all(0 < len(c) <= max_chars and c == c.strip() for c in chunks)
    if not text.strip():
        assert chunks == []
