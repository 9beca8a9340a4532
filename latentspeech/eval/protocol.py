"""The evaluation protocol: which prompt goes with which text, and scoring a list of pairs.

Pairs files are tab-separated with a header line. The scorer reads

    utt_id  wav  prompt  text  [ref_wav]

(generated audio, prompt audio, intended text, optional ground-truth audio). The protocol
builders write the decode stage's input, the same columns without ``wav``:

    utt_id  prompt  text  ref_wav  [gt_wav]

(``gt_wav``: the recording of exactly the scored text, for the ground-truth row, when it is not
``ref_wav``: prefix-3s writes the recording after the prefix there.) Relative paths resolve against the folder of the pairs file when the file exists there,
otherwise against the current directory (where recipes run).

Named protocols (:data:`PROTOCOLS`; :func:`build_protocol` builds any of them):

* ``ref-utt`` (VALL-E 2 / LatentLM, LibriSpeech test-clean): targets of 4-10 s; the prompt is
  another utterance of the same speaker (chosen at random, by seed, among that speaker's other
  utterances in the 4-10 s subset, or any of theirs when none is left); text = the utterance's
  transcript; ``ref_wav`` = the utterance (ground truth for SIM-GT).
* ``prefix-3s`` (VALL-E 2's continuation, alias ``prefix``): the prompt is the first 3 s of the
  utterance itself (a crop under ``wav_dir``) and the model speaks the rest: text = the
  transcript minus the words of the prefix, so the decoded output holds only the continuation
  and WER is scored on the continuation's words. A word belongs to the prefix when its midpoint
  lies within the first 3 s. Word times come from an alignment file (``alignments``: a Kaldi
  CTM ``<utt> <channel> <start> <duration> <word>``, or the LibriSpeech alignments format
  ``<utt> ",WORD,WORD," "end,end,..."``, as the Montreal Forced Aligner releases for LibriSpeech);
  without one they are estimated by spreading the utterance's duration over its words in
  proportion to their letters (an approximation: pass alignments for the protocol proper).
  Utterances whose words all fall in the prefix are left out.
* ``f5-cross-sentence`` (F5-TTS's LibriSpeech-PC test-clean list,
  ``librispeech_pc_test_clean_cross_sentence.lst``): tab-separated lines
  ``ref_utt ref_dur ref_txt gen_utt gen_dur gen_txt``; the prompt is the whole ``ref_utt``, the text
  ``gen_txt`` (with LibriSpeech-PC's case and punctuation, which scoring normalises away) and
  ``ref_wav`` the recording of ``gen_utt``. Audio comes from a LibriSpeech folder
  (``<root>/<spk>/<chapter>/<utt>.flac``) or a Kaldi data dir that holds both utterances.

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
    "PROTOCOLS",
    "build_protocol",
    "build_cross_sentence_protocol",
    "read_word_alignments",
    "read_f5_list",
    "split_prefix_words",
    "estimate_word_times",
    "PairRow",
    "read_pairs",
    "write_pairs",
    "ProtocolConfig",
    "build_librispeech_protocol",
    "EvalResult",
    "evaluate_pairs",
    "load_result",
    "resolve_device",
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
    #: the recording of exactly ``text`` when it differs from ``ref_wav`` (the ground-truth row's audio)
    gt_wav: str | None = None


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
            ref, gt = get("ref_wav"), get("gt_wav")
            rows.append(
                PairRow(
                    utt_id=utt,
                    wav=_resolve(get("wav"), path.parent) if get("wav") else "",
                    prompt=_resolve(get("prompt"), path.parent),
                    text=get("text"),
                    ref_wav=_resolve(ref, path.parent) if ref else None,
                    gt_wav=_resolve(gt, path.parent) if gt else None,
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

    #: "ref-utt" (another utterance of the same speaker) or "prefix-3s" (first ``prefix_seconds``;
    #: "prefix" is the same).
    mode: str = "ref-utt"
    min_seconds: float = 4.0
    max_seconds: float = 10.0
    prefix_seconds: float = 3.0
    #: ref-utt only: crop prompts to their first N seconds (None keeps the whole utterance).
    prompt_max_seconds: float | None = None
    seed: int = 0
    #: keep a random (seeded) subset of this many utterances; None keeps all.
    max_utts: int | None = None
    #: prefix-3s: word alignments (CTM or LibriSpeech alignments format); None estimates word times.
    alignments: str | None = None

    def validate(self) -> None:
        if self.mode == "prefix":
            self.mode = "prefix-3s"
        if self.mode not in ("ref-utt", "prefix-3s"):
            raise ConfigError(f"protocol mode must be 'ref-utt' or 'prefix-3s', got {self.mode!r}")
        if not 0 <= self.min_seconds < self.max_seconds:
            raise ConfigError(f"need 0 <= min_seconds < max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if self.mode == "prefix-3s" and not 0 < self.prefix_seconds < self.max_seconds:
            raise ConfigError(f"prefix_seconds must be in (0, max_seconds), got {self.prefix_seconds}")


def _utterance_audio(d, utt_id: str, wav_dir: Path, max_seconds: float | None, suffix: str, sr: int = 16000,
                     from_seconds: float = 0.0) -> str:
    """A path for an utterance's audio: the file itself when it is a plain file used whole,
    otherwise a crop (``[from_seconds, max_seconds)``) written under ``wav_dir``."""
    from ..audio import save_audio

    entry, _, _ = d.recording_entry(utt_id)
    if max_seconds is None and not from_seconds and utt_id not in d.segments and not entry.rstrip().endswith("|") and ".ark:" not in entry:
        p = Path(entry)
        if not p.is_absolute() and d.base is not None and (d.base / p).exists():
            p = d.base / p
        if p.exists():
            return str(p.resolve())
    wav = d.load_utterance(utt_id, sr)
    if max_seconds is not None:
        wav = wav[: int(round(max_seconds * sr))]
    wav = wav[int(round(from_seconds * sr)):]
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
    if config.mode == "prefix-3s":  # (with min_seconds below the prefix) only utterances that outlast it
        subset = [u for u in subset if dur[u] > config.prefix_seconds]
        if not subset:
            raise DataDirError(f"{data_dir}: no utterance of {config.min_seconds:g}-{config.max_seconds:g} s is longer "
                               f"than the {config.prefix_seconds:g} s prefix")
    if config.max_utts is not None and len(subset) > config.max_utts:
        subset = sorted(random.Random(config.seed).sample(subset, config.max_utts))
    aligned = read_word_alignments(config.alignments) if config.mode == "prefix-3s" and config.alignments else None
    rows = []
    for utt in subset:
        spk = d.utt2spk[utt]
        text = " ".join(d.text[utt].split())
        if config.mode == "prefix-3s":
            words = text.split()
            if aligned is not None:
                if utt not in aligned:
                    raise DataDirError(f"{config.alignments}: no word alignment for '{utt}'")
                times = _match_alignment(aligned[utt], words, utt, config.alignments)
            else:
                times = estimate_word_times(words, dur[utt])
            head, rest = split_prefix_words(words, times, config.prefix_seconds)
            if not any(c.isalnum() for word in rest for c in word):
                continue  # the sentence's words are all inside the prefix (punctuation alone may be left)
            text = " ".join(rest)
            prompt = _utterance_audio(d, utt, wav_dir, config.prefix_seconds, f"_prefix{config.prefix_seconds:g}s")
            # ground truth of the continuation: the recording from the end of the prefix's last word
            cut = times[len(head) - 1][1] if head else 0.0
            gt = _utterance_audio(d, utt, wav_dir, None, f"_from{cut:.2f}s", from_seconds=cut)
        else:
            others = [u for u in d.spk2utt.get(spk, []) if u != utt]
            candidates = sorted(u for u in others if u in in_range) or sorted(others)
            if not candidates:
                continue  # a speaker with a single utterance has no ref-utt prompt
            other = random.Random(f"{config.seed}:{utt}").choice(candidates)
            suffix = "" if config.prompt_max_seconds is None else f"_first{config.prompt_max_seconds:g}s"
            prompt = _utterance_audio(d, other, wav_dir, config.prompt_max_seconds, suffix)
            gt = None
        ref = _utterance_audio(d, utt, wav_dir, None, "")
        rows.append(PairRow(utt_id=utt, wav="", prompt=prompt, text=text, ref_wav=ref, gt_wav=gt))
    if not rows:
        if config.mode == "prefix-3s":
            raise DataDirError(f"{data_dir}: every utterance ends within its {config.prefix_seconds:g} s prefix")
        raise DataDirError(f"{data_dir}: no speaker has two utterances, so no ref-utt prompt can be chosen")
    if out_tsv is not None:
        write_pairs(out_tsv, rows, DECODE_COLUMNS + (("gt_wav",) if config.mode == "prefix-3s" else ()))
    return rows


# ---------------------------------------------------------------------------------------------
# Word times for the prefix-3s protocol


def read_word_alignments(path: str | os.PathLike) -> dict[str, list[tuple[str, float, float]]]:
    """``{utt: [(word, start, end), ...]}`` from a Kaldi CTM (``utt channel start duration word``)
    or a LibriSpeech alignments file (``utt ",W1,W2," "end1,end2,..."``; empty words are silences)."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"word alignment file not found: {path}")
    out: dict[str, list[tuple[str, float, float]]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or line.startswith(";;"):
            continue
        try:
            if len(fields) == 3 and fields[1].startswith('"') and fields[2].startswith('"'):
                words = fields[1].strip('"').split(",")
                ends = [float(t) for t in fields[2].strip('"').split(",")]
                if len(words) != len(ends):
                    raise ValueError("as many words as end times expected")
                start, items = 0.0, []
                for w, e in zip(words, ends):
                    if w:
                        items.append((w, start, e))
                    start = e
                out[fields[0]] = items
            elif len(fields) >= 5:
                start, length = float(fields[2]), float(fields[3])
                out.setdefault(fields[0], []).append((fields[4], start, start + length))
            else:
                raise ValueError("expected a CTM line or a LibriSpeech alignments line")
        except ValueError as e:
            raise DataDirError(f"{path}:{n}: bad word alignment line ({e}): {line[:80]!r}") from None
    for items in out.values():
        items.sort(key=lambda t: t[1])
    return out


def _match_alignment(items, words: list[str], utt: str, source) -> list[tuple[float, float]]:
    """Times of each transcript word from its alignment: the aligned words must be the transcript's
    (compared after scoring normalisation; words that normalise to nothing take their neighbour's end)."""
    from .wer import normalize_for_scoring

    aligned = [(normalize_for_scoring(w), a, b) for w, a, b in items]
    aligned = [t for t in aligned if t[0]]
    spoken = [normalize_for_scoring(w) for w in words]
    if [t[0] for t in aligned] != [w for w in spoken if w]:
        raise DataDirError(f"{source}: the aligned words of '{utt}' differ from its transcript")
    out, it, last = [], iter(aligned), 0.0
    for w in spoken:
        if w:
            _, a, last = next(it)
            out.append((a, last))
        else:
            out.append((last, last))
    return out


def estimate_word_times(words: list[str], duration: float) -> list[tuple[float, float]]:
    """Word times without an alignment: ``duration`` shared in proportion to each word's letters
    (plus one for the gap after it)."""
    weights = [len(w) + 1 for w in words]
    total = float(sum(weights)) or 1.0
    out, t = [], 0.0
    for w in weights:
        out.append((t, t + duration * w / total))
        t += duration * w / total
    return out


def split_prefix_words(words: list[str], times: list[tuple[float, float]], prefix_seconds: float) -> tuple[list[str], list[str]]:
    """(prefix words, continuation words): a word is in the prefix when its midpoint is before ``prefix_seconds``."""
    k = 0
    while k < len(words) and (times[k][0] + times[k][1]) / 2 < prefix_seconds:
        k += 1
    return words[:k], words[k:]


# ---------------------------------------------------------------------------------------------
# F5-TTS LibriSpeech-PC cross-sentence list


def read_f5_list(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of F5-TTS's list format: ``ref_utt ref_dur ref_txt gen_utt gen_dur gen_txt`` (tab-separated)."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"cross-sentence list not found: {path}")
    keys = ("ref_utt", "ref_dur", "ref_txt", "gen_utt", "gen_dur", "gen_txt")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 6:
            raise DataDirError(f"{path}:{n}: expected 6 tab-separated fields "
                               f"(ref_utt ref_dur ref_txt gen_utt gen_dur gen_txt), got {len(fields)}")
        rows.append(dict(zip(keys, (f.strip() for f in fields))))
    if not rows:
        raise DataDirError(f"{path}: empty cross-sentence list")
    return rows


def _librispeech_audio(root: Path, utt: str) -> str:
    parts = utt.split("-")
    if len(parts) != 3:
        raise DataDirError(f"'{utt}' is not a LibriSpeech utterance id (speaker-chapter-index)")
    p = root / parts[0] / parts[1] / f"{utt}.flac"
    if not p.is_file():
        raise DataDirError(f"{root}: no audio for '{utt}' (expected {p})")
    return str(p.resolve())


def build_cross_sentence_protocol(
    list_file: str | os.PathLike,
    audio: str | os.PathLike,
    out_tsv: str | os.PathLike | None = None,
    wav_dir: str | os.PathLike | None = None,
    max_utts: int | None = None,
    seed: int = 0,
) -> list[PairRow]:
    """Decode list of F5-TTS's LibriSpeech-PC cross-sentence protocol (see the module docstring).

    ``audio`` is a LibriSpeech folder (``test-clean``: ``<spk>/<chapter>/<utt>.flac``) or a Kaldi
    data dir holding the utterances of the list (audio crops then go to ``wav_dir``)."""
    from ..data.kaldi import DataDir

    entries = read_f5_list(list_file)
    audio = Path(audio)
    if (audio / "wav.scp").is_file():
        d = DataDir.load(audio)
        if wav_dir is None:
            wav_dir = Path(out_tsv).with_suffix("") if out_tsv else audio / "protocol_wavs"

        def path_of(utt: str) -> str:
            if utt not in d.utt2spk and utt not in d.wav_scp:
                raise DataDirError(f"{audio}: utterance '{utt}' of {list_file} is not in the data dir")
            return _utterance_audio(d, utt, Path(wav_dir), None, "")
    elif audio.is_dir():
        def path_of(utt: str) -> str:
            return _librispeech_audio(audio, utt)
    else:
        raise DataDirError(f"{audio}: neither a LibriSpeech folder nor a Kaldi data dir")
    if max_utts is not None and len(entries) > max_utts:
        keep = set(random.Random(seed).sample(range(len(entries)), max_utts))
        entries = [e for i, e in enumerate(entries) if i in keep]
    rows = [PairRow(utt_id=e["gen_utt"], wav="", prompt=path_of(e["ref_utt"]), text=" ".join(e["gen_txt"].split()),
                    ref_wav=path_of(e["gen_utt"])) for e in entries]
    if out_tsv is not None:
        write_pairs(out_tsv, rows, DECODE_COLUMNS)
    return rows


#: The named protocols and what they are.
PROTOCOLS = {
    "ref-utt": "LibriSpeech test-clean 4-10 s, prompt = another utterance of the speaker (VALL-E 2, LatentLM)",
    "prefix-3s": "LibriSpeech test-clean 4-10 s, prompt = the first 3 s, scored on the continuation (VALL-E 2)",
    "f5-cross-sentence": "F5-TTS LibriSpeech-PC test-clean cross-sentence list (prompt = ref_utt, text = gen_txt)",
}


def build_protocol(name: str, data_dir: str | os.PathLike, out_tsv: str | os.PathLike | None = None,
                   wav_dir: str | os.PathLike | None = None, list_file: str | os.PathLike | None = None,
                   **options) -> list[PairRow]:
    """The decode list of the protocol ``name`` (a key of :data:`PROTOCOLS`).

    ``ref-utt``/``prefix-3s`` take :class:`ProtocolConfig` fields as ``options``;
    ``f5-cross-sentence`` needs ``list_file`` and takes ``max_utts``/``seed``."""
    name = "prefix-3s" if name == "prefix" else name
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    if name == "f5-cross-sentence":
        if list_file is None:
            raise ConfigError("protocol f5-cross-sentence needs its list file (librispeech_pc_test_clean_cross_sentence.lst)")
        extra = sorted(set(options) - {"max_utts", "seed"})
        if extra:
            raise ConfigError(f"protocol f5-cross-sentence takes no option {', '.join(extra)}")
        return build_cross_sentence_protocol(list_file, data_dir, out_tsv, wav_dir, **options)
    try:
        config = ProtocolConfig(mode=name, **options)
    except TypeError as e:
        raise ConfigError(f"bad option of protocol {name}: {e}") from None
    return build_librispeech_protocol(data_dir, out_tsv, config, wav_dir=wav_dir)


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


def resolve_device(device: str | None) -> str:
    """``auto`` (or None) → ``cuda`` when a GPU is visible, else ``cpu``; other names pass through."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


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
        rows = [r if r.wav else PairRow(r.utt_id, str(Path(wav_dir).resolve() / f"{r.utt_id}.wav"), r.prompt, r.text,
                                        r.ref_wav, r.gt_wav)
                for r in rows]
    missing = [r.utt_id for r in rows if not r.wav]
    if missing:
        raise DataDirError(f"no generated audio given for {len(missing)} row(s), e.g. '{missing[0]}' (add a wav column or --wav-dir)")
    device = resolve_device(device)
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
