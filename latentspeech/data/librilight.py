"""LibriLight + Libriheavy (training) and LibriSpeech test-clean (evaluation) as Kaldi data dirs.

Used by ``egs/librilight/tts1/local/data.sh``; the functions are importable and tested on a fake
corpus in the real folder layouts:

- LibriLight audio: ``<librilight_dir>/<subset>/<speaker>/<book>/<file>.flac`` (subset = small,
  medium, large), from the tars in :data:`LIBRILIGHT`.
- Libriheavy transcripts: lhotse cut manifests ``libriheavy_cuts_<subset>.jsonl.gz`` (one JSON
  cut per line: ``start``, ``supervisions[0]`` with ``duration``, ``speaker`` and
  ``custom.texts = [cased text with punctuation, upper-case normalised text]``, ``recording.id``
  = ``<subset>/<speaker>/<book>/<file>``), from :data:`LIBRIHEAVY`.
- LibriSpeech: ``<dir>/test-clean/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` + flac files
  (and ``SPEAKERS.TXT`` beside ``test-clean`` for genders), from :data:`LIBRISPEECH_TEST_CLEAN`.

Libriheavy segments become Kaldi ``segments`` into the long LibriLight recordings (no audio is
cut or copied); only segments of ``min_dur``..``max_dur`` seconds are kept (2-20 s by default).

    python -m latentspeech.data.librilight libriheavy --manifest M.jsonl.gz --librilight-dir D --out data/train
    python -m latentspeech.data.librilight librispeech --dir LibriSpeech/test-clean --out data/test_clean
    python -m latentspeech.data.librilight urls        # the download table
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import DataDirError
from .kaldi import DataDir, Segment, c_sorted, spk2utt_from_utt2spk

__all__ = [
    "Download",
    "LIBRILIGHT",
    "LIBRIHEAVY",
    "LIBRISPEECH_TEST_CLEAN",
    "PrepStats",
    "subsets_up_to",
    "read_cuts",
    "prepare_libriheavy",
    "prepare_librispeech",
    "hold_out_speakers",
]


@dataclass(frozen=True)
class Download:
    """One file to fetch: where from, how big, what it holds."""

    url: str
    size: str
    content: str


#: LibriLight unlabelled audio (https://github.com/facebookresearch/libri-light, data_preparation/README.md).
LIBRILIGHT = {
    "small": Download("https://dl.fbaipublicfiles.com/librilight/data/small.tar", "35 GB", "577 hours, 16 kHz flac"),
    "medium": Download("https://dl.fbaipublicfiles.com/librilight/data/medium.tar", "321 GB", "5,193 hours"),
    "large": Download("https://dl.fbaipublicfiles.com/librilight/data/large.tar", "3.05 TB", "51,934 hours"),
}

_HF = "https://huggingface.co/datasets/pkufool/libriheavy/resolve/main"
#: Libriheavy transcripts (https://huggingface.co/datasets/pkufool/libriheavy): lhotse cut manifests.
#: Sizes are not recorded here (gzipped JSON lines, far smaller than the audio).
LIBRIHEAVY = {
    name: Download(f"{_HF}/libriheavy_cuts_{name}.jsonl.gz", "see the dataset page", desc)
    for name, desc in (
        ("small", "transcripts of LibriLight small"),
        ("medium", "transcripts of LibriLight medium"),
        ("large", "transcripts of LibriLight large"),
    )
}

#: LibriSpeech test-clean (OpenSLR 12): the evaluation set of the paper (VALL-E 2 protocol: its 4-10 s part).
LIBRISPEECH_TEST_CLEAN = Download(
    "https://www.openslr.org/resources/12/test-clean.tar.gz", "346 MB", "5.4 hours, 40 speakers, 2,620 utterances"
)

_SUBSET_ORDER = ("small", "medium", "large")


def subsets_up_to(subset: str) -> list[str]:
    """Libriheavy's cumulative subsets: ``medium`` = small + medium, ``large`` = all three."""
    if subset not in _SUBSET_ORDER:
        raise DataDirError(f"unknown LibriLight subset '{subset}' (choose small, medium or large)")
    return list(_SUBSET_ORDER[: _SUBSET_ORDER.index(subset) + 1])


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def _safe(s: str) -> str:
    return _UNSAFE.sub("_", s).strip("_") or "x"


