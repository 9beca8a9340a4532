"""The fixed, versioned phone vocabulary: phone tokens ⇄ integer ids.

The token list of each version lives in ``vocab_v<N>.txt`` next to this module (one token per
line, id = 0-based line index ignoring ``#`` comments) and never changes once released: a model
trained on version N stores :meth:`PhoneVocab.to_dict` in its config meta, and
:meth:`PhoneVocab.from_dict` refuses a dict that does not match a known version.

Version 1 holds

* special tokens: ``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3, and the word
  boundary ``|`` = 4 (``bos``/``eos`` are never produced by the front end; models add them);
* punctuation kept as prosody tokens: ``, . ! ? ; : - " ( )``;
* stress ``ˈ ˌ``, length ``ː ˑ``, tie ``͡`` and linking ``‿`` marks;
* multi-character phones: the diphthongs ``aɪ aʊ eɪ oʊ ɔɪ``, the affricates ``tʃ dʒ``, long vowels
  (``iː uː ɑː ɔː ɜː`` ...) and syllabic consonants (``n̩ l̩ m̩ ɹ̩``);
* every single IPA letter espeak-ng can produce (and more), plus modifier letters ``ʰ ʲ ʷ ...``.

**Tokenisation** (:meth:`PhoneVocab.tokenize`) of one espeak word (IPA without spaces) is
deterministic: the text is NFC-normalised and cut into grapheme clusters (a character plus the
combining marks after it); then, left to right, the longest run of 1-3 clusters that is a vocab
token wins (so ``tʃˈaɪ`` → ``tʃ ˈ aɪ`` and ``bˈʌʔn̩`` → ``b ˈ ʌ ʔ n̩``).

**Fallback** for a cluster that is not a token: decompose it (NFD), drop the combining marks
and retry the base characters one by one (``ã`` → ``a``, ``ŋ̊`` → ``ŋ``); whatever is still
unknown becomes ``<unk>``. Tokenising and encoding therefore never raise.
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ConfigError

__all__ = ["PhoneVocab", "LATEST_VERSION", "PAD", "UNK", "BOS", "EOS", "WORD_BOUNDARY", "PUNCTUATION",
           "SILENT_MARKS", "PAUSE_MARKS", "silent_token_ids", "pause_token_ids"]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
#: Token between two words (from whitespace in the text or espeak's word split).
WORD_BOUNDARY = "|"
#: Punctuation characters kept as prosody tokens (each is its own token).
PUNCTUATION = ',.!?;:-"()'
#: The newest vocabulary version; :class:`PhoneVocab` uses it by default.
LATEST_VERSION = 1
#: The longest token, in grapheme clusters, that greedy matching tries.
_MAX_CLUSTERS = 3

_HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def _load_tokens(version: int) -> tuple[str, ...]:
    path = _HERE / f"vocab_v{version}.txt"
    if not path.is_file():
        raise ConfigError(f"phone vocabulary version {version} is unknown (no {path.name}); "
                          f"this latentspeech knows versions 1..{LATEST_VERSION}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


def _clusters(text: str) -> list[str]:
    """Split ``text`` into grapheme clusters: a base character followed by its combining marks."""
    out: list[str] = []
    for ch in text:
        if out and unicodedata.combining(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


class PhoneVocab:
    """A fixed phone vocabulary of a given ``version`` (default: the latest).

    >>> v = PhoneVocab()
    >>> v.decode(v.encode(v.tokenize("həlˈoʊ")))
    ['h', 'ə', 'l', 'ˈ', 'oʊ']
    """

    def __init__(self, version: int = LATEST_VERSION):
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= LATEST_VERSION:
            raise ConfigError(f"phone vocabulary version {version!r} is not supported by this latentspeech "
                              f"(known: 1..{LATEST_VERSION}); upgrade latentspeech to use this model")
        self.version = version
        self.tokens: tuple[str, ...] = _load_tokens(version)
        self._ids = {tok: i for i, tok in enumerate(self.tokens)}
        self.pad_id = self._ids[PAD]
        self.unk_id = self._ids[UNK]
        self.bos_id = self._ids[BOS]
        self.eos_id = self._ids[EOS]
        self.word_boundary_id = self._ids[WORD_BOUNDARY]
        self._cache: dict[str, tuple[str, ...]] = {}

    # ------------------------------------------------------------------ basics
    @property
    def size(self) -> int:
        """Number of tokens; every id is in ``[0, size)``."""
        return len(self.tokens)

    def __len__(self) -> int:
        return self.size

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhoneVocab) and other.tokens == self.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def __repr__(self) -> str:
        return f"PhoneVocab(version={self.version}, size={self.size})"

    @property
    def checksum(self) -> str:
        """Short SHA-256 of the token list (detects a tampered or mismatched vocabulary)."""
        return hashlib.sha256("\n".join(self.tokens).encode("utf-8")).hexdigest()[:16]

    # ------------------------------------------------------------ tokenisation
    def tokenize(self, phones: str) -> list[str]:
        """Cut one espeak IPA word (no spaces) into vocab tokens; see the module docstring.

        Whitespace separates words and becomes :data:`WORD_BOUNDARY`; the result only holds
        tokens of this vocabulary (``<unk>`` for what the fallback cannot place).
        """
        out: list[str] = []
        for i, word in enumerate(phones.split()):
            if i:
                out.append(WORD_BOUNDARY)
            cached = self._cache.get(word)
            if cached is None:
                cached = self._tokenize_word(word)
                if len(self._cache) < 100_000:
                    self._cache[word] = cached
            out.extend(cached)
        return out

    def _tokenize_word(self, word: str) -> tuple[str, ...]:
        cl = _clusters(unicodedata.normalize("NFC", word))
        out: list[str] = []
        i = 0
        while i < len(cl):
            for n in range(min(_MAX_CLUSTERS, len(cl) - i), 0, -1):
                cand = "".join(cl[i:i + n])
                if cand in self._ids:
                    out.append(cand)
                    i += n
                    break
            else:
                out.extend(self._fallback(cl[i]))
                i += 1
        return tuple(out)

    def _fallback(self, cluster: str) -> list[str]:
        """An unknown cluster: strip combining marks (NFD) and keep known bases, else ``<unk>``."""
        bases = [c for c in unicodedata.normalize("NFD", cluster) if not unicodedata.combining(c)]
        if not bases:  # a lone combining mark
            return [UNK]
        return [unicodedata.normalize("NFC", c) if unicodedata.normalize("NFC", c) in self._ids else UNK
                for c in bases]

    # --------------------------------------------------------------- ids
    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Token strings → ids; a string that is not a token maps to :attr:`unk_id`."""
        get = self._ids.get
        return [get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids → token strings; an id outside ``[0, size)`` decodes to ``<unk>``."""
        n = len(self.tokens)
        return [self.tokens[int(i)] if 0 <= int(i) < n else UNK for i in ids]

    def is_phone(self, token: str) -> bool:
        """True for a phone symbol (not a special, punctuation or boundary token)."""
        return token in self._ids and token not in (PAD, UNK, BOS, EOS, WORD_BOUNDARY) and token not in PUNCTUATION

    # ----------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """What a model stores in its config meta to pin the vocabulary it was trained with."""
        return {"version": self.version, "size": self.size, "checksum": self.checksum,
                "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "PhoneVocab":
        """Rebuild the vocabulary from :meth:`to_dict`; a ``ConfigError`` if it is not compatible.

        ``version`` must be a version this latentspeech knows, and the stored tokens (or size and
        checksum, when the token list is absent) must equal that version's exactly.
        """
        if not isinstance(d, dict) or "version" not in d:
            raise ConfigError(f"phone vocabulary: expected a dict with a 'version' key, got {d!r:.80}")
        version = d["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise ConfigError(f"phone vocabulary: version must be an int, got {version!r}")
        if version > LATEST_VERSION:
            raise ConfigError(f"phone vocabulary version {version} is newer than this latentspeech supports "
                              f"({LATEST_VERSION}): upgrade latentspeech")
        vocab = cls(version)
        tokens: Sequence[str] | None = d.get("tokens")
        if tokens is not None and tuple(tokens) != vocab.tokens:
            raise ConfigError(f"phone vocabulary v{version}: stored tokens differ from the built-in v{version} "
                              f"list ({len(tokens)} vs {vocab.size} tokens); the model's vocabulary is not compatible")
        if "size" in d and d["size"] != vocab.size:
            raise ConfigError(f"phone vocabulary v{version}: stored size {d['size']} != built-in {vocab.size}")
        if "checksum" in d and d["checksum"] != vocab.checksum:
            raise ConfigError(f"phone vocabulary v{version}: checksum {d['checksum']} != built-in {vocab.checksum}")
        return vocab


#: Non-phone tokens that make no sound of their own (besides specials and the word boundary).
SILENT_MARKS = set("ˈˌːˑ͡‿\"()-")


#: Pause punctuation: sounding tokens (≥ 1 frame of silence) that may last much longer than a phone.
PAUSE_MARKS = set(",.!?;:")


def pause_token_ids(vocab) -> list[int]:
    """Ids of the pause punctuation tokens (``, . ! ? ; :``)."""
    return [i for i, tok in enumerate(vocab.tokens) if tok in PAUSE_MARKS]


def silent_token_ids(vocab) -> list[int]:
    """Ids of the tokens that take no frames: specials, ``|``, stress/length/tie marks, ``" ( ) -``.

    ``<unk>`` is kept sounding (it stands for some unknown sound)."""
    silent = []
    for i, tok in enumerate(vocab.tokens):
        if tok == "<unk>":
            continue
        if (tok.startswith("<") and tok.endswith(">")) or tok == "|" or tok in SILENT_MARKS:
            silent.append(i)
    return silent
