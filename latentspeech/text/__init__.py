"""Text front end: English normalisation, espeak-ng phonemes, the fixed phone vocabulary, sentence splitting.

    >>> from latentspeech.text import TextFrontend
    >>> fe = TextFrontend()
    >>> fe.phone_string("Hello, world.")
    'h ə l ˈ oʊ , | w ˈ ɜː l d .'

Modules: ``normalize`` (text → words), ``rules`` (number words, currencies, abbreviations and
symbol words, shared with the scoring normaliser), ``phonemize`` (the shared espeak-ng backend),
``vocab`` (``PhoneVocab``, versioned token list), ``frontend`` (``TextFrontend``,
``phonemize_file``), ``split`` (long text → chunks).
"""

from .frontend import MAX_TEXT_CHARS, PhonemizeResult, TextFrontend, phonemize_file
from .normalize import normalize_text
from .split import DEFAULT_MAX_CHARS, split_sentences
from .vocab import PhoneVocab

__all__ = ["normalize_text", "TextFrontend", "PhoneVocab", "split_sentences", "phonemize_file",
           "PhonemizeResult", "MAX_TEXT_CHARS", "DEFAULT_MAX_CHARS"]
