"""English text rules shared by the TTS normaliser and the scoring normaliser.

:mod:`latentspeech.text.normalize` turns written text into the words a voice speaks;
:mod:`latentspeech.eval.wer` normalises a reference and an ASR transcript before they are compared.
Both read numbers, years, money, abbreviations and symbols, with the data and helpers here:

* number words (num2words): :func:`digits`, :func:`cardinal`, :func:`ordinal`, :func:`year`,
  :func:`is_year` and :func:`plural` (``nineteen nineties``);
* money: :data:`CURRENCIES`, :data:`SCALE_ABBREVIATIONS` and :func:`money_words`;
* abbreviations: :data:`TITLES` (``Dr.``) and :data:`LATIN` (``e.g.``) of :class:`Abbreviation`,
  matched with :func:`title_pattern` and :func:`latin_pattern`; ``St.`` (:data:`ST_PATTERN`);
* :data:`SYMBOL_WORDS` (``&`` → and, ``%`` → percent);
* pieces of regular expressions: :data:`NUMBER_PATTERN`, :data:`ORDINAL_SUFFIX`,
  :data:`CURRENCY_PATTERN`, :data:`SCALE_PATTERN`.

The sides differ in what they make of the words: the TTS side writes them for the phonemizer
(``Misses``, ``twenty-one``, numbers without "and"); the scoring side lower-cases them, drops
hyphens and keeps num2words' "and" (``with_and=True``: ``one hundred and five``), as book
transcripts write numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

__all__ = [
    "DIGIT_WORDS", "MAX_CARDINAL_DIGITS", "digits", "cardinal", "ordinal", "year", "FIRST_YEAR",
    "LAST_YEAR", "is_year", "plural", "NUMBER_PATTERN", "ORDINAL_SUFFIX",
    "Currency", "CURRENCIES", "CURRENCY_PATTERN", "SCALES", "SCALE_ABBREVIATIONS", "SCALE_PATTERN",
    "scale_word", "money_words",
    "Abbreviation", "TITLES", "STREET", "ST_PATTERN", "LATIN", "title_pattern", "latin_pattern", "SYMBOL_WORDS",
]

# ---------------------------------------------------------------------------- number words

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Longer numbers are read digit by digit.
MAX_CARDINAL_DIGITS = 15


def digits(s: str) -> str:
    """Read the ASCII digits of ``s`` one by one (``"507"`` → ``"five zero seven"``)."""
    return " ".join(DIGIT_WORDS[int(c)] for c in s if "0" <= c <= "9")


def _num2words(n: int, **kwargs) -> str:
    """``num2words.num2words``, imported on first use (its import, every language it knows, is ~20 ms
    of a cold CLI call whose text has no number)."""
    from num2words import num2words

    return num2words(n, **kwargs)


def _clean(words: str, with_and: bool) -> str:
    """num2words output without commas, and without "and" (US style) unless ``with_and``."""
    words = words.replace(",", "")
    return words if with_and else words.replace(" and ", " ")


def cardinal(n: int | str, with_and: bool = False) -> str:
    """An integer in words (``1234`` → ``one thousand two hundred thirty-four``; ``with_and``:
    ``... two hundred and thirty-four``). Thousands commas and a sign are allowed; any other
    non-number is returned as it is."""
    s = str(n).replace(",", "")
    neg = s.startswith("-")
    s = s.lstrip("+-")
    if not s.isascii() or not s.isdigit():
        return str(n)
    if len(s.lstrip("0")) > MAX_CARDINAL_DIGITS:
        words = digits(s)
    else:
        words = _clean(_num2words(int(s)), with_and)
    return f"minus {words}" if neg else words


def ordinal(n: int | str, with_and: bool = False) -> str:
    """An ordinal in words (``22`` → ``twenty-second``)."""
    s = str(n)
    if len(s.lstrip("0")) > MAX_CARDINAL_DIGITS:
        return digits(s)
    return _clean(_num2words(int(s), to="ordinal"), with_and)


def year(n: int | str, with_and: bool = False) -> str:
    """A year as spoken: 1999 → nineteen ninety-nine, 1905 → nineteen oh five, 1900 → nineteen
    hundred, 2005 → two thousand five (a cardinal where the century ends in 0 and the year is
    under 10); outside 1000-9999 a cardinal."""
    y = int(n)
    if not 1000 <= y <= 9999:
        return cardinal(y, with_and)
    hi, lo = divmod(y, 100)
    if hi % 10 == 0 and lo < 10:  # 2000, 2005, 1001
        return cardinal(y, with_and)
    if lo == 0:
        return f"{cardinal(hi)} hundred"
    if lo < 10:
        return f"{cardinal(hi)} oh {cardinal(lo)}"
    return f"{cardinal(hi)} {cardinal(lo)}"


#: Four-digit numbers from FIRST_YEAR to LAST_YEAR are read as years in running text.
FIRST_YEAR, LAST_YEAR = 1100, 2099


def is_year(number: str, first: int = FIRST_YEAR) -> bool:
    """Whether four ASCII digits read as a year (``1999``) rather than a quantity (``3000``).
    From 1100 by default: ``1066 men`` are one thousand sixty-six men."""
    return len(number) == 4 and number.isascii() and number.isdigit() and first <= int(number) <= LAST_YEAR


def plural(words: str) -> str:
    """The plural of a number in words (a decade): ``nineteen ninety`` → ``nineteen nineties``,
    ``six`` → ``sixes``, ``hundred`` → ``hundreds``."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    return words + ("es" if words.endswith("x") else "s")


