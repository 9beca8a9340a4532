#!/usr/bin/env python3
"""Helper of local/real_extra.sh: decode the speech clips of unpacked Debian packages into a Kaldi dir.

    real_extra.py --src data/local/real_extra_src --debs data/local/debs \
        --wav-dir data/local/wav/real_extra --out data/real_extra --ffmpeg FFMPEG

``--src`` holds one ``dpkg-deb -x`` tree per package (``<src>/<package>/usr/...``). Every clip kept is
decoded by ffmpeg (one process at a time) to 16 kHz mono 16-bit PCM WAV under
``<wav-dir>/<source>/<speaker>/<name>.wav``; nothing is trimmed. A clip is skipped when it is not speech
(the per-source rules below), shorter than ``--min-dur`` (0.5 s), silent (peak < ``--min-peak``, 1e-3
of full scale) or byte-identical to a clip already taken. Decisions are cached in
``<wav-dir>/cache.tsv``, so a rerun decodes only what is new. Writes ``wav.scp`` (absolute paths),
``utt2spk``, ``spk2utt``, ``utt2dur`` and ``README.md`` in ``--out``, plus ``copyright/<package>``.

Speech rules (what is *not* taken):
  asterisk-*   ``silence/*``, and the tones and sound effects ``beep``, ``beeperr``, ``ascending-2tone``,
               ``descending-2tone``, ``tt-monkeys`` (every other prompt is a spoken phrase, digit or letter).
  festvox-ru   nothing: ``wav/*.wav`` are the voice's read sentences.
  tuxpaint     a stamp's plain sound ``<stamp>.ogg`` (animal noises, instruments, vehicles, faces: sound
               effects) is skipped; kept are the spoken descriptions ``<stamp>_desc[_<locale>]`` and every
               clip under ``symbols/math`` and ``symbols/alphabets`` (spoken digits and letter names,
               ``<stamp>[_<locale>]``).
  klettres     nothing: ``<lang>/{alpha,syllab}/*.ogg`` are spoken letters and syllables.
  ktuberling   nothing: ``sounds/<lang>/*`` are the spoken names of the pieces.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from latentspeech.data.kaldi import write_table
from latentspeech.data.kaldi.datadir import spk2utt_from_utt2spk

SR = 16000


@dataclass
class Source:
    name: str        # source (first part of every utt id), e.g. "asterisk"
    package: str     # Debian package
    licence: str     # from the package's /usr/share/doc/<package>/copyright
    speaker_note: str


SOURCES = [
    Source("asterisk", "asterisk-core-sounds-en-g722", "CC-BY-SA-3.0 (Allison Smith)", "one female voice, en-US IVR prompts"),
    Source("asterisk", "asterisk-core-sounds-es-g722", "CC-BY-SA-3.0 (Allison Smith)", "one female voice (the en one), es-MX prompts"),
    Source("asterisk", "asterisk-core-sounds-fr-g722", "CC-BY-SA-3.0 (June Wallack)", "one female voice, fr-CA prompts"),
    Source("asterisk", "asterisk-core-sounds-it-g722", "CC-BY-3.0 (Carlo Flora)", "one male voice, it-IT prompts"),
    Source("asterisk", "asterisk-core-sounds-ru-g722", "CC-BY-3.0 (Maxim)", "one female voice, ru-RU prompts"),
    Source("festvox", "festvox-ru", "BSD-like (Nickolay V. Shmyrev; keep notice, mark changes)", "one male voice (msu_ru_nsh), read sentences"),
    Source("tuxpaint", "tuxpaint-stamps-default", "GPL-2 (Bill Kendrick et al.)", "many voices, spoken stamp names/descriptions"),
    Source("klettres", "klettres-data", "GPL-2+ (Anne-Marie Mahfouf et al.)", "a voice or two per language, letters and syllables"),
    Source("ktuberling", "ktuberling-data", "GPL-2+ (Albert Astals Cid et al.)", "a voice per language, single words"),
]

ASTERISK_SKIP = {"beep", "beeperr", "ascending-2tone", "descending-2tone", "tt-monkeys"}
AUDIO_EXT = {".ogg", ".wav", ".opus", ".g722"}
LOCALE_RE = re.compile(r"_([a-z]{2,3}(?:_[A-Z]{2})?)$")


def ascii_id(s: str) -> str:
    """ASCII [A-Za-z0-9_] only: other characters become _ (or uXXXX when not ASCII), so ids stay unique."""
    out = []
    for ch in s:
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        elif ch.isascii():
            out.append("_")
        else:
            out.append(f"u{ord(ch):04x}")
    return "".join(out)


def clips(src: Path, s: Source):
    """Yield (speaker, name, path) for the speech clips of one package (speaker and name before ascii_id)."""
    root = src / s.package / "usr" / "share"
    if s.name == "asterisk":
        lang = s.package.split("-")[3]
        for voice in sorted((root / "asterisk" / "sounds").iterdir()):
            for p in sorted(voice.rglob("*.g722")):
                rel = p.relative_to(voice).with_suffix("")
                if rel.parts[0] == "silence" or str(rel) in ASTERISK_SKIP:
                    continue
                yield lang, str(rel), p
    elif s.name == "festvox":
        for p in sorted(root.glob("festival/voices/russian/*/wav/*.wav")):
            yield "ru", p.stem, p
    elif s.name == "tuxpaint":
        stamps = root / "tuxpaint" / "stamps"
        for p in sorted(stamps.rglob("*")):
            if p.suffix not in AUDIO_EXT or not p.is_file():
                continue
            rel = p.relative_to(stamps).with_suffix("")
            stem = rel.name
            m = re.search(r"_desc(?:_([A-Za-z@_]+))?$", stem)
            if m:
                lang = m.group(1) or "en"
            elif rel.parts[:2] in (("symbols", "math"), ("symbols", "alphabets")):
                m = LOCALE_RE.search(stem)
                lang = m.group(1) if m else ("de" if "german" in rel.parts else "en")
            else:
                continue  # a stamp's plain sound: a sound effect
            yield lang, str(rel), p
    elif s.name == "klettres":
        for p in sorted((root / "klettres").glob("*/*/*.ogg")):
            lang, kind = p.parts[-3], p.parts[-2]
            yield lang, f"{kind}/{p.stem}", p
    elif s.name == "ktuberling":
        for p in sorted((root / "ktuberling" / "sounds").glob("*/*")):
            if p.suffix in AUDIO_EXT and p.is_file() and not p.is_symlink():
                yield p.parent.name, p.stem, p


def decode(ffmpeg: str, path: Path) -> tuple[np.ndarray, int]:
    """The clip as float32 16 kHz mono, and its original sample rate (from ffmpeg's stream line)."""
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "info", "-threads", "1"]
    if path.suffix == ".g722":
        cmd += ["-f", "g722"]
    cmd += ["-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(SR), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace")[-400:])
    m = re.search(r"Stream #0:\d+.*?Audio: .*?(\d+) Hz", r.stderr.decode(errors="replace"))
    sr = int(m.group(1)) if m else 0
    return np.frombuffer(r.stdout, dtype="<i2").astype(np.float32) / 32768.0, sr


