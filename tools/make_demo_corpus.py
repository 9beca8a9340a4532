#!/usr/bin/env python3
"""Build the offline demo corpus of egs/demo/tts1 as Kaldi data directories.

    python tools/make_demo_corpus.py --out egs/demo/tts1/data               # the full corpus
    python tools/make_demo_corpus.py --out /tmp/data --smoke true           # a tiny one, in seconds

Sets written under ``--out`` (audio under ``--out/local/wav/<set>/``, 16 kHz mono 16-bit WAV):

- ``real_train`` / ``real_test``: the 251 real LibriSpeech voices of ``../shared/data/librispeech_voices``
  split by speaker (deterministic, gender-balanced); transcripts are its Whisper pseudo-labels.
  ``real_test`` speakers must never be used for training.
- ``train``: synthetic pseudo-speakers (espeak-ng / flite + sox perturbation, see
  :mod:`latentspeech.data.synthetic`) reading ``text/train.txt`` until ``--hours`` of speech.
- ``dev``: held-out pseudo-speakers (never in ``train``) reading ``text/dev.txt``.
- ``train_extra`` (not built by default; ``--sets train_extra`` after a full build): more train speech
  reading the train sentences that ``train`` left unread, until ``--extra-hours``. Its speakers are
  ``train``'s (``--out/local/voices.tsv``), or with ``--extra-speakers N`` N new pseudo-speakers
  (ids from ``spk1000``, or after the last id of earlier such sets), verified like the main build's
  and told apart from every train, dev and earlier extra voice (new voices are what lowers the LM's
  loss on voices it never saw). ``--extra-name`` names the set (default ``train_extra``);
  ``--extra-text read`` has it read the sentences ``train`` read instead (by other voices).

With ``--verify`` (default outside smoke mode) a pool of candidate speakers is synthesized on a few
probe sentences and embedded with Resemblyzer; speakers that the encoder confuses are dropped, and
so are voices that Whisper tiny.en (the evaluation's recogniser) cannot understand: train voices
need a probe WER ≤ ``--max-probe-wer``, the held-out dev voices ≤ ``--max-dev-probe-wer`` (many
espeak-ng accent/variant combinations are far less intelligible than flite or en-us). The
distinctness and the dev ground-truth WER of the final corpus are measured again and written to
``--out/local/distinctness.json`` and ``--out/local/summary.json``. Every step is resumable: finished WAVs are skipped, and WAVs are
written to a temp file and renamed, so a partial file never counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # running as a script from a checkout
    sys.path.insert(0, str(ROOT))

from latentspeech.data.synthetic import (  # noqa: E402
    VoiceSpec,
    check_engines,
    draw_speakers,
    select_distinct,
    speaker_distinctness,
    synthesize,
)
from latentspeech.errors import ConfigError, DataDirError, LatentSpeechError  # noqa: E402

log = logging.getLogger("make_demo_corpus")
#: the project's shared data (../shared next to the checkout; LATENTSPEECH_SHARED overrides, as in tests/)
SHARED = Path(os.environ.get("LATENTSPEECH_SHARED", ROOT.parent / "shared")) / "data"


@dataclass
class CorpusConfig:
    """What to build. Defaults give the full demo corpus (≥ 10 h, ≥ 100 train speakers)."""

    out_dir: str = "egs/demo/tts1/data"
    train_text: str = str(SHARED / "text" / "train.txt")
    dev_text: str = str(SHARED / "text" / "dev.txt")
    real_dir: str = str(SHARED / "librispeech_voices")
    hours: float = 10.5  # target hours of the synthetic train set
    extra_hours: float = 10.0  # target hours of train_extra (train's speakers reading its unread sentences)
    extra_speakers: int = 0  # train_extra: 0 = train's speakers; N = N new verified pseudo-speakers
    extra_name: str = "train_extra"  # the set's name
    extra_text: str = "unread"  # train_extra's sentences: "unread" = those train left unread, "read" = train's own
    num_speakers: int = 110  # synthetic train speakers
    num_dev_speakers: int = 12  # held-out synthetic speakers
    min_utts: int = 30  # at least this many utterances per train speaker
    max_utts: int | None = None  # at most this many (None: as many as --hours needs)
    dev_utts: int | None = None  # per dev speaker (None: all of dev.txt shared among them)
    num_real_test: int = 51  # real speakers held out in real_test
    max_real_speakers: int | None = None  # use only this many real speakers (smoke)
    seed: int = 0
    nj: int = 2
    sample_rate: int = 16000
    verify: bool = True  # Resemblyzer speaker selection + final distinctness report
    pool_factor: float = 1.8  # candidates drawn per needed speaker when verifying
    max_probe_wer: float | None = 0.5  # train voices: drop candidates whose probe WER is higher (None: no ASR check)
    max_dev_probe_wer: float = 0.2  # dev (evaluation) voices must be this intelligible
    asr: str = "whisper-tiny.en"  # recogniser of the intelligibility check (latentspeech.eval.asr)
    asr_probes: int = 2  # probe sentences transcribed per candidate (ASR is the slow step)
    dev_probe_utts: int = 8  # more probe sentences that confirm a dev voice's intelligibility
    asr_beam: int = 1  # beam size of that recogniser (the evaluation uses 5; 1 is ~2x faster)
    report_asr_utts: int = 4  # dev utterances per speaker transcribed for the final report
    probe_utts: int = 4  # probe sentences per candidate
    report_utts: int = 6  # utterances per speaker for the final distinctness report
    sets: tuple[str, ...] = ("real", "train", "dev")
    progress: bool = True

    @classmethod
    def smoke(cls, **kw) -> "CorpusConfig":
        """A tiny corpus for tests and ``run.sh --smoke true``: seconds, no speaker verification."""
        base = dict(num_speakers=3, num_dev_speakers=2, min_utts=3, max_utts=3, dev_utts=2,
                    num_real_test=2, max_real_speakers=6, verify=False, hours=0.0)
        base.update(kw)
        return cls(**base)

    def validate(self) -> None:
        if self.num_speakers < 1 or self.num_dev_speakers < 0:
            raise ConfigError(f"need >= 1 train speaker and >= 0 dev speakers, got {self.num_speakers}/{self.num_dev_speakers}")
        if self.nj < 1:
            raise ConfigError(f"--nj must be >= 1, got {self.nj}")
        unknown = set(self.sets) - {"real", "train", "dev", "train_extra"}
        if unknown:
            raise ConfigError(f"unknown corpus set(s) {sorted(unknown)} (use real, train, dev, train_extra)")
        if self.extra_name in ("train", "dev", "real_train", "real_test", "local") or not self.extra_name.isidentifier():
            raise ConfigError(f"--extra-name must be a new set name (letters, digits, _), got '{self.extra_name}'")
        if self.extra_speakers < 0:
            raise ConfigError(f"--extra-speakers must be >= 0, got {self.extra_speakers}")
        if self.extra_text not in ("unread", "read"):
            raise ConfigError(f"--extra-text must be unread or read, got '{self.extra_text}'")
        for p in (self.train_text, self.dev_text):
            if not Path(p).is_file():
                raise ConfigError(f"text file not found: {p}")


# ---------------------------------------------------------------------------------------------
# text and Kaldi files


def normalize(text: str) -> str:
    """The text the engine speaks and the transcript stores (``latentspeech.text.normalize_text``
    when it exists, else whitespace-collapsed)."""
    try:
        from latentspeech.text import normalize_text  # type: ignore[attr-defined]
    except ImportError:
        return " ".join(text.split())
    return normalize_text(text)


def read_lines(path: str | os.PathLike) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def read_kaldi_map(path: Path) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as f:
        for ln in f:
            parts = ln.rstrip("\n").split(maxsplit=1)
            if parts:
                out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def _write_sorted(path: Path, rows: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for k in sorted(rows, key=lambda s: s.encode("utf-8")):  # LC_ALL=C order
            f.write(f"{k} {rows[k]}\n")
    os.replace(tmp, path)


def write_data_dir(d: Path, utts: list[dict], spk2gender: dict[str, str] | None = None) -> None:
    """Write a Kaldi data dir from ``utts`` (dicts with id, spk, wav, text, dur), C-sorted."""
    d.mkdir(parents=True, exist_ok=True)
    for u in utts:
        if not u["id"].startswith(u["spk"]):
            raise DataDirError(f"utterance id {u['id']} does not start with its speaker id {u['spk']}")
    _write_sorted(d / "wav.scp", {u["id"]: str(u["wav"]) for u in utts})
    _write_sorted(d / "text", {u["id"]: u["text"] for u in utts})
    _write_sorted(d / "utt2spk", {u["id"]: u["spk"] for u in utts})
    _write_sorted(d / "utt2dur", {u["id"]: f"{u['dur']:.3f}" for u in utts})
    spk2utt: dict[str, list[str]] = {}
    for u in sorted(utts, key=lambda u: u["id"].encode()):
        spk2utt.setdefault(u["spk"], []).append(u["id"])
    _write_sorted(d / "spk2utt", {s: " ".join(v) for s, v in spk2utt.items()})
    genders = {s: g for s, g in (spk2gender or {}).items() if s in spk2utt and g in ("m", "f")}
    if genders:
        _write_sorted(d / "spk2gender", genders)
    elif (d / "spk2gender").exists():
        (d / "spk2gender").unlink()
    try:  # the Kaldi-dir checker, when the data package has it
        from latentspeech.data.kaldi import validate  # type: ignore[attr-defined]
    except ImportError:
        return
    problems = validate(d, require_text=True)
    if problems:
        raise DataDirError(f"{d} is not a valid data dir: {problems[0]} ({len(problems)} problem(s))")


def wav_duration(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


# ---------------------------------------------------------------------------------------------
# real voices


def split_real_speakers(spk2gender: dict[str, str], num_test: int, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic, gender-balanced speaker split: (train speakers, test speakers), C-sorted."""
    def key(s: str) -> str:
        return hashlib.sha1(f"{seed}:{s}".encode()).hexdigest()

    by_g: dict[str, list[str]] = {}
    for s in sorted(spk2gender):
        by_g.setdefault(spk2gender[s], []).append(s)
    test: list[str] = []
    groups = sorted(by_g)
    total = len(spk2gender)
    for gi, g in enumerate(groups):
        ranked = sorted(by_g[g], key=key)
        n = round(num_test * len(ranked) / total) if gi < len(groups) - 1 else num_test - len(test)
        test += ranked[: max(0, n)]
    test_set = set(test)
    c = lambda xs: sorted(xs, key=lambda s: s.encode())  # noqa: E731
    return c([s for s in spk2gender if s not in test_set]), c(test_set)


