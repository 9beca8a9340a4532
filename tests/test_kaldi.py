"""Kaldi data dirs: tables, DataDir round trips, audio entries (paths, pipes, segments), validate, fix, CLI."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from latentspeech.data.kaldi import (
    DataDir,
    Segment,
    Utterance,
    c_sorted,
    duration_filter,
    ensure_utt2dur,
    entry_duration,
    fix,
    read_table,
    read_wav_entry,
    render_table,
    split_data,
    validate,
    write_table,
)
from latentspeech.errors import AudioError, DataDirError

SR = 16000


def _tone(seconds: float, freq: float = 220.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_dir(root: Path, spk_utts: dict[str, int] | None = None, relative: bool = True) -> Path:
    """A small valid data dir: speakers a/b with utterances '<spk>-<n>' of 0.5 + 0.25 n seconds."""
    spk_utts = spk_utts or {"spka": 2, "spkb": 3}
    d = root / "data"
    (d / "wav").mkdir(parents=True)
    wav_scp, text, utt2spk = {}, {}, {}
    for spk, n in spk_utts.items():
        for i in range(n):
            utt = f"{spk}-{i:03d}"
            sf.write(d / "wav" / f"{utt}.wav", _tone(0.5 + 0.25 * i), SR, subtype="PCM_16")
            wav_scp[utt] = f"wav/{utt}.wav" if relative else str(d / "wav" / f"{utt}.wav")
            text[utt] = f"hello number {i} from {spk}"
            utt2spk[utt] = spk
    write_table(d / "wav.scp", wav_scp)
    write_table(d / "text", text)
    write_table(d / "utt2spk", utt2spk)
    spk2utt: dict[str, list[str]] = {}
    for u in c_sorted(utt2spk):
        spk2utt.setdefault(utt2spk[u], []).append(u)
    write_table(d / "spk2utt", spk2utt)
    return d


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latentspeech", *args], capture_output=True, text=True)


# --- tables -----------------------------------------------------------------------------------


def test_c_sort_is_byte_order():
    keys = ["b", "B", "a-1", "a1", "a_1", "é", "z"]
    assert c_sorted(keys) == sorted(keys, key=lambda k: k.encode())
    # LC_ALL=C: upper case before lower case, '-' (0x2d) before digits before '_' (0x5f)
    assert c_sorted(keys) == ["B", "a-1", "a1", "a_1", "b", "z", "é"]
    if shutil.which("sort"):
        out = subprocess.run(["sort"], input="\n".join(keys) + "\n", capture_output=True, text=True,
                             env={"LC_ALL": "C"}).stdout.split()
        assert out == c_sorted(keys)


def test_write_and_read_table_round_trip(tmp_path):
    p = write_table(tmp_path / "t", {"u2": "two  words", "u1": ["x", "y"], "u3": 1.50, "u0": ""})
    assert p.read_text() == "u0\nu1 x y\nu2 two  words\nu3 1.5\n"
    rows = read_table(p)
    assert [(r.key, r.value, r.lineno) for r in rows] == [("u0", "", 1), ("u1", "x y", 2), ("u2", "two  words", 3),
                                                          ("u3", "1.5", 4)]


def test_read_table_tolerates_tabs_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "text"
    p.write_bytes(b"u1\thello world\r\n\nu2 bye \n")
    assert [(r.key, r.value) for r in read_table(p)] == [("u1", "hello world"), ("u2", "bye")]


def test_render_table_formats_floats_lists_and_order():
    rows = {"b": 1.0, "a": [1, 2], "c": -0.0, "d": 1e-7, "e": 2.5000001, "é": "x", "B": ("y",)}
    assert render_table(rows) == "B y\na 1 2\nb 1\nc 0\nd 0\ne 2.5\né x\n".encode()
    assert render_table([("z", "1"), ("a", "2"), ("a", "1")]) == b"a 2\na 1\nz 1\n"  # stable for equal keys


def test_package_reexports_every_module():
    import latentspeech.data as data
    from latentspeech.data import kaldi
    from latentspeech.data.kaldi import datadir, fixing, subsets, tables, validation, wavscp

    for mod in (datadir, fixing, subsets, tables, validation, wavscp):
        assert mod.__all__ and all(getattr(kaldi, name) is getattr(mod, name) for name in mod.__all__), mod
    assert set(kaldi.__all__) <= set(dir(kaldi))
    assert all(getattr(data, name) is getattr(kaldi, name) for name in data.__all__)


# --- wav.scp entries --------------------------------------------------------------------------


def test_ark_entry_reads_the_wav_at_its_offset(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, _tone(0.5), SR, format="WAV", subtype="PCM_16")
    (tmp_path / "audio.ark").write_bytes(b"utt0 " + buf.getvalue())
    wav = read_wav_entry("audio.ark:5", tmp_path)
    assert wav.dtype == np.float32 and len(wav) == SR // 2
    assert entry_duration("audio.ark:5", tmp_path) == pytest.approx(0.5)
    np.testing.assert_allclose(read_wav_entry("audio.ark:5", tmp_path, start=0.25, end=0.5), wav[SR // 4:], atol=1e-6)
    with pytest.raises(AudioError, match=r"no wav data at .*audio.ark:0 \(only RIFF wav archives"):
        read_wav_entry("audio.ark:0", tmp_path)


@pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox")
def test_pipe_entry_duration_and_resampling(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(0.75), SR, subtype="PCM_16")
    assert entry_duration(f"sox {tmp_path / 'a.wav'} -t wav - |") == pytest.approx(0.75)
    assert entry_duration(f"cat {tmp_path / 'a.wav'} |") == pytest.approx(0.75)
    assert len(read_wav_entry(f"sox {tmp_path / 'a.wav'} -t wav - |", sample_rate=8000)) == 6000
    with pytest.raises(AudioError, match="wav.scp command failed: 'true': no output"):
        entry_duration("true |")


# --- DataDir ----------------------------------------------------------------------------------


def test_load_relative_paths_and_utterances(tmp_path):
    d = DataDir.load(make_dir(tmp_path))
    assert len(d) == 5 and d.speakers == ["spka", "spkb"]
    u = d.utterances()[0]
    assert u == Utterance("spka-000", "spka", "hello number 0 from spka", None, None)
    wav = d.load_utterance("spkb-002", SR)
    assert wav.dtype == np.float32 and wav.ndim == 1 and len(wav) == SR  # 0.5 + 0.5 s
    assert d.load_utterance("spkb-002", 8000).shape == (SR // 2,)


def test_relative_paths_fall_back_to_cwd(tmp_path, monkeypatch):
    """Kaldi/ESPnet dirs hold paths relative to the recipe dir (the cwd), not to the data dir."""
    src = make_dir(tmp_path)
    recipe = tmp_path / "recipe"
    (recipe / "data" / "train").mkdir(parents=True)
    shutil.copytree(src / "wav", recipe / "downloads")
    for name in ("text", "utt2spk", "spk2utt"):
        shutil.copy(src / name, recipe / "data" / "train" / name)
    write_table(recipe / "data/train/wav.scp", {r.key: r.value.replace("wav/", "downloads/")
                                               for r in read_table(src / "wav.scp")})
    monkeypatch.chdir(recipe)
    d = DataDir.load("data/train")
    assert len(d.load_utterance("spka-001", SR)) == int(0.75 * SR)


def test_utt2dur_computed_when_missing_and_written(tmp_path):
    path = make_dir(tmp_path)
    d = DataDir.load(path)
    assert not d.has_utt2dur
    assert d.utt2dur["spka-001"] == pytest.approx(0.75)
    assert d.total_hours() == pytest.approx((0.5 + 0.75 + 0.5 + 0.75 + 1.0) / 3600)
    ensure_utt2dur(path)
    assert DataDir.load(path).has_utt2dur
    assert read_table(path / "utt2dur")[2] == ("spkb-000", "0.5", 3)
    assert validate(path) == []


def test_save_load_round_trip_elsewhere_keeps_audio(tmp_path):
    d = DataDir.load(make_dir(tmp_path))
    d.spk2gender = {"spka": "f", "spkb": "m"}
    d.extra["phones"] = {u: "h @ l oU" for u in d.utt2spk}
    out = d.save(tmp_path / "copy")
    e = DataDir.load(out)
    assert e.text == d.text and e.utt2spk == d.utt2spk and e.spk2utt == d.spk2utt
    assert e.spk2gender == {"spka": "f", "spkb": "m"} and e.extra["phones"]["spka-000"] == "h @ l oU"
    assert all(Path(v).is_absolute() for v in e.wav_scp.values())  # relative paths re-anchored
    np.testing.assert_array_equal(e.load_utterance("spka-001"), d.load_utterance("spka-001"))
    assert validate(out) == []


def test_subset_prunes_speakers_and_tables(tmp_path):
    d = DataDir.load(make_dir(tmp_path))
    d.spk2gender = {"spka": "f", "spkb": "m"}
    s = d.subset(["spkb-000", "spkb-002"])
    assert s.utt_ids == ["spkb-000", "spkb-002"]
    assert s.spk2utt == {"spkb": ["spkb-000", "spkb-002"]} and s.spk2gender == {"spkb": "m"}
    assert set(s.wav_scp) == {"spkb-000", "spkb-002"} and set(s.text) == {"spkb-000", "spkb-002"}
    with pytest.raises(DataDirError, match="unknown utterance"):
        d.subset(["nope"])


def test_segments_cut_and_pipes(tmp_path):
    """Two segments of one recording read through a `cmd |` pipe and through a plain path."""
    d = tmp_path / "seg"
    d.mkdir()
    reco = np.concatenate([_tone(1.0, 200), np.zeros(SR // 2, np.float32), _tone(1.0, 400)])
    sf.write(d / "long.flac", reco, SR)
    write_table(d / "wav.scp", {"r1": "long.flac", "r2": f"sox {d / 'long.flac'} -t wav - |"})
    write_table(d / "segments", {"spk-r1-a": "r1 0 1.0", "spk-r1-b": "r1 1.5 -1",
                                 "spk-r2-a": "r2 0.00 1.00", "spk-r2-b": "r2 1.50 2.50"})
    write_table(d / "utt2spk", {u: "spk" for u in ("spk-r1-a", "spk-r1-b", "spk-r2-a", "spk-r2-b")})
    write_table(d / "spk2utt", {"spk": ["spk-r1-a", "spk-r1-b", "spk-r2-a", "spk-r2-b"]})
    write_table(d / "text", {u: "la" for u in ("spk-r1-a", "spk-r1-b", "spk-r2-a", "spk-r2-b")})
    assert validate(d, check_audio=True) == []
    dd = DataDir.load(d)
    assert dd.segments["spk-r1-b"] == Segment("r1", 1.5, -1.0)
    assert dd.utterances()[1].start == 1.5
    for reco_id in ("r1", "r2"):
        a = dd.load_utterance(f"spk-{reco_id}-a", SR)
        b = dd.load_utterance(f"spk-{reco_id}-b", SR)
        assert len(a) == SR and len(b) == SR
        np.testing.assert_allclose(a, reco[:SR], atol=1e-3)
        np.testing.assert_allclose(b, reco[int(1.5 * SR):], atol=1e-3)
    assert dd.utt2dur == pytest.approx({"spk-r1-a": 1.0, "spk-r1-b": 1.0, "spk-r2-a": 1.0, "spk-r2-b": 1.0})


def test_failing_pipe_is_one_line_audio_error(tmp_path):
    d = make_dir(tmp_path)
    write_table(d / "wav.scp", {**{r.key: r.value for r in read_table(d / "wav.scp")},
                                "spka-000": "sh -c 'echo broken >&2; exit 3' |"})
    dd = DataDir.load(d)
    with pytest.raises(AudioError, match="wav.scp command failed: .*broken"):
        dd.load_utterance("spka-000", SR)
    problems = validate(d, check_audio=True)
    assert len(problems) == 1 and "spka-000" in problems[0] and "broken" in problems[0]


def test_load_rejects_duplicates_with_line(tmp_path):
    d = make_dir(tmp_path)
    with open(d / "text", "a") as f:
        f.write("spka-000 again\n")
    with pytest.raises(DataDirError, match=r"text:6: duplicate id 'spka-000'"):
        DataDir.load(d)


# --- validate ---------------------------------------------------------------------------------


def test_shared_dirs_are_valid(voices_dir, testdata_dir):
    assert validate(voices_dir) == []
    assert validate(testdata_dir, require_text=True, check_audio=True) == []
    assert len(DataDir.load(voices_dir, text_file="text.pseudo").text) == 251


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: (d / "utt2spk").write_text("spka-001 spka\nspka-000 spka\nspkb-000 spkb\nspkb-001 spkb\nspkb-002 spkb\n"),
         "utt2spk:2: not sorted (LC_ALL=C): 'spka-000' comes after 'spka-001'"),
        (lambda d: (d / "text").write_text((d / "text").read_text().replace("spkb-001 hello number 1 from spkb", "spkb-001")),
         "text:4: empty transcript for 'spkb-001'"),
        (lambda d: (d / "text").write_text("\n".join((d / "text").read_text().splitlines()[1:]) + "\n"),
         "1 utterance of utt2spk missing from text (e.g. 'spka-000')"),
        (lambda d: (d / "wav.scp").write_text((d / "wav.scp").read_text() + "spkb-002 wav/x.wav\n"),
         "wav.scp:6: duplicate id 'spkb-002' (first on line 5)"),
        (lambda d: (d / "spk2utt").write_text("spka spka-000\nspkb spkb-000 spkb-001 spkb-002\n"),
         "spk2utt does not agree with utt2spk (e.g. speaker 'spka')"),
        (lambda d: (d / "spk2gender").write_text("spka f\nspkb x\n"), "spk2gender:2: gender of 'spkb' must be m or f"),
    ],
    ids=["unsorted", "empty-text", "missing-utt", "duplicate", "spk2utt", "gender"],
)
def test_validate_reports_problem(tmp_path, mutate, expected):
    d = make_dir(tmp_path)
    assert validate(d) == []
    mutate(d)
    problems = validate(d)
    assert any(expected in p for p in problems), problems


def test_validate_speaker_prefix(tmp_path):
    """Utterance ids not prefixed by their speaker ids sort differently: Kaldi rejects that."""
    d = tmp_path / "d"
    d.mkdir()
    write_table(d / "wav.scp", {"u1": "a.wav", "u2": "b.wav"})
    write_table(d / "utt2spk", {"u1": "zed", "u2": "amy"})
    write_table(d / "spk2utt", {"zed": "u1", "amy": "u2"})
    assert any("make speaker ids prefixes of utterance ids" in p for p in validate(d))
    write_table(d / "utt2spk", {"u1": "amy", "u2": "zed"})  # not prefixed but consistent order: fine
    write_table(d / "spk2utt", {"amy": "u1", "zed": "u2"})
    assert validate(d) == []


def test_validate_segments_problems(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    sf.write(d / "r.wav", _tone(1.0), SR)
    write_table(d / "wav.scp", {"r": "r.wav"})
    write_table(d / "segments", {"s-1": "r 0.5 0.5", "s-2": "nowhere 0 1", "s-3": "r 0.2 3.0"})
    write_table(d / "utt2spk", {"s-1": "s", "s-2": "s", "s-3": "s"})
    write_table(d / "spk2utt", {"s": ["s-1", "s-2", "s-3"]})
    problems = validate(d, check_audio=True)
    assert any("'s-1' has end <= start" in p for p in problems)
    assert any("'s-2' points at recording 'nowhere'" in p for p in problems)
    assert any("'s-3' ends at 3 s, past the end" in p for p in problems)


def test_check_audio_finds_unreadable_file(tmp_path):
    d = make_dir(tmp_path)
    (d / "wav" / "spkb-001.wav").write_bytes(b"not audio at all")
    assert validate(d) == []
    problems = validate(d, check_audio=True)
    assert len(problems) == 1 and "spkb-001" in problems[0]


# --- fix --------------------------------------------------------------------------------------


def test_fix_keeps_common_utterances_sorts_and_regenerates_spk2utt(tmp_path):
    d = make_dir(tmp_path)
    lines = (d / "utt2spk").read_text().splitlines()
    (d / "utt2spk").write_text("\n".join(reversed(lines)) + "\nspkc-000 spkc\n")  # unsorted + extra utt
    (d / "text").write_text((d / "text").read_text().replace("spkb-001 hello number 1 from spkb", "spkb-001 ")
                            + "spka-000 duplicate\n")
    (d / "spk2utt").unlink()
    assert validate(d)
    report = fix(d)
    assert report.kept == 4
    assert report.dropped == {"not in wav.scp": ["spkc-000"], "with an empty transcript": ["spkb-001"]}
    assert report.deduplicated == {"text": 1}
    assert validate(d) == []
    dd = DataDir.load(d)
    assert dd.utt_ids == ["spka-000", "spka-001", "spkb-000", "spkb-002"]
    assert dd.spk2utt == {"spka": ["spka-000", "spka-001"], "spkb": ["spkb-000", "spkb-002"]}
    assert dd.text["spka-000"] == "hello number 0 from spka"
    assert (d / ".backup" / "utt2spk").read_text().startswith("spkb-002")
    assert "dropped 2" in report.summary()
    again = fix(d)  # idempotent
    assert again.kept == 4 and not again.dropped


# --- filter and split -------------------------------------------------------------------------


def test_duration_filter(tmp_path):
    d = make_dir(tmp_path)
    kept, total = duration_filter(d, tmp_path / "out", 0.6, 0.9)
    assert (kept, total) == (2, 5)
    out = DataDir.load(tmp_path / "out")
    assert out.utt_ids == ["spka-001", "spkb-001"] and out.utt2dur == {"spka-001": 0.75, "spkb-001": 0.75}
    assert validate(tmp_path / "out", check_audio=True) == []
    with pytest.raises(DataDirError, match="no utterance lasts"):
        duration_filter(d, tmp_path / "none", 5, 6)


def test_split_keeps_speakers_together(tmp_path):
    d = make_dir(tmp_path, {"s1": 2, "s2": 3, "s3": 1, "s4": 2})
    parts = split_data(d, 3)
    assert [p.name for p in parts] == ["1", "2", "3"] and parts[0].parent.name == "split3"
    seen = []
    for p in parts:
        assert validate(p) == []
        dd = DataDir.load(p)
        seen += dd.utt_ids
        assert all(len(set(dd.utt2spk.values()) & set(DataDir.load(q).utt2spk.values())) == 0 for q in parts if q != p)
    assert seen == DataDir.load(d).utt_ids
    assert len(split_data(d, 8, per_utt=True)) == 8
    with pytest.raises(DataDirError, match="cannot split 4 speakers"):
        split_data(d, 5)


# --- CLI --------------------------------------------------------------------------------------


def test_cli_validate_rejects_unsorted_utt2spk_without_traceback(tmp_path):
    d = make_dir(tmp_path)
    lines = (d / "utt2spk").read_text().splitlines()
    (d / "utt2spk").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    res = run_cli("data", "validate", str(d))
    assert res.returncode == 1
    assert "not sorted" in res.stderr and "utt2spk:2" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_cli_validate_ok_fix_and_filter(tmp_path, testdata_dir):
    res = run_cli("data", "validate", str(testdata_dir), "--check-audio")
    assert res.returncode == 0 and res.stdout.startswith("ok: 11 utterances, 3 speakers, 0.01 hours")
    d = make_dir(tmp_path)
    (d / "spk2utt").write_text("spka spka-000\n")
    assert run_cli("data", "validate", str(d)).returncode == 1
    res = run_cli("data", "fix", str(d))
    assert res.returncode == 0 and "kept 5 utterances, dropped 0" in res.stdout
    assert run_cli("data", "validate", str(d)).returncode == 0
    res = run_cli("data", "duration-filter", str(d), str(tmp_path / "f"), "--min", "0.7", "--max", "2")
    assert res.returncode == 0 and "kept 3 of 5" in res.stdout
    res = run_cli("data", "validate", str(tmp_path / "missing"))
    assert res.returncode == 1 and "data dir not found" in res.stderr and "Traceback" not in res.stderr


def test_segment_past_the_end_without_an_end_time(tmp_path):
    """A segment that starts past the end of its audio and has no end time is a one-line AudioError."""
    from latentspeech.data.kaldi import read_wav_entry
    from latentspeech.errors import AudioError

    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(1600, np.float32) + 0.1, 16000)
    with pytest.raises(AudioError, match=r"segment from 900 s of .* is empty"):
        read_wav_entry(str(path), sample_rate=16000, start=900.0)