#: A number as written: with thousands commas, decimals, or only decimals (``1,234.5``, ``3``, ``.5``).
NUMBER_PATTERN = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+"
#: The suffixes of a written ordinal (``1st``, ``22nd``), as alternatives.
ORDINAL_SUFFIX = r"st|nd|rd|th"

# ---------------------------------------------------------------------------------- money


@dataclass(frozen=True)
class Currency:
    """The names of a currency's unit and of its hundredth, singular and plural."""

    unit: str
    units: str
    subunit: str
    subunits: str

    def unit_name(self, n: int) -> str:
        return self.unit if n == 1 else self.units

    def subunit_name(self, n: int) -> str:
        return self.subunit if n == 1 else self.subunits


CURRENCIES = {
    "$": Currency("dollar", "dollars", "cent", "cents"),
    "£": Currency("pound", "pounds", "penny", "pence"),
    "€": Currency("euro", "euros", "cent", "cents"),
    "¥": Currency("yen", "yen", "sen", "sen"),
    "₹": Currency("rupee", "rupees", "paisa", "paise"),
}
#: One currency symbol (a character class).
CURRENCY_PATTERN = "[" + re.escape("".join(CURRENCIES)) + "]"

SCALES = ("thousand", "million", "billion", "trillion")
SCALE_ABBREVIATIONS = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion"}
#: An optional scale after an amount (``$2.5 million``, ``$3M``, ``€4bn``), the scale in group 1.
SCALE_PATTERN = r"(?:\s?(" + "|".join(SCALES) + r"|[kKmMbB]n?)\b)?"


def scale_word(scale: str) -> str:
    """``M`` → ``million``; a scale word stays as it is (lower case)."""
    return SCALE_ABBREVIATIONS.get(scale.lower(), scale.lower())


def money_words(currency: Currency, amount: str, scale: str | None, spell: Callable[[str], str]) -> str:
    """An amount (digits, optional decimals, no commas) in words, numbers read by ``spell``:
    ``3.50`` → three dollars and fifty cents, ``0.99`` → ninety-nine cents, ``1.555`` → one point
    five five five dollars, ``2.5`` with scale ``M`` → two point five million dollars."""
    if scale:
        return f"{spell(amount)} {scale_word(scale)} {currency.units}"
    whole, _, frac = amount.partition(".")
    whole = whole or "0"
    if len(frac) > 2:
        return f"{spell(amount)} {currency.units}"
    cents = int(frac.ljust(2, "0")) if frac else 0
    parts = []
    if int(whole) or not cents:
        parts.append(f"{spell(whole)} {currency.unit_name(int(whole))}")
    if cents:
        parts.append(f"{spell(str(cents))} {currency.subunit_name(cents)}")
    return " and ".join(parts)


# -------------------------------------------------------------------------- abbreviations


