"""Synthetic pseudo-speakers: offline TTS engines (espeak-ng, flite) + sox perturbation.

A *pseudo-speaker* is a fixed combination of engine, voice, variant, pitch, speaking rate and a
sox perturbation (a resampling factor that scales formants and pitch together, plus a spectral
tilt), drawn deterministically from a seed::

    specs = draw_speakers(120, seed=0)
    synthesize(specs[0], "It was a dark and stormy night.", "out.wav")   # 16 kHz mono 16-bit

:func:`speaker_distinctness` measures with speaker embeddings (e.g. Resemblyzer) whether the
pseudo-speakers are told apart, and :func:`select_distinct` drops the ones that collide.
The corpus builder that uses all this is ``tools/make_demo_corpus.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import AudioError, ConfigError

__all__ = [
    "ESPEAK_ACCENTS",
    "ESPEAK_VARIANTS",
    "ACCENT_WEIGHTS",
    "FLITE_VOICES",
    "VoiceSpec",
    "draw_speakers",
    "synthesize",
    "check_engines",
    "speaker_distinctness",
    "select_distinct",
]

#: espeak-ng English accents (``espeak-ng --voices=en``), mbrola voices excluded (not installed).
ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
)

#: How often each accent is drawn: Whisper-style recognisers (and so the evaluation's WER) cope
#: best with American English, so the pool leans on it (measured with Whisper tiny.en on dev
#: sentences, variant m3: en-us 0.14, en-gb 0.21, en-us-nyc 0.22, en-gb-x-rp 0.27,
#: en-gb-x-gbclan 0.30, en-gb-scotland 0.37, en-gb-x-gbcwmd 0.40, en-029 0.42).
ACCENT_WEIGHTS: dict[str, float] = {
    "en-us": 6, "en-gb": 2, "en-us-nyc": 2, "en-gb-x-rp": 2,
    "en-gb-x-gbclan": 1, "en-gb-scotland": 1, "en-gb-x-gbcwmd": 1, "en-029": 1,
}
assert set(ACCENT_WEIGHTS) == set(ESPEAK_ACCENTS)

#: espeak-ng voice variants (``espeak-ng --voices=variant``) with their nominal gender. Whisper,
#: robot, "demonic" and croaking variants are left out: they are hard to understand.
ESPEAK_VARIANTS: dict[str, str] = {
    **{f"m{i}": "m" for i in range(1, 9)},
    **{f"f{i}": "f" for i in range(1, 6)},
    **{k: "m" for k in ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6")},
    **{k: "f" for k in ("Alicia", "Andrea", "Annie", "aunty", "belinda", "linda", "steph",
                        "steph2", "steph3", "anika", "grandma")},
    **{k: "m" for k in ("adam", "Alex", "Andy", "AnxiousAndy", "antonio", "benjamin", "boris",
                        "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene",
                        "Gene2", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4",
                        "Jacky", "john", "kaukovalta", "Lee", "marcelo", "Marco", "Mario", "max",
                        "Michael", "michel", "miguel", "Mike", "Nguyen", "norbert", "pablo", "paul",
                        "pedro", "quincy", "rob", "robert", "sandro", "Storm", "travis", "Tweaky",
                        "victor", "zac", "grandpa", "shelby")},
}

#: flite voices (``flite -lv``) and their gender; ``awb_time`` is a limited-domain voice (left out).
FLITE_VOICES: dict[str, str] = {"kal": "m", "kal16": "m", "awb": "m", "rms": "m", "slt": "f"}

#: Resampling factors (sox ``speed``): > 1 raises formants and pitch together (smaller vocal tract).
FORMANT_STEPS: tuple[float, ...] = (0.88, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12)
#: Spectral tilt (sox ``treble`` gain in dB at 3 kHz): a fixed "microphone" colour per speaker.
TILT_STEPS: tuple[float, ...] = (-6.0, -3.0, 0.0, 3.0)


@dataclass(frozen=True)
class VoiceSpec:
    """One pseudo-speaker: everything needed to make the same voice again.

    ``pitch`` is espeak-ng's ``-p`` (0-99) or flite's mean F0 in Hz; ``rate`` is espeak-ng's
    words per minute or flite's duration stretch (> 1 is slower); ``formant`` is the sox ``speed``
    factor (the engine's rate is pre-compensated, so it does not change the speaking rate);
    ``tilt`` is a treble gain in dB.
    """

    speaker: str
    engine: str  # "espeak" | "flite"
    voice: str  # espeak accent or flite voice
    variant: str = ""  # espeak variant ("" for flite)
    pitch: float = 50.0
    rate: float = 165.0
    formant: float = 1.0
    tilt: float = 0.0
    gender: str = ""  # "m" | "f" | "" (unknown)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def base(self) -> str:
        """The engine voice without perturbation, e.g. ``espeak:en-gb+f3`` or ``flite:slt``."""
        return f"{self.engine}:{self.voice}" + (f"+{self.variant}" if self.variant else "")


def _bases(include_flite: bool = True) -> list[tuple[str, str, str]]:
    """(engine, variant-or-voice, gender) for every base voice, in a fixed order."""
    out = [("espeak", v, g) for v, g in ESPEAK_VARIANTS.items()]
    if include_flite:
        out += [("flite", v, g) for v, g in FLITE_VOICES.items()]
    return out


def draw_speakers(n: int, seed: int = 0, prefix: str = "spk", start: int = 0,
                  include_flite: bool = True) -> list[VoiceSpec]:
    """Draw ``n`` pseudo-speakers deterministically from ``seed``.

    Base voices (espeak-ng variants and flite voices) are dealt round-robin from a seeded shuffle,
    so the pool is spread over as many different voices as possible; a base that comes back gets a
    different formant factor each time. Speaker ids are ``{prefix}{start+i:04d}``. The first
    ``k`` speakers of ``draw_speakers(n)`` and ``draw_speakers(m)`` are the same for any k ≤ n, m.
    """
    if n < 0:
        raise ConfigError(f"number of speakers must be >= 0, got {n}")
    bases = _bases(include_flite)
    rng = random.Random(f"latentspeech-voices-{seed}")
    order = list(range(len(bases)))
    rng.shuffle(order)
    formant_cycles: dict[int, list[float]] = {}
    specs = []
    for i in range(start, start + n):
        # one private RNG per speaker: speaker i does not depend on how many are drawn
        r = random.Random(f"latentspeech-voices-{seed}-{i}")
        b = order[i % len(bases)]
        engine, name, gender = bases[b]
        if b not in formant_cycles:
            cyc = list(FORMANT_STEPS)
            random.Random(f"latentspeech-formant-{seed}-{b}").shuffle(cyc)
            formant_cycles[b] = cyc
        formant = formant_cycles[b][(i // len(bases)) % len(FORMANT_STEPS)]
        tilt = r.choice(TILT_STEPS)
        if engine == "espeak":
            voice = r.choices(ESPEAK_ACCENTS, weights=[ACCENT_WEIGHTS[a] for a in ESPEAK_ACCENTS])[0]
            variant = name
            pitch = float(r.randrange(25, 76, 5))
            rate = float(r.randrange(140, 186, 5))
        else:
            voice, variant = name, ""
            f0 = {"m": (90, 150), "f": (160, 230)}[gender]
            pitch = float(r.randrange(f0[0], f0[1] + 1, 10))
            rate = round(r.uniform(0.9, 1.2), 2)
        specs.append(VoiceSpec(f"{prefix}{i:04d}", engine, voice, variant, pitch, rate,
                               formant, tilt, gender))
    return specs


def check_engines(engines: tuple[str, ...] = ("espeak-ng", "flite", "sox")) -> None:
    """Raise :class:`ConfigError` if a required program is not on PATH."""
    for e in engines:
        if shutil.which(e) is None:
            raise ConfigError(f"'{e}' is not installed (see tools/install_system_packages.sh)")


def _engine_cmd(spec: VoiceSpec, text_file: str, wav: str) -> list[str]:
    if spec.engine == "espeak":
        # sox `speed formant` shortens the audio by `formant`: synthesize that much slower
        wpm = int(round(spec.rate / spec.formant))
        return ["espeak-ng", "-v", f"{spec.voice}+{spec.variant}", "-p", str(int(spec.pitch)),
                "-s", str(wpm), "-f", text_file, "-w", wav]
    if spec.engine == "flite":
        return ["flite", "-voice", spec.voice,
                "--setf", f"duration_stretch={spec.rate * spec.formant:.3f}",
                "--setf", f"int_f0_target_mean={spec.pitch / spec.formant:.1f}",
                "-f", text_file, "-o", wav]
    raise ConfigError(f"unknown synthesis engine '{spec.engine}' (use espeak or flite)")


def _sox_effects(spec: VoiceSpec, sample_rate: int) -> list[str]:
    fx = []
    if spec.formant != 1.0:
        fx += ["speed", f"{spec.formant:g}"]
    if spec.tilt:
        fx += ["treble", f"{spec.tilt:g}"]
    # constant gain to -3 dBFS peak, then the target rate (sox's high-quality resampler)
    fx += ["gain", "-n", "-3", "rate", "-h", str(sample_rate)]
    return fx


def synthesize(spec: VoiceSpec, text: str, out_path: str | os.PathLike, sample_rate: int = 16000) -> Path:
    """Speak ``text`` with ``spec`` into ``out_path`` (mono 16-bit WAV at ``sample_rate``).

    The file appears atomically (temp file + rename), so an interrupted run never leaves a partial
    WAV under the final name. Raises :class:`AudioError` naming the speaker if an engine fails.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="synth-", dir=out.parent) as tmp:
        txt, raw, dst = os.path.join(tmp, "text.txt"), os.path.join(tmp, "raw.wav"), os.path.join(tmp, "out.wav")
        with open(txt, "w", encoding="utf-8") as f:
            f.write(text.strip() + "\n")
        # sox -D: no dither, so the same voice and text always give the same bytes
        sox = ["sox", "-q", "-D", raw, "-c", "1", "-b", "16", "-e", "signed-integer", dst, *_sox_effects(spec, sample_rate)]
        for cmd, produced in ((_engine_cmd(spec, txt, raw), raw), (sox, dst)):
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if res.returncode != 0 or not os.path.exists(produced):
                msg = (res.stderr.strip().splitlines() or ["no output"])[-1]
                raise AudioError(f"{cmd[0]} failed for speaker {spec.speaker} ({spec.base}): {msg}")
        os.replace(dst, out)
    return out