@dataclass
class PrepStats:
    """What a preparation kept and skipped."""

    kept: int = 0
    hours: float = 0.0
    too_short: int = 0
    too_long: int = 0
    no_text: int = 0
    no_audio: int = 0
    speakers: set[str] = field(default_factory=set)

    def summary(self) -> str:
        return (
            f"kept {self.kept} utterances ({self.hours:.2f} h, {len(self.speakers)} speakers); skipped "
            f"{self.too_short} too short, {self.too_long} too long, {self.no_text} without text, "
            f"{self.no_audio} without audio"
        )


def read_cuts(manifest: str | Path) -> Iterator[dict]:
    """The cuts of a lhotse JSON-lines manifest (``.jsonl`` or ``.jsonl.gz``), one dict each."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataDirError(f"Libriheavy manifest not found: {manifest}")
    opener = gzip.open if manifest.suffix == ".gz" else open
    with opener(manifest, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise DataDirError(f"{manifest}:{lineno}: not a JSON line") from None


def _audio_path(cut: dict, librilight_dir: Path) -> Path:
    """Where the recording of a cut lives under ``librilight_dir`` (manifests hard-code download/librilight)."""
    rec = cut["recording"]
    p = librilight_dir / f"{rec['id']}.flac"
    if p.exists():
        return p
    for src in rec.get("sources", []):  # any suffix of the manifest's path that exists here
        parts = Path(src.get("source", "")).parts
        for i in range(len(parts)):
            q = librilight_dir.joinpath(*parts[i:])
            if q.exists():
                return q
    return p


def prepare_libriheavy(
    manifests: list[str | Path],
    librilight_dir: str | Path,
    out_dir: str | Path,
    min_dur: float = 2.0,
    max_dur: float = 20.0,
    text_index: int = 0,
    require_audio: bool = True,
    max_utts: int = 0,
) -> PrepStats:
    """Write a Kaldi data dir of the Libriheavy segments of ``min_dur``..``max_dur`` seconds.

    ``text_index`` 0 takes the book text with casing and punctuation (what TTS wants), 1 the
    upper-case normalised one. Utterance ids are ``<speaker>-<book>-<file>-<n>`` (speaker-prefixed,
    so Kaldi sorting holds); recordings missing under ``librilight_dir`` are skipped when
    ``require_audio``. ``max_utts`` > 0 stops after that many (quick tests).
    """
    librilight_dir = Path(librilight_dir)
    if require_audio and not librilight_dir.is_dir():
        raise DataDirError(f"LibriLight folder not found: {librilight_dir}")
    stats = PrepStats()
    d = DataDir(path=None)
    durations: dict[str, float] = {}
    audio_ok: dict[str, Path | None] = {}
    for manifest in manifests:
        for cut in read_cuts(manifest):
            sup = (cut.get("supervisions") or [{}])[0]
            dur = float(sup.get("duration", cut.get("duration", 0.0)))
            if dur < min_dur:
                stats.too_short += 1
                continue
            if dur > max_dur:
                stats.too_long += 1
                continue
            texts = (sup.get("custom") or {}).get("texts") or [sup.get("text", "")]
            text = " ".join(str(texts[min(text_index, len(texts) - 1)]).split())
            if not text:
                stats.no_text += 1
                continue
            rec_id = cut["recording"]["id"]
            if rec_id not in audio_ok:
                path = _audio_path(cut, librilight_dir)
                audio_ok[rec_id] = path if (path.exists() or not require_audio) else None
            path = audio_ok[rec_id]
            if path is None:
                stats.no_audio += 1
                continue
            spk = _safe(str(sup.get("speaker") or rec_id.split("/")[1]))
            rec_parts = rec_id.split("/")  # <subset>/<speaker>/<book>/<file>
            reco = _safe("-".join([spk, *rec_parts[2:]]))
            index = cut["id"][len(rec_id):].lstrip("_-/") if cut["id"].startswith(rec_id) else _safe(cut["id"])
            utt = f"{reco}-{_safe(index) or len(d.utt2spk)}"
            start = float(cut.get("start", 0.0)) + float(sup.get("start", 0.0))
            d.wav_scp[reco] = str(path.resolve() if path.exists() else path)
            d.segments[utt] = Segment(reco, round(start, 3), round(start + dur, 3))
            d.text[utt] = text
            d.utt2spk[utt] = spk
            durations[utt] = round(dur, 3)
            stats.kept += 1
            stats.hours += dur / 3600
            stats.speakers.add(spk)
            if max_utts and stats.kept >= max_utts:
                break
        if max_utts and stats.kept >= max_utts:
            break
    if not d.utt2spk:
        raise DataDirError(f"no Libriheavy segment of {min_dur:g}-{max_dur:g} s with audio under {librilight_dir}: "
                           + stats.summary())
    d.spk2utt = spk2utt_from_utt2spk(d.utt2spk)
    d.utt2dur = durations
    d.save(out_dir)
    return stats


def _speaker_genders(librispeech_root: Path) -> dict[str, str]:
    """speaker → m/f from LibriSpeech's SPEAKERS.TXT (``ID | SEX | SUBSET | MINUTES | NAME``)."""
    for cand in (librispeech_root / "SPEAKERS.TXT", librispeech_root.parent / "SPEAKERS.TXT"):
        if cand.is_file():
            out = {}
            for line in cand.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith(";") or "|" not in line:
                    continue
                fields = [f.strip() for f in line.split("|")]
                if len(fields) >= 2 and fields[1].upper() in ("M", "F"):
                    out[fields[0]] = fields[1].lower()
            return out
    return {}