@dataclass(frozen=True)
class Abbreviation:
    """What an abbreviation stands for.

    ``words``: what the TTS side says. ``spelling``: the usual spelling where ``words`` is respelled
    for the phonemizer (``Misses``, written ``missus``). ``bare``: also an abbreviation without its
    period (``Mr Smith``, ``vs``), so scoring expands it bare; the others only with their period
    (``fig.``, never the fruit). ``spoken=False``: the TTS side leaves it to the phonemizer.
    ``pattern``: a regular expression for its written form, where that is not the name and a period.
    """

    words: str
    bare: bool = False
    spelling: str = ""
    spoken: bool = True
    pattern: str = ""

    @property
    def written(self) -> str:
        """The expansion as a transcript writes it, lower case (``missus``)."""
        return (self.spelling or self.words).lower()


#: Abbreviations closed by a period (``Dr.``, ``approx.``), matched case-sensitively.
TITLES = {
    "Dr": Abbreviation("Doctor", bare=True), "Mr": Abbreviation("Mister", bare=True),
    "Mrs": Abbreviation("Misses", bare=True, spelling="missus"), "Ms": Abbreviation("Miz"),
    "Prof": Abbreviation("Professor", bare=True), "Jr": Abbreviation("Junior", bare=True),
    "Sr": Abbreviation("Senior", bare=True), "Mt": Abbreviation("Mount"), "Ft": Abbreviation("Fort"),
    "Gen": Abbreviation("General", bare=True), "Capt": Abbreviation("Captain", bare=True),
    "Lt": Abbreviation("Lieutenant", bare=True), "Col": Abbreviation("Colonel", bare=True),
    "Sgt": Abbreviation("Sergeant", bare=True), "Rev": Abbreviation("Reverend", bare=True),
    "Hon": Abbreviation("Honorable", bare=True), "Gov": Abbreviation("Governor", bare=True),
    "Ave": Abbreviation("Avenue"), "Blvd": Abbreviation("Boulevard"), "Rd": Abbreviation("Road"),
    "Dept": Abbreviation("Department"), "Inc": Abbreviation("Incorporated"), "Ltd": Abbreviation("Limited"),
    "Co": Abbreviation("Company"), "Corp": Abbreviation("Corporation"),
    "approx": Abbreviation("approximately"), "hrs": Abbreviation("hours"), "mins": Abbreviation("minutes"),
    "lbs": Abbreviation("pounds"), "vol": Abbreviation("volume"), "fig": Abbreviation("figure"),
    # with its period, Saint before a name and STREET elsewhere (ST_PATTERN); bare, Saint
    "St": Abbreviation("Saint", bare=True),
    # espeak-ng reads these as written (Messrs: "messers")
    "Messrs": Abbreviation("Messieurs", bare=True, spoken=False),
    "Esq": Abbreviation("Esquire", bare=True, spoken=False),
}
STREET = "Street"
#: ``St.``; group 2 is the capital of a name after it (Saint), unset before anything else (Street).
ST_PATTERN = re.compile(r"\bSt\.(?=\s|$|[,;:])(?=(\s*)([A-Z])?)")

#: Lower-case abbreviations, matched case-insensitively by their ``pattern``.
LATIN = {
    "etc": Abbreviation("et cetera", bare=True, pattern=r"etc\."),
    "eg": Abbreviation("for example", pattern=r"e\.\s?g\."),
    "ie": Abbreviation("that is", pattern=r"i\.\s?e\."),
    "vs": Abbreviation("versus", bare=True, pattern=r"vs\.?"),
    "cf": Abbreviation("compare", pattern=r"cf\."),
    "aka": Abbreviation("also known as", pattern=r"a\.k\.a\."),
}


def title_pattern(names: Iterable[str]) -> re.Pattern:
    """One of ``names`` (group 1) and its period, before a space, ``, ; :`` or the end."""
    alternatives = "|".join(sorted(names, key=len, reverse=True))
    return re.compile(r"\b(" + alternatives + r")\.(?=\s|$|[,;:])")


def latin_pattern(abbreviation: Abbreviation) -> re.Pattern:
    """The written form of a :data:`LATIN` abbreviation, as a whole token, in any case."""
    return re.compile(r"(?<![\w.])" + abbreviation.pattern + r"(?=\W|$)", re.IGNORECASE)


# -------------------------------------------------------------------------------- symbols

#: Symbols read as words (currency symbols: :data:`CURRENCIES`).
SYMBOL_WORDS = {
    "&": "and", "%": "percent", "+": "plus", "@": "at", "=": "equals", "#": "number", "°": "degrees",
    "×": "times", "<": "less than", ">": "greater than", "/": "slash", "§": "section", "©": "copyright",
    "®": "registered", "™": "trademark",
}