def build_real(cfg: CorpusConfig) -> dict[str, float]:
    """real_train / real_test from the shared LibriSpeech voices, copied to 16 kHz WAV."""
    from latentspeech.audio import load_audio, save_audio

    src = Path(cfg.real_dir)
    for f in ("wav.scp", "utt2spk", "text.pseudo", "spk2gender"):
        if not (src / f).is_file():
            raise DataDirError(f"real voices folder {src} has no {f}")
    wav_scp, utt2spk = read_kaldi_map(src / "wav.scp"), read_kaldi_map(src / "utt2spk")
    text, genders = read_kaldi_map(src / "text.pseudo"), read_kaldi_map(src / "spk2gender")
    speakers = sorted(set(utt2spk.values()), key=lambda s: s.encode())
    if cfg.max_real_speakers:
        speakers = speakers[: cfg.max_real_speakers]
    g = {s: genders.get(s, "?") for s in speakers}
    train_spk, test_spk = split_real_speakers(g, min(cfg.num_real_test, len(speakers) - 1), cfg.seed)
    out = Path(cfg.out_dir)
    hours = {}
    for name, spks in (("real_train", train_spk), ("real_test", test_spk)):
        spk_set, utts = set(spks), []
        for utt in sorted(wav_scp):
            if utt2spk[utt] not in spk_set:
                continue
            dst = (out / "local" / "wav" / name / f"{utt}.wav").resolve()
            if not dst.exists():
                path = Path(wav_scp[utt])
                path = path if path.is_absolute() else src / path
                save_audio(dst, load_audio(path, cfg.sample_rate), cfg.sample_rate)
            utts.append(dict(id=utt, spk=utt2spk[utt], wav=dst, text=normalize(text[utt]), dur=wav_duration(dst)))
        write_data_dir(out / name, utts, g)
        hours[name] = sum(u["dur"] for u in utts) / 3600
        log.info("%s: %d speakers, %d utterances, %.2f h", name, len(spks), len(utts), hours[name])
    return hours