def prepare_librispeech(split_dir: str | Path, out_dir: str | Path) -> PrepStats:
    """A LibriSpeech split folder (e.g. ``LibriSpeech/test-clean``) as a Kaldi data dir."""
    import soundfile as sf

    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataDirError(f"LibriSpeech folder not found: {split_dir}")
    d = DataDir(path=None)
    durations: dict[str, float] = {}
    stats = PrepStats()
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            flac = trans.parent / f"{utt}.flac"
            if not flac.is_file():
                stats.no_audio += 1
                continue
            spk = utt.split("-")[0]
            d.wav_scp[utt] = str(flac.resolve())
            d.text[utt] = " ".join(text.split())
            d.utt2spk[utt] = spk
            info = sf.info(str(flac))
            durations[utt] = round(info.frames / info.samplerate, 4)
            stats.kept += 1
            stats.hours += durations[utt] / 3600
            stats.speakers.add(spk)
    if not d.utt2spk:
        raise DataDirError(f"no LibriSpeech transcripts (*/*/*.trans.txt) under {split_dir}")
    genders = _speaker_genders(split_dir.parent)
    d.spk2gender = {s: genders[s] for s in c_sorted(stats.speakers) if s in genders}
    if len(d.spk2gender) < len(stats.speakers):
        d.spk2gender = {}  # partial genders would fail validation: leave the file out
    d.spk2utt = spk2utt_from_utt2spk(d.utt2spk)
    d.utt2dur = durations
    d.save(out_dir)
    return stats


