"""English text normalisation for TTS: written forms → the words to be spoken.

:func:`normalize_text` applies, in order, one rule per class of token (each a small function):

1. unicode clean-up: NFKC, curly quotes → ``' "``, dashes → ``-``, ``…`` → ``...``, control and
   format characters removed, all whitespace → one space;
2. abbreviations: ``Dr. Mr. Mrs. Ms. St. Jr. Prof. etc. e.g. i.e. vs. No.``... and dotted
   acronyms (``U.S.A.`` → ``U S A``);
3. phone numbers, read digit by digit (``555-123-4567``);
4. dates (``12/03/2024``, ``2024-12-03``, ``Dec. 3rd``, ``December 3, 2024``) and times
   (``3:30 pm`` → ``three thirty PM``, ``15:05`` → ``fifteen oh five``);
5. currency (``$3.50`` → ``three dollars and fifty cents``; ``£`` pounds/pence, ``€``
   euros/cents, ``¥`` yen; ``$2.5 million``), percentages (``12.5%``);
6. ordinals (``1st``, ``22nd``), years (``1999`` → ``nineteen ninety-nine``, ``2005`` → ``two
   thousand five``; any 4-digit number from 1100 to 2099 without a separator), decimals
   (``3.14`` → ``three point one four``), cardinals (``1,234`` → ``one thousand two hundred
   thirty-four``, US style without "and"), signed numbers;
7. symbols: ``& % + @ = # ° × / < >`` to words, brackets to parentheses, other symbols (emoji,
   arrows, stars, ...) removed;
8. spacing: whitespace collapsed, no space before punctuation.

The models speak English: letters of other scripts (Greek, Cyrillic, CJK, ...) are removed in step 1,
because espeak-ng's English voice would spell out their names ("Chinese letter"); a text left with
nothing to pronounce is then refused by the frontend in one line. Accented Latin letters stay.

Number words (num2words), currencies, abbreviations and symbol words come from
:mod:`latentspeech.text.rules`, which the scoring normaliser (:mod:`latentspeech.eval.wer`) reads too.
The function never raises: a rule that fails on some match keeps the matched text with its digits
read one by one, and numbers too long to read as a whole (more than 15 digits) are read digit by
digit too.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Callable

from .rules import (CURRENCIES, CURRENCY_PATTERN, LATIN, NUMBER_PATTERN, ORDINAL_SUFFIX, SCALE_PATTERN, STREET,
                    ST_PATTERN, SYMBOL_WORDS, TITLES, cardinal, digits, is_year, latin_pattern, money_words, ordinal, plural,
                    title_pattern, year)

__all__ = ["normalize_text"]

# ---------------------------------------------------------------------------- number words


def _decimal(int_part: str, frac: str) -> str:
    """``3``, ``14`` → ``three point one four`` (empty integer part → ``point ...``)."""
    head = cardinal(int_part) if int_part else ""
    return f"{head} point {digits(frac)}".strip()


def _number(s: str) -> str:
    """A plain number, with optional thousands commas and decimals, in words."""
    s = s.replace(",", "")
    if "." in s:
        i, _, f = s.partition(".")
        return _decimal(i, f)
    return cardinal(s)


# ------------------------------------------------------------------------ rule machinery

Rule = Callable[[str], str]


def _safe(fn: Callable[[re.Match], str]) -> Callable[[re.Match], str]:
    """Wrap a ``re.sub`` replacer: on any error keep the match, digits read one by one."""

    @functools.wraps(fn)
    def wrapper(m: re.Match) -> str:
        try:
            return fn(m)
        except Exception:  # noqa: BLE001 - normalisation must never raise
            return re.sub(r"[0-9]+", lambda d: f" {digits(d.group())} ", m.group())

    return wrapper


def _sub(pattern: re.Pattern, fn: Callable[[re.Match], str], text: str) -> str:
    return pattern.sub(_safe(fn), text)


# ------------------------------------------------------------------------- 1. unicode

_CHAR_MAP = {
    **dict.fromkeys("‘’‚‛′`´", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒−﹣－", "-"),
    "⁄": "/", "∕": "/",
    "–": " - ", "—": " - ", "―": " - ",
    "…": "...",
    "\u00a0": " ",
}
_CHAR_TABLE = str.maketrans(_CHAR_MAP)


def _is_foreign_letter(ch: str, cat: str) -> bool:
    """A letter of a script other than Latin (modifier letters such as ``ʼ`` are kept)."""
    return cat in ("Lu", "Ll", "Lt", "Lo") and not unicodedata.name(ch, "").startswith("LATIN")


def clean_unicode(text: str) -> str:
    """Map quotes, dashes and ellipses to ASCII, NFKC-normalise and drop control/format characters
    and letters of non-Latin scripts."""
    text = text.translate(_CHAR_TABLE)
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(_CHAR_TABLE)  # NFKC may create new ones (e.g. fullwidth forms)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch.isspace() or cat in ("Zl", "Zp"):
            out.append(" ")
        elif cat[0] == "C":  # Cc control, Cf format, Cs surrogate, Co private use, Cn unassigned
            continue
        elif _is_foreign_letter(ch, cat):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


# ------------------------------------------------------------------- 2. abbreviations

# Titles whose period is part of the abbreviation, not a sentence end ("St." has a rule of its own).
_TITLES = {name: a.words for name, a in TITLES.items() if a.spoken and name != "St"}
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"]
_MONTH_ABBR = {m[:3]: m for m in _MONTHS} | {"Sept": "September"}
_MONTH_NAMES = "|".join(_MONTHS + list(_MONTH_ABBR))

_TITLE_RE = title_pattern(_TITLES)
_LATIN_RE = [(latin_pattern(a), a.words) for a in LATIN.values()]
_NO_RE = re.compile(r"\b(?:(No|Nos|no|nr|Nr)\.|#)\s*(?=[0-9])")
_ACRONYM_RE = re.compile(r"(?<![\w.])((?:[A-Za-z]\.){2,})(?=\W|$)")
_AMPM_RE = re.compile(r"(?<![\w.])([ap])\.\s?m\.(?=\W|$)", re.IGNORECASE)  # a.m. p.m. (only dotted)


def _end(text: str, m: re.Match) -> str:
    """Keep a text-final period that an abbreviation's period swallowed."""
    return "." if m.group().endswith(".") and not text[m.end():].strip() else ""