# ---------------------------------------------------------------------------------------------
# synthetic voices


def _synth_job(job: tuple[dict, str, str, int]) -> tuple[str, float]:
    """Synthesize one WAV unless it exists with the same text (its ``.txt`` sidecar, written
    after the WAV: a WAV without one, e.g. from an interrupted run, is made again)."""
    spec, text, path, sr = job
    p = Path(path)
    side = p.with_suffix(".txt")
    if not (p.exists() and side.exists() and side.read_text(encoding="utf-8") == text):
        synthesize(VoiceSpec(**spec), text, p, sr)
        tmp = side.with_name(f".{side.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, side)
    return path, wav_duration(p)


def _check_voice_dir(d: Path, spec: VoiceSpec) -> None:
    """Keep a speaker's WAV folder only if it was made with the same voice (``voice.json``)."""
    meta = d / "voice.json"
    if meta.exists() and json.loads(meta.read_text()) != spec.to_dict():
        log.warning("voice of %s changed: removing its old audio in %s", spec.speaker, d)
        shutil.rmtree(d)
    if not meta.exists():
        d.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(spec.to_dict()))


def run_jobs(jobs: list[tuple[VoiceSpec, str, Path]], cfg: CorpusConfig, desc: str) -> dict[str, float]:
    """Synthesize ``(spec, text, wav_path)`` jobs on ``cfg.nj`` processes; returns path → seconds.
    Existing WAVs are skipped (resume) unless the speaker's voice changed since they were made."""
    from tqdm import tqdm

    seen: set[Path] = set()
    for s, _, p in jobs:
        if p.parent not in seen:
            seen.add(p.parent)
            _check_voice_dir(p.parent, s)

    todo = [(s.to_dict(), t, str(p), cfg.sample_rate) for s, t, p in jobs]
    durs: dict[str, float] = {}
    bar = tqdm(total=len(todo), desc=desc, unit="utt", disable=not cfg.progress, dynamic_ncols=True)
    if cfg.nj == 1 or len(todo) < 4:
        for j in todo:
            k, v = _synth_job(j)
            durs[k] = v
            bar.update()
    else:
        with get_context("fork").Pool(cfg.nj) as pool:
            for k, v in pool.imap_unordered(_synth_job, todo, chunksize=4):
                durs[k] = v
                bar.update()
    bar.close()
    return durs


def _clean_temp(d: Path) -> None:
    """Remove temp dirs that an interrupted run left behind (never a finished WAV)."""
    if d.is_dir():
        for t in d.rglob("synth-*"):
            if t.is_dir():
                shutil.rmtree(t, ignore_errors=True)


class Embedder:
    """Resemblyzer utterance embeddings (weights ship inside its wheel; nothing downloads)."""

    def __init__(self):
        import torch
        from resemblyzer import VoiceEncoder

        torch.set_num_threads(1)
        self.enc = VoiceEncoder("cpu", verbose=False)

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        from resemblyzer import preprocess_wav

        from latentspeech.audio import load_audio

        return self.enc.embed_utterance(preprocess_wav(load_audio(path, 16000), source_sr=16000))


def embed_speakers(paths: dict[str, list[Path]], cfg: CorpusConfig, desc: str) -> dict[str, np.ndarray]:
    """speaker → [n, 256] Resemblyzer embeddings of the given WAVs, cached next to the WAVs."""
    from tqdm import tqdm

    emb = Embedder()
    out = {}
    for spk, ps in tqdm(sorted(paths.items()), desc=desc, unit="spk", disable=not cfg.progress):
        vs = []
        for p in ps:
            cache = p.with_suffix(".emb.npy")
            if cache.exists() and cache.stat().st_mtime_ns >= p.stat().st_mtime_ns:
                vs.append(np.load(cache))
            else:
                v = emb(p).astype(np.float32)
                np.save(cache.with_name(cache.name + ".tmp.npy"), v)
                os.replace(cache.with_name(cache.name + ".tmp.npy"), cache)
                vs.append(v)
        out[spk] = np.stack(vs)
    return out