def deb_version(debs: Path, package: str) -> str:
    debs_found = sorted(debs.glob(f"{package}_*.deb"))
    if not debs_found:
        return "?"
    return subprocess.run(["dpkg-deb", "-f", str(debs_found[-1]), "Version"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--debs", type=Path, required=True)
    ap.add_argument("--wav-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ffmpeg", required=True)
    ap.add_argument("--min-dur", type=float, default=0.5)
    ap.add_argument("--min-peak", type=float, default=1e-3)
    a = ap.parse_args()
    wav_dir, out = a.wav_dir.resolve(), a.out
    wav_dir.mkdir(parents=True, exist_ok=True)

    # cache.tsv: <source path> <size> <sha1> <status> <orig sr> <dur>; status is ok or a skip reason
    cache_path = wav_dir / "cache.tsv"
    cache: dict[str, list[str]] = {}
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            f = line.split("\t")
            if len(f) == 6:
                cache[f[0]] = f[1:]
    cache_f = cache_path.open("a")

    seen_sha: dict[str, str] = {}
    wav_scp, utt2spk, utt2dur = {}, {}, {}
    stats = []  # per package
    for s in SOURCES:
        if not (a.src / s.package).is_dir():
            print(f"{s.package}: not unpacked, skipped", file=sys.stderr)
            continue
        st = {"src": s, "spks": set(), "n": 0, "sec": 0.0, "rates": set(), "short": 0, "silent": 0, "dup": 0, "err": 0}
        for spk_part, name, path in clips(a.src, s):
            spk = f"{s.name}-{ascii_id(spk_part)}"
            utt = f"{spk}-{ascii_id(name.replace('/', '_'))}"
            key = str(path)
            size = str(path.stat().st_size)
            target = wav_dir / s.name / ascii_id(spk_part) / f"{ascii_id(name.replace('/', '_'))}.wav"
            ent = cache.get(key)
            if ent is None or ent[0] != size or (ent[2] == "ok" and not target.is_file()):
                sha = hashlib.sha1(path.read_bytes()).hexdigest()
                if sha in seen_sha:  # same bytes as a clip already taken: not decoded
                    ent = [size, sha, "dup", "0", "0"]
                    cache[key] = ent
                    cache_f.write("\t".join([key, *ent]) + "\n")
                    st["dup"] += 1
                    continue
                try:
                    x, sr = decode(a.ffmpeg, path)
                except RuntimeError as e:
                    print(f"decode failed: {path}: {e}", file=sys.stderr)
                    ent = [size, sha, "error", "0", "0"]
                else:
                    dur = len(x) / SR
                    peak = float(np.abs(x).max()) if len(x) else 0.0
                    status = "short" if dur < a.min_dur else "silent" if peak < a.min_peak else "ok"
                    if status == "ok":
                        target.parent.mkdir(parents=True, exist_ok=True)
                        tmp = target.with_suffix(".tmp.wav")
                        sf.write(tmp, x, SR, subtype="PCM_16")
                        os.replace(tmp, target)
                    ent = [size, sha, status, str(sr), f"{dur:.4f}"]
                cache[key] = ent
                cache_f.write("\t".join([key, *ent]) + "\n")
                cache_f.flush()
            _, sha, status, sr, dur = ent
            if status == "ok" and sha in seen_sha:
                status = "dup"
            if status != "ok":
                st[{"short": "short", "silent": "silent", "dup": "dup"}.get(status, "err")] += 1
                continue
            if utt in wav_scp:
                raise SystemExit(f"duplicate utt id {utt} ({path})")
            seen_sha[sha] = utt
            wav_scp[utt], utt2spk[utt], utt2dur[utt] = str(target), spk, float(dur)
            st["n"] += 1
            st["spks"].add(spk)
            st["sec"] += float(dur)
            st["rates"].add(int(sr))
        st["version"] = deb_version(a.debs, s.package)
        stats.append(st)
        print(f"{s.package} {st['version']}: {st['n']} clips, {st['sec'] / 3600:.3f} h, "
              f"rates {','.join(map(str, sorted(st['rates'])))} Hz; skipped {st['short']} short, "
              f"{st['silent']} silent, {st['dup']} duplicate, {st['err']} undecodable")
    cache_f.close()

    write_table(out / "wav.scp", wav_scp)
    write_table(out / "utt2spk", utt2spk)
    write_table(out / "utt2dur", {u: round(d, 4) for u, d in utt2dur.items()})
    spk2utt = spk2utt_from_utt2spk(utt2spk)
    write_table(out / "spk2utt", spk2utt)
    for name in ("text", "segments"):
        (out / name).unlink(missing_ok=True)
    cdir = out / "copyright"
    cdir.mkdir(exist_ok=True)
    for st in stats:
        c = a.src / st["src"].package / "usr" / "share" / "doc" / st["src"].package / "copyright"
        if c.is_file():
            (cdir / st["src"].package).write_bytes(c.read_bytes())

    total_n, total_s = sum(st["n"] for st in stats), sum(st["sec"] for st in stats)
    lines = [
        "# data/real_extra: real speech from Debian packages (codec training only)",
        "",
        "Built by `local/real_extra.sh` (see `local/real_extra.py` for the speech rules). 16 kHz mono 16-bit",
        "PCM under `data/local/wav/real_extra/`; no transcripts. Clips < 0.5 s, silent (peak < 1e-3) or",
        "byte-identical to an earlier clip are left out. Each package's copyright file is in `copyright/`;",
        "the CC-BY(-SA) and BSD-like terms ask for the attribution given there.",
        "",
        "| package | version | licence | voice(s) | speakers | clips | hours | original rates (Hz) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for st in stats:
        s = st["src"]
        lines.append(f"| {s.package} | {st['version']} | {s.licence} | {s.speaker_note} | "
                     f"{len(st['spks'])} | {st['n']} | "
                     f"{st['sec'] / 3600:.3f} | {', '.join(map(str, sorted(st['rates'])))} |")
    lines += [f"| total | | | | {len(spk2utt)} | {total_n} | {total_s / 3600:.3f} | |", ""]
    (out / "README.md").write_text("\n".join(lines))
    print(f"total: {total_n} clips, {total_s / 3600:.3f} h, {len(spk2utt)} speakers -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
