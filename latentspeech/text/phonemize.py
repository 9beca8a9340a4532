"""Grapheme-to-phoneme with espeak-ng (through ``phonemizer``): one backend, batched calls.

:func:`phonemize_batch` turns normalised texts into lists of phone *items*: IPA words from
espeak-ng (en-us, with stress marks), the :data:`~latentspeech.text.vocab.WORD_BOUNDARY` ``|``
between words and punctuation characters kept as prosody tokens.

Punctuation is kept by this module rather than by phonemizer's ``preserve_punctuation=True``:
with a batch of lines, phonemizer 3.4 drops lines that are empty after removing punctuation
and re-splits text at word-internal marks (``"a.b"``), which shifts every later line of the
batch onto the wrong input (measured: ``["", "a.b", "!!!"]`` came back misaligned). Here each
text is cut into punctuation marks and punctuation-free *chunks*; all chunks of all texts go
to espeak-ng in one call (one line each, so output lines align one-to-one with inputs), and the
marks are put back in order. The result is the same as ``preserve_punctuation=True`` without
the misalignment.

The ``EspeakBackend`` is created once, lazily (it loads the espeak-ng library), and reused by
every call; calls are serialised with a lock because espeak-ng is not thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Sequence

from ..errors import TextError
from .vocab import PUNCTUATION, WORD_BOUNDARY

__all__ = ["get_backend", "phonemize_batch", "espeak_words", "LANGUAGE", "INSTALL_HINT"]

LANGUAGE = "en-us"
INSTALL_HINT = "install espeak-ng: apt-get install espeak-ng"

_backend = None
_lock = threading.Lock()

# A hyphen between two word characters (``twenty-four``) belongs to the word; elsewhere it is
# a pause mark. Every other character of PUNCTUATION is always a mark.
_MARKS = "".join(c for c in PUNCTUATION if c != "-")
#: Marks that may open a phrase: a word right after one (no space) gets no boundary, and
#: one after a space gets a boundary before it (``a "b"`` → ``a | " b "``).
_OPENING = frozenset(["(", '"', "-"])
_ITEM_RE = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<mark>[" + re.escape(_MARKS) + r"]|(?<!\w)-|-(?!\w))"
    r"|(?P<word>(?:[^\s" + re.escape(PUNCTUATION) + r"]|(?<=\w)-(?=\w))+)"
)


def get_backend():
    """The shared ``EspeakBackend`` (created on first use); ``TextError`` if espeak-ng is missing."""
    global _backend
    if _backend is None:
        with _lock:
            if _backend is None:
                try:
                    from phonemizer.backend import EspeakBackend
                except ImportError as e:  # pragma: no cover - phonemizer is a hard dependency
                    raise TextError(f"the phonemizer package is missing ({e}): pip install phonemizer") from e
                logger = logging.getLogger("latentspeech.phonemizer")
                logger.setLevel(logging.ERROR)
                try:
                    _backend = EspeakBackend(LANGUAGE, with_stress=True, preserve_punctuation=False,
                                             language_switch="remove-flags", words_mismatch="ignore",
                                             logger=logger)
                except RuntimeError as e:
                    raise TextError(f"espeak-ng not found: {INSTALL_HINT} (phonemizer: {e})") from e
    return _backend


def _reset_backend() -> None:
    """Forget the shared backend (tests use it to simulate a missing espeak-ng)."""
    global _backend
    with _lock:
        _backend = None


def espeak_words(chunks: Sequence[str]) -> list[str]:
    """Phonemize punctuation-free chunks in ONE espeak-ng call; returns IPA words joined by spaces."""
    if not chunks:
        return []
    backend = get_backend()
    from phonemizer.separator import Separator

    sep = Separator(phone="", syllable="", word=" ")
    with _lock:
        out = backend.phonemize(list(chunks), separator=sep, strip=True, njobs=1)
    if len(out) != len(chunks):  # pragma: no cover - guarded by construction (one line per chunk)
        raise TextError(f"espeak-ng returned {len(out)} lines for {len(chunks)} inputs")
    return [" ".join(o.split()) for o in out]


def _split_items(text: str) -> list[tuple[str, str]]:
    """Cut text into ``("space"|"mark"|"chunk", str)``; a chunk is a run of words and spaces."""
    items: list[tuple[str, str]] = []
    for m in _ITEM_RE.finditer(text):
        kind = m.lastgroup
        val = m.group()
        if kind == "word":
            if items and items[-1][0] == "chunk":
                items[-1] = ("chunk", items[-1][1] + val)
            elif len(items) >= 2 and items[-1][0] == "space" and items[-2][0] == "chunk":
                items.pop()
                items[-1] = ("chunk", items[-1][1] + " " + val)
            else:
                items.append(("chunk", val))
        else:
            items.append((kind, val))
    return items


def phonemize_batch(texts: Sequence[str]) -> list[list[str]]:
    """Normalised texts → per text, a list of items: IPA words, ``|`` and punctuation marks.

    The IPA words are not yet cut into vocab tokens (see ``PhoneVocab.tokenize``). Word
    boundaries come from whitespace in the text and from espeak-ng's own word split; there is
    never a boundary at either end nor two in a row. All texts are phonemized in one call.
    """
    split = [_split_items(t) for t in texts]
    chunks = [val for items in split for kind, val in items if kind == "chunk"]
    phones = iter(espeak_words(chunks))
    result: list[list[str]] = []
    for items in split:
        out: list[str] = []
        spaced = False  # whitespace since the last item
        for kind, val in items:
            if kind == "space":
                spaced = True
                continue
            if kind == "mark":
                if spaced and val in _OPENING and out and out[-1] != WORD_BOUNDARY:
                    out.append(WORD_BOUNDARY)
                out.append(val)
            else:
                for word in next(phones).split():
                    if out and out[-1] != WORD_BOUNDARY and (spaced or out[-1] not in _OPENING):
                        out.append(WORD_BOUNDARY)
                    out.append(word)
                    spaced = True  # espeak's word split: the next word gets a boundary
            spaced = False
        while out and out[-1] == WORD_BOUNDARY:
            out.pop()
        result.append(out)
    return result
