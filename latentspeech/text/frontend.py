"""The text front end: raw text → normalised words → espeak-ng phones → vocab ids.

:class:`TextFrontend` chains :func:`~latentspeech.text.normalize.normalize_text`,
:func:`~latentspeech.text.phonemize.phonemize_batch` and
:meth:`~latentspeech.text.vocab.PhoneVocab.tokenize`. The ids carry no ``<bos>``/``<eos>``:
models add what they need. :func:`phonemize_file` writes a Kaldi data dir's ``phones`` file
(``<utt-id> <tok> <tok> ...``, the tokens of :meth:`TextFrontend.phone_string`).

Errors (:class:`~latentspeech.errors.TextError`): text with nothing to pronounce after
normalisation (empty, only spaces or punctuation), and text longer than ``max_chars``
(:data:`MAX_TEXT_CHARS` by default) after normalisation; split long text first with
:func:`~latentspeech.text.split.split_sentences`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import DataDirError, TextError
from .normalize import normalize_text
from .phonemize import phonemize_batch
from .vocab import PUNCTUATION, WORD_BOUNDARY, PhoneVocab

__all__ = ["TextFrontend", "MAX_TEXT_CHARS", "phonemize_file", "PhonemizeResult"]

log = logging.getLogger(__name__)

#: Longest accepted normalised text, in characters (~1 min of speech; models take far less,
#: so long inputs should go through ``split_sentences`` first).
MAX_TEXT_CHARS = 1000


def _preview(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


class TextFrontend:
    """Text → phone tokens / ids with a fixed :class:`PhoneVocab` (default: the latest version).

    ``max_chars`` bounds the normalised length of one text (``None``: no bound).
    """

    def __init__(self, vocab: PhoneVocab | None = None, max_chars: int | None = MAX_TEXT_CHARS):
        self.vocab = vocab if vocab is not None else PhoneVocab()
        self.max_chars = max_chars

    def __repr__(self) -> str:
        return f"TextFrontend(vocab={self.vocab!r}, max_chars={self.max_chars})"

    # ------------------------------------------------------------------ core
    def normalize(self, text: str) -> str:
        """The normalised text that is phonemized (see :func:`normalize_text`)."""
        return normalize_text(text)

    def tokens_from_normalized(self, texts: Sequence[str]) -> list[list[str]]:
        """Normalised texts → token lists in one espeak call; never raises on the text (may be ``[]``)."""
        result = []
        for items in phonemize_batch(texts):
            toks: list[str] = []
            for item in items:
                if item == WORD_BOUNDARY or (len(item) == 1 and item in PUNCTUATION):
                    toks.append(item)
                else:
                    toks.extend(self.vocab.tokenize(item))
            result.append(toks)
        return result

    def _check(self, raw: str, norm: str, tokens: list[str] | None = None) -> None:
        if self.max_chars is not None and len(norm) > self.max_chars:
            raise TextError(f"text is too long ({len(norm)} characters after normalisation, max {self.max_chars}): "
                            f"split it into sentences first (latentspeech.text.split_sentences)")
        if not norm or (tokens is not None and not any(self.vocab.is_phone(t) or t == "<unk>" for t in tokens)):
            raise TextError(f"text is empty after normalisation (nothing to pronounce): {_preview(raw)}")

    def phonemes_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """Phone tokens of several texts, phonemized in ONE espeak-ng call."""
        texts = list(texts)
        norms = [self.normalize(t) for t in texts]
        for raw, norm in zip(texts, norms):
            self._check(raw, norm)
        tokens = self.tokens_from_normalized(norms)
        for raw, norm, toks in zip(texts, norms, tokens):
            self._check(raw, norm, toks)
        return tokens

    # ------------------------------------------------------------- public API
    def phonemes(self, text: str) -> list[str]:
        """Normalise, phonemize and tokenise one text: e.g. ``['h', 'ə', 'l', 'ˈ', 'oʊ', '.']``."""
        return self.phonemes_batch([text])[0]

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, all in ``[0, vocab.size)``."""
        return self.vocab.encode(self.phonemes(text))

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Token ids of several texts (one batched espeak-ng call)."""
        return [self.vocab.encode(t) for t in self.phonemes_batch(list(texts))]

    def phone_string(self, text: str) -> str:
        """Tokens joined by single spaces: the format of a data dir's ``phones`` file."""
        return " ".join(self.phonemes(text))


# -------------------------------------------------------------------- data dirs


@dataclass
class PhonemizeResult:
    """What :func:`phonemize_file` did."""

    out_path: Path
    written: int = 0
    empty: list[str] = field(default_factory=list)  # utterances skipped: nothing to pronounce
    up_to_date: bool = False  # nothing done: ``out_path`` was newer than the text file


def _read_kaldi_text(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataDirError(f"{path}: no such file (a Kaldi 'text' file: <utt-id> <words...>)")
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(maxsplit=1)
                if parts:
                    rows.append((parts[0], parts[1] if len(parts) > 1 else ""))
    except UnicodeDecodeError as e:
        raise DataDirError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    return rows


def phonemize_file(text_path: str | os.PathLike, out_path: str | os.PathLike, *,
                   frontend: TextFrontend | None = None, batch_size: int = 256,
                   skip_if_up_to_date: bool = False, progress: bool | None = None) -> PhonemizeResult:
    """Phonemize a Kaldi ``text`` file into a ``phones`` file (``<utt-id> <tok> <tok> ...``).

    Lines are phonemized ``batch_size`` at a time (one espeak-ng call per batch) with a tqdm
    bar (``progress=None``: only on a terminal). Utterances with nothing to pronounce are left
    out (listed in the result, logged as a warning); there is no length limit. The output is
    written atomically. With ``skip_if_up_to_date``, nothing is done when ``out_path`` exists
    and is not older than ``text_path``.
    """
    from tqdm import tqdm

    text_path, out_path = Path(text_path), Path(out_path)
    result = PhonemizeResult(out_path=out_path)
    rows = _read_kaldi_text(text_path)
    if skip_if_up_to_date and out_path.is_file() and out_path.stat().st_mtime >= text_path.stat().st_mtime:
        result.up_to_date = True
        return result
    fe = frontend if frontend is not None else TextFrontend(max_chars=None)
    lines: list[str] = []
    disable = None if progress is None else not progress  # None: tqdm shows it only on a TTY
    with tqdm(total=len(rows), desc=f"phonemize {text_path}", unit="utt", disable=disable) as bar:
        for start in range(0, len(rows), max(1, batch_size)):
            batch = rows[start:start + batch_size]
            norms = [fe.normalize(text) for _, text in batch]
            for (utt, _), toks in zip(batch, fe.tokens_from_normalized(norms)):
                if any(fe.vocab.is_phone(t) or t == "<unk>" for t in toks):
                    lines.append(f"{utt} {' '.join(toks)}\n")
                else:
                    result.empty.append(utt)
            bar.update(len(batch))
    if result.empty:
        log.warning("%s: %d utterance(s) with nothing to pronounce left out of %s (first: %s)",
                    text_path, len(result.empty), out_path, result.empty[0])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result.written = len(lines)
    return result
