"""Split long text into sentence chunks that a model can take one at a time.

:func:`split_sentences` segments with pysbd (rule-based, knows ``Dr.``, ``$3.50``, ``e.g.``...),
then cuts any sentence longer than ``max_chars`` at clause punctuation (``, ; :`` and dashes),
then at spaces, and as a last resort inside a word, packing the pieces greedily so that every
chunk is at most ``max_chars`` characters long. Chunks are stripped; empty text gives ``[]``.

``max_chars`` counts characters of the *raw* text: normalisation later expands numbers and
symbols (``$3.50`` → 29 characters), which the front end's own, larger limit allows for.
"""

from __future__ import annotations

import re

from ..errors import TextError

__all__ = ["split_sentences", "DEFAULT_MAX_CHARS"]

#: Default chunk length: about 15-20 s of speech, where zero-shot TTS quality still holds.
DEFAULT_MAX_CHARS = 250

_segmenter = None
_FALLBACK_RE = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_RE = re.compile(r"(?<=[,;:])\s+|\s+(?=-\s)|(?<=\s-)\s+")


def _sentences(text: str) -> list[str]:
    global _segmenter
    try:
        if _segmenter is None:
            import pysbd

            _segmenter = pysbd.Segmenter(language="en", clean=False)
        return list(_segmenter.segment(text))
    except Exception:  # noqa: BLE001 - pysbd can trip on odd input; a plain regex split then
        return _FALLBACK_RE.split(text)


def _pack(pieces: list[str], max_chars: int, sep: str = " ") -> list[str]:
    """Greedily join pieces (already each <= max_chars) into chunks <= max_chars."""
    chunks: list[str] = []
    cur = ""
    for p in pieces:
        if not cur:
            cur = p
        elif len(cur) + len(sep) + len(p) <= max_chars:
            cur = cur + sep + p
        else:
            chunks.append(cur)
            cur = p
    if cur:
        chunks.append(cur)
    return chunks


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut one over-long sentence: clauses first, then words, then characters."""
    pieces: list[str] = []
    for clause in _CLAUSE_RE.split(sentence):
        clause = clause.strip()
        if not clause:
            continue
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        words: list[str] = []
        for word in clause.split():
            words.extend(word[i:i + max_chars] for i in range(0, len(word), max_chars))
        pieces.extend(_pack(words, max_chars))
    return _pack(pieces, max_chars)


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Split ``text`` into sentences, each cut further to at most ``max_chars`` characters.

    >>> split_sentences("Dr. Smith paid $3.50. He left!")
    ['Dr. Smith paid $3.50.', 'He left!']
    """
    if not isinstance(max_chars, int) or max_chars < 1:
        raise TextError(f"max_chars must be a positive integer, got {max_chars!r}")
    if not text or not text.strip():
        return []
    text = " ".join(text.split())
    chunks: list[str] = []

    def add(sent: str) -> None:
        chunks.extend([sent] if len(sent) <= max_chars else _split_long(sent, max_chars))

    lead = ""  # punctuation alone (a closing quote split off by the segmenter) joins a neighbour
    for sent in _sentences(text):
        sent = sent.strip()
        if not sent:
            continue
        if not any(c.isalnum() for c in sent):
            if chunks and len(chunks[-1]) + len(sent) <= max_chars:
                chunks[-1] += sent
            else:
                lead += sent + " "
            continue
        add(lead + sent)
        lead = ""
    if lead:
        add(lead.strip())
    return chunks