class Intelligibility:
    """Word error rate of synthesized speech under the evaluation's default recogniser."""

    def __init__(self, cfg: CorpusConfig, progress: bool | None = None):
        from latentspeech.eval.asr import get_asr

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        # greedy decoding on one thread: ~2x faster than the evaluation's beam 5 on a busy CPU
        self.asr = get_asr(cfg.asr, cpu_threads=1, beam_size=cfg.asr_beam)
        self.progress = cfg.progress if progress is None else progress

    def transcribe(self, paths: list[Path], desc: str = "transcribe") -> list[str]:
        """Transcripts, cached in ``<wav>.asr.txt`` sidecars newer than their WAV."""
        from tqdm import tqdm

        from latentspeech.audio import load_audio

        out = []
        for p in tqdm(paths, desc=desc, unit="utt", disable=not self.progress):
            cache = p.with_suffix(".asr.txt")
            if cache.exists() and cache.stat().st_mtime_ns >= p.stat().st_mtime_ns:
                out.append(cache.read_text(encoding="utf-8"))
                continue
            hyp = self.asr.transcribe([load_audio(p, 16000)])[0]
            tmp = cache.with_name(f".{cache.name}.tmp")
            tmp.write_text(hyp, encoding="utf-8")
            os.replace(tmp, cache)
            out.append(hyp)
        return out

    @staticmethod
    def wer(refs: list[str], hyps: list[str]) -> float:
        from latentspeech.eval.wer import word_error_rate

        return float(word_error_rate(refs, hyps))

    def per_speaker(self, items: dict[str, list[tuple[Path, str]]], desc: str) -> dict[str, float]:
        """speaker → WER over its ``(wav, reference)`` items."""
        flat = [(spk, p, t) for spk, its in sorted(items.items()) for p, t in its]
        hyps = self.transcribe([p for _, p, _ in flat], desc)
        res: dict[str, tuple[list[str], list[str]]] = {}
        for (spk, _, ref), hyp in zip(flat, hyps):
            res.setdefault(spk, ([], []))
            res[spk][0].append(ref)
            res[spk][1].append(hyp)
        return {spk: self.wer(r, h) for spk, (r, h) in res.items()}


def summarize(stats: dict) -> str:
    return (f"{stats['speakers']} speakers, {stats['utterances']} utts: same-speaker cos {stats['same']:.3f}, "
            f"different-speaker cos {stats['diff']:.3f}, nearest-centroid accuracy {stats['accuracy']:.3f}, "
            f"separated speakers {stats['separated']:.3f}")


def probe_wers(cfg: CorpusConfig, items: dict[str, list[tuple[Path, str]]]) -> dict[str, float]:
    """speaker → ASR word error rate over its probe ``(wav, text)`` items (transcripts cached)."""
    from tqdm import tqdm

    ig = Intelligibility(cfg, progress=False)
    out = {}
    for spk in tqdm(sorted(items), desc="transcribe probes", unit="spk", disable=not cfg.progress):
        out[spk] = ig.wer([t for _, t in items[spk]], ig.transcribe([p for p, _ in items[spk]]))
    return out


def confirm_dev(cfg: CorpusConfig, items: dict[str, list[tuple[Path, str]]], n_dev: int
                ) -> tuple[list[str], dict[str, float]]:
    """Walk the candidates from the last id down, transcribing all their ``(wav, text)`` probes,
    until ``n_dev`` have a WER ≤ ``cfg.max_dev_probe_wer``. Returns (those, speaker → WER)."""
    ig = Intelligibility(cfg, progress=False)
    dev: list[str] = []
    wers: dict[str, float] = {}
    for spk in sorted(items, reverse=True):
        if len(dev) >= n_dev:
            break
        wers[spk] = ig.wer([t for _, t in items[spk]], ig.transcribe([p for p, _ in items[spk]]))
        if wers[spk] <= cfg.max_dev_probe_wer:
            dev.append(spk)
    return sorted(dev), wers


def split_by_wer(speakers: list[str], wers: dict[str, float], n_train: int, n_dev: int,
                 max_train_wer: float, max_dev_wer: float, dev: list[str] | None = None
                 ) -> tuple[list[str], list[str]]:
    """(train, dev) speakers, both in id order. Dev (unless given) takes the last ``n_dev`` speakers
    (by id) with WER ≤ ``max_dev_wer`` (the held-out evaluation voices must be intelligible); train
    the first ``n_train`` of the rest with WER ≤ ``max_train_wer``. When too few pass, the
    lowest-WER of the remaining speakers fill up."""
    order = sorted(speakers)

    def fill(chosen: list[str], pool: list[str], n: int) -> list[str]:
        if len(chosen) < n:
            rest = sorted((s for s in pool if s not in chosen), key=lambda s: (wers[s], s))
            chosen = chosen + rest[: n - len(chosen)]
        return sorted(chosen)

    if dev is None:
        dev = [s for s in order if wers[s] <= max_dev_wer][::-1][:n_dev]
    dev = fill(list(dev), order, n_dev)
    rest = [s for s in order if s not in dev]
    train = fill([s for s in rest if wers[s] <= max_train_wer][:n_train], rest, n_train)
    return train, dev


def split_probe_text(cfg: CorpusConfig, probe_text: list[str]) -> tuple[list[str], list[str]]:
    """(the dev voices' extra confirmation sentences, the ``cfg.probe_utts`` probe sentences of every voice)."""
    extra, rest = probe_text[: cfg.dev_probe_utts], probe_text[cfg.dev_probe_utts:]
    return extra, [rest[k % len(rest)] for k in range(cfg.probe_utts)]


def probe_voices(cfg: CorpusConfig, speakers: list[VoiceSpec], probes: list[str]
                 ) -> tuple[dict[str, list[Path]], dict[str, np.ndarray]]:
    """Every speaker reads the probe sentences (``local/wav/probe/<spk>``; made once, then reused);
    returns speaker → its probe WAVs, and speaker → their Resemblyzer embeddings."""
    probe_dir = Path(cfg.out_dir) / "local" / "wav" / "probe"
    _clean_temp(probe_dir)
    paths = {s.speaker: [probe_dir / s.speaker / f"{s.speaker}-p{k}.wav" for k in range(len(probes))] for s in speakers}
    run_jobs([(s, t, p) for s in speakers for t, p in zip(probes, paths[s.speaker])], cfg, "probe voices")
    return paths, embed_speakers(paths, cfg, "embed probes")


