"""WER/CER scoring and the English scoring normaliser (latentspeech.eval.wer)."""

import pytest

from latentspeech.eval.wer import (
    EnglishScoringNormalizer,
    normalize_for_scoring,
    number_to_words,
    score_corpus,
    score_pair,
    word_error_rate,
)
from latentspeech.text import normalize_text
from latentspeech.text.rules import CURRENCIES, LATIN, TITLES, year


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


# ---------------------------------------------------------------- the shared text-rules table

def test_abbreviations_come_from_the_rules_table(norm):
    """Bare ones are expanded with or without their period; the others only with it (``fig`` stays)."""
    for name, a in TITLES.items():
        if name == "St":
            continue
        assert norm(f"{name}. Smith") == f"{a.written} smith", name
        assert norm(f"{name} Smith") == (f"{a.written} smith" if a.bare else f"{name.lower()} smith"), name
    assert norm("Mrs. Jones") == "missus jones"  # the spelling, not the TTS respelling "Misses"
    written = {"etc": "etc.", "eg": "e.g.", "ie": "i.e.", "vs": "vs.", "cf": "cf.", "aka": "a.k.a."}
    assert set(written) == set(LATIN)
    for key, a in LATIN.items():
        assert norm(f"one, {written[key]} two") == f"one {a.written} two", key
        assert norm(f"one {key} two") == (f"one {a.written} two" if a.bare else f"one {key} two"), key


def test_saint_or_street_as_the_tts_side_reads_it(norm):
    assert norm("St. Paul lives on Main St.") == "saint paul lives on main street"
    assert norm("St Paul") == "saint paul"


def test_currencies_come_from_the_rules_table(norm):
    for sym, c in CURRENCIES.items():
        assert norm(f"{sym}1") == f"one {c.unit}"
        assert norm(f"{sym}2.01") == f"two {c.units} and one {c.subunit}"
        assert norm(f"{sym}0.50") == f"fifty {c.subunits}"
        assert norm(f"{sym}2.5m") == f"two point five million {c.units}"


@pytest.mark.parametrize("text, expected", [
    ("$0.99", "ninety nine cents"),
    ("$1.555", "one point five five five dollars"),
    ("€1.2m or $3 bn or £4k", "one point two million euros or three billion dollars or four thousand pounds"),
    ("¥100 and ₹2.50", "one hundred yen and two rupees and fifty paise"),
    ("$.50", "fifty cents"),
    ("Dept. of Labor vs. Acme Inc.", "department of labor versus acme incorporated"),
    ("a fig, fig. 3", "a fig figure three"),
])
def test_scoring_reads_like_the_tts_side(norm, text, expected):
    assert norm(text) == expected


def test_years_are_read_from_1000_on_the_scoring_side(norm):
    assert norm("1066 and 1999 and 2005") == "ten sixty six and nineteen ninety nine and two thousand and five"
    assert norm("the 1060s") == "the ten sixties"


@pytest.mark.parametrize("text", [
    "Dr. Smith paid $3.50 on the 2nd.",
    "It cost €1.2m, e.g. a lot.",
    "Prices rose 25% in 1999 and in the 1960s.",
    "The Dept. of Labor vs. Acme Inc., etc.",
    "£0.99, ¥100 and ₹2.50.",
    "Mt. Hood is approx. 3 hrs. away, i.e. far.",
    "St. Paul lives on Main St.",
    "In 2024, $5k and £3bn.",
])
def test_a_text_and_its_tts_reading_score_alike(text):
    """Both normalisers read the same table, so the words the voice says score as the written text."""
    assert normalize_for_scoring(text) == normalize_for_scoring(normalize_text(text))
    assert score_pair(text, normalize_text(text)).wer == 0.0


def test_number_to_words_reads_years_as_the_text_rules_do():
    for y in [1000, 1001, 1066, 1900, 1905, 1999, 2005, 2010, 2099]:
        assert number_to_words(str(y), "year") == year(y, with_and=True).replace("-", " ")
    with pytest.raises(ValueError):
        number_to_words("5", "roman")


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
