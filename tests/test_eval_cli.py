"""`latentspeech eval` end to end: a 3-row pairs file scored with the network cut off
(`unshare -n`), the HTML report opened in headless Chromium, side-by-side reports, errors."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from latentspeech.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--allow-file-access-from-files"]


def _offline_prefix() -> list[str] | None:
    """A command prefix that runs its command in a fresh network namespace, or None."""
    if not shutil.which("unshare"):
        return None
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run(prefix + ["true"], capture_output=True).returncode == 0:
            return prefix
    return None


def _write_pairs(path: Path, testdata: Path, rows) -> Path:
    lines = ["utt_id\twav\tprompt\ttext\tref_wav"]
    prompt = testdata / "wav/librivox/sense_and_sensibility_01_austen_64kb-0930.wav"
    for utt, rel, text, with_ref in rows:
        lines.append(f"{utt}\t{testdata / rel}\t{prompt}\t{text}\t{testdata / rel if with_ref else ''}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, testdata_dir):
    """Run the CLI once (3 rows) with the network cut off when the system allows it."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("resemblyzer")
    tmp = tmp_path_factory.mktemp("eval_cli")
    pairs = _write_pairs(tmp / "pairs.tsv", testdata_dir, [
        ("cards-001", "wav/cards/001.wav", "ten of clubs", True),
        ("goforward", "wav/goforward/goforward.wav", "go forward ten meters", False),
        ("cards-003", "wav/cards/003.wav", "seven of hearts", True),  # audio says "clubs": 1 error
    ])
    prefix = _offline_prefix()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["OMP_NUM_THREADS"] = "2"
    cmd = (prefix or []) + [sys.executable, "-m", "latentspeech", "eval", "--pairs", str(pairs),
                            "--out", str(tmp / "result.json"), "--report", str(tmp / "report"), "--system", "truth"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return {"proc": proc, "dir": tmp, "offline": prefix is not None}


def test_cli_scores_three_rows(offline_run):
    proc = offline_run["proc"]
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"system\s+n\s+WER %\s+CER %\s+SIM\s+SIM-GT", proc.stdout)
    assert re.search(r"truth\s+3\s+10\.00", proc.stdout), proc.stdout
    res = json.loads((offline_run["dir"] / "result.json").read_text())
    agg = res["aggregate"]
    assert agg["n"] == 3 and agg["ref_words"] == 10 and agg["substitutions"] == 1
    assert agg["wer"] == pytest.approx(0.1)
    assert 0.0 < agg["sim"] < 1.0 and agg["sim_gt"] == pytest.approx(1.0, abs=1e-4)  # ref_wav == wav
    by_id = {u["utt_id"]: u for u in res["utterances"]}
    assert by_id["goforward"]["wer"] == 0.0 and by_id["goforward"]["sim_gt"] is None
    assert by_id["cards-003"]["hyp_norm"] == "seven of clubs" and by_id["cards-003"]["wer"] == pytest.approx(1 / 3)
    assert res["asr"] == "whisper-tiny.en" and res["sim_model"] == "resemblyzer"
    assert by_id["goforward"]["duration"] == pytest.approx(2.786, abs=0.01)


def test_cli_runs_offline(offline_run):
    if not offline_run["offline"]:
        pytest.skip("unshare -n is not permitted here, so the run could not cut the network")
    assert offline_run["proc"].returncode == 0, offline_run["proc"].stderr
    # the namespace really had no network
    probe = subprocess.run(_offline_prefix() + [sys.executable, "-c",
                           "import socket; socket.create_connection(('1.1.1.1', 443), timeout=2)"], capture_output=True)
    assert probe.returncode != 0


def _open_in_chromium(page: Path) -> str:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test installs it via tools/install_system_packages.sh)")
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _media_states(dom: str) -> tuple[dict, list[str], list[str]]:
    status = re.search(r'id="media-status"([^>]*)>', dom)
    assert status, "no media status element in the dumped DOM"
    attrs = dict(re.findall(r'data-(\w+)="(\d+)"', status.group(1)))
    audio = re.findall(r"<audio[^>]*>", dom)
    imgs = re.findall(r'<img[^>]*class="mel"[^>]*>', dom)
    return attrs, audio, imgs


def test_html_report_loads_in_chromium(offline_run):
    page = offline_run["dir"] / "report" / "index.html"
    assert page.is_file()
    html = page.read_text()
    # worst first: cards-003 (WER 33 %) is the first row of the utterance table
    first_row = re.search(r'<table class="utts">.*?</tr><tr[^>]*><td class="num">1</td><td>([^<]+)</td>', html, re.S)
    assert first_row and first_row.group(1) == "cards-003"
    attrs, audio, imgs = _media_states(_open_in_chromium(page))
    assert len(audio) == 8 and len(imgs) == 8  # prompt + output per row, ground truth for 2 rows
    assert attrs == {"loaded": "16", "failed": "0", "total": "16"}, attrs
    assert all('data-state="loaded"' in tag for tag in audio + imgs)