def choose_speakers(cfg: CorpusConfig, probe_text: list[str]) -> tuple[list[VoiceSpec], list[VoiceSpec], dict]:
    """(train speakers, dev speakers, selection report). With ``cfg.verify`` a larger candidate pool
    is synthesized on ``probe_text``; speakers that Resemblyzer confuses are dropped, and with
    ``cfg.max_probe_wer`` the ones that the recogniser cannot understand (see :func:`split_by_wer`)."""
    need = cfg.num_speakers + cfg.num_dev_speakers
    report: dict = {}
    if not cfg.verify:
        pool = draw_speakers(need, cfg.seed)
        n_dev = min(cfg.num_dev_speakers, max(0, len(pool) - 1))
        return pool[: len(pool) - n_dev], pool[len(pool) - n_dev:], report
    cands = draw_speakers(math.ceil(need * cfg.pool_factor), cfg.seed)
    by_id = {s.speaker: s for s in cands}
    extra, probes = split_probe_text(cfg, probe_text)
    paths, emb = probe_voices(cfg, cands, probes)
    probe_dir = Path(cfg.out_dir) / "local" / "wav" / "probe"
    before = speaker_distinctness(emb)
    distinct = select_distinct(emb)  # id order; any subset of it stays separated
    log.info("candidates: %s", summarize(before))
    log.info("%d of %d candidates are told apart", len(distinct), len(emb))
    if cfg.max_probe_wer is not None:
        n_asr = max(1, min(cfg.asr_probes, cfg.probe_utts))
        items = {s: list(zip(paths[s], probes))[:n_asr] for s in distinct}
        wers = probe_wers(cfg, items)
        dev = None
        if extra:  # dev voices: confirm on more sentences, walking down from the last id
            dev_cands = [s for s in sorted(distinct, reverse=True) if wers[s] <= cfg.max_dev_probe_wer]
            for s in dev_cands:
                items[s] = items[s] + [(probe_dir / s / f"{s}-x{k}.wav", t) for k, t in enumerate(extra)]
            run_jobs([(by_id[s], t, p) for s in dev_cands for p, t in items[s][n_asr:]], cfg, "dev probe voices")
            dev, dev_wers = confirm_dev(cfg, {s: items[s] for s in dev_cands}, cfg.num_dev_speakers)
            report["dev_probe_wer"] = dev_wers
            wers = {**wers, **dev_wers}  # the longer measurement wins (also when dev is filled up)
            log.info("dev voices confirmed on %d sentences: %d of %d transcribed candidates, WER %.3f",
                     len(items[dev_cands[0]]) if dev_cands else 0, len(dev), len(dev_wers),
                     float(np.mean([dev_wers[s] for s in dev])) if dev else float("nan"))
        train, dev = split_by_wer(distinct, wers, cfg.num_speakers, cfg.num_dev_speakers,
                                  cfg.max_probe_wer, cfg.max_dev_probe_wer, dev=dev)
        report["probe_wer"] = dict(candidates=float(np.mean(list(wers.values()))),
                                   train=float(np.mean([wers[s] for s in train])),
                                   dev=float(np.mean([wers[s] for s in dev])) if dev else None,
                                   thresholds=[cfg.max_probe_wer, cfg.max_dev_probe_wer], per_speaker=wers)
        log.info("probe WER (%s, greedy): candidates %.3f, train %.3f (%d of them <= %.2f), dev %s", cfg.asr,
                 report["probe_wer"]["candidates"], report["probe_wer"]["train"],
                 sum(wers[s] <= cfg.max_probe_wer for s in train), cfg.max_probe_wer,
                 f"{report['probe_wer']['dev']:.3f}" if dev else "-")
    else:
        kept = distinct[:need]
        n_dev = min(cfg.num_dev_speakers, max(0, len(kept) - 1))
        train, dev = kept[: len(kept) - n_dev], kept[len(kept) - n_dev:]
    if len(train) + len(dev) < need:
        log.warning("only %d distinct speakers for %d needed", len(train) + len(dev), need)
    after = speaker_distinctness({s: emb[s] for s in train + dev})
    log.info("kept %d of %d: %s", len(train) + len(dev), len(emb), summarize(after))
    report.update(candidates={k: v for k, v in before.items() if k != "per_speaker"},
                  kept={k: v for k, v in after.items() if k != "per_speaker"},
                  dropped=sorted(set(emb) - set(train) - set(dev)))
    return [by_id[s] for s in train], [by_id[s] for s in dev], report


def build_train(cfg: CorpusConfig, speakers: list[VoiceSpec], sentences: list[tuple[int, str]],
                name: str = "train", hours: float | None = None) -> float:
    """Synthetic train set: speaker k reads sentences k, k+n, k+2n, ... in rounds until
    ``hours`` (default ``cfg.hours``) are reached (and at least ``cfg.min_utts`` rounds). Returns hours."""
    hours = cfg.hours if hours is None else hours
    out = Path(cfg.out_dir)
    wav_dir = out / "local" / "wav" / name
    _clean_temp(wav_dir)
    n = len(speakers)
    max_rounds = len(sentences) // n
    if cfg.max_utts is not None:
        max_rounds = min(max_rounds, cfg.max_utts)
    if max_rounds < cfg.min_utts:
        raise ConfigError(f"{len(sentences)} train sentences are not enough for {n} speakers x {cfg.min_utts} utterances")
    utts: list[dict] = []
    rounds, total = 0, 0.0
    while rounds < max_rounds:
        if rounds < cfg.min_utts:
            nxt = cfg.min_utts
        else:
            if total >= hours * 3600:
                break
            per_round = total / rounds
            nxt = rounds + math.ceil((hours * 3600 - total) / per_round)
        nxt = min(nxt, max_rounds)
        jobs, meta = [], []
        for r in range(rounds, nxt):
            for k, s in enumerate(speakers):
                line_no, text = sentences[r * n + k]
                utt = f"{s.speaker}-{line_no:05d}"
                p = (wav_dir / s.speaker / f"{utt}.wav").resolve()
                jobs.append((s, text, p))
                meta.append(dict(id=utt, spk=s.speaker, wav=p, text=text))
        durs = run_jobs(jobs, cfg, f"{name} rounds {rounds + 1}-{nxt}")
        for m in meta:
            m["dur"] = durs[str(m["wav"])]
            total += m["dur"]
        utts += meta
        rounds = nxt
        log.info("%s: %d rounds, %.2f h so far", name, rounds, total / 3600)
    write_data_dir(out / name, utts, {s.speaker: s.gender for s in speakers})
    log.info("%s: %d speakers, %d utterances, %.2f h", name, n, len(utts), total / 3600)
    return total / 3600


