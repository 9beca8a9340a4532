"""Evaluation: ASR-based WER, speaker similarity, the test-set protocol and reports (offline).

* :mod:`.wer` — English scoring normaliser, WER/CER with S/D/I counts (jiwer).
* :mod:`.asr` — ``get_asr(name_or_dir)`` → :class:`ASR` (Whisper tiny.en by default; faster-whisper dirs; CTC dirs).
* :mod:`.similarity` — ``get_speaker_encoder(name_or_dir)`` → :class:`SpeakerEncoder` (Resemblyzer; ECAPA dirs).
* :mod:`.protocol` — pairs TSVs, the named protocols (:data:`PROTOCOLS`: ref-utt, prefix-3s, f5-cross-sentence;
  :func:`build_protocol`), :func:`evaluate_pairs`.
* :mod:`.report` — text table, mel-spectrogram PNGs, static HTML report.

Heavy libraries (faster-whisper, resemblyzer, torch) load on first use, not on import.
"""

from .protocol import (
    PROTOCOLS,
    EvalResult,
    PairRow,
    ProtocolConfig,
    build_librispeech_protocol,
    build_protocol,
    evaluate_pairs,
    load_result,
    read_pairs,
    write_pairs,
)
from .wer import EnglishScoringNormalizer, normalize_for_scoring, score_corpus, score_pair, word_error_rate


def get_asr(name_or_dir: str = "whisper-tiny.en", device: str = "cpu", **options):
    """See :func:`latentspeech.eval.asr.get_asr`."""
    from .asr import get_asr as _get

    return _get(name_or_dir, device=device, **options)


def get_speaker_encoder(name_or_dir: str = "resemblyzer", device: str = "cpu"):
    """See :func:`latentspeech.eval.similarity.get_speaker_encoder`."""
    from .similarity import get_speaker_encoder as _get

    return _get(name_or_dir, device=device)


__all__ = [
    "PROTOCOLS",
    "EnglishScoringNormalizer",
    "EvalResult",
    "PairRow",
    "ProtocolConfig",
    "build_librispeech_protocol",
    "build_protocol",
    "evaluate_pairs",
    "get_asr",
    "get_speaker_encoder",
    "load_result",
    "normalize_for_scoring",
    "read_pairs",
    "score_corpus",
    "score_pair",
    "word_error_rate",
    "write_pairs",
]