def hold_out_speakers(
    src: str | Path, train_out: str | Path, dev_out: str | Path, num_speakers: int = 20,
    max_utts_per_speaker: int = 20, seed: int = 0,
) -> tuple[int, int]:
    """Split ``src`` by speaker: ``num_speakers`` drawn with ``seed`` go to ``dev_out`` (at most
    ``max_utts_per_speaker`` utterances each), every other speaker to ``train_out``.

    Held-out speakers never appear in the training dir. Returns (train utterances, dev utterances).
    """
    import random

    d = DataDir.load(src)
    speakers = d.speakers
    if len(speakers) <= num_speakers:
        raise DataDirError(f"{src}: {len(speakers)} speakers, cannot hold out {num_speakers} and keep some for training")
    dev_spk = set(random.Random(seed).sample(speakers, num_speakers))
    dev = [u for s in c_sorted(dev_spk) for u in c_sorted(d.spk2utt[s])[:max_utts_per_speaker]]
    train = [u for u in d.utt_ids if d.utt2spk[u] not in dev_spk]
    d.subset(train).save(train_out)
    d.subset(dev).save(dev_out)
    return len(train), len(dev)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m latentspeech.data.librilight", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("libriheavy", help="Libriheavy manifests + LibriLight audio -> Kaldi dir (segments)")
    h.add_argument("--manifest", action="append", required=True, help="libriheavy_cuts_*.jsonl.gz (repeatable)")
    h.add_argument("--librilight-dir", required=True, help="folder holding small/, medium/, large/")
    h.add_argument("--out", required=True)
    h.add_argument("--min-dur", type=float, default=2.0)
    h.add_argument("--max-dur", type=float, default=20.0)
    h.add_argument("--text-index", type=int, default=0, help="0: cased with punctuation, 1: upper case")
    h.add_argument("--max-utts", type=int, default=0)
    s = sub.add_parser("librispeech", help="a LibriSpeech split folder -> Kaldi dir")
    s.add_argument("--dir", required=True, help="e.g. LibriSpeech/test-clean")
    s.add_argument("--out", required=True)
    o = sub.add_parser("holdout", help="hold out speakers of a data dir as a dev set")
    o.add_argument("--src", required=True)
    o.add_argument("--train-out", required=True)
    o.add_argument("--dev-out", required=True)
    o.add_argument("--num-speakers", type=int, default=20)
    o.add_argument("--max-utts-per-speaker", type=int, default=20)
    o.add_argument("--seed", type=int, default=0)
    u = sub.add_parser("urls", help="print the download table (name, url, size, content)")
    u.add_argument("--subset", default="large")
    args = ap.parse_args(argv)
    from ..errors import LatentSpeechError

    try:
        if args.cmd == "libriheavy":
            st = prepare_libriheavy(args.manifest, args.librilight_dir, args.out, args.min_dur, args.max_dur,
                                    args.text_index, max_utts=args.max_utts)
            print(f"{args.out}: {st.summary()}")
        elif args.cmd == "librispeech":
            st = prepare_librispeech(args.dir, args.out)
            print(f"{args.out}: {st.summary()}")
        elif args.cmd == "holdout":
            n_train, n_dev = hold_out_speakers(args.src, args.train_out, args.dev_out, args.num_speakers,
                                               args.max_utts_per_speaker, args.seed)
            print(f"{args.train_out}: {n_train} utterances; {args.dev_out}: {n_dev} utterances "
                  f"of {args.num_speakers} held-out speakers")
        else:
            for name in subsets_up_to(args.subset):
                print(f"librilight_{name}\t{LIBRILIGHT[name].url}\t{LIBRILIGHT[name].size}\t{LIBRILIGHT[name].content}")
                print(f"libriheavy_{name}\t{LIBRIHEAVY[name].url}\t{LIBRIHEAVY[name].size}\t{LIBRIHEAVY[name].content}")
            t = LIBRISPEECH_TEST_CLEAN
            print(f"librispeech_test_clean\t{t.url}\t{t.size}\t{t.content}")
    except LatentSpeechError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
