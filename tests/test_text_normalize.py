"""The English normaliser: one test per class of token, plus robustness."""

import pytest

from latentspeech.text import normalize_text
from latentspeech.text.rules import CURRENCIES, LATIN, TITLES, cardinal, digits, is_year, ordinal, plural, year


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (42, "forty-two"), (123, "one hundred twenty-three"),
    (1234567, "one million two hundred thirty-four thousand five hundred sixty-seven"),
    ("-5", "minus five"), ("1,000", "one thousand"),
])
def test_cardinal(n, words):
    assert cardinal(n) == words


def test_huge_numbers_are_read_digit_by_digit():
    assert cardinal("1" * 40) == " ".join(["one"] * 40)
    assert normalize_text("9" * 500) == " ".join(["nine"] * 500)


@pytest.mark.parametrize("y, words", [
    (1999, "nineteen ninety-nine"), (2024, "twenty twenty-four"), (2005, "two thousand five"),
    (2000, "two thousand"), (1900, "nineteen hundred"), (1905, "nineteen oh five"), (1066, "ten sixty-six"),
])
def test_year(y, words):
    assert year(y) == words


@pytest.mark.parametrize("text, expected", [
    # cardinals and ordinals
    ("I have 3 cats and 1,250 fish.", "I have three cats and one thousand two hundred fifty fish."),
    ("She was 1st, he was 22nd, they were 3rd and 104th.",
     "She was first, he was twenty-second, they were third and one hundred fourth."),
    # years and decades
    ("In 1999 and 2024, not 2005.", "In nineteen ninety-nine and twenty twenty-four, not two thousand five."),
    ("The 1990s and the '60s.", "The nineteen nineties and the sixties."),
    ("The floods of '82.", "The floods of eighty-two."),
    # decimals, signs, ranges, fractions
    ("Pi is 3.14, not .5 or -2.", "Pi is three point one four, not point five or minus two."),
    ("Pages 10-20.", "Pages ten to twenty."),
    ("Add 1 1/2 cups and 3/4 spoon.", "Add one and one half cups and three quarters spoon."),
    # currency
    ("It cost $3.50.", "It cost three dollars and fifty cents."),
    ("$1, $0.99, $2.01", "one dollar, ninety-nine cents, two dollars and one cent"),
    ("£5 and €20 and 50p", "five pounds and twenty euros and fifty p"),
    ("A $2.5 million deal, $3M.", "A two point five million dollars deal, three million dollars."),
    # percentages
    ("Up 12.5% or 50 percent.", "Up twelve point five percent or fifty percent."),
    # times
    ("At 3:30 pm, 3:05 a.m. or 15:45.", "At three thirty PM, three oh five AM or fifteen forty-five."),
    ("Come at 3:00 or 7 pm.", "Come at three o'clock or seven PM."),
    # dates
    ("On 12/03/2024.", "On December third, twenty twenty-four."),
    ("On 25/12/2023.", "On December twenty-fifth, twenty twenty-three."),
    ("On 2024-12-03.", "On December third, twenty twenty-four."),
    ("Born Dec. 3rd, 1999.", "Born December third, nineteen ninety-nine."),
    ("Due March 5, 2021.", "Due March fifth, twenty twenty-one."),
    ("The 4th of July.", "The fourth of July."),
    # phone numbers
    ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
    ("Call (555) 123-4567 now.", "Call five five five, one two three, four five six seven now."),
    ("Dial +1 555 123 4567.", "Dial plus one, five five five, one two three, four five six seven."),
    # abbreviations
    ("Dr. Smith met Mr. and Mrs. Jones.", "Doctor Smith met Mister and Misses Jones."),
    ("St. Paul lives on Main St.", "Saint Paul lives on Main Street."),
    ("Fruit, e.g. apples, i.e. food, etc. vs. meat.",
     "Fruit, for example apples, that is food, et cetera versus meat."),
    ("The U.S.A. won No. 5.", "The U S A won number five."),
    # symbols
    ("Tom & Jerry: 2+2=4 @home #1", "Tom and Jerry: two plus two equals four at home number one"),
    ("Mail me@example.com about #tags.", "Mail me at example dot com about hashtag tags."),
    ("It is 25°C and/or 30%.", "It is twenty-five degrees Celsius and or thirty percent."),
    # unicode punctuation and whitespace
    ("“Hi” — she said… ‘ok’", '"Hi" - she said... \'ok\''),
    ("  a \t b\n\nc  ,  d ", "a b c, d"),
])
def test_normalize_cases(text, expected):
    assert normalize_text(text) == expected


