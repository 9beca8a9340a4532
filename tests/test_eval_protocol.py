"""Pairs files and the LibriSpeech test-clean protocol builders (latentspeech.eval.protocol)."""

import numpy as np
import pytest
import soundfile as sf

from latentspeech.errors import ConfigError, DataDirError
from latentspeech.eval.protocol import PairRow, ProtocolConfig, build_librispeech_protocol, read_pairs, write_pairs

SR = 16000
# speaker -> durations (s) of their utterances; 3 s and 12 s fall outside 4-10 s
SPEAKERS = {"1089": [5.0, 6.0, 3.0, 8.0], "121": [4.5, 12.0, 9.5], "2300": [7.0]}


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "test_clean"
    (d / "wav").mkdir(parents=True)
    wav_scp, text, utt2spk = [], [], []
    rng = np.random.RandomState(0)
    for spk, durs in SPEAKERS.items():
        for i, dur in enumerate(durs):
            utt = f"{spk}-0000-{i:04d}"
            t = np.arange(int(dur * SR)) / SR
            sf.write(d / "wav" / f"{utt}.flac", (0.2 * np.sin(2 * np.pi * (150 + 20 * i) * t) + 0.01 * rng.randn(len(t))).astype(np.float32), SR)
            wav_scp.append(f"{utt} wav/{utt}.flac")
            text.append(f"{utt} WORDS OF UTTERANCE {i}  FROM {spk}")
            utt2spk.append(f"{utt} {spk}")
    for name, lines in [("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk)]:
        (d / name).write_text("\n".join(sorted(lines)) + "\n")
    return d


def test_ref_utt_protocol(data_dir, tmp_path):
    out = tmp_path / "ref_utt.tsv"
    rows = build_librispeech_protocol(data_dir, out, ProtocolConfig(mode="ref-utt", seed=0))
    ids = [r.utt_id for r in rows]
    # 4-10 s only; 2300 has one utterance (no other utterance to prompt with)
    assert ids == ["1089-0000-0000", "1089-0000-0001", "1089-0000-0003", "121-0000-0000", "121-0000-0002"]
    for r in rows:
        spk = r.utt_id.split("-")[0]
        prompt_utt = r.prompt.rsplit("/", 1)[1].split(".")[0]
        assert prompt_utt.startswith(spk + "-") and prompt_utt != r.utt_id
        assert r.ref_wav.endswith(f"{r.utt_id}.flac")
        assert r.text == f"WORDS OF UTTERANCE {int(r.utt_id[-1])} FROM {spk}"  # whitespace squeezed
    # prompts come from the 4-10 s subset when the speaker has another one there
    assert all("0002" not in r.prompt for r in rows if r.utt_id.startswith("1089"))
    back = read_pairs(out, require_wav=False)
    assert [(b.utt_id, b.prompt, b.text, b.ref_wav) for b in back] == [(r.utt_id, r.prompt, r.text, r.ref_wav) for r in rows]
    assert out.read_text().splitlines()[0] == "utt_id\tprompt\ttext\tref_wav"


def test_protocol_is_deterministic_by_seed(data_dir, tmp_path):
    a = build_librispeech_protocol(data_dir, tmp_path / "a.tsv", ProtocolConfig(seed=3))
    b = build_librispeech_protocol(data_dir, tmp_path / "b.tsv", ProtocolConfig(seed=3))
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()
    prompts = {build_librispeech_protocol(data_dir, None, ProtocolConfig(seed=s))[0].prompt for s in range(8)}
    assert len(prompts) == 2  # 1089-0000-0000 has two candidates; seeds pick both
    assert a == b


def test_prefix_protocol_writes_3s_crops(data_dir, tmp_path):
    rows = build_librispeech_protocol(data_dir, tmp_path / "prefix.tsv", ProtocolConfig(mode="prefix"))
    assert len(rows) == 6  # every 4-10 s utterance, single-utterance speakers included
    for r in rows:
        info = sf.info(r.prompt)
        assert info.samplerate == SR and info.frames == 3 * SR
        assert r.ref_wav.endswith(f"{r.utt_id}.flac")
        full, _ = sf.read(r.ref_wav, dtype="float32")
        crop, _ = sf.read(r.prompt, dtype="float32")
        np.testing.assert_allclose(crop, full[: 3 * SR], atol=1 / 32768 + 1e-6)
    assert (tmp_path / "prefix").is_dir()  # crops next to the TSV


def test_protocol_subset_and_errors(data_dir, tmp_path):
    rows = build_librispeech_protocol(data_dir, None, ProtocolConfig(mode="prefix", max_utts=3, seed=1), wav_dir=tmp_path / "w")
    assert len(rows) == 3
    with pytest.raises(ConfigError, match="mode"):
        build_librispeech_protocol(data_dir, None, ProtocolConfig(mode="continuation"))
    with pytest.raises(DataDirError, match="no utterance"):
        build_librispeech_protocol(data_dir, None, ProtocolConfig(min_seconds=20, max_seconds=30))


def test_read_pairs_checks(tmp_path):
    p = tmp_path / "pairs.tsv"
    (tmp_path / "a.wav").write_bytes(b"")
    p.write_text("utt_id\twav\tprompt\ttext\nu1\ta.wav\t/abs/p.wav\thello world\n")
    (row,) = read_pairs(p)
    assert row.wav == str((tmp_path / "a.wav").resolve()) and row.prompt == "/abs/p.wav" and row.ref_wav is None
    p.write_text("utt_id wav prompt text\nu1 a.wav p.wav hi\n")
    with pytest.raises(DataDirError, match="header lacks"):
        read_pairs(p)
    p.write_text("utt_id\twav\tprompt\ttext\nu1\ta.wav\tp.wav\thi\nu1\ta.wav\tp.wav\thi\n")
    with pytest.raises(DataDirError, match="duplicate"):
        read_pairs(p)
    p.write_text("utt_id\twav\tprompt\ttext\nu1\ta.wav\tp.wav\n")
    with pytest.raises(DataDirError, match=":2: expected 4"):
        read_pairs(p)
    with pytest.raises(DataDirError, match="not found"):
        read_pairs(tmp_path / "missing.tsv")


def test_write_pairs_round_trip(tmp_path):
    rows = [PairRow("u1", "/x/u1.wav", "/x/p.wav", "some text", "/x/gt.wav"), PairRow("u2", "/x/u2.wav", "/x/p.wav", "more")]
    write_pairs(tmp_path / "p.tsv", rows, ("utt_id", "wav", "prompt", "text", "ref_wav"))
    assert read_pairs(tmp_path / "p.tsv") == rows


# ---- named protocols -------------------------------------------------------------------------

from latentspeech.cli import main as cli_main  # noqa: E402
from latentspeech.eval.protocol import (  # noqa: E402
    PROTOCOLS,
    build_protocol,
    estimate_word_times,
    read_f5_list,
    read_word_alignments,
    resolve_device,
    split_prefix_words,
)

# word times of 1089-0000-0000 ("WORDS OF UTTERANCE 0 FROM 1089", 5 s): UTTERANCE ends after 3 s
# but its midpoint is inside the 3 s prefix, so the continuation is "0 FROM 1089" from 3.2 s on
CTM = """1089-0000-0000 1 0.20 0.70 WORDS
1089-0000-0000 1 1.00 0.30 OF
1089-0000-0000 1 2.50 0.70 UTTERANCE
1089-0000-0000 1 3.40 0.30 0
1089-0000-0000 1 3.80 0.40 FROM
1089-0000-0000 1 4.30 0.50 1089
"""
# the same format as the LibriSpeech alignments release: "<utt> ",W,,W," "end,end,..."" (empty = silence)
LIBRISPEECH_ALIGNED = '121-0000-0000 ",WORDS,OF,,UTTERANCE,0,FROM,121," "0.3,0.9,1.2,1.4,3.1,3.6,4.0,4.4,4.5"\n'


def _align_file(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_prefix_3s_scores_only_the_continuation(data_dir, tmp_path):
    """prefix-3s: the decode list's text is the transcript minus the prefix's words, and the
    ground-truth row's audio is the recording of exactly those words."""
    align = _align_file(tmp_path, "words.ctm", CTM)
    out = tmp_path / "test_clean" / "prefix-3s" / "protocol.tsv"
    others = ["1089-0000-0001", "1089-0000-0003", "121-0000-0002", "2300-0000-0000"]
    words = CTM + "".join(f"{u} 1 0.1 0.5 WORDS\n{u} 1 0.7 0.5 OF\n{u} 1 1.3 1.5 UTTERANCE\n{u} 1 3.5 0.3 {u[-1]}\n"
                          f"{u} 1 3.9 0.2 FROM\n{u} 1 4.1 0.2 {u.split('-')[0]}\n" for u in others) + LIBRISPEECH_ALIGNED
    rows = build_protocol("prefix-3s", data_dir, out, alignments=str(_align_file(tmp_path, "all.ctm", words)))
    by = {r.utt_id: r for r in rows}
    assert len(rows) == 6
    assert by["1089-0000-0000"].text == "0 FROM 1089"
    assert by["121-0000-0000"].text == "0 FROM 121"  # UTTERANCE: 1.4-3.1 s, midpoint 2.25 s
    assert all(r.text.split()[-2:] == ["FROM", r.utt_id.split("-")[0]] and "WORDS" not in r.text for r in rows)
    full, _ = sf.read(by["1089-0000-0000"].ref_wav, dtype="float32")
    gt, _ = sf.read(by["1089-0000-0000"].gt_wav, dtype="float32")
    np.testing.assert_allclose(gt, full[int(3.2 * SR):], atol=1 / 32768 + 1e-6)  # from the end of UTTERANCE
    assert sf.info(by["1089-0000-0000"].prompt).frames == 3 * SR
    header = out.read_text().splitlines()[0]
    assert header == "utt_id\tprompt\ttext\tref_wav\tgt_wav"
    assert [r.gt_wav for r in read_pairs(out, require_wav=False)] == [r.gt_wav for r in rows]
    # an alignment file must cover the utterances and agree with their transcripts
    with pytest.raises(DataDirError, match="no word alignment for '1089-0000-0001'"):
        build_protocol("prefix-3s", data_dir, None, alignments=str(align))
    bad = _align_file(tmp_path, "bad.ctm", words.replace("0.70 UTTERANCE", "0.70 UTTERANCES"))
    with pytest.raises(DataDirError, match="aligned words of '1089-0000-0000' differ from its transcript"):
        build_protocol("prefix-3s", data_dir, None, alignments=str(bad))


def test_prefix_3s_without_alignments_estimates_word_times(data_dir, tmp_path):
    rows = build_protocol("prefix", data_dir, tmp_path / "p.tsv")  # "prefix" is prefix-3s
    assert len(rows) == 6
    for r in rows:
        words = f"WORDS OF UTTERANCE {int(r.utt_id[-1])} FROM {r.utt_id.split('-')[0]}".split()
        assert 0 < len(r.text.split()) < len(words) and words[-len(r.text.split()):] == r.text.split()
    assert estimate_word_times(["A", "BB"], 3.0) == [(0.0, 1.2), (1.2, 3.0)]
    assert split_prefix_words(["A", "BB"], [(0.0, 1.2), (1.2, 3.0)], 1.0) == (["A"], ["BB"])
    assert split_prefix_words(["A", "BB"], [(0.0, 1.2), (1.2, 3.0)], 2.5) == (["A", "BB"], [])


def test_word_alignment_formats(tmp_path):
    ctm = read_word_alignments(_align_file(tmp_path, "a.ctm", ";; comment\n" + CTM))
    assert ctm["1089-0000-0000"][2] == ("UTTERANCE", 2.5, pytest.approx(3.2))
    ls = read_word_alignments(_align_file(tmp_path, "b.txt", LIBRISPEECH_ALIGNED))
    assert [w for w, _, _ in ls["121-0000-0000"]] == ["WORDS", "OF", "UTTERANCE", "0", "FROM", "121"]
    assert ls["121-0000-0000"][0] == ("WORDS", 0.3, 0.9) and ls["121-0000-0000"][2] == ("UTTERANCE", 1.4, 3.1)
    with pytest.raises(DataDirError, match=r"b2.txt:1: bad word alignment line"):
        read_word_alignments(_align_file(tmp_path, "b2.txt", '121-0000-0000 ",A,B," "0.3,0.9"\n'))
    with pytest.raises(DataDirError, match="not found"):
        read_word_alignments(tmp_path / "missing.ctm")


F5_LIST = (
    "1089-0000-0003\t8.0\tWords of utterance, three.\t1089-0000-0000\t5.0\tWords of utterance zero, from 1089!\n"
    "121-0000-0002\t9.5\tWords of utterance two.\t121-0000-0000\t4.5\tWords of utterance zero;  from 121.\n"
)


def test_f5_cross_sentence_list(data_dir, tmp_path):
    lst = _align_file(tmp_path, "librispeech_pc_test_clean_cross_sentence.lst", F5_LIST)
    assert read_f5_list(lst)[1]["gen_txt"] == "Words of utterance zero;  from 121."
    # from a LibriSpeech folder: <root>/<speaker>/<chapter>/<utt>.flac
    root = tmp_path / "LibriSpeech" / "test-clean"
    for utt in ("1089-0000-0003", "1089-0000-0000", "121-0000-0002", "121-0000-0000"):
        spk, chapter, _ = utt.split("-")
        (root / spk / chapter).mkdir(parents=True, exist_ok=True)
        (root / spk / chapter / f"{utt}.flac").write_bytes((data_dir / "wav" / f"{utt}.flac").read_bytes())
    out = tmp_path / "f5" / "protocol.tsv"
    rows = build_protocol("f5-cross-sentence", root, out, list_file=lst)
    assert [(r.utt_id, r.prompt.rsplit("/", 1)[1], r.ref_wav.rsplit("/", 1)[1]) for r in rows] == [
        ("1089-0000-0000", "1089-0000-0003.flac", "1089-0000-0000.flac"),
        ("121-0000-0000", "121-0000-0002.flac", "121-0000-0000.flac")]
    assert rows[1].text == "Words of utterance zero; from 121."  # case and punctuation kept, whitespace squeezed
    assert out.read_text().splitlines()[0] == "utt_id\tprompt\ttext\tref_wav"
    # the same list over a Kaldi data dir
    kaldi = build_protocol("f5-cross-sentence", data_dir, None, list_file=lst, max_utts=1, seed=0)
    assert len(kaldi) == 1 and kaldi[0].prompt.endswith(("1089-0000-0003.flac", "121-0000-0002.flac"))
    with pytest.raises(DataDirError, match="no audio for '1089-0000-0003'"):
        build_protocol("f5-cross-sentence", tmp_path / "f5", None, list_file=lst)
    with pytest.raises(DataDirError, match="expected 6 tab-separated fields"):
        read_f5_list(_align_file(tmp_path, "bad.lst", "a\tb\tc\n"))
    with pytest.raises(ConfigError, match="needs its list file"):
        build_protocol("f5-cross-sentence", root, None)
    with pytest.raises(ConfigError, match="unknown protocol 'prefix-5s'"):
        build_protocol("prefix-5s", data_dir, None)
    assert set(PROTOCOLS) == {"ref-utt", "prefix-3s", "f5-cross-sentence"}


def test_protocol_cli_and_device(data_dir, tmp_path, capsys):
    align = _align_file(tmp_path, "a.ctm", CTM)
    out = tmp_path / "d" / "prefix-3s" / "protocol.tsv"
    assert cli_main(["eval", "protocol", "--data-dir", str(data_dir), "--out", str(out), "--protocol", "prefix-3s",
                     "--alignments", str(align), "--max-utts", "6"]) == 1  # the CTM lacks the other utterances
    assert "no word alignment" in capsys.readouterr().err
    assert cli_main(["eval", "protocol", "--data-dir", str(data_dir), "--out", str(out), "--protocol", "prefix-3s"]) == 0
    assert "6 utterances (prefix-3s, seed 0, continuation text by estimated word times)" in capsys.readouterr().out
    assert resolve_device("auto") == ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") and resolve_device("cuda:1") == "cuda:1"


def _recipe_util(name):
    import importlib
    import sys
    from pathlib import Path

    utils = str(Path(__file__).resolve().parents[1] / "recipes" / "utils")
    sys.path.insert(0, utils)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(utils)


def test_decode_list_device(tmp_path, monkeypatch, capsys):
    """Stage 7's decode jobs run on the chosen device; auto spreads local jobs over the visible GPUs."""
    import torch

    decode_list = _recipe_util("decode_list")
    assert decode_list.pick_device("cuda:1", job=3) == "cuda:1" and decode_list.pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [decode_list.pick_device("auto", j) for j in (1, 2, 5, 6)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert decode_list.pick_device("auto") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert decode_list.pick_device("auto", 3) == "cpu"
    seen = {}

    class FakeTTS:
        @staticmethod
        def from_pretrained(name, device=None):
            seen["device"] = device
            raise DataDirError("stop here")

    import latentspeech.api

    monkeypatch.setattr(latentspeech.api, "TTS", FakeTTS)
    lst = tmp_path / "list"
    lst.write_text("utt_id\tprompt\ttext\nu1\tp.wav\thello\n")
    before = torch.get_num_threads()
    try:
        assert decode_list.main(["--device", "cpu:0", "--model", "m", str(lst), str(tmp_path / "wav")]) == 1
    finally:
        torch.set_num_threads(before)
    assert seen["device"] == "cpu:0" and "decode_list: device cpu:0" in capsys.readouterr().out


def test_ground_truth_pairs_of_prefix_3s_use_the_continuation(data_dir, tmp_path):
    make_pairs = _recipe_util("make_pairs")
    out = tmp_path / "prefix-3s" / "protocol.tsv"
    rows = build_protocol("prefix-3s", data_dir, out)
    assert make_pairs.make_pairs(out, None, tmp_path / "gt.tsv", ground_truth=True) == len(rows)
    pairs = read_pairs(tmp_path / "gt.tsv")
    assert [p.wav for p in pairs] == [r.gt_wav for r in rows] and all("_from" in p.wav for p in pairs)
    assert [p.ref_wav for p in pairs] == [r.ref_wav for r in rows]
    assert [p.text for p in pairs] == [r.text for r in rows]


def test_prefix_3s_on_a_set_of_short_utterances(data_dir, tmp_path):
    """With targets allowed below 3 s (as in small smoke sets), prefix-3s keeps only those that outlast the prefix."""
    rows = build_protocol("prefix-3s", data_dir, None, min_seconds=0.5, max_seconds=30, max_utts=8)
    assert "1089-0000-0002" not in {r.utt_id for r in rows}  # 3.0 s: nothing after the prefix
    assert len(rows) == 7 and all(r.text for r in rows)  # the other 7, 4.5-12 s
    with pytest.raises(DataDirError, match="longer than the 5 s prefix"):
        build_protocol("prefix-3s", data_dir, None, min_seconds=0.5, max_seconds=5.2, prefix_seconds=5.0)
    with pytest.raises(ConfigError, match=r"prefix_seconds must be in \(0, max_seconds\)"):
        build_protocol("prefix-3s", data_dir, None, prefix_seconds=10.0)


def test_prefix_3s_skips_a_continuation_of_punctuation_only(data_dir, tmp_path):
    """A transcript whose words all fall in the prefix but for a closing quote has nothing to say after it."""
    text = data_dir / "text"
    lines = text.read_text().splitlines()
    lines[0] = lines[0].split()[0] + ' WORDS "'  # two tokens over the utterance: the quote's midpoint is past 3 s
    text.write_text("\n".join(lines) + "\n")
    rows = build_protocol("prefix-3s", data_dir, tmp_path / "p.tsv")
    assert rows and lines[0].split()[0] not in {r.utt_id for r in rows}
