"""The offline demo corpus: pseudo-speakers, synthesis, Kaldi dirs, resumability, distinctness."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from latentspeech.data.synthetic import (
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    FLITE_VOICES,
    VoiceSpec,
    draw_speakers,
    select_distinct,
    speaker_distinctness,
    synthesize,
)
from latentspeech.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LATENTSPEECH_SHARED", ROOT.parent / "shared")) / "data"
needs_engines = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("espeak-ng", "flite", "sox")), reason="espeak-ng, flite and sox are needed"
)
needs_shared = pytest.mark.skipif(not (SHARED / "librispeech_voices").is_dir(), reason="../shared/data is missing")


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_demo_corpus", ROOT / "tools" / "make_demo_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_demo_corpus"] = mod
    spec.loader.exec_module(mod)
    return mod


mdc = _load_tool()


def _kmap(path: Path) -> dict[str, str]:
    return mdc.read_kaldi_map(path)


def _check_kaldi_dir(d: Path) -> dict[str, str]:
    """Our own checks of a Kaldi data dir (independent of the builder's writer)."""
    for f in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur"):
        lines = (d / f).read_text().splitlines()
        keys = [ln.split()[0] for ln in lines]
        assert keys == sorted(keys, key=lambda s: s.encode()), f"{d / f} is not C-sorted"
        assert len(set(keys)) == len(keys), f"{d / f} has duplicate keys"
    wav, text, u2s, dur = (_kmap(d / f) for f in ("wav.scp", "text", "utt2spk", "utt2dur"))
    assert set(wav) == set(text) == set(u2s) == set(dur) and wav
    s2u = {s: v.split() for s, v in _kmap(d / "spk2utt").items()}
    assert sorted(u for us in s2u.values() for u in us) == sorted(u2s)
    for utt, spk in u2s.items():
        assert utt.startswith(spk) and utt in s2u[spk]
        assert text[utt].strip()
        info = sf.info(wav[utt])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.frames / info.samplerate - float(dur[utt])) < 1e-3
    if (d / "spk2gender").exists():
        g = _kmap(d / "spk2gender")
        assert set(g) <= set(s2u) and set(g.values()) <= {"m", "f"}
    return u2s


# --------------------------------------------------------------------------- pseudo-speakers


def test_draw_speakers_is_deterministic_and_prefix_stable():
    a, b = draw_speakers(40, seed=3), draw_speakers(40, seed=3)
    assert a == b
    assert draw_speakers(10, seed=3) == a[:10]  # drawing more does not change the first ones
    assert draw_speakers(40, seed=4) != a
    assert [s.speaker for s in a[:2]] == ["spk0000", "spk0001"]
    assert len({(s.engine, s.voice, s.variant, s.pitch, s.rate, s.formant, s.tilt) for s in a}) == 40


def test_draw_speakers_covers_many_base_voices_and_valid_ranges():
    specs = draw_speakers(150, seed=0)
    n_bases = len(ESPEAK_VARIANTS) + len(FLITE_VOICES)
    voices = [(s.engine, s.variant or s.voice) for s in specs]
    assert len(set(voices[:n_bases])) == n_bases  # every base voice is used before any repeats
    assert {s.engine for s in specs} == {"espeak", "flite"}
    assert {s.gender for s in specs} == {"m", "f"}
    for s in specs:
        assert 0.85 <= s.formant <= 1.15
        if s.engine == "espeak":
            assert s.voice in ESPEAK_ACCENTS and 0 <= s.pitch <= 99 and 120 <= s.rate <= 200
        else:
            assert s.voice in FLITE_VOICES and 80 <= s.pitch <= 250
    # a base voice that comes back gets a different formant factor
    by_base: dict[str, list[float]] = {}
    for s in specs:
        by_base.setdefault(f"{s.engine}:{s.variant or s.voice}", []).append(s.formant)
    assert all(len(set(v)) == len(v) for v in by_base.values())
    with pytest.raises(ConfigError):
        draw_speakers(-1)