def read_voices(cfg: CorpusConfig, which: str = "train", file: str = "voices.tsv") -> list[VoiceSpec]:
    """The speakers of set ``which`` in an earlier build's ``local/<file>``, in their order."""
    p = Path(cfg.out_dir) / "local" / file
    if not p.is_file():
        raise DataDirError(f"{p} not found: build the corpus (--sets real,train,dev) before train_extra")
    lines = p.read_text().splitlines()
    cols, specs = lines[0].split("\t"), []
    for line in lines[1:]:
        row = dict(zip(cols, line.split("\t")))
        if row.pop("set") == which:
            specs.append(VoiceSpec(**{k: (float(v) if k in ("pitch", "rate", "formant", "tilt") else v) for k, v in row.items()}))
    return specs


#: ids of the extra pseudo-speakers start here (the main build's candidate pool stays far below)
EXTRA_SPEAKER_START = 1000


def earlier_extra_voices(cfg: CorpusConfig) -> list[VoiceSpec]:
    """The new speakers of the other extra sets found in ``local/voices_<name>.tsv``. They decide a new
    set's first id, so to rebuild the same voices, rebuild extra sets in the order they were first
    built (the one egs/demo/tts1/README.md lists)."""
    out = []
    for p in sorted((Path(cfg.out_dir) / "local").glob("voices_*.tsv")):
        name = p.name[len("voices_"):-len(".tsv")]
        if name != cfg.extra_name:
            out += read_voices(cfg, name, p.name)
    return out


def extra_speaker_start(earlier: list[VoiceSpec]) -> int:
    """The first id of a new extra set's candidates: :data:`EXTRA_SPEAKER_START`, or past the
    earlier extra sets' ids (the same seed would otherwise draw the same voices again)."""
    ids = [int(m.group(1)) for s in earlier if (m := re.fullmatch(r"\D*(\d+)", s.speaker))]
    return max([EXTRA_SPEAKER_START] + [i + 1 for i in ids])


def choose_extra_speakers(cfg: CorpusConfig, probe_text: list[str], existing: list[VoiceSpec],
                          start: int = EXTRA_SPEAKER_START) -> list[VoiceSpec]:
    """``cfg.extra_speakers`` new pseudo-speakers, checked as :func:`choose_speakers` checks the main
    build's: a candidate pool (ids from ``start``) is synthesized on the probe
    sentences; Resemblyzer must tell each kept one from every ``existing`` voice and from each
    other (the existing ones are never dropped), and with ``cfg.max_probe_wer`` the probe ASR must
    understand it."""
    n = cfg.extra_speakers
    if not cfg.verify:
        return draw_speakers(n, cfg.seed, start=start)
    cands = draw_speakers(math.ceil(n * cfg.pool_factor), cfg.seed, start=start)
    by_id = {s.speaker: s for s in existing + cands}
    _, probes = split_probe_text(cfg, probe_text)
    paths, emb = probe_voices(cfg, existing + cands, probes)
    fixed = {s.speaker for s in existing}
    new = [s for s in select_distinct(emb, fixed=fixed) if s not in fixed]
    log.info("%d of %d new candidates are told apart from the %d existing voices and each other", len(new), len(cands), len(fixed))
    if cfg.max_probe_wer is not None:
        n_asr = max(1, min(cfg.asr_probes, cfg.probe_utts))
        wers = probe_wers(cfg, {s: list(zip(paths[s], probes))[:n_asr] for s in new})
        new = [s for s in new if wers[s] <= cfg.max_probe_wer]
        log.info("%d of them with probe WER <= %.2f", len(new), cfg.max_probe_wer)
    if len(new) < n:
        log.warning("only %d new speakers pass for %d asked", len(new), n)
    return [by_id[s] for s in new[:n]]


def build_train_extra(cfg: CorpusConfig, sentences: list[tuple[int, str]], probe_text: list[str]) -> float:
    """``train_extra``: more train speech on the sentences ``train`` did not use (its utterance ids end
    in the line number; with ``cfg.extra_text == "read"`` the ones it did), ``cfg.extra_hours`` of it,
    read by ``train``'s speakers or by ``cfg.extra_speakers`` new ones (:func:`choose_extra_speakers`,
    told apart from the train, dev and earlier extra sets' voices). Returns hours."""
    train_spk = read_voices(cfg)
    text = Path(cfg.out_dir) / "train" / "text"
    if not train_spk or not text.is_file():
        raise DataDirError(f"no train set in {cfg.out_dir} (voices.tsv, train/text): build it before train_extra")
    speakers = train_spk
    if cfg.extra_speakers > 0:
        earlier = earlier_extra_voices(cfg)
        speakers = choose_extra_speakers(cfg, probe_text, train_spk + read_voices(cfg, "dev") + earlier,
                                         start=extra_speaker_start(earlier))
        write_voices(cfg, {cfg.extra_name: speakers}, f"voices_{cfg.extra_name}.tsv")
    used = {int(line.split(" ", 1)[0].rsplit("-", 1)[1]) for line in text.read_text().splitlines() if line.strip()}
    chosen = [(i, t) for i, t in sentences if (i in used) == (cfg.extra_text == "read")]
    log.info("%s: %d speakers, %d sentences that train %s", cfg.extra_name, len(speakers), len(chosen),
             "read" if cfg.extra_text == "read" else "did not read")
    return build_train(cfg, speakers, chosen, name=cfg.extra_name, hours=cfg.extra_hours)