def test_side_by_side_report(offline_run, tmp_path, capsys):
    res = json.loads((offline_run["dir"] / "result.json").read_text())
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(res))
    other = dict(res, system="other")
    other["aggregate"] = dict(res["aggregate"], wer=0.5)
    other["utterances"] = [dict(u, wer=1.0 if u["utt_id"] == "goforward" else u["wer"]) for u in res["utterances"]]
    b.write_text(json.dumps(other))
    assert main(["eval", "report", "--results", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"truth\s+3\s+10\.00", out) and re.search(r"other\s+3\s+50\.00", out)
    page = tmp_path / "cmp" / "index.html"
    html = page.read_text()
    assert 'id="side-by-side"' in html and "<th>truth</th><th>other</th>" in html
    side = html.split('id="side-by-side"')[1].split("</table>")[0]
    assert side.index("goforward") < side.index("cards-001")  # worst in any system first
    attrs, audio, imgs = _media_states(_open_in_chromium(page))
    assert attrs["failed"] == "0" and attrs["loaded"] == attrs["total"] and int(attrs["total"]) == len(audio) + len(imgs) > 12


def test_report_without_matplotlib_writes_png(tmp_path, testdata_dir, monkeypatch):
    from latentspeech.audio import load_audio
    from latentspeech.eval.report import mel_image

    wav = load_audio(testdata_dir / "wav/cards/001.wav", 16000)
    p = mel_image(wav, 16000, tmp_path / "m.png", use_matplotlib=False)
    data = p.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import struct

    w, h = struct.unpack(">II", data[16:24])
    assert h == 160 and 60 < w < 80  # 80 mels x 2, 64 frames/s x 1.1 s


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "--pairs", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: pairs file not found") and "\n" not in err
    assert main(["eval"]) == 1
    assert "needs --pairs" in capsys.readouterr().err
    assert main(["eval", "report", "--results", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r")]) == 1
    assert "result file not found" in capsys.readouterr().err
    (tmp_path / "p.tsv").write_text("utt_id\twav\tprompt\ttext\nu\t/x.wav\t/p.wav\thi\n")
    assert main(["eval", "--pairs", str(tmp_path / "p.tsv"), "--out", str(tmp_path / "r.json"), "--asr", "nope"]) == 1
    assert "unknown ASR 'nope'" in capsys.readouterr().err


def test_eval_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert "--pairs" in out and "report" in out and "protocol" in out


def test_protocol_then_eval_with_wav_dir(testdata_dir, tmp_path, capsys):
    """`eval protocol` writes a decode list; a 'perfect TTS' copies the ground truth into a wav
    dir; `eval --pairs LIST --wav-dir DIR` scores it (SIM skipped to keep the test short)."""
    pytest.importorskip("faster_whisper")
    decode = tmp_path / "ref_utt.tsv"
    assert main(["eval", "protocol", "--data-dir", str(testdata_dir), "--out", str(decode), "--mode", "ref-utt",
                 "--min-seconds", "1.5", "--max-seconds", "3.0", "--seed", "0"]) == 0
    assert "4 utterances" in capsys.readouterr().out  # cards 002-004 + librivox-0880 (goforward: no 2nd utt)
    lines = decode.read_text().splitlines()
    assert lines[0] == "utt_id\tprompt\ttext\tref_wav" and len(lines) == 5
    wav_dir = tmp_path / "decoded"
    wav_dir.mkdir()
    for line in lines[1:]:
        utt, _, _, ref = line.split("\t")
        shutil.copyfile(ref, wav_dir / f"{utt}.wav")
    out = tmp_path / "r.json"
    assert main(["eval", "--pairs", str(decode), "--wav-dir", str(wav_dir), "--out", str(out), "--sim", "none",
                 "--system", "perfect"]) == 0
    res = json.loads(out.read_text())
    assert res["aggregate"]["n"] == 4 and res["aggregate"]["sim"] is None
    assert {u["utt_id"] for u in res["utterances"]} == {"cards-002", "cards-003", "cards-004", "librivox-0880"}
    # the same floor errors as the full run: four->for, clubs->clothes/cloves, ill disposed->old sposed
    assert res["aggregate"]["ref_words"] == 4 + 3 + 2 + 8 and 3 <= res["aggregate"]["substitutions"] <= 4
    # without --wav-dir a decode list is not a pairs file
    assert main(["eval", "--pairs", str(decode), "--out", str(out)]) == 1
    assert "header lacks column(s) wav" in capsys.readouterr().err
