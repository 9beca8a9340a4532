"""The evaluation protocol: which prompt goes with which text, and scoring a list of pairs.

Pairs files are tab-separated with a header line. The scorer reads

    utt_id  wav  prompt  text  [ref_wav]

(generated audio, prompt audio, intended text, optional ground-truth audio). The protocol
builders write the decode stage's input, the same columns without ``wav``:

    utt_id  prompt  text  ref_wav

Relative paths resolve against the folder of the pairs file when the file exists there,
otherwise against the current directory (where recipes run).

LibriSpeech test-clean protocol (as in VALL-E 2 and LatentLM): utterances of 4-10 s; two prompt
modes, deterministic by seed:

* ``ref-utt``: the prompt is another utterance of the same speaker (chosen at random among
  that speaker's other utterances in the 4-10 s subset, or any of theirs when none is left);
  text = the utterance's transcript; ``ref_wav`` = the utterance (ground truth for SIM-GT).
* ``prefix`` (3 s prefix, "continuation"): the prompt is the first 3 s of the utterance itself
  (written as a crop under ``wav_dir``). Text = the **whole** transcript: our models take no
  prompt transcript, so they speak the full sentence in the prompt's voice and WER is scored
  against the whole transcript. VALL-E 2 instead scores only the continuation against the
  remaining words, which needs word alignments a Kaldi data dir does not carry; expect our
  prefix WER to be computed over slightly more words than theirs.

    rows = build_librispeech_protocol("data/test_clean", "exp/eval/ref_utt.tsv", ProtocolConfig(mode="ref-utt"))
    result = evaluate_pairs("exp/eval/pairs.tsv", system="latentlm")   # EvalResult
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataDirError

__all__ = [
    "PairRow",
    "read_pairs",
    "write_pairs",
    "ProtocolConfig",
    "build_librispeech_protocol",
    "EvalResult",
    "evaluate_pairs",
    "load_result",
]

PAIR_COLUMNS = ("utt_id", "wav", "prompt", "text")
DECODE_COLUMNS = ("utt_id", "prompt", "text", "ref_wav")


@dataclass
class PairRow:
    """One line of a pairs file (paths as resolved absolute strings; ``wav`` empty in decode lists)."""

    utt_id: str
    wav: str
    prompt: str
    text: str
    ref_wav: str | None = None


def _resolve(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    if not p.is_absolute() and (base / p).exists():
        p = base / p
    return str(p.resolve()) if p.exists() else str(p)


def read_pairs(path: str | os.PathLike, require_wav: bool = True) -> list[PairRow]:
    """Read a pairs TSV (header ``utt_id wav prompt text [ref_wav]``); ``require_wav=False``
    also accepts decode lists (``utt_id prompt text ref_wav``)."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"pairs file not found: {path}")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataDirError(f"{path}: empty pairs file (expected a header 'utt_id<TAB>wav<TAB>prompt<TAB>text')") from None
        needed = PAIR_COLUMNS if require_wav else ("utt_id", "prompt", "text")
        missing = [c for c in needed if c not in header]
        if missing:
            raise DataDirError(
                f"{path}: header lacks column(s) {', '.join(missing)} (expected tab-separated 'utt_id wav prompt text [ref_wav]', got {header})"
            )
        col = {c: i for i, c in enumerate(header)}
        rows, seen = [], set()
        for n, fields in enumerate(reader, start=2):
            if not fields or all(not x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise DataDirError(f"{path}:{n}: expected {len(header)} tab-separated fields, got {len(fields)}")
            get = lambda c: fields[col[c]].strip() if c in col else ""  # noqa: E731
            utt = get("utt_id")
            if not utt:
                raise DataDirError(f"{path}:{n}: empty utt_id")
            if utt in seen:
                raise DataDirError(f"{path}:{n}: duplicate utt_id '{utt}'")
            seen.add(utt)
            ref = get("ref_wav")
            rows.append(
                PairRow(
                    utt_id=utt,
                    wav=_resolve(get("wav"), path.parent) if get("wav") else "",
                    prompt=_resolve(get("prompt"), path.parent),
                    text=get("text"),
                    ref_wav=_resolve(ref, path.parent) if ref else None,
                )
            )
    if not rows:
        raise DataDirError(f"{path}: no pairs after the header")
    return rows


def write_pairs(path: str | os.PathLike, rows: Sequence[PairRow], columns: Sequence[str] = PAIR_COLUMNS) -> Path:
    """Write rows as a TSV with the given columns (``ref_wav`` empty when a row has none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(columns) + "\n")
        for r in rows:
            values = [str(getattr(r, c) or "") for c in columns]
            if any("\t" in v or "\n" in v for v in values):
                raise ConfigError(f"pair '{r.utt_id}' has a tab or newline in a field")
            f.write("\t".join(values) + "\n")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# LibriSpeech test-clean protocol


@dataclass
class ProtocolConfig:
    """Settings of :func:`build_librispeech_protocol` (defaults = VALL-E 2's protocol)."""

    #: "ref-utt" (another utterance of the same speaker) or "prefix" (first ``prefix_seconds``).
    mode: str = "ref-utt"
    min_seconds: float = 4.0
    max_seconds: float = 10.0
    prefix_seconds: float = 3.0
    #: ref-utt only: crop prompts to their first N seconds (None keeps the whole utterance).
    prompt_max_seconds: float | None = None
    seed: int = 0
    #: keep a random (seeded) subset of this many utterances; None keeps all.
    max_utts: int | None = None

    def validate(self) -> None:
        if self.mode not in ("ref-utt", "prefix"):
            raise ConfigError(f"protocol mode must be 'ref-utt' or 'prefix', got {self.mode!r}")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise ConfigError(f"need 0 <= min_seconds < max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if self.mode == "prefix" and not 0 < self.prefix_seconds < self.min_seconds:
            raise ConfigError(f"prefix_seconds must be in (0, min_seconds), got {self.prefix_seconds}")


def _utterance_audio(d, utt_id: str, wav_dir: Path, max_seconds: float | None, suffix: str, sr: int = 16000) -> str:
    """A path for an utterance's audio: the file itself when it is a plain file used whole,
    otherwise a crop written under ``wav_dir``."""
    from ..audio import save_audio

    entry, _, _ = d.recording_entry(utt_id)
    if max_seconds is None and utt_id not in d.segments and not entry.rstrip().endswith("|") and ".ark:" not in entry:
        p = Path(entry)
        if not p.is_absolute() and d.base is not None and (d.base / p).exists():
            p = d.base / p
        if p.exists():
            return str(p.resolve())
    wav = d.load_utterance(utt_id, sr)
    if max_seconds is not None:
        wav = wav[: int(round(max_seconds * sr))]
    out = wav_dir / f"{utt_id}{suffix}.wav"
    if not out.exists():
        save_audio(out, wav, sr)
    return str(out.resolve())


def build_librispeech_protocol(
    data_dir: str | os.PathLike,
    out_tsv: str | os.PathLike | None = None,
    config: ProtocolConfig | None = None,
    wav_dir: str | os.PathLike | None = None,
) -> list[PairRow]:
    """Decode list of the test-clean protocol from a Kaldi data dir (``wav.scp``, ``text``,
    ``utt2spk``; ``utt2dur`` or audio headers for durations). Writes ``out_tsv`` when given
    (columns ``utt_id prompt text ref_wav``); crops go to ``wav_dir`` (default: a folder named
    after ``out_tsv``). The same data dir, config and seed give the same file."""
    from ..data.kaldi import DataDir

    config = config or ProtocolConfig()
    config.validate()
    d = DataDir.load(data_dir)
    if not d.has_text:
        raise DataDirError(f"{data_dir}: no 'text' file (the protocol needs transcripts)")
    if wav_dir is None:
        wav_dir = Path(out_tsv).with_suffix("") if out_tsv else Path(data_dir) / "protocol_wavs"
    wav_dir = Path(wav_dir)
    dur = d.utt2dur
    subset = [u for u in d.utt_ids if config.min_seconds <= dur[u] <= config.max_seconds and d.text.get(u, "").strip()]
    if not subset:
        raise DataDirError(f"{data_dir}: no utterance of {config.min_seconds:g}-{config.max_seconds:g} s with a transcript")
    in_range = set(subset)  # prompt candidates: the whole 4-10 s set, even when subsampled below
    if config.max_utts is not None and len(subset) > config.max_utts:
        subset = sorted(random.Random(config.seed).sample(subset, config.max_utts))
    rows = []
    for utt in subset:
        spk = d.utt2spk[utt]
        ref = _utterance_audio(d, utt, wav_dir, None, "")
        if config.mode == "prefix":
            prompt = _utterance_audio(d, utt, wav_dir, config.prefix_seconds, f"_prefix{config.prefix_seconds:g}s")
        else:
            others = [u for u in d.spk2utt.get(spk, []) if u != utt]
            candidates = sorted(u for u in others if u in in_range) or sorted(others)
            if not candidates:
                continue  # a speaker with a single utterance has no ref-utt prompt
            other = random.Random(f"{config.seed}:{utt}").choice(candidates)
            suffix = "" if config.prompt_max_seconds is None else f"_first{config.prompt_max_seconds:g}s"
            prompt = _utterance_audio(d, other, wav_dir, config.prompt_max_seconds, suffix)
        rows.append(PairRow(utt_id=utt, wav="", prompt=prompt, text=" ".join(d.text[utt].split()), ref_wav=ref))
    if not rows:
        raise DataDirError(f"{data_dir}: no speaker has two utterances, so no ref-utt prompt can be chosen")
    if out_tsv is not None:
        write_pairs(out_tsv, rows, DECODE_COLUMNS)
    return rows


# ---------------------------------------------------------------------------------------------
# Scoring a pairs file


@dataclass
class EvalResult:
    """Scores of one system: ``aggregate`` (``n``, ``wer``, ``cer``, ``sim``, ``sim_gt``...) and
    one dict per utterance. Saved as JSON by :meth:`save`."""

    system: str
    asr: str
    sim_model: str
    aggregate: dict
    utterances: list[dict] = field(default_factory=list)
    pairs: str = ""
    created: str = ""

    def to_dict(self) -> dict:
        return {
            "system": self.system,
            "pairs": self.pairs,
            "asr": self.asr,
            "sim_model": self.sim_model,
            "created": self.created,
            "aggregate": self.aggregate,
            "utterances": self.utterances,
        }

    def save(self, path: str | os.PathLike) -> Path:
        import json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


def load_result(path: str | os.PathLike) -> EvalResult:
    """Read a result JSON written by :meth:`EvalResult.save`."""
    import json

    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return EvalResult(
            system=d["system"], asr=d["asr"], sim_model=d["sim_model"], aggregate=d["aggregate"],
            utterances=d["utterances"], pairs=d.get("pairs", ""), created=d.get("created", ""),
        )
    except FileNotFoundError:
        raise ConfigError(f"result file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not an eval result JSON ({type(e).__name__}: {e})") from None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def evaluate_pairs(
    pairs: str | os.PathLike | Sequence[PairRow],
    asr: str = "whisper-tiny.en",
    sim: str | None = "resemblyzer",
    system: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    wav_dir: str | os.PathLike | None = None,
) -> EvalResult:
    """WER/CER of ``asr`` transcripts against the intended text, and SIM (cosine of ``sim``
    embeddings) of each output against its prompt and, when given, its ``ref_wav``.

    ``sim=None`` skips speaker similarity. Aggregate ``wer``/``cer`` are corpus-level
    fractions (errors over reference words); ``sim``/``sim_gt`` are means over utterances.
    With ``wav_dir``, ``pairs`` may be a decode list without a ``wav`` column: the output of
    each row is ``wav_dir/<utt_id>.wav``.
    """
    from tqdm.auto import tqdm

    from ..audio import load_audio
    from .asr import ASR_SAMPLE_RATE, get_asr
    from .similarity import get_speaker_encoder
    from .wer import sum_scores, score_pair

    pairs_path = ""
    if isinstance(pairs, (str, os.PathLike)):
        pairs_path = str(Path(pairs).resolve())
        rows = read_pairs(pairs, require_wav=wav_dir is None)
        system = system or Path(pairs).stem
    else:
        rows = list(pairs)
    if wav_dir is not None:
        rows = [r if r.wav else PairRow(r.utt_id, str(Path(wav_dir).resolve() / f"{r.utt_id}.wav"), r.prompt, r.text, r.ref_wav)
                for r in rows]
    missing = [r.utt_id for r in rows if not r.wav]
    if missing:
        raise DataDirError(f"no generated audio given for {len(missing)} row(s), e.g. '{missing[0]}' (add a wav column or --wav-dir)")
    recognizer = get_asr(asr, device=device)
    encoder = get_speaker_encoder(sim, device=device) if sim else None
    utts, scores = [], []
    cache: dict[str, np.ndarray] = {}  # prompt / ground-truth embeddings, often shared by rows

    def embedding(path: str) -> np.ndarray:
        if path not in cache:
            cache[path] = encoder.embed([path])[0]
        return cache[path]

    for r in tqdm(rows, desc="eval", disable=not progress):
        wav = load_audio(r.wav, ASR_SAMPLE_RATE)
        hyp = recognizer.transcribe([wav])[0]
        s = score_pair(r.text, hyp)
        scores.append(s)
        sim_prompt = sim_gt = None
        if encoder is not None:
            out = encoder.embed([wav])[0]
            sim_prompt = float(out @ embedding(r.prompt))
            sim_gt = float(out @ embedding(r.ref_wav)) if r.ref_wav else None
        utts.append({
            "utt_id": r.utt_id, "wav": r.wav, "prompt": r.prompt, "ref_wav": r.ref_wav,
            "text": r.text, "hyp": hyp, "ref_norm": s.reference, "hyp_norm": s.hypothesis,
            "wer": s.wer, "cer": s.cer, "substitutions": s.substitutions, "deletions": s.deletions,
            "insertions": s.insertions, "ref_words": s.ref_words,
            "sim": sim_prompt, "sim_gt": sim_gt, "duration": len(wav) / ASR_SAMPLE_RATE,
        })
    total = sum_scores(scores)
    aggregate = {
        "n": len(utts),
        "wer": total.wer,
        "cer": total.cer,
        "sim": _mean(u["sim"] for u in utts),
        "sim_gt": _mean(u["sim_gt"] for u in utts),
        "substitutions": total.substitutions,
        "deletions": total.deletions,
        "insertions": total.insertions,
        "ref_words": total.ref_words,
        "wer_utt_mean": _mean(u["wer"] for u in utts),
        "duration_total": float(sum(u["duration"] for u in utts)),
        "duration_mean": _mean(u["duration"] for u in utts),
    }
    return EvalResult(
        system=system or "system", asr=recognizer.name, sim_model=encoder.name if encoder else "",
        aggregate=aggregate, utterances=utts, pairs=pairs_path,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