def _end_sentence(text: str, m: re.Match) -> str:
    """Keep a swallowed period that also ends a sentence (end of text, or a capital follows)."""
    if not m.group().endswith("."):
        return ""
    rest = text[m.end():]
    return "." if not rest.strip() or re.match(r"\s+[A-Z]", rest) else ""


def expand_abbreviations(text: str) -> str:
    """Titles (``Dr.`` → ``Doctor``), ``St.`` (Saint before a name, else Street), Latin abbreviations,
    ``No. 5`` → ``number 5``, ``a.m.``/``p.m.`` → ``AM``/``PM`` and dotted acronyms (``U.S.`` → ``U S``)."""
    text = _sub(_TITLE_RE, lambda m: _TITLES[m.group(1)] + _end(text, m), text)
    t = text
    text = _sub(ST_PATTERN, lambda m: TITLES["St"].words if m.group(2) else STREET + _end_sentence(t, m), text)
    for pat, words in _LATIN_RE:
        t = text
        text = _sub(pat, lambda m, w=words, t=t: w + _end_sentence(t, m), text)
    text = _sub(_NO_RE, lambda m: "numbers " if m.group(1) == "Nos" else "number ", text)
    t = text
    text = _sub(_AMPM_RE, lambda m: m.group(1).upper() + "M" + _end_sentence(t, m), text)
    t = text
    text = _sub(_ACRONYM_RE, lambda m: " ".join(m.group(1).replace(".", "").upper()) + _end_sentence(t, m), text)
    return text


# --------------------------------------------------------------------- 3. phone numbers

_PHONE_RE = re.compile(
    r"(?<![\w.,/:-])"
    r"(?:(?P<cc>\+[0-9]{1,3})[\s.-]?)?"
    r"(?:\((?P<area1>[0-9]{3})\)\s?|(?P<area2>[0-9]{3})[\s.-])?"
    r"(?P<a>[0-9]{3})(?(area2)[\s.-]|(?(area1)[\s.-]|[.-]))(?P<b>[0-9]{4})"
    r"(?![\w.,/:-]*[0-9])"
)