@needs_engines
@pytest.mark.parametrize("spec", [
    VoiceSpec("e", "espeak", "en-gb-scotland", "f2", pitch=60, rate=170, formant=1.08, tilt=-3),
    VoiceSpec("f", "flite", "kal", "", pitch=110, rate=1.1, formant=0.92, tilt=3),
])
def test_synthesize_writes_16k_mono_pcm16_atomically(tmp_path, spec):
    out = synthesize(spec, "The quick brown fox jumps over the lazy dog.", tmp_path / "a" / "x.wav")
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert 1.0 < info.frames / info.samplerate < 6.0
    wav, _ = sf.read(str(out))
    assert 0.5 < np.abs(wav).max() <= 1.0  # normalised to about -3 dBFS, not silent
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.wav"]  # no temp files left
    again = synthesize(spec, "The quick brown fox jumps over the lazy dog.", tmp_path / "y.wav")
    assert again.read_bytes() == out.read_bytes()  # deterministic


@needs_engines
def test_synthesize_errors_are_one_line_and_leave_nothing(tmp_path):
    from latentspeech.errors import AudioError

    with pytest.raises(AudioError, match="espeak-ng failed for speaker bad .*voice does not exist"):
        synthesize(VoiceSpec("bad", "espeak", "zz-nope", "m1"), "hello", tmp_path / "x.wav")
    with pytest.raises(ConfigError, match="unknown synthesis engine"):
        synthesize(VoiceSpec("bad", "festival", "kal"), "hello", tmp_path / "x.wav")
    assert list(tmp_path.iterdir()) == []


@needs_engines
def test_formant_factor_keeps_the_speaking_rate(tmp_path):
    text = "A moderately long sentence that takes a few seconds to say out loud."
    base = VoiceSpec("s", "espeak", "en-us", "m3", pitch=50, rate=160, formant=1.0)
    durs = []
    for f in (0.88, 1.0, 1.12):
        p = synthesize(VoiceSpec(**{**base.to_dict(), "formant": f}), text, tmp_path / f"{f}.wav")
        durs.append(sf.info(str(p)).duration)
    assert max(durs) / min(durs) < 1.1, durs  # without compensation it would be 1.27


# --------------------------------------------------------------------------- distinctness


