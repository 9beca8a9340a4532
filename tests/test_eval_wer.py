"""WER/CER scoring and the English scoring normaliser (latentspeech.eval.wer)."""

import pytest

from latentspeech.eval.wer import (
    EnglishScoringNormalizer,
    number_to_words,
    score_corpus,
    score_pair,
    word_error_rate,
)


@pytest.fixture(scope="module")
def norm():
    return EnglishScoringNormalizer()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Go forward 10 meters.", "go forward ten meters"),
        ("And Mr. John Dashwood had then leisure", "and mister john dashwood had then leisure"),
        ("Mrs Jennings and Dr. Brown", "missus jennings and doctor brown"),
        ("He won't go; it's John's colour!", "he will not go it is johns color"),
        ("I can't, they're sure we'll see, I'm, I've", "i can not they are sure we will see i am i have"),
        ("Unless to be rather cold-hearted, is to be ill-disposed.", "unless to be rather cold hearted is to be ill disposed"),
        ("The 2nd and 21st of May, 1811", "the second and twenty first of may eighteen eleven"),
        ("He paid $20 and 25% more", "he paid twenty dollars and twenty five percent more"),
        ("10,000 men in the 1960s", "ten thousand men in the nineteen sixties"),
        ("It is 3.5 o'clock", "it is three point five oclock"),
        ("uh I think [noise] the café (laughs) is OK", "i think the cafe is okay"),
        ("Smith & Sons", "smith and sons"),
        ("“Quoted” — text…", "quoted text"),
        ("105", "one hundred and five"),
    ],
)
def test_normaliser_cases(norm, text, expected):
    assert norm(text) == expected


def test_normaliser_is_idempotent_and_symmetric(norm):
    for s in ["Mr. Smith paid $20 for the 2nd car.", "ten of clubs", "It's 1960!"]:
        once = norm(s)
        assert norm(once) == once


def test_numbers_can_be_kept_as_digits():
    assert EnglishScoringNormalizer(spell_numbers=False)("Go forward 10 meters.") == "go forward 10 meters"


def test_number_to_words():
    assert number_to_words("1800", "year") == "eighteen hundred"
    assert number_to_words("3", "ordinal") == "third"
    assert number_to_words("21") == "twenty one"


def test_known_pair_counts():
    s = score_pair("a b c d", "a x c e f", normalizer=None)
    assert (s.substitutions, s.deletions, s.insertions, s.ref_words) == (2, 0, 1, 4)
    assert s.wer == pytest.approx(0.75)
    s = score_pair("the cat sat on the mat", "the cat sat on mat", normalizer=None)
    assert (s.substitutions, s.deletions, s.insertions) == (0, 1, 0)
    assert s.wer == pytest.approx(1 / 6)
    assert s.cer == pytest.approx(4 / len("the cat sat on the mat"))


def test_digits_vs_words_score_zero():
    s = score_pair("go forward ten meters", "Go forward 10 meters.")
    assert s.wer == 0.0 and s.cer == 0.0
    assert score_pair("and mister john dashwood", "And Mr. John Dashwood").wer == 0.0


def test_real_error_is_counted():
    s = score_pair("he was not an ill disposed young man", "He was not an old-sposed young man.")
    assert s.wer == pytest.approx(2 / 8)  # ill->old, disposed->sposed
    assert s.substitutions == 2


def test_empty_reference_and_hypothesis():
    assert score_pair("", "").wer == 0.0
    s = score_pair("", "hello there")
    assert s.insertions == 2 and s.wer == 2.0
    s = score_pair("hello there", "")
    assert s.deletions == 2 and s.wer == 1.0 and s.cer == 1.0


def test_corpus_wer_sums_errors_not_rates():
    refs = ["a b c d e f g h i j", "x"]
    hyps = ["a b c d e f g h i j", "y"]
    total, per_utt = score_corpus(refs, hyps, normalizer=None)
    assert [u.wer for u in per_utt] == [0.0, 1.0]
    assert total.wer == pytest.approx(1 / 11)  # not the mean 0.5
    assert word_error_rate(refs, hyps, normalizer=None) == pytest.approx(1 / 11)
    assert total.to_dict()["substitutions"] == 1


def test_corpus_length_mismatch():
    with pytest.raises(ValueError):
        score_corpus(["a"], ["a", "b"])


def test_long_and_zero_led_numbers_are_spelled_digit_by_digit(norm):
    assert norm("call 0044 or 1234567890") == "call zero zero four four or one two three four five six seven eight nine zero"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_normaliser_output_is_plain_words(text):
    out = EnglishScoringNormalizer()(text)
    assert out == " ".join(out.split())  # single spaces, no padding
    assert all(c.isascii() and (c.islower() or c == " ") for c in out), out  # no digits, punctuation or case
    assert score_pair(text, text).wer == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8), st.lists(st.sampled_from(["a", "b", "c", "e"]), max_size=8))
def test_error_counts_are_consistent(ref, hyp):
    s = score_pair(" ".join(ref), " ".join(hyp), normalizer=None)
    assert s.ref_words == len(ref)
    assert s.ref_words - s.deletions + s.insertions == len(hyp)  # (hits + S) + I = hyp length
    assert s.word_errors <= max(len(ref), len(hyp))