def read_phone_numbers(text: str) -> str:
    """``(555) 123-4567``, ``555-123-4567``, ``+1 555 123 4567``, ``123-4567`` → digits by group."""

    def repl(m: re.Match) -> str:
        groups = [m.group("cc"), m.group("area1") or m.group("area2"), m.group("a"), m.group("b")]
        parts = [("plus " if g.startswith("+") else "") + digits(g) for g in groups if g]
        return ", ".join(parts)

    return _sub(_PHONE_RE, repl, text)


# ------------------------------------------------------------------ 4. dates and times

_SLASH_DATE_RE = re.compile(r"(?<![\w/.])([0-9]{1,2})/([0-9]{1,2})/([0-9]{4}|[0-9]{2})(?![\w/]|\.[0-9])")
_ISO_DATE_RE = re.compile(r"(?<![\w/.-])([0-9]{4})-([0-9]{2})-([0-9]{2})(?![\w/-])")
_MONTH_DAY_RE = re.compile(
    r"\b(" + _MONTH_NAMES + r")\.?\s+([0-9]{1,2})(?:" + ORDINAL_SUFFIX + r")?\b(?:,?\s+([0-9]{4})\b)?")
_DAY_MONTH_RE = re.compile(
    r"\b([0-9]{1,2})(?:" + ORDINAL_SUFFIX + r")?\s+(?:of\s+)?(" + _MONTH_NAMES + r")\b\.?(?:,?\s+([0-9]{4})\b)?")