def _clusters(n_spk=5, n_utt=4, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    cents = rng.normal(size=(n_spk, 16))
    return {f"s{i}": cents[i] + spread * rng.normal(size=(n_utt, 16)) for i in range(n_spk)}


def test_speaker_distinctness_separated_clusters():
    st = speaker_distinctness(_clusters())
    assert st["accuracy"] == 1.0 and st["separated"] == 1.0
    assert st["same"] > 0.95 > st["diff"]
    assert st["speakers"] == 5 and st["utterances"] == 20


def test_select_distinct_drops_a_colliding_speaker():
    emb = _clusters()
    rng = np.random.default_rng(1)
    emb["s9"] = emb["s2"].mean(0) + 0.05 * rng.normal(size=(4, 16))  # a near-copy of s2
    st = speaker_distinctness(emb)
    assert st["separated"] < 1.0
    assert st["per_speaker"]["s9"]["nearest_speaker"] == "s2"
    kept = select_distinct(emb)
    assert len(kept) == 5 and ("s2" in kept) != ("s9" in kept)
    assert speaker_distinctness({s: emb[s] for s in kept})["separated"] == 1.0
    assert len(select_distinct(emb, keep=6)) == 6  # stops once only `keep` are left
    # voices already in a corpus (fixed) are never the ones dropped
    assert "s2" in select_distinct(emb, fixed=["s2"]) and "s9" not in select_distinct(emb, fixed=["s2"])
    assert "s9" in select_distinct(emb, fixed=["s9"]) and "s2" not in select_distinct(emb, fixed=["s9"])


# --------------------------------------------------------------------------- corpus


def test_split_real_speakers_is_deterministic_and_balanced():
    g = {f"{i}": "f" if i % 2 else "m" for i in range(100, 200)}
    tr, te = mdc.split_real_speakers(g, 20, seed=0)
    assert (tr, te) == mdc.split_real_speakers(g, 20, seed=0)
    assert len(te) == 20 and not set(tr) & set(te) and set(tr) | set(te) == set(g)
    assert sum(g[s] == "f" for s in te) == 10
    assert mdc.split_real_speakers(g, 20, seed=1)[1] != te


@pytest.fixture(scope="module")
def smoke_corpus(tmp_path_factory):
    if not all(shutil.which(p) for p in ("espeak-ng", "flite", "sox")) or not SHARED.is_dir():
        pytest.skip("needs espeak-ng, flite, sox and ../shared/data")
    out = tmp_path_factory.mktemp("corpus") / "data"
    cfg = mdc.CorpusConfig.smoke(out_dir=str(out), progress=False)
    summary = mdc.build_corpus(cfg)
    return cfg, out, summary


def test_smoke_corpus_is_valid_kaldi(smoke_corpus):
    cfg, out, summary = smoke_corpus
    sets = {name: _check_kaldi_dir(out / name) for name in ("real_train", "real_test", "train", "dev")}
    spk = {k: set(v.values()) for k, v in sets.items()}
    assert len(spk["train"]) == 3 and len(spk["dev"]) == 2 and len(sets["train"]) == 9
    assert not spk["train"] & spk["dev"]
    assert len(spk["real_train"]) == 4 and len(spk["real_test"]) == 2 and not spk["real_train"] & spk["real_test"]
    for name in sets:
        try:
            from latentspeech.data.kaldi import validate
        except ImportError:
            break
        assert validate(out / name, check_audio=True, require_text=True) == []
    # transcripts are the sentences that were spoken, and the voices are those drawn from the seed
    train_lines = mdc.read_lines(cfg.train_text)
    for utt, t in _kmap(out / "train" / "text").items():
        assert t == mdc.normalize(train_lines[int(utt.split("-")[1])])
    voices = (out / "local" / "voices.tsv").read_text().splitlines()
    assert [ln.split("\t")[1] for ln in voices[1:]] == [s.speaker for s in draw_speakers(5, cfg.seed)]
    real_text = _kmap(SHARED / "librispeech_voices" / "text.pseudo")
    assert all(mdc.normalize(real_text[u]) == t for u, t in _kmap(out / "real_test" / "text").items())
    assert set(summary["hours"]) == {"real_train", "real_test", "train", "dev", "total"}
    assert json.loads((out / "local" / "summary.json").read_text())["hours"]["train"] > 0


def test_train_extra_reads_the_unread_sentences(smoke_corpus):
    """--sets train_extra after a build: train's speakers (or N new ones from spk1000) reading train
    sentences that train did not use (or, with --extra-text read, those it used); the main build's
    summary is kept."""
    import dataclasses

    cfg, out, _ = smoke_corpus
    main_summary = (out / "local" / "summary.json").read_text()
    train_text = _kmap(out / "train" / "text")
    used = {int(u.split("-")[1]) for u in train_text}
    for extra_speakers, name in ((0, "train_extra"), (2, "train_new")):
        c = dataclasses.replace(cfg, sets=("train_extra",), extra_speakers=extra_speakers, extra_name=name, extra_hours=0.0)
        summary = mdc.build_corpus(c)
        assert summary["hours"][name] > 0 and (out / "local" / f"summary_{name}.json").is_file()
        utt2spk = _check_kaldi_dir(out / name)
        lines = {int(u.split("-")[1]) for u in utt2spk}
        assert len(utt2spk) == len(set(utt2spk.values())) * cfg.min_utts and not lines & used
        spk = set(utt2spk.values())
        if extra_speakers:
            assert spk == {"spk1000", "spk1001"}
            assert (out / "local" / f"voices_{name}.tsv").read_text().splitlines()[1].startswith(f"{name}\tspk1000\t")
        else:
            assert spk == set(train_text and _kmap(out / "train" / "utt2spk").values())
    assert (out / "local" / "summary.json").read_text() == main_summary
    # a second set of new voices continues after the first one's ids; --extra-text read: train's sentences
    c = dataclasses.replace(cfg, sets=("train_extra",), extra_speakers=2, extra_name="train_new2", extra_text="read",
                            extra_hours=0.0)
    mdc.build_corpus(c)
    utt2spk = _check_kaldi_dir(out / "train_new2")
    assert set(utt2spk.values()) == {"spk1002", "spk1003"}
    assert {int(u.split("-")[1]) for u in utt2spk} <= used
    assert mdc.extra_speaker_start(mdc.earlier_extra_voices(dataclasses.replace(c, extra_name="train_new"))) == 1004
    with pytest.raises(ConfigError, match="--extra-text must be unread or read"):
        mdc.build_corpus(dataclasses.replace(c, extra_text="all"))
    with pytest.raises(ConfigError, match="unknown corpus set"):
        mdc.build_corpus(dataclasses.replace(cfg, sets=("train_more",)))
    with pytest.raises(ConfigError, match="--extra-name must be a new set name"):
        mdc.build_corpus(dataclasses.replace(cfg, sets=("train_extra",), extra_name="train"))


def test_smoke_corpus_resumes_without_redoing_work(smoke_corpus):
    cfg, out, _ = smoke_corpus
    wavs = _kmap(out / "train" / "wav.scp")
    first, second = sorted(wavs)[:2]
    keep_mtime = os.stat(wavs[second]).st_mtime_ns
    old_bytes = Path(wavs[first]).read_bytes()
    Path(wavs[first]).unlink()
    # what an interrupted synthesis leaves behind: a temp dir with a partial file
    leftover = Path(wavs[first]).parent / "synth-zzz"
    leftover.mkdir()
    (leftover / "out.wav").write_bytes(b"RIFF partial")
    # a WAV whose transcript changed (its sidecar says what it speaks) is made again
    third = sorted(wavs)[2]
    Path(wavs[third]).with_suffix(".txt").write_text("something else")
    third_mtime = os.stat(wavs[third]).st_mtime_ns
    mdc.build_corpus(cfg)
    assert Path(wavs[first]).read_bytes() == old_bytes  # redone, identically
    assert os.stat(wavs[third]).st_mtime_ns != third_mtime
    assert Path(wavs[third]).with_suffix(".txt").read_text() == _kmap(out / "train" / "text")[third]
    assert os.stat(wavs[second]).st_mtime_ns == keep_mtime  # finished files are skipped
    assert not leftover.exists()
    _check_kaldi_dir(out / "train")


def test_changed_voice_invalidates_old_audio(tmp_path):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng missing")
    cfg = mdc.CorpusConfig.smoke(out_dir=str(tmp_path), progress=False, nj=1)
    a = VoiceSpec("spk0000", "espeak", "en-us", "m1")
    p = tmp_path / "w" / "spk0000" / "spk0000-00001.wav"
    mdc.run_jobs([(a, "hello there", p)], cfg, "x")
    before = p.read_bytes()
    b = VoiceSpec("spk0000", "espeak", "en-us", "f4")
    mdc.run_jobs([(b, "hello there", p)], cfg, "x")
    assert p.read_bytes() != before


def test_cli_smoke_and_errors(tmp_path):
    if not all(shutil.which(p) for p in ("espeak-ng", "flite", "sox")) or not SHARED.is_dir():
        pytest.skip("needs espeak-ng, flite, sox and ../shared/data")
    script = ROOT / "egs" / "demo" / "tts1" / "local" / "data.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    out = tmp_path / "d"
    r = subprocess.run(["bash", str(script), "--smoke", "true", "--out", str(out), "--sets", "train",
                        "--no-progress"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "hours train" in r.stderr and (out / "train" / "wav.scp").exists() and not (out / "dev").exists()
    # a full build must not overwrite a smoke corpus
    r = subprocess.run(["bash", str(script), "--out", str(out), "--sets", "train", "--verify", "false"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "smoke corpus" in r.stderr
    r = subprocess.run(["bash", str(script), "--no-such-option", "1"], capture_output=True, text=True, env=env)
    assert r.returncode != 0
    with pytest.raises(ConfigError, match="unknown corpus set"):
        mdc.build_corpus(mdc.CorpusConfig.smoke(out_dir=str(tmp_path / "e"), sets=("real", "tran")))


@pytest.mark.slow
@needs_engines
def test_resemblyzer_tells_drawn_voices_apart(tmp_path):
    """Real check with the speaker encoder on 4 drawn voices x 3 sentences."""
    pytest.importorskip("resemblyzer")
    sentences = ["The sun rose slowly over the quiet harbour town.",
                 "Nobody in the village had ever seen such a storm.",
                 "She opened the letter and read it twice before speaking."]
    specs = [VoiceSpec("a", "espeak", "en-us", "m3", 40, 160), VoiceSpec("b", "espeak", "en-gb", "f2", 60, 150),
             VoiceSpec("c", "flite", "slt", "", 190, 1.0), VoiceSpec("d", "flite", "awb", "", 110, 1.1, formant=0.92)]
    paths = {s.speaker: [synthesize(s, t, tmp_path / s.speaker / f"{i}.wav") for i, t in enumerate(sentences)]
             for s in specs}
    cfg = mdc.CorpusConfig.smoke(out_dir=str(tmp_path), progress=False)
    st = speaker_distinctness(mdc.embed_speakers(paths, cfg, "embed"))
    assert st["accuracy"] == 1.0 and st["same"] > st["diff"] + 0.1


class _FakeASR:
    """Stands in for Whisper: speakers named in ``bad`` are misrecognised."""

    bad: set[str] = set()
    calls: list[str] = []

    def __init__(self, cfg, progress=None):
        pass

    def transcribe(self, paths, desc="transcribe"):
        _FakeASR.calls += [p.parent.name for p in paths]
        return ["completely wrong words here" if p.parent.name in self.bad else p.read_text() for p in paths]

    wer = staticmethod(mdc.Intelligibility.wer)


def test_probe_wers_with_a_stand_in_recogniser(tmp_path, monkeypatch):
    pytest.importorskip("latentspeech.eval.wer")
    items = {}
    for spk in ("a", "b", "c"):
        (tmp_path / spk).mkdir()
        p = tmp_path / spk / "x.wav"  # the fake ASR "hears" the file's text
        p.write_text("the old chief walked away slowly")
        items[spk] = [(p, "the old chief walked away slowly")]
    monkeypatch.setattr(mdc, "Intelligibility", _FakeASR)
    monkeypatch.setattr(_FakeASR, "bad", {"b"})
    monkeypatch.setattr(_FakeASR, "calls", [])
    wers = mdc.probe_wers(mdc.CorpusConfig.smoke(progress=False), items)
    assert wers["a"] == wers["c"] == 0.0 and wers["b"] > 0.5 and sorted(_FakeASR.calls) == ["a", "b", "c"]


def test_split_by_wer_keeps_dev_intelligible_and_fills_up():
    wers = {"s1": 0.1, "s2": 0.6, "s3": 0.3, "s4": 0.15, "s5": 0.05, "s6": 0.45, "s7": 0.9}
    train, dev = mdc.split_by_wer(list(wers), wers, n_train=3, n_dev=2, max_train_wer=0.5, max_dev_wer=0.2)
    assert dev == ["s4", "s5"]  # the last two (by id) with WER <= 0.2
    assert train == ["s1", "s3", "s6"]  # the first three of the rest with WER <= 0.5
    train, dev = mdc.split_by_wer(list(wers), wers, n_train=4, n_dev=2, max_train_wer=0.5, max_dev_wer=0.2)
    assert train == ["s1", "s2", "s3", "s6"]  # too few pass: the best of the others (s2 0.6) fills up
    assert not set(train) & set(dev)
    train, dev = mdc.split_by_wer(list(wers), wers, n_train=2, n_dev=2, max_train_wer=0.5, max_dev_wer=0.2,
                                  dev=["s1"])  # a confirmed dev list, one short: filled by lowest WER
    assert dev == ["s1", "s5"] and train == ["s3", "s4"]


def test_confirm_dev_walks_down_from_the_last_id(tmp_path, monkeypatch):
    pytest.importorskip("latentspeech.eval.wer")
    items = {}
    for spk in ("a", "b", "c", "d"):
        (tmp_path / spk).mkdir()
        p = tmp_path / spk / "x.wav"
        p.write_text("nine years ago I was honest")
        items[spk] = [(p, "nine years ago I was honest")]
    monkeypatch.setattr(mdc, "Intelligibility", _FakeASR)
    monkeypatch.setattr(_FakeASR, "bad", {"c"})
    monkeypatch.setattr(_FakeASR, "calls", [])
    dev, wers = mdc.confirm_dev(mdc.CorpusConfig.smoke(max_dev_probe_wer=0.2), items, n_dev=2)
    assert dev == ["b", "d"] and _FakeASR.calls == ["d", "c", "b"]  # "a" is never transcribed
    assert wers["c"] > 0.2


def test_cli_options_map_to_config():
    cfg = mdc.parse_args(["--out", "x", "--hours", "2", "--num-speakers", "7", "--max-probe-wer", "none", "--nj", "1"])
    assert (cfg.out_dir, cfg.hours, cfg.num_speakers, cfg.max_probe_wer, cfg.nj, cfg.verify) == ("x", 2.0, 7, None, 1, True)
    smoke = mdc.parse_args(["--smoke", "true"])
    assert smoke.verify is False and smoke.num_speakers == 3 and smoke.max_real_speakers == 6
    assert mdc.parse_args(["--smoke", "false"]).num_speakers == mdc.CorpusConfig().num_speakers
    with pytest.raises(SystemExit):
        mdc.parse_args(["--smoke", "maybe"])