def build_dev(cfg: CorpusConfig, speakers: list[VoiceSpec], sentences: list[tuple[int, str]]) -> float:
    """Held-out synthetic dev set: dev sentences dealt round-robin to the dev speakers."""
    out = Path(cfg.out_dir)
    wav_dir = out / "local" / "wav" / "dev"
    _clean_temp(wav_dir)
    n = len(speakers)
    count = len(sentences) if cfg.dev_utts is None else min(len(sentences), cfg.dev_utts * n)
    jobs, meta = [], []
    for i in range(count):
        s = speakers[i % n]
        line_no, text = sentences[i]
        utt = f"{s.speaker}-d{line_no:04d}"
        p = (wav_dir / s.speaker / f"{utt}.wav").resolve()
        jobs.append((s, text, p))
        meta.append(dict(id=utt, spk=s.speaker, wav=p, text=text))
    durs = run_jobs(jobs, cfg, "dev")
    for m in meta:
        m["dur"] = durs[str(m["wav"])]
    write_data_dir(out / "dev", meta, {s.speaker: s.gender for s in speakers})
    hours = sum(m["dur"] for m in meta) / 3600
    log.info("dev: %d speakers, %d utterances, %.2f h", n, len(meta), hours)
    return hours


def corpus_distinctness(cfg: CorpusConfig, sets: tuple[str, ...] = ("train", "dev")) -> dict:
    """Resemblyzer distinctness of the built synthetic speakers (``cfg.report_utts`` each)."""
    paths: dict[str, list[Path]] = {}
    for name in sets:
        d = Path(cfg.out_dir) / name
        if not (d / "spk2utt").exists():
            continue
        wavs = read_kaldi_map(d / "wav.scp")
        for spk, us in read_kaldi_map(d / "spk2utt").items():
            paths[spk] = [Path(wavs[u]) for u in us.split()[: cfg.report_utts]]
    return speaker_distinctness(embed_speakers(paths, cfg, "embed corpus"))


def dev_wer(cfg: CorpusConfig) -> dict:
    """Ground-truth WER of the first ``cfg.report_asr_utts`` dev utterances of each speaker."""
    d = Path(cfg.out_dir) / "dev"
    wavs, text = read_kaldi_map(d / "wav.scp"), read_kaldi_map(d / "text")
    items = {spk: [(Path(wavs[u]), text[u]) for u in us.split()[: cfg.report_asr_utts]]
             for spk, us in read_kaldi_map(d / "spk2utt").items()}
    ig = Intelligibility(cfg)
    per = ig.per_speaker(items, "transcribe dev")
    flat = [(p, t) for its in items.values() for p, t in its]
    hyps = ig.transcribe([p for p, _ in flat], "transcribe dev")  # cached: no second ASR pass
    return dict(all=ig.wer([t for _, t in flat], hyps), per_speaker=per)


def write_voices(cfg: CorpusConfig, sets: dict[str, list[VoiceSpec]], file: str = "voices.tsv") -> None:
    """``local/<file>``: one row per speaker (its set, then every VoiceSpec field); :func:`read_voices` reads it."""
    p = Path(cfg.out_dir) / "local" / file
    p.parent.mkdir(parents=True, exist_ok=True)
    cols = list(VoiceSpec.__dataclass_fields__)
    with open(p, "w") as f:
        f.write("set\t" + "\t".join(cols) + "\n")
        for name, specs in sets.items():
            for s in specs:
                f.write(name + "\t" + "\t".join(str(getattr(s, c)) for c in cols) + "\n")


def _is_smoke(cfg_dict: dict) -> bool:
    return cfg_dict.get("max_real_speakers") is not None


def _guard_kind(out: Path, cfg: CorpusConfig) -> None:
    """Refuse to overwrite a full corpus with a smoke one (or the other way round)."""
    prev = out / "local" / "summary.json"
    if not prev.exists():
        return
    try:
        old = json.loads(prev.read_text()).get("config", {})
    except ValueError:
        return
    if _is_smoke(old) != _is_smoke(asdict(cfg)):
        kind = "smoke" if _is_smoke(old) else "full"
        raise ConfigError(f"{out} holds a {kind} corpus; build the other kind into another --out (or delete {out})")


def train_and_probe_lines(cfg: CorpusConfig) -> tuple[list[tuple[int, str]], list[str]]:
    """train.txt as (line number, normalised sentence) for the train sets, and the sentences of its last
    lines, reserved for probing voices ([dev probes..., probes]; none without ``cfg.verify``)."""
    lines = [(i, normalize(t)) for i, t in enumerate(read_lines(cfg.train_text))]
    n_probe = (max(cfg.probe_utts, 1) + cfg.dev_probe_utts) if cfg.verify else 0
    return lines[: len(lines) - n_probe], [t for _, t in lines[len(lines) - n_probe:]]