def test_digits_and_ordinal_helpers():
    assert digits("507") == "five zero seven"
    assert ordinal(22) == "twenty-second"


@pytest.mark.parametrize("text", [
    "", "\x00\x01", "\ud800", "99/99/9999", "10:99", "$", "$.", "1.2.3.4.", "#", "--5", "1e9999",
    "٣٤ ௫", "𝟏𝟐𝟑", "½", "(((", "😀" * 3, "a" * 10000, "1" * 5000 + "." + "2" * 5000,
])
def test_never_raises_on_odd_input(text):
    out = normalize_text(text)
    assert isinstance(out, str)
    assert "  " not in out and out == out.strip()


def test_control_and_format_characters_are_removed():
    assert normalize_text("a\x00b\u200bc\ufeff d") == "abc d"
    assert normalize_text("ｆｕｌｌ ５") == "full five"


def test_is_idempotent_on_plain_text():
    s = "Doctor Smith paid three dollars and fifty cents on December third, twenty twenty-four."
    assert normalize_text(s) == s


def test_symbols_and_letters_of_other_scripts_are_dropped():
    """Emoji and other symbols are not read out, nor are letters espeak-ng's English voice would spell
    out by name ("Chinese letter"); accented Latin letters stay."""
    assert normalize_text("hello 🙂 world ✓ → ★") == "hello world"
    assert normalize_text("I said 日本語 and Ελληνικά, ok?") == "I said and, ok?"
    assert normalize_text("Café naïve Ñandú straße Ærø") == "Café naïve Ñandú straße Ærø"
    assert normalize_text("😀😀") == normalize_text("東京") == ""


# ---------------------------------------------------------------- the shared text-rules table

def test_titles_come_from_the_rules_table():
    for name, a in TITLES.items():
        if a.spoken and name != "St":
            assert normalize_text(f"{name}. Smith") == f"{a.words} Smith", name
    assert normalize_text("Messrs. Smith") == "Messrs. Smith"  # spoken=False: left to the phonemizer


def test_latin_abbreviations_come_from_the_rules_table():
    written = {"etc": "etc.", "eg": "e.g.", "ie": "i.e.", "vs": "vs.", "cf": "cf.", "aka": "a.k.a."}
    assert set(written) == set(LATIN)
    for key, a in LATIN.items():
        assert normalize_text(f"one, {written[key]} two") == f"one, {a.words} two", key


def test_currencies_come_from_the_rules_table():
    for sym, c in CURRENCIES.items():
        assert normalize_text(f"{sym}1") == f"one {c.unit}"
        assert normalize_text(f"{sym}2.01") == f"two {c.units} and one {c.subunit}"
        assert normalize_text(f"{sym}0.50") == f"fifty {c.subunits}"
        assert normalize_text(f"a {sym} sign") == f"a {c.units} sign"


@pytest.mark.parametrize("y", ["1066", "1099", "1100", "1999", "2005", "2099", "2100", "3000"])
def test_four_digits_are_years_where_is_year_says(y):
    assert normalize_text(f"In {y}.") == f"In {year(y) if is_year(y) else cardinal(y)}."


def test_plural_of_number_words():
    assert plural("nineteen ninety") == "nineteen nineties"
    assert plural("six") == "sixes" and plural("two thousand") == "two thousands"
    assert normalize_text("The 1900s and 2000s.") == "The nineteen hundreds and two thousands."


def test_with_and_keeps_num2words_and():
    assert cardinal(105) == "one hundred five"
    assert cardinal(105, with_and=True) == "one hundred and five"
    assert ordinal(101, with_and=True) == "one hundred and first"
    assert year(2005, with_and=True) == "two thousand and five" and year(1905, with_and=True) == "nineteen oh five"