# ---------------------------------------------------------------------------------------------
# distinctness of pseudo-speakers, measured on speaker embeddings


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def speaker_distinctness(embeddings: dict[str, np.ndarray]) -> dict:
    """How well speaker embeddings separate the speakers.

    ``embeddings`` maps speaker id → ``[n_utts, dim]`` utterance embeddings (n_utts ≥ 2).
    Returns ``same`` (mean cosine between two utterances of one speaker), ``diff`` (mean cosine
    between utterances of different speakers), ``accuracy`` (leave-one-out nearest-centroid speaker
    identification over utterances), ``separated`` (fraction of speakers whose nearest other-speaker
    centroid is farther from every one of their utterances than their own leave-one-out centroid)
    and ``per_speaker`` (speaker → dict(own, nearest, nearest_speaker, errors)).
    """
    spks = sorted(embeddings)
    if len(spks) < 2:
        raise ValueError("need at least 2 speakers to measure distinctness")
    embs = [_unit(np.asarray(embeddings[s], dtype=np.float64)) for s in spks]
    if any(len(e) < 2 for e in embs):
        raise ValueError("every speaker needs at least 2 utterances")
    cents = _unit(np.stack([e.mean(0) for e in embs]))
    allu = np.concatenate(embs)
    lab = np.concatenate([np.full(len(e), i) for i, e in enumerate(embs)])
    sims = allu @ allu.T
    same_mask = lab[:, None] == lab[None, :]
    np.fill_diagonal(same_mask, False)
    diff_mask = lab[:, None] != lab[None, :]
    per, correct, separated = {}, 0, 0
    for i, (s, e) in enumerate(zip(spks, embs)):
        loo = _unit(e.sum(0, keepdims=True) - e)  # leave-one-out centroids, one per utterance
        own = np.sum(e * loo, axis=1)
        other = e @ cents.T
        other[:, i] = -np.inf
        near = other.max(1)
        errs = int(np.sum(near >= own))
        correct += len(e) - errs
        separated += errs == 0
        cc = cents @ cents[i]
        cc[i] = -np.inf
        j = int(np.argmax(cc))
        per[s] = dict(own=float(own.mean()), nearest=float(near.max()), nearest_speaker=spks[j], errors=errs)
    return dict(
        speakers=len(spks),
        utterances=int(len(allu)),
        same=float(sims[same_mask].mean()),
        diff=float(sims[diff_mask].mean()),
        accuracy=correct / len(allu),
        separated=separated / len(spks),
        per_speaker=per,
    )


def select_distinct(embeddings: dict[str, np.ndarray], keep: int | None = None, fixed: Iterable[str] = ()) -> list[str]:
    """Drop colliding speakers until every kept one is separated (see :func:`speaker_distinctness`).

    Repeatedly removes the speaker with the most confused utterances (ties: the one whose nearest
    other centroid is closest, then the larger id), re-measuring after each removal; speakers in
    ``fixed`` (voices already in a corpus) are never removed. Stops early once only ``keep``
    speakers are left. Returns the kept ids in their original order.
    """
    kept = sorted(embeddings)
    fixed = set(fixed)
    while len(kept) > 2 and (keep is None or len(kept) > keep):
        per = speaker_distinctness({s: embeddings[s] for s in kept})["per_speaker"]
        bad = [s for s in kept if per[s]["errors"] > 0 and s not in fixed]
        if not bad:
            break
        worst = max(bad, key=lambda s: (per[s]["errors"], per[s]["nearest"] - per[s]["own"], s))
        kept.remove(worst)
    return kept