def build_corpus(cfg: CorpusConfig) -> dict:
    """Build every set in ``cfg.sets`` (real first, then train, then dev); returns a summary dict
    (hours per set, selection and distinctness numbers, seconds taken), also written to
    ``<out>/local/summary.json``."""
    cfg.validate()
    check_engines()
    t0 = time.time()
    out = Path(cfg.out_dir)
    _guard_kind(out, cfg)
    (out / "local").mkdir(parents=True, exist_ok=True)
    summary: dict = dict(config=asdict(cfg), hours={})
    if "real" in cfg.sets:
        summary["hours"].update(build_real(cfg))
    if {"train", "dev"} & set(cfg.sets):
        train_lines, probe = train_and_probe_lines(cfg)
        train_spk, dev_spk, sel = choose_speakers(cfg, probe)
        summary["selection"] = sel
        write_voices(cfg, {"train": train_spk, "dev": dev_spk})
        if "train" in cfg.sets:
            summary["hours"]["train"] = build_train(cfg, train_spk, train_lines)
        if "dev" in cfg.sets and dev_spk:
            dev_lines = [(i, normalize(t)) for i, t in enumerate(read_lines(cfg.dev_text))]
            summary["hours"]["dev"] = build_dev(cfg, dev_spk, dev_lines)
        if cfg.verify:
            stats = corpus_distinctness(cfg)
            (out / "local" / "distinctness.json").write_text(json.dumps(stats, indent=1))
            summary["distinctness"] = {k: v for k, v in stats.items() if k != "per_speaker"}
            log.info("corpus distinctness: %s", summarize(stats))
            if cfg.max_probe_wer is not None and cfg.report_asr_utts and (out / "dev" / "spk2utt").exists():
                summary["dev_wer"] = dev_wer(cfg)
                log.info("dev ground-truth WER (%s, %d utts per speaker): %.3f", cfg.asr,
                         cfg.report_asr_utts, summary["dev_wer"]["all"])
    if "train_extra" in cfg.sets:
        summary["hours"][cfg.extra_name] = build_train_extra(cfg, *train_and_probe_lines(cfg))
    summary["seconds"] = time.time() - t0
    summary["hours"]["total"] = sum(summary["hours"].values())
    for k, v in summary["hours"].items():
        log.info("hours %-10s %.2f", k, v)
    name = f"summary_{cfg.extra_name}.json" if set(cfg.sets) == {"train_extra"} else "summary.json"  # keep the main build's
    (out / "local" / name).write_text(json.dumps(summary, indent=1, default=str))
    return summary


# ---------------------------------------------------------------------------------------------
# command line


def _bool(s: str) -> bool:
    v = str(s).lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{s}'")


def parse_args(argv: list[str] | None = None) -> CorpusConfig:
    d = CorpusConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default=d.out_dir, help="where the Kaldi data dirs go")
    ap.add_argument("--hours", type=float, default=d.hours, help="target hours of synthetic train speech")
    ap.add_argument("--num-speakers", type=int, default=d.num_speakers, help="synthetic train speakers")
    ap.add_argument("--num-dev-speakers", type=int, default=d.num_dev_speakers, help="held-out synthetic speakers")
    ap.add_argument("--min-utts", type=int, default=d.min_utts, help="minimum utterances per train speaker")
    ap.add_argument("--num-real-test", type=int, default=d.num_real_test, help="real speakers held out in real_test")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--nj", type=int, default=d.nj, help="parallel synthesis processes")
    ap.add_argument("--verify", type=_bool, default=None, help="Resemblyzer speaker selection (default: on unless --smoke)")
    ap.add_argument("--max-probe-wer", default=str(d.max_probe_wer),
                    help="drop train voices whose ASR word error rate on the probe sentences is higher ('none': no ASR check)")
    ap.add_argument("--max-dev-probe-wer", type=float, default=d.max_dev_probe_wer,
                    help="the same limit for the held-out dev voices")
    ap.add_argument("--sets", default=",".join(d.sets), help="comma-separated subset of real,train,dev,train_extra")
    ap.add_argument("--extra-hours", type=float, default=d.extra_hours,
                    help="hours of train_extra: more speech on the train sentences that train left unread")
    ap.add_argument("--extra-speakers", type=int, default=d.extra_speakers,
                    help="train_extra's speakers: 0 = train's; N = N new pseudo-speakers, verified like the main build's")
    ap.add_argument("--extra-name", default=d.extra_name, help="the name of the train_extra set")
    ap.add_argument("--extra-text", choices=("unread", "read"), default=d.extra_text,
                    help="train_extra's sentences: those train left unread, or those it read (by other voices)")
    ap.add_argument("--smoke", type=_bool, nargs="?", const=True, default=False, help="tiny corpus in seconds")
    ap.add_argument("--train-text", default=d.train_text)
    ap.add_argument("--dev-text", default=d.dev_text)
    ap.add_argument("--real-dir", default=d.real_dir)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    kw = dict(out_dir=a.out, seed=a.seed, extra_hours=a.extra_hours, extra_speakers=a.extra_speakers, extra_name=a.extra_name, extra_text=a.extra_text, max_dev_probe_wer=a.max_dev_probe_wer, nj=a.nj, sets=tuple(x for x in a.sets.split(",") if x),
              train_text=a.train_text, dev_text=a.dev_text, real_dir=a.real_dir, progress=not a.no_progress)
    if a.verify is not None:
        kw["verify"] = a.verify
    if a.max_probe_wer.lower() != "none":
        try:
            kw["max_probe_wer"] = float(a.max_probe_wer)
        except ValueError:
            ap.error(f"--max-probe-wer: expected a number or none, got '{a.max_probe_wer}'")
    else:
        kw["max_probe_wer"] = None
    if a.smoke:
        return CorpusConfig.smoke(**kw)
    return CorpusConfig(hours=a.hours, num_speakers=a.num_speakers, num_dev_speakers=a.num_dev_speakers,
                        min_utts=a.min_utts, num_real_test=a.num_real_test, **kw)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        build_corpus(parse_args(argv))
    except LatentSpeechError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
