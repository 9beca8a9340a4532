"""Word and character error rates for scoring TTS output with an ASR model.

    norm = EnglishScoringNormalizer()
    norm("Mr. Smith paid $20 for the 2nd car.")      # 'mister smith paid twenty dollars for the second car'
    s = score_pair("ten of clubs", "10 of clubs.")   # UtteranceScore(wer=0.0, ...)
    c = score_corpus(refs, hyps)                     # CorpusScore: errors summed over utterances / reference words

Both sides (reference and hypothesis) go through the same normaliser, so the direction of
each rule only has to be consistent. Whisper's own normaliser turns spelled-out numbers
into digits; here digits become words instead (``num2words``), which matches how book
transcripts (LibriSpeech, LibriVox) are written and keeps every token a word. The other
rules: case, punctuation, hyphens (``cold-hearted`` → ``cold hearted``), diacritics,
contractions (``won't`` → ``will not``, ``it's`` → ``it is``; a possessive ``'s`` keeps the
word: ``john's`` → ``johns``), title abbreviations (``Mr.`` → ``mister``), currency,
percent and ``&``, fillers (``uh``, ``um``) and British spellings (``colour`` → ``color``,
from whisper-normalizer's list when installed).

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

#: Title and honorific abbreviations (matched as whole words, with or without a period).
ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "messrs": "messieurs",
    "dr": "doctor",
    "st": "saint",
    "prof": "professor",
    "capt": "captain",
    "gov": "governor",
    "gen": "general",
    "col": "colonel",
    "lt": "lieutenant",
    "sgt": "sergeant",
    "rev": "reverend",
    "hon": "honorable",
    "jr": "junior",
    "sr": "senior",
    "esq": "esquire",
    "vs": "versus",
    "etc": "et cetera",
    "ok": "okay",
}

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
CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}
SCALES = r"(thousand|million|billion|trillion)"


def _plural(word: str) -> str:
    if word == "penny":
        return "pence"
    return word[:-1] + "ies" if word.endswith("y") and not word.endswith("ey") else word + "s"


def number_to_words(token: str, kind: str = "cardinal") -> str:
    """Spell out a digit string: ``"105"`` → ``"one hundred and five"``; ``kind`` is
    ``cardinal``, ``ordinal`` or ``year`` (``"1960"`` → ``"nineteen sixty"``); ``"3.14"`` →
    ``"three point one four"``; more than 9 digits or a leading zero: digit by digit. Hyphens
    and commas of num2words' output become spaces."""
    from num2words import num2words

    if "." in token:
        whole, frac = token.split(".", 1)
        words = number_to_words(whole or "0") + " point " + " ".join(number_to_words(d) for d in frac)
    elif len(token) > 9 or (len(token) > 1 and token.startswith("0")):
        words = " ".join(num2words(int(d)) for d in token)  # ids, phone numbers, "007": digit by digit
    else:
        words = num2words(int(token), to=kind) if kind != "cardinal" else num2words(int(token))
    return re.sub(r"[-,]", " ", words)


def _is_year(digits: str) -> bool:
    n = int(digits)
    return len(digits) == 4 and (1000 <= n <= 1999 or 2010 <= n <= 2099)


def _spell_numbers(s: str) -> str:
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 10,000 -> 10000

    def currency(m: re.Match) -> str:
        unit, sub = CURRENCIES[m.group(1)]
        amount, scale = m.group(2), m.group(3)
        whole, _, frac = amount.partition(".")
        if scale:
            return f"{number_to_words(amount)} {scale} {_plural(unit)}"
        out = f"{number_to_words(whole)} {unit if int(whole) == 1 else _plural(unit)}"
        if frac and int(frac):
            cents = int((frac + "0")[:2])
            out += f" {number_to_words(str(cents))} {sub if cents == 1 else _plural(sub)}"
        return out

    s = re.sub(r"([$£€])\s?(\d+(?:\.\d+)?)(?:\s+" + SCALES + r")?", currency, s)
    s = re.sub(r"(\d+(?:\.\d+)?)\s?%", r"\1 percent", s)
    s = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: number_to_words(m.group(1), "ordinal"), s)

    def decade(m: re.Match) -> str:
        digits = m.group(1)
        words = number_to_words(digits, "year" if _is_year(digits) else "cardinal").split()
        return " ".join(words[:-1] + [_plural(words[-1])])

    s = re.sub(r"\b(\d*0)'?s\b", decade, s)
    s = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", s)  # mp3 -> mp 3, 4x4 -> 4 x 4
    s = re.sub(r"\b\d+\.\d+\b", lambda m: number_to_words(m.group(0)), s)
    s = re.sub(r"\b\d+\b", lambda m: number_to_words(m.group(0), "year" if _is_year(m.group(0)) else "cardinal"), s)
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
        s = unicodedata.normalize("NFKC", text).lower()
        s = re.sub(r"[‘’ʼ`´]", "'", s).replace("_", " ")
        s = re.sub(r"[\[<][^\]>]*[\]>]", " ", s)  # [noise], <unk>
        s = re.sub(r"\([^)]*\)", " ", s)
        s = s.replace("&", " and ")
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
