"""Word and character error rates for scoring TTS output with an ASR model.

    norm = EnglishScoringNormalizer()
    norm("Mr. Smith paid $20 for the 2nd car.")      # 'mister smith paid twenty dollars for the second car'
    s = score_pair("ten of clubs", "10 of clubs.")   # UtteranceScore(wer=0.0, ...)
    c = score_corpus(refs, hyps)                     # CorpusScore: errors summed over utterances / reference words

Both sides (reference and hypothesis) go through the same normaliser, so the direction of
each rule only has to be consistent. Whisper's own normaliser turns spelled-out numbers
into digits; here digits become words instead, which matches how book transcripts
(LibriSpeech, LibriVox) are written and keeps every token a word. Number words, years,
currencies, abbreviations and symbol words come from :mod:`latentspeech.text.rules`, the
table the TTS normaliser reads, so a text and the TTS reading of it score alike but for a few
readings: numbers keep num2words' "and" here (``105`` → one hundred and five; spoken: one
hundred five), ``1066`` is a year and ``Mrs.`` is written missus (spoken: Misses).
The other rules: case, punctuation, hyphens (``cold-hearted`` → ``cold hearted``),
diacritics, contractions (``won't`` → ``will not``, ``it's`` → ``it is``; a possessive ``'s``
keeps the word: ``john's`` → ``johns``), abbreviations (``Mr.`` → ``mister``; ``Dept.`` →
``department`` only with its period; ``St. Paul`` → saint, ``Main St.`` → street), currency
(``$0.99`` → ``ninety nine cents``, ``€1.2m``), percent and ``&``, fillers (``uh``, ``um``)
and British spellings (``colour`` → ``color``, from whisper-normalizer's list when installed).

WER and CER come from ``jiwer`` with their substitution, deletion and insertion counts; a
corpus WER sums the errors of all utterances and divides by the total reference words
(not the mean of per-utterance rates).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Callable, Iterable, Sequence

from ..text.rules import (CURRENCIES, CURRENCY_PATTERN, LATIN, NUMBER_PATTERN, ORDINAL_SUFFIX, SCALE_PATTERN,
                          ST_PATTERN, STREET, SYMBOL_WORDS, TITLES, cardinal, digits, is_year, latin_pattern,
                          money_words, ordinal, plural, title_pattern, year)

__all__ = [
    "EnglishScoringNormalizer",
    "UtteranceScore",
    "CorpusScore",
    "normalize_for_scoring",
    "number_to_words",
    "score_pair",
    "score_corpus",
    "sum_scores",
    "word_error_rate",
]

#: Abbreviations expanded with or without their period (lower case, matched as whole words): the
#: text rules' bare ones, and "ok".
ABBREVIATIONS = {name.lower(): a.written for name, a in (TITLES | LATIN).items() if a.bare} | {"ok": "okay"}
#: The other abbreviations, expanded only as written with their period (``Dept.``, ``e.g.``).
DOTTED_TITLES = {name: a.written for name, a in TITLES.items() if not a.bare}
DOTTED_LATIN = [(latin_pattern(a), a.written) for a in LATIN.values() if not a.bare]

#: Contractions that expand to more than one word; applied before the general rules below.
CONTRACTIONS = [
    (r"\bwon't\b", "will not"),
    (r"\bcan't\b", "can not"),
    (r"\bshan't\b", "shall not"),
    (r"\bain't\b", "aint"),
    (r"\blet's\b", "let us"),
    (r"\by'all\b", "you all"),
    (r"\bma'am\b", "madam"),
    (r"\bwanna\b", "want to"),
    (r"\bgonna\b", "going to"),
    (r"\bgotta\b", "got to"),
    (r"\bkinda\b", "kind of"),
    (r"\bsorta\b", "sort of"),
    (r"\bdunno\b", "do not know"),
    (r"\bcannot\b", "can not"),
    (r"'d (been|gone|done|had|got)\b", r" had \1"),
    (r"'s (been|gone|got)\b", r" has \1"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'ll\b", " will"),
    (r"'ve\b", " have"),
    (r"'m\b", " am"),
    (r"'d\b", " would"),
    # "'s" after a pronoun or question word is "is"; elsewhere it is a possessive and stays.
    (r"\b(it|that|he|she|what|there|here|where|who|how|this|when|why)'s\b", r"\1 is"),
]

FILLERS = r"\b(hmm|mm|mhm|mmm|uh|um|er|ah)\b"
#: Four digits from here to 2099 are years; from 1000, not 1100 as on the TTS side (``1066`` → ten sixty six).
YEARS_FROM = 1000

_DOTTED_TITLE_RE = title_pattern(DOTTED_TITLES)
_MONEY_RE = re.compile(r"(" + CURRENCY_PATTERN + r")\s?(" + NUMBER_PATTERN + r")" + SCALE_PATTERN)
_ORDINAL_RE = re.compile(r"\b(\d+)(" + ORDINAL_SUFFIX + r")\b")
_NUMBER_WORDS = {"cardinal": cardinal, "ordinal": ordinal, "year": year}


def _ascii_digits(s: str) -> str:
    """Decimal digits of any script as ASCII digits (``٣`` → ``3``)."""
    return re.sub(r"\d", lambda m: str(int(m.group())), s)


def number_to_words(token: str, kind: str = "cardinal") -> str:
    """Spell out a digit string: ``"105"`` → ``"one hundred and five"``; ``kind`` is
    ``cardinal``, ``ordinal`` or ``year`` (``"1960"`` → ``"nineteen sixty"``); ``"3.14"`` →
    ``"three point one four"``; more than 9 digits or a leading zero: digit by digit. Hyphens
    become spaces."""
    if kind not in _NUMBER_WORDS:
        raise ValueError(f"kind is one of {', '.join(_NUMBER_WORDS)}, not {kind!r}")
    token = _ascii_digits(token)
    if "." in token:
        whole, frac = token.split(".", 1)
        words = number_to_words(whole or "0") + " point " + digits(frac)
    elif len(token) > 9 or (len(token) > 1 and token.startswith("0")):
        words = digits(token)  # ids, phone numbers, "007"
    else:
        words = _NUMBER_WORDS[kind](token, with_and=True)
    return words.replace("-", " ")


def _number(token: str) -> str:
    """A whole number in words, read as a year where it is one."""
    return number_to_words(token, "year" if is_year(token, YEARS_FROM) else "cardinal")


def _money(m: re.Match) -> str:
    """``$3.50`` → three dollars and fifty cents, ``€1.2m`` → one point two million euros."""
    amount = m.group(2).replace(",", "")
    return f" {money_words(CURRENCIES[m.group(1)], amount, m.group(3), number_to_words)} "


def _spell_numbers(s: str) -> str:
    s = " ".join(_ascii_digits(s).split())
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 10,000 -> 10000
    s = _MONEY_RE.sub(_money, s)
    s = re.sub(r"(\d+(?:\.\d+)?)\s?%", r"\1 " + SYMBOL_WORDS["%"], s)
    s = _ORDINAL_RE.sub(lambda m: number_to_words(m.group(1), "ordinal"), s)
    s = re.sub(r"\b(\d*0)'?s\b", lambda m: plural(_number(m.group(1))), s)  # 1960s, 90's
    s = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", s)  # mp3 -> mp 3, 4x4 -> 4 x 4
    s = re.sub(r"\b\d+\.\d+\b", lambda m: number_to_words(m.group(0)), s)
    return re.sub(r"\b\d+\b", lambda m: _number(m.group(0)), s)


def _expand_dotted(s: str) -> str:
    """Expand the abbreviations that need their period (``Dept.``, ``e.g.``, ``St.`` as Street),
    matched as the TTS side matches them (titles case-sensitively: ``Co.``, not ``co.``)."""
    s = _DOTTED_TITLE_RE.sub(lambda m: f" {DOTTED_TITLES[m.group(1)]} ", s)
    s = ST_PATTERN.sub(lambda m: f" {TITLES['St'].written if m.group(2) else STREET.lower()} ", s)
    for pattern, words in DOTTED_LATIN:
        s = pattern.sub(f" {words} ", s)
    return s


@lru_cache(maxsize=1)
def _spelling_map() -> dict[str, str]:
    """British → American spellings from whisper-normalizer (empty when it is not installed)."""
    try:
        from whisper_normalizer.english import EnglishSpellingNormalizer
    except ImportError:  # pragma: no cover - optional
        return {}
    return dict(EnglishSpellingNormalizer().mapping)


class EnglishScoringNormalizer:
    """Normalise English text for WER: the same function is applied to reference and hypothesis.

    ``spell_numbers`` turns digits into words (``"10"`` → ``"ten"``); ``american_spelling``
    maps British spellings to American ones.
    """

    def __init__(self, spell_numbers: bool = True, american_spelling: bool = True):
        self.spell_numbers = spell_numbers
        self.spelling = _spelling_map() if american_spelling else {}
        self._abbrev = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\b\.?")
        self._contractions = [(re.compile(p), r) for p, r in CONTRACTIONS]

    def __call__(self, text: str) -> str:
        s = _expand_dotted(unicodedata.normalize("NFKC", text)).lower()
        s = re.sub(r"[‘’ʼ`´]", "'", s).replace("_", " ")
        s = re.sub(r"[\[<][^\]>]*[\]>]", " ", s)  # [noise], <unk>
        s = re.sub(r"\([^)]*\)", " ", s)
        s = s.replace("&", f" {SYMBOL_WORDS['&']} ")
        s = self._abbrev.sub(lambda m: " " + ABBREVIATIONS[m.group(1)] + " ", s)
        for pattern, repl in self._contractions:
            s = pattern.sub(repl, s)
        if self.spell_numbers:
            s = _spell_numbers(s)
        s = unicodedata.normalize("NFKD", s)
        s = "".join(c for c in s if not unicodedata.combining(c))
        s = re.sub(r"(?<=\w)'(?=\w)", "", s)  # o'clock -> oclock, john's -> johns
        s = re.sub(r"[^a-z0-9 ]+", " ", s)  # punctuation, hyphens, dashes, symbols
        s = re.sub(FILLERS, " ", s)
        words = [self.spelling.get(w, w) for w in s.split()]
        return " ".join(words)


_DEFAULT: EnglishScoringNormalizer | None = None


def normalize_for_scoring(text: str) -> str:
    """:class:`EnglishScoringNormalizer` with default settings (built once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = EnglishScoringNormalizer()
    return _DEFAULT(text)


@dataclass
class UtteranceScore:
    """Errors of one hypothesis against one reference (after normalisation)."""

    reference: str
    hypothesis: str
    ref_words: int
    substitutions: int
    deletions: int
    insertions: int
    ref_chars: int
    char_errors: int

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Word error rate as a fraction (an empty reference scores the insertions as errors)."""
        return self.word_errors / max(self.ref_words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.ref_chars, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "wer": self.wer, "cer": self.cer}


@dataclass
class CorpusScore:
    """Errors summed over utterances; ``wer``/``cer`` are fractions of the total reference length."""

    n: int
    ref_words: int
    substitutions: int
    deletions: int
    insertions: int
    ref_chars: int
    char_errors: int

    @property
    def wer(self) -> float:
        return (self.substitutions + self.deletions + self.insertions) / max(self.ref_words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.ref_chars, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "wer": self.wer, "cer": self.cer}


Normalizer = Callable[[str], str]


def score_pair(reference: str, hypothesis: str, normalizer: Normalizer | None = normalize_for_scoring) -> UtteranceScore:
    """Normalise both strings (``normalizer=None`` keeps them as they are) and count the errors."""
    import jiwer

    ref = normalizer(reference) if normalizer else reference.strip()
    hyp = normalizer(hypothesis) if normalizer else hypothesis.strip()
    if ref or hyp:
        w = jiwer.process_words(ref, hyp)
        sub, dele, ins = w.substitutions, w.deletions, w.insertions
    else:
        sub = dele = ins = 0
    if ref:
        c = jiwer.process_characters(ref, hyp)
        char_errors = c.substitutions + c.deletions + c.insertions
    else:
        char_errors = len(hyp)
    return UtteranceScore(ref, hyp, len(ref.split()), sub, dele, ins, len(ref), char_errors)


def sum_scores(scores: Iterable[UtteranceScore]) -> CorpusScore:
    total = CorpusScore(0, 0, 0, 0, 0, 0, 0)
    for s in scores:
        total.n += 1
        total.ref_words += s.ref_words
        total.substitutions += s.substitutions
        total.deletions += s.deletions
        total.insertions += s.insertions
        total.ref_chars += s.ref_chars
        total.char_errors += s.char_errors
    return total


def score_corpus(
    references: Sequence[str], hypotheses: Sequence[str], normalizer: Normalizer | None = normalize_for_scoring
) -> tuple[CorpusScore, list[UtteranceScore]]:
    """Score aligned lists; returns the corpus total and the per-utterance scores."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    per_utt = [score_pair(r, h, normalizer) for r, h in zip(references, hypotheses)]
    return sum_scores(per_utt), per_utt


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str], normalizer: Normalizer | None = normalize_for_scoring) -> float:
    """Corpus WER (fraction) of aligned reference and hypothesis lists."""
    return score_corpus(references, hypotheses, normalizer)[0].wer