_TIME_RE = re.compile(
    r"(?<![\w:.])([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?(?![\w:]|\.[0-9])"
    r"(?:\s?([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_HOUR_AMPM_RE = re.compile(r"(?<![\w:.])([0-9]{1,2})\s?([ap])\.?\s?m\b\.?", re.IGNORECASE)


def _month(name: str) -> str:
    """``Dec`` → ``December``; full names unchanged."""
    return name if name in _MONTHS else _MONTH_ABBR.get(name, name)


def _date(month: int, day: int, yr: str | None) -> str:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError("not a date")
    words = f"{_MONTHS[month - 1]} {ordinal(day)}"
    if yr:
        words += f", {year(yr) if len(yr) == 4 else 'twenty ' + _two_digit_year(yr)}"
    return words


def _two_digit_year(yy: str) -> str:
    return f"oh {cardinal(yy)}" if yy.startswith("0") and yy != "00" else ("hundred" if yy == "00" else cardinal(yy))


def read_dates(text: str) -> str:
    """Numeric dates (``12/03/2024`` month first, unless the first field is over 12) and
    month-name dates (``Dec. 3rd``, ``December 3, 2024``, ``3rd of December``)."""

    def slash(m: re.Match) -> str:
        a, b, yr = int(m.group(1)), int(m.group(2)), m.group(3)
        month, day = (b, a) if a > 12 else (a, b)
        return _date(month, day, yr)

    text = _sub(_SLASH_DATE_RE, slash, text)
    text = _sub(_ISO_DATE_RE, lambda m: _date(int(m.group(2)), int(m.group(3)), m.group(1)), text)

    def month_day(m: re.Match) -> str:
        day = int(m.group(2))
        if not 1 <= day <= 31:
            raise ValueError("not a day")
        words = f"{_month(m.group(1))} {ordinal(day)}"
        return words + (f", {year(m.group(3))}" if m.group(3) else "")

    text = _sub(_MONTH_DAY_RE, month_day, text)

    def day_month(m: re.Match) -> str:
        day = int(m.group(1))
        if not 1 <= day <= 31:
            raise ValueError("not a day")
        the = "" if re.search(r"\bthe\s*$", text[:m.start()], re.IGNORECASE) else "the "
        words = f"{the}{ordinal(day)} of {_month(m.group(2))}"
        return words + (f", {year(m.group(3))}" if m.group(3) else "") + _end_sentence(t, m)

    t = text
    return _sub(_DAY_MONTH_RE, day_month, text)


def _ampm(x: str | None) -> str:
    return f" {x.upper()}M" if x else ""


def read_times(text: str) -> str:
    """``3:30 pm`` → ``three thirty PM``; ``3:05`` → ``three oh five``; ``3:00`` → ``three o'clock``."""

    def clock(m: re.Match) -> str:
        h, mi, sec, ap = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        if h > 24 or mi > 59:
            raise ValueError("not a time")
        if mi == 0:
            words = cardinal(h) + ("" if ap else " o'clock")
        elif mi < 10:
            words = f"{cardinal(h)} oh {cardinal(mi)}"
        else:
            words = f"{cardinal(h)} {cardinal(mi)}"
        if sec and int(sec):
            words += f" and {cardinal(int(sec))} seconds"
        return words + _ampm(ap) + _end_sentence(t, m)

    t = text
    text = _sub(_TIME_RE, clock, text)
    t = text
    return _sub(_HOUR_AMPM_RE, lambda m: cardinal(m.group(1)) + _ampm(m.group(2)) + _end_sentence(t, m), text)


# -------------------------------------------------------------- 5. money and percentages

_MONEY_RE = re.compile(r"(-)?(" + CURRENCY_PATTERN + r")\s?(" + NUMBER_PATTERN + r")" + SCALE_PATTERN)
_PERCENT_RE = re.compile(r"(?<![\w.])(-)?(" + NUMBER_PATTERN + r")\s?(%|percent\b|per cent\b)")


def _money(sign: str | None, sym: str, amount: str, scale: str | None) -> str:
    words = money_words(CURRENCIES[sym], amount.replace(",", ""), scale, _number)
    return f"minus {words}" if sign else words


def read_money_and_percent(text: str) -> str:
    """``$3.50`` → ``three dollars and fifty cents``, ``£1`` → ``one pound``, ``$2.5M`` →
    ``two point five million dollars``, ``12.5%`` → ``twelve point five percent``."""
    text = _sub(_MONEY_RE, lambda m: _money(m.group(1), m.group(2), m.group(3), m.group(4)), text)
    percent = SYMBOL_WORDS["%"]
    return _sub(_PERCENT_RE, lambda m: ("minus " if m.group(1) else "") + f"{_number(m.group(2))} {percent}", text)


# ---------------------------------------------------------------------------- 6. numbers

_ORDINAL_RE = re.compile(r"(?<![\w.])([0-9]+)(" + ORDINAL_SUFFIX + r")\b", re.IGNORECASE)
_YEAR_RE = re.compile(r"(?<![\w.])(?<![0-9],)([0-9]{4})(s)?(?!\w|[.,][0-9])")  # a year if is_year()
_DECADE_RE = re.compile(r"(?<![\w.,'])'?([0-9]0)s\b")
_SHORT_YEAR_RE = re.compile(r"(?<![\w.,'])'([0-9]{2})(?![\w']|[.,][0-9])")
_RANGE_RE = re.compile(r"(?<![\w.,-])([0-9]+(?:\.[0-9]+)?)-([0-9]+(?:\.[0-9]+)?)(?![\w-]|[.,][0-9])")
_FRACTION_RE = re.compile(r"(?<![\w/.])(?:([0-9]+)\s)?([0-9]+)/([0-9]+)(?![\w/]|\.[0-9])")
_DOTTED_RE = re.compile(r"(?<![\w.])([0-9]+(?:\.[0-9]+){2,})(?!\w|\.[0-9])")
_NUMBER_RE = re.compile(r"(?<![\w.])(-|\+)?(" + NUMBER_PATTERN + r")")


def _year(m: re.Match) -> str:
    """``1999`` → nineteen ninety-nine, ``1990s`` → nineteen nineties; other four digits unchanged."""
    if not is_year(m.group(1)):
        return m.group()
    return plural(year(m.group(1))) if m.group(2) else year(m.group(1))


def _fraction(num: str, den: str) -> str:
    """``3``, ``4`` → ``three quarters``; improper or large ones → ``A over B``."""
    n, d = int(num), int(den)
    if d == 0 or n >= d or d > 16:
        return f"{cardinal(n)} over {cardinal(d)}"
    unit = {2: "half", 4: "quarter"}.get(d) or ordinal(d)
    if n != 1:
        unit = "halves" if d == 2 else unit + "s"
    return f"{cardinal(n)} {unit}"


def read_numbers(text: str) -> str:
    """Ranges (``10-20`` → ten to twenty), fractions (``1/2``, ``2 3/4``), dotted numbers
    (``1.2.3``), ordinals, years (and decades: ``1990s``, ``'90s``; ``'82``), decimals, signed cardinals."""
    text = _sub(_RANGE_RE, lambda m: f"{_number(m.group(1))} to {_number(m.group(2))}", text)
    text = _sub(_FRACTION_RE, lambda m: (f"{cardinal(m.group(1))} and " if m.group(1) else "")
                + _fraction(m.group(2), m.group(3)), text)
    text = _sub(_DOTTED_RE, lambda m: " point ".join(cardinal(p) for p in m.group(1).split(".")), text)
    text = _sub(_ORDINAL_RE, lambda m: ordinal(m.group(1)), text)
    text = _sub(_YEAR_RE, _year, text)
    text = _sub(_DECADE_RE, lambda m: plural(cardinal(m.group(1))), text)
    text = _sub(_SHORT_YEAR_RE, lambda m: _two_digit_year(m.group(1)), text)

    def number(m: re.Match) -> str:
        sign = {"-": "minus ", "+": "plus "}.get(m.group(1) or "", "")
        start = m.start()
        # a hyphen glued to a previous word/number is a range or compound, not a minus sign
        if m.group(1) == "-" and start > 0 and not text[start - 1].isspace() and text[start - 1] not in "([{":
            sign = " to " if text[start - 1].isdigit() else " "
        return f" {sign}{_number(m.group(2))} "

    text = _sub(_NUMBER_RE, number, text)
    # whatever digits are left (e.g. glued to letters: "A4", "mp3") are read one by one
    return re.sub(r"[0-9]+", lambda m: f" {cardinal(m.group())} " if len(m.group()) <= 4 else f" {digits(m.group())} ", text)


# ---------------------------------------------------------------------------- 7. symbols

_SYMBOLS = {
    **{sym: f" {words} " for sym, words in SYMBOL_WORDS.items()},
    **{sym: f" {c.units} " for sym, c in CURRENCIES.items()},
    "[": "(", "]": ")", "{": "(", "}": ")",
    "*": " ", "_": " ", "|": " ", "\\": " ", "^": " ", "~": " ", "¡": " ", "¿": " ", "·": " ",
}
_SYMBOL_TABLE = str.maketrans(_SYMBOLS)
_HASHTAG_RE = re.compile(r"#(?=[A-Za-z])")
_WORD_SLASH_RE = re.compile(r"(?<=[A-Za-z])/(?=[A-Za-z])")
_DOT_WORD_RE = re.compile(r"(?<=[a-z0-9])\.(?=[a-z]{2,}\b)")
_DEGREES_RE = re.compile(r"°\s?([CF])\b")


def read_symbols(text: str) -> str:
    """``&`` → and, ``+`` → plus, ``@`` → at, ``=`` → equals, ``#1`` → number one, ``#tag`` →
    hashtag, ``°C`` → degrees Celsius, ``and/or`` → and or, ``x.com`` → x dot com; brackets
    become parentheses and other symbols (Unicode categories S*: emoji, arrows, ...) are dropped."""
    text = _DEGREES_RE.sub(lambda m: " degrees " + ("Celsius" if m.group(1) == "C" else "Fahrenheit"), text)
    text = _HASHTAG_RE.sub(" hashtag ", text)
    text = _WORD_SLASH_RE.sub(" ", text)
    text = _DOT_WORD_RE.sub(" dot ", text)
    text = text.translate(_SYMBOL_TABLE)
    return "".join(" " if unicodedata.category(ch)[0] == "S" else ch for ch in text)


# ---------------------------------------------------------------------------- 8. spacing

_SPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.!?;:)])")


def collapse_whitespace(text: str) -> str:
    """One space between words, none before ``, . ! ? ; : )``, none at the ends."""
    text = _SPACE_RE.sub(" ", text)
    return _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text).strip()


# ------------------------------------------------------------------------------- public

_PIPELINE: list[Rule] = [
    clean_unicode,
    expand_abbreviations,
    read_phone_numbers,
    read_dates,
    read_times,
    read_money_and_percent,
    read_numbers,
    read_symbols,
    collapse_whitespace,
]


def normalize_text(text: str) -> str:
    """Normalise English text for TTS (see the module docstring); never raises.

    >>> normalize_text("Dr. Smith paid $3.50 on 12/03/2024.")
    'Doctor Smith paid three dollars and fifty cents on December third, twenty twenty-four.'
    """
    if not isinstance(text, str):
        text = str(text)
    for rule in _PIPELINE:
        try:
            text = rule(text)
        except Exception:  # noqa: BLE001 - a failing rule is skipped, never fatal
            continue
    return text
