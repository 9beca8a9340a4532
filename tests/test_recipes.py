"""Recipe framework: parse_options.sh, the job runners, the LibriLight data stage on a fake corpus,
stage idempotency (completion markers), and the stage-7..9 helpers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from latentspeech.data.kaldi import DataDir, validate, write_table
from latentspeech.data.librilight import hold_out_speakers, prepare_libriheavy, prepare_librispeech, subsets_up_to
from latentspeech.errors import DataDirError

REPO = Path(__file__).resolve().parent.parent
UTILS = REPO / "recipes" / "utils"
LIBRILIGHT = REPO / "egs" / "librilight" / "tts1"
DEMO = REPO / "egs" / "demo" / "tts1"
SR = 16000


def _env(tmp_path: Path | None = None, extra_path: str | None = None) -> dict:
    env = dict(os.environ)
    path = f"{Path(sys.executable).parent}:{UTILS}:{env.get('PATH', '')}"
    env["PATH"] = f"{extra_path}:{path}" if extra_path else path
    if tmp_path is not None:
        env["TMPDIR"] = str(tmp_path)
    env.pop("SLURM_JOB_ID", None)
    return env


def sh(cmd: str | list[str], cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    args = ["bash", "-c", cmd] if isinstance(cmd, str) else cmd
    return subprocess.run(args, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout)


# --- parse_options.sh -------------------------------------------------------------------------

OPTS_SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
stage=0
use_gpu=true
data_dir=data
help_message="Usage: opts.sh [--stage N] [--use-gpu true|false] [--data-dir DIR] <args>"
. {utils}/parse_options.sh
echo "stage=$stage use_gpu=$use_gpu data_dir=$data_dir rest=$*"
"""


@pytest.fixture
def opts_script(tmp_path):
    p = tmp_path / "opts.sh"
    p.write_text(OPTS_SCRIPT.format(utils=UTILS))
    p.chmod(0o755)
    return p


def test_parse_options_sets_variables(opts_script, tmp_path):
    res = sh([str(opts_script), "--stage", "3", "--data-dir=/x y", "--use-gpu", "false", "a", "--b"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "stage=3 use_gpu=false data_dir=/x y rest=a --b"


def test_parse_options_config_file_and_order(opts_script, tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("stage=7\ndata_dir=from_conf\n")
    res = sh([str(opts_script), "--config", str(conf), "--stage", "9"], tmp_path)
    assert res.stdout.strip() == "stage=9 use_gpu=true data_dir=from_conf rest="


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no-such-option", "1"], "unknown option --no-such-option"),
        (["--use-gpu", "yes"], "option --use-gpu takes true or false, got 'yes'"),
        (["--stage"], "option --stage needs a value"),
        (["--config", "/nonexistent.conf"], "config file not found"),
    ],
)
def test_parse_options_rejects(opts_script, tmp_path, args, message):
    res = sh([str(opts_script), *args], tmp_path)
    assert res.returncode != 0 and message in res.stderr and "stage=" not in res.stdout


def test_parse_options_help(opts_script, tmp_path):
    res = sh([str(opts_script), "--stage", "2", "--help"], tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("Usage: opts.sh")


@pytest.mark.parametrize("recipe", [LIBRILIGHT, DEMO], ids=["librilight", "demo"])
def test_recipe_rejects_unknown_option(recipe, tmp_path):
    if not (recipe / "run.sh").is_file():
        pytest.skip(f"{recipe}/run.sh not written yet")
    res = sh(["./run.sh", "--no-such-option", "1"], recipe, env=_env(tmp_path))
    assert res.returncode != 0
    assert "unknown option --no-such-option" in res.stderr
    res = sh(["./run.sh", "--help"], recipe, env=_env(tmp_path))
    assert res.returncode == 0 and "--stage" in res.stdout


# --- job runners ------------------------------------------------------------------------------


def test_run_sh_jobs_logs_and_pipes(tmp_path):
    res = sh([str(UTILS / "run.sh"), "JOB=1:3", "log/echo.JOB.log", "echo", "job", "JOB", "&&", "echo", "job", "JOB",
              "two words", "|", "tr", "a-z", "A-Z"], tmp_path)
    assert res.returncode == 0, res.stderr
    for i in (1, 2, 3):
        lines = (tmp_path / f"log/echo.{i}.log").read_text().splitlines()
        assert lines[0] == f'# echo job {i} && echo job {i} "two words" | tr a-z A-Z'
        assert f"job {i}" in lines and f"JOB {i} TWO WORDS" in lines
        assert lines[-1].startswith("# Ended (code 0)")


# Each job announces itself, then waits (at most ~20 s) until three jobs have announced themselves and
# prints how many it saw: 3 only if the jobs run side by side.
_MEET = """touch "started.$1"
for _ in $(seq 200); do [ "$(ls started.* | wc -l)" -ge 3 ] && break; sleep 0.1; done
echo "saw $(ls started.* | wc -l)"
"""

# A job that fails if another job is inside it at the same time (mkdir is atomic).
_ALONE = """mkdir inside || { echo "another job is running"; exit 1; }
sleep 0.2
rmdir inside
"""


def test_run_sh_runs_jobs_in_parallel(tmp_path):
    (tmp_path / "meet.sh").write_text(_MEET)
    res = sh([str(UTILS / "run.sh"), "JOB=1:3", "log/meet.JOB.log", "bash", "meet.sh", "JOB"], tmp_path)
    assert res.returncode == 0, res.stderr
    for i in (1, 2, 3):
        assert "saw 3" in (tmp_path / f"log/meet.{i}.log").read_text().splitlines()


def test_run_sh_fails_when_one_job_fails(tmp_path):
    res = sh([str(UTILS / "run.sh"), "JOB=1:4", "log/t.JOB.log", "test", "JOB", "-ne", "3"], tmp_path)
    assert res.returncode == 1
    assert "1 / 4 failed" in res.stderr and "log/t.3.log" in res.stderr
    assert (tmp_path / "log/t.3.log").read_text().splitlines()[-1].startswith("# Ended (code 1)")
    assert (tmp_path / "log/t.4.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")


def test_run_sh_max_jobs_and_single_job(tmp_path):
    (tmp_path / "alone.sh").write_text(_ALONE)
    res = sh([str(UTILS / "run.sh"), "--max-jobs-run", "1", "JOB=1:3", "log/s.JOB.log", "bash", "alone.sh"], tmp_path)
    assert res.returncode == 0, res.stderr  # one at a time: no job ever finds another inside
    for i in (1, 2, 3):
        assert (tmp_path / f"log/s.{i}.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")
    res = sh([str(UTILS / "run.sh"), "--gpu", "1", "log/one.log", "echo", "hi"], tmp_path)
    assert res.returncode == 0 and "hi" in (tmp_path / "log/one.log").read_text()
    res = sh([str(UTILS / "run.sh"), "JOB=1:2", "log/same.log", "true"], tmp_path)
    assert res.returncode != 0 and "must contain JOB" in res.stderr


FAKE_SBATCH = """#!/usr/bin/env bash
# fake sbatch: records its arguments and runs the array tasks one after another
array=""; script=""; out=""
for a in "$@"; do case "$a" in --array=*) array=${a#--array=};; --output=*) out=${a#--output=};; --*) ;; *) script=$a;; esac; done
echo "$*" >> "$FAKE_SBATCH_LOG"
array=${array%%\\%*}; rc=0
for ((i=${array%-*}; i<=${array#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i bash "$script" > "${out//%a/$i}" 2>&1 || rc=1; done
echo 4242
exit $rc
"""


def test_slurm_sh_submits_an_array_job(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    env = _env(tmp_path, extra_path=str(bin_dir))
    env["FAKE_SBATCH_LOG"] = str(tmp_path / "sbatch.args")
    res = sh([str(UTILS / "slurm.sh"), "--gpu", "1", "--mem", "4G", "--time", "1:00:00", "JOB=1:3",
              "exp/log/x.JOB.log", "echo", "part", "JOB"], tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    args = (tmp_path / "sbatch.args").read_text()
    assert "--wait" in args and "--array=1-3" in args and "--gres=gpu:1" in args and "--mem=4G" in args
    assert "--time=1:00:00" in args
    for i in (1, 2, 3):
        log = (tmp_path / f"exp/log/x.{i}.log").read_text()
        assert f"part {i}" in log and "# Ended (code 0)" in log
    res = sh([str(UTILS / "slurm.sh"), "JOB=1:2", "exp/log/y.JOB.log", "test", "JOB", "=", "1"], tmp_path, env=env)
    assert res.returncode == 1 and "1 / 2 failed" in res.stderr


def test_slurm_sh_inside_an_allocation_uses_srun_steps(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\necho "$*" >> "$FAKE_SRUN_LOG"\n'
                                  'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (bin_dir / "srun").chmod(0o755)
    env = _env(tmp_path, extra_path=str(bin_dir))
    env.update(SLURM_JOB_ID="77", FAKE_SRUN_LOG=str(tmp_path / "srun.args"))
    res = sh([str(UTILS / "slurm.sh"), "--mem", "2G", "JOB=1:2", "log/s.JOB.log", "echo", "step", "JOB"], tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    steps = [line for line in (tmp_path / "srun.args").read_text().splitlines() if line.startswith("--")]
    assert steps == ["--ntasks=1 --nodes=1 --exclusive --mem=2G bash -c mkdir -p log"] * 2
    assert "step 2" in (tmp_path / "log/s.2.log").read_text()


def test_slurm_sh_without_slurm_fails_clearly(tmp_path):
    env = _env(tmp_path)
    env["PATH"] = "/usr/bin:/bin"
    res = sh([str(UTILS / "slurm.sh"), "log/x.log", "true"], tmp_path, env=env)
    assert res.returncode == 1 and "sbatch not found" in res.stderr


def test_split_data_sh(tmp_path):
    c = make_fake_corpus(tmp_path)
    prepare_librispeech(c["librispeech"] / "test-clean", tmp_path / "d")
    res = sh([str(UTILS / "split_data.sh"), str(tmp_path / "d"), "2"], tmp_path, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    parts = [DataDir.load(tmp_path / "d/split2" / str(i)) for i in (1, 2)]
    assert [p.speakers for p in parts] == [["1089"], ["121"]] and all(validate(p.path) == [] for p in parts)
    res = sh([str(UTILS / "split_data.sh"), "--per-utt", str(tmp_path / "d"), "4"], tmp_path, env=_env(tmp_path))
    assert res.returncode == 0 and sum(len(DataDir.load(tmp_path / f"d/split4utt/{i}")) for i in range(1, 5)) == 6
    res = sh([str(UTILS / "split_data.sh"), str(tmp_path / "d"), "3"], tmp_path, env=_env(tmp_path))
    assert res.returncode == 1 and "cannot split 2 speakers into 3 parts" in res.stderr


# --- LibriLight / Libriheavy / LibriSpeech on a fake corpus -----------------------------------


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_fake_corpus(root: Path) -> dict[str, Path]:
    """LibriLight small (3 speakers x 1 recording of 24 s), its Libriheavy manifest, LibriSpeech test-clean."""
    ll = root / "librilight"
    cuts = []
    for k, spk in enumerate(("100", "1001", "23")):
        book = f"book_{spk}_64kb_mp3"
        rec_id = f"small/{spk}/{book}/chapter_{k:02d}_64kb"
        flac = ll / f"{rec_id}.flac"
        flac.parent.mkdir(parents=True)
        sf.write(flac, _tone(24.0, 150 + 50 * k), SR)
        (flac.with_suffix(".json")).write_text("{}")
        for n, (start, dur) in enumerate([(0.5, 1.0), (2.0, 3.0), (6.0, 4.5), (11.0, 2.5), (0.0, 22.0)]):
            cuts.append({
                "id": f"{rec_id}_{n}", "start": start, "duration": dur, "channel": 0,
                "supervisions": [{"id": f"{rec_id}_{n}", "recording_id": rec_id, "start": 0, "duration": dur,
                                  "channel": 0, "language": "English", "speaker": spk,
                                  "custom": {"texts": [f"Speaker {spk}, line {n}: \"hello\"  there.",
                                                       f"SPEAKER {spk} LINE {n} HELLO THERE"]}}],
                "recording": {"id": rec_id, "sources": [{"type": "file", "channels": [0],
                                                         "source": f"download/librilight/{rec_id}.flac"}],
                              "sampling_rate": SR, "num_samples": 24 * SR, "duration": 24.0, "channel_ids": [0]},
                "type": "MonoCut",
            })
    heavy = root / "libriheavy"
    heavy.mkdir()
    with gzip.open(heavy / "libriheavy_cuts_small.jsonl.gz", "wt", encoding="utf-8") as f:
        for c in cuts:
            f.write(json.dumps(c) + "\n")
    ls = root / "LibriSpeech"
    (ls / "test-clean").mkdir(parents=True)
    (ls / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET |MINUTES| NAME\n1089 | M | test-clean | 8.0 | Someone\n"
                                     "121  | F | test-clean | 8.0 | Another\n")
    for spk, chap in (("1089", "134686"), ("121", "121726")):
        d = ls / "test-clean" / spk / chap
        d.mkdir(parents=True)
        lines = []
        for u in range(3):
            utt = f"{spk}-{chap}-{u:04d}"
            sf.write(d / f"{utt}.flac", _tone(4.0 + u, 300), SR)
            lines.append(f"{utt} HE HOPED THERE WOULD BE STEW FOR DINNER {u}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return {"librilight": ll, "libriheavy": heavy, "librispeech": ls}


def test_subsets_are_cumulative():
    assert subsets_up_to("small") == ["small"]
    assert subsets_up_to("large") == ["small", "medium", "large"]
    with pytest.raises(DataDirError, match="unknown LibriLight subset"):
        subsets_up_to("huge")


def test_prepare_libriheavy_segments_2_to_20_s(tmp_path):
    c = make_fake_corpus(tmp_path)
    stats = prepare_libriheavy([c["libriheavy"] / "libriheavy_cuts_small.jsonl.gz"], c["librilight"], tmp_path / "train")
    assert (stats.kept, stats.too_short, stats.too_long) == (9, 3, 3)
    assert validate(tmp_path / "train", require_text=True, check_audio=True) == []
    d = DataDir.load(tmp_path / "train")
    assert d.speakers == ["100", "1001", "23"]
    utt = "100-book_100_64kb_mp3-chapter_00_64kb-2"
    assert d.segments[utt].start == 6.0 and d.segments[utt].end == 10.5
    assert d.text[utt] == 'Speaker 100, line 2: "hello" there.'
    assert d.utt2dur[utt] == 4.5
    wav = d.load_utterance(utt, SR)
    assert len(wav) == int(4.5 * SR)
    upper = prepare_libriheavy([c["libriheavy"] / "libriheavy_cuts_small.jsonl.gz"], c["librilight"],
                               tmp_path / "upper", text_index=1, max_utts=2)
    assert upper.kept == 2 and DataDir.load(tmp_path / "upper").text[utt.replace("-2", "-1")].startswith("SPEAKER")


def test_prepare_librispeech_and_hold_out(tmp_path):
    c = make_fake_corpus(tmp_path)
    stats = prepare_librispeech(c["librispeech"] / "test-clean", tmp_path / "test_clean")
    assert stats.kept == 6 and len(stats.speakers) == 2
    assert validate(tmp_path / "test_clean", require_text=True, check_audio=True) == []
    d = DataDir.load(tmp_path / "test_clean")
    assert d.spk2gender == {"1089": "m", "121": "f"}
    assert d.utt2dur["121-121726-0002"] == 6.0
    prepare_libriheavy([c["libriheavy"] / "libriheavy_cuts_small.jsonl.gz"], c["librilight"], tmp_path / "all")
    n_train, n_dev = hold_out_speakers(tmp_path / "all", tmp_path / "tr", tmp_path / "dv", num_speakers=1,
                                       max_utts_per_speaker=2)
    assert (n_train, n_dev) == (6, 2)
    tr, dv = DataDir.load(tmp_path / "tr"), DataDir.load(tmp_path / "dv")
    assert not set(tr.speakers) & set(dv.speakers)


def _librilight_data_args(c: dict[str, Path], tmp_path: Path) -> list[str]:
    return ["--download", "false", "--librilight-dir", str(c["librilight"]), "--libriheavy-dir", str(c["libriheavy"]),
            "--librispeech-dir", str(c["librispeech"])]


def test_librilight_local_data_sh(tmp_path):
    c = make_fake_corpus(tmp_path)
    res = sh(["local/data.sh", *_librilight_data_args(c, tmp_path), "--datadir", str(tmp_path / "data"),
              "--dev-speakers", "1", "--dev-utts-per-speaker", "2"], LIBRILIGHT, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    for name, n in (("train", 6), ("dev", 2), ("test_clean", 6)):
        assert validate(tmp_path / "data" / name, require_text=True) == []
        assert len(DataDir.load(tmp_path / "data" / name)) == n
    assert not (LIBRILIGHT / "data").exists() or not (LIBRILIGHT / "data" / "train_all").exists()
    res = sh(["local/data.sh", "--download", "false", "--librilight-dir", str(tmp_path / "nowhere"),
              "--datadir", str(tmp_path / "data2")], LIBRILIGHT, env=_env(tmp_path))
    assert res.returncode == 1 and "no LibriLight 'small' audio" in res.stderr


def test_librilight_recipe_data_stages_are_idempotent(tmp_path):
    """run.sh stages 0-1 on the fake corpus; a rerun skips them by their markers; changed inputs redo."""
    c = make_fake_corpus(tmp_path)
    cmd = ["./run.sh", "--stage", "0", "--stop-stage", "1", *_librilight_data_args(c, tmp_path), "--dev-speakers", "1",
           "--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump"), "--expdir", str(tmp_path / "exp")]
    env = _env(tmp_path)
    res = sh([*cmd, "--max-dur", "4"], LIBRILIGHT, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    markers = sorted(str(p.relative_to(tmp_path / "exp")) for p in (tmp_path / "exp").rglob("*.done"))
    assert markers == ["data_prep/dev.done", "data_prep/test_clean.done", "data_prep/train.done", "local_data/.done"]
    train = DataDir.load(tmp_path / "dump/raw/train")
    assert len(train) == 4 and all(2 <= d <= 4 for d in train.utt2dur.values())
    assert len(DataDir.load(tmp_path / "dump/raw/test_clean")) == 6  # test sets are not duration-filtered
    assert "ok: 4 utterances" in (tmp_path / "exp/data_prep/log/validate_train.log").read_text()
    assert not (LIBRILIGHT / "data").exists() and not (LIBRILIGHT / "exp").exists()  # only the given dirs
    stamp = {m: (tmp_path / "exp" / m).stat().st_mtime_ns for m in markers}
    data_log = (tmp_path / "exp/local_data/log/data.log").stat().st_mtime_ns

    res = sh([*cmd, "--max-dur", "4"], LIBRILIGHT, env=env)  # all done: nothing reruns
    assert res.returncode == 0 and res.stdout.count("done before") == 4, res.stdout
    assert {m: (tmp_path / "exp" / m).stat().st_mtime_ns for m in markers} == stamp
    assert (tmp_path / "exp/local_data/log/data.log").stat().st_mtime_ns == data_log

    res = sh([*cmd, "--stage", "1", "--max-dur", "20"], LIBRILIGHT, env=env)  # a changed filter redoes stage 1
    assert res.returncode == 0 and res.stdout.count("inputs changed") == 2  # train and dev (test is unfiltered)
    assert len(DataDir.load(tmp_path / "dump/raw/train")) == 6


@pytest.mark.parametrize("stage, command", [(3, "codec train"), (5, "train latentlm"), (6, "codec train"),
                                            (7, "eval protocol"), (8, "eval")])
def test_later_stages_say_what_they_need(tmp_path, stage, command):
    """A stage whose command has not landed fails with one clear line and runs nothing.

    Runs from a bare recipe dir (no path.sh) with a `latentspeech` on PATH that knows no command."""
    stub = tmp_path / "bin" / "latentspeech"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\necho 'latentspeech: error: invalid choice' >&2\nexit 2\n")
    stub.chmod(0o755)
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    res = sh([str(REPO / "recipes/tts.sh"), "--stage", str(stage), "--stop-stage", str(stage)], recipe,
             env=_env(tmp_path, extra_path=str(stub.parent)))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == f"stage {stage}: needs `latentspeech {command}` (not available yet)"
    assert not (recipe / "exp").exists()


def test_stage_without_its_model_says_which(tmp_path):
    dirs = ["--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump"), "--expdir", str(tmp_path / "exp")]
    res = sh([str(REPO / "recipes/tts.sh"), "--stage", "4", "--stop-stage", "4", *dirs], LIBRILIGHT, env=_env(tmp_path))
    assert res.returncode == 1
    assert "stage 4" in res.stderr and ("no model in" in res.stderr or "needs `latentspeech codec extract`" in res.stderr)


# --- stage 7-9 helpers --------------------------------------------------------------------------


def test_pairs_summary_and_packaging(tmp_path):
    sys.path.insert(0, str(UTILS))
    try:
        import make_pairs
        import package_models
        import summarize_results
    finally:
        sys.path.remove(str(UTILS))
    c = make_fake_corpus(tmp_path)
    prepare_librispeech(c["librispeech"] / "test-clean", tmp_path / "test")
    dec = tmp_path / "dec"
    (dec / "prompts").mkdir(parents=True)
    sf.write(dec / "prompts" / "p1.wav", _tone(3.0, 200), SR)
    (dec / "protocol.tsv").write_text("utt_id\tprompt\ttext\tref_wav\n"
                                      f"u1\tprompts/p1.wav\tHello  there.\t{tmp_path / 'ref1.wav'}\n"
                                      "u2\t/abs/p2.wav\tBye.\t\n")
    with pytest.raises(SystemExit, match="not synthesized"):
        make_pairs.make_pairs(dec / "protocol.tsv", tmp_path / "wav", tmp_path / "p.tsv")
    (tmp_path / "wav").mkdir()
    for u in ("u1", "u2"):
        sf.write(tmp_path / "wav" / f"{u}.wav", _tone(1.0, 200), SR)
    assert make_pairs.make_pairs(dec / "protocol.tsv", tmp_path / "wav", tmp_path / "p.tsv") == 2
    lines = (tmp_path / "p.tsv").read_text().splitlines()
    assert lines[0] == "utt_id\twav\tprompt\ttext\tref_wav"
    assert lines[1] == f"u1\t{tmp_path / 'wav/u1.wav'}\t{dec / 'prompts/p1.wav'}\tHello there.\t{tmp_path / 'ref1.wav'}"
    # several wav folders (synthesis draws): each line once per folder, ids suffixed .draw<k>
    (tmp_path / "wav1").mkdir()
    sf.write(tmp_path / "wav1" / "u1.wav", _tone(1.0, 200), SR)
    with pytest.raises(SystemExit, match=r"1 utterance\(s\) not synthesized in .*wav1 \(e.g. u2\)"):
        make_pairs.make_pairs(dec / "protocol.tsv", [tmp_path / "wav", tmp_path / "wav1"], tmp_path / "p2.tsv")
    sf.write(tmp_path / "wav1" / "u2.wav", _tone(1.0, 200), SR)
    assert make_pairs.main([str(dec / "protocol.tsv"), str(tmp_path / "wav"), str(tmp_path / "wav1"), str(tmp_path / "p2.tsv")]) == 0
    rows = [r.split("\t") for r in (tmp_path / "p2.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["u1.draw0", "u2.draw0", "u1.draw1", "u2.draw1"]
    assert rows[2][1] == str(tmp_path / "wav1/u1.wav") and rows[2][2:] == rows[0][2:]
    with pytest.raises(SystemExit, match="no ref_wav"):
        make_pairs.make_pairs(dec / "protocol.tsv", None, tmp_path / "gt.tsv", ground_truth=True)

    (tmp_path / "a.json").write_text(json.dumps({"aggregate": {"n": 4, "wer": 0.125, "sim": 0.61, "rtf": 0.5}}))
    (tmp_path / "b.json").write_text(json.dumps({"aggregate": {"n": 4, "wer": 0.5, "sim": 0.4}}))
    table = summarize_results.summarize({"latentlm": tmp_path / "a.json", "valle": tmp_path / "b.json"})
    assert table.splitlines() == ["system\tn\twer\tsim\trtf", "latentlm\t4\t0.1250\t0.6100\t0.5000",
                                  "valle\t4\t0.5000\t0.4000\t-"]

    import torch

    from latentspeech.checkpoint import save_model_dir

    save_model_dir(tmp_path / "model", {"w": torch.zeros(2)}, "latentlm", {"dim": 8, "transformer": {"n_layers": 1}})
    save_model_dir(tmp_path / "model" / "codec", {"w": torch.zeros(1)}, "codec", {"dim": 4})
    (tmp_path / "model" / "last.ckpt").write_bytes(b"pickle")
    (tmp_path / "model" / "checkpoints").mkdir()
    (tmp_path / "model" / "checkpoints" / "x.json").write_text("{}")
    (tmp_path / "summary.tsv").write_text(table)
    assert package_models.main(["--out", str(tmp_path / "packed"), "--train-data", str(tmp_path / "test"),
                                "--results", f"test={tmp_path / 'summary.tsv'}", f"latentlm-x={tmp_path / 'model'}"]) == 0
    packed = tmp_path / "packed" / "latentlm-x"
    assert sorted(str(p.relative_to(packed)) for p in packed.rglob("*")) == [
        "README.md", "codec", "codec/config.yaml", "codec/model.safetensors", "config.yaml", "model.safetensors"]
    card = (packed / "README.md").read_text()
    assert "`latentlm`" in card and "| transformer.n_layers | 1 |" in card and "| latentlm | 4 | 0.1250 | 0.6100 |" in card
    assert "6 utterances, 2 speakers" in card
    # --dtype float16 halves floating-point tensors, nested model dirs included; integers stay
    save_model_dir(tmp_path / "model", {"w": torch.ones(2), "n": torch.arange(3)}, "latentlm", {"dim": 8})
    save_model_dir(tmp_path / "model" / "codec", {"w": torch.zeros(1)}, "codec", {"dim": 4})
    assert package_models.main(["--out", str(tmp_path / "half"), "--dtype", "float16", f"m={tmp_path / 'model'}"]) == 0
    from safetensors.torch import load_file

    half = load_file(str(tmp_path / "half" / "m" / "model.safetensors"))
    assert half["w"].dtype == torch.float16 and half["n"].dtype == torch.int64 and half["w"].tolist() == [1.0, 1.0]
    assert load_file(str(tmp_path / "half" / "m" / "codec" / "model.safetensors"))["w"].dtype == torch.float16
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "half" / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.slow
def test_demo_smoke_run(tmp_path, shared_dir):
    """`egs/demo/tts1/run.sh --smoke true` through every stage whose command exists (all of them, once landed),
    with the 2 x 2 of systems (pointer / attention x LatentLM / VALL-E).

    The corpus is built from the shared texts and voices (skipped without them, like the other shared-data tests)."""
    if not (DEMO / "local" / "data.sh").is_file():
        pytest.skip("egs/demo/tts1/local/data.sh not written yet")
    dirs = ["--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump"), "--expdir", str(tmp_path / "exp"),
            "--extra-train-sets", "real_train:2",  # off in the demo's defaults; the smoke run exercises it
            "--systems", "latentlm latentlm_attention valle valle_attention"]
    res = sh(["./run.sh", "--smoke", "true", *dirs], DEMO, env=_env(tmp_path), timeout=1800)
    out = res.stdout + res.stderr
    for marker in ("local_data/.done", "data_prep/train.done", "data_prep/dev.done", "phonemize/train.done"):
        assert (tmp_path / "exp" / marker).is_file(), out
    if res.returncode != 0:
        import re

        m = re.search(r"stage (\d+): needs `(latentspeech [^`]+)` \(not available yet\)", out)
        assert m and int(m.group(1)) >= 5, out
        pytest.skip(f"smoke run stopped at stage {m.group(1)}: {m.group(2)} has not landed yet")
    assert (tmp_path / "exp/decode/dev/ref-utt/summary.tsv").is_file()
    assert (tmp_path / "exp/packed/latentlm/model.safetensors").is_file()
    # stage 5 attached the phone recognizer that picks among candidates; the package carries it
    assert (tmp_path / "exp/packed/latentlm/recognizer/model.safetensors").is_file()
    # --extra-train-sets real_train:2: once in the aligner, two copies in each LM's training command
    real = f"--data {tmp_path / 'dump'}/raw/real_train"
    assert (tmp_path / "exp/aligner/log/align.log").read_text().splitlines()[0].count(real) == 1
    for lm in ("latentlm", "valle"):
        assert (tmp_path / f"exp/{lm}/log/train.log").read_text().splitlines()[0].count(real) == 2, lm
    assert (tmp_path / "dump/codes/real_train/durations").is_file()  # the codes share the latents' durations
    # every system was decoded and scored; the VALL-E of the demo config walks the LatentLM's pointer
    summary = (tmp_path / "exp/decode/dev/ref-utt/summary.tsv").read_text()
    for sys_name in ("latentlm", "latentlm_attention", "valle", "valle_attention"):
        assert sys_name in summary and (tmp_path / f"exp/packed/{sys_name}/model.safetensors").is_file(), sys_name
    import yaml

    alignment = {n: yaml.safe_load((tmp_path / f"exp/packed/{n}/config.yaml").read_text())["config"].get("alignment")
                 for n in ("latentlm", "latentlm_attention", "valle", "valle_attention")}
    assert alignment == {"latentlm": "pointer", "latentlm_attention": "attention", "valle": "pointer",
                         "valle_attention": "attention"}
    # the demo fine-tunes both codecs' decoders (harmonic source); the LMs and packages carry those codecs
    for lm, codec in (("latentlm", "codec_ft"), ("valle", "codec_rvq_ft")):
        assert f"--init-from {tmp_path / 'exp'}/{codec.replace('_ft', '')}/model" in (
            tmp_path / f"exp/{codec}/log/train.log").read_text().splitlines()[0]
        nested = yaml.safe_load((tmp_path / f"exp/packed/{lm}/codec/config.yaml").read_text())
        assert nested["config"]["decoder"]["source"] == "harmonic", lm
    res = sh(["./run.sh", "--smoke", "true", *dirs], DEMO, env=_env(tmp_path), timeout=300)
    assert res.returncode == 0 and "training" not in res.stdout  # everything is done: nothing retrains


STUB_LATENTSPEECH = """#!/usr/bin/env bash
# latentspeech with stand-ins for synthesis and scoring (the rest is the real command)
case " $* " in *" --help "*) case "$1" in synthesize|eval) echo "usage: stand-in"; exit 0 ;; esac ;; esac
case "$1" in
  synthesize)
    out=""; prompt=""; seed=""
    while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift;; --prompt) prompt=$2; shift;; --seed) seed=$2; shift;; esac; shift; done
    echo "synthesize $out seed $seed" >> "$STUB_LOG"; cp "$prompt" "$out" ;;
  eval)
    if [ "$2" = --pairs ]; then
      n=$(($(wc -l < "$3") - 1))
      printf '{"system": "x", "aggregate": {"n": %d, "wer": 0.25, "sim": 0.5}, "utterances": []}' "$n" > "$5"
      echo "eval $3" >> "$STUB_LOG"
    elif [ "$2" = report ]; then
      shift 2; while [ $# -gt 0 ]; do [ "$1" = --out ] && { mkdir -p "$2"; echo ok > "$2/index.html"; }; shift; done
    else exec "$REAL_LATENTSPEECH" "$@"; fi ;;
  *) exec "$REAL_LATENTSPEECH" "$@" ;;
esac
"""


def test_decode_eval_package_stages_with_stand_ins(tmp_path):
    """Stages 7-9 wiring (protocols, job splits, pairs, summary, report, packaging, markers) with a
    `latentspeech` whose synthesize/eval are stand-ins, so that no model is needed."""
    import shutil

    import torch

    from latentspeech.checkpoint import save_model_dir

    real = shutil.which("latentspeech", path=str(Path(sys.executable).parent))
    if real is None or sh(f"{real} eval protocol --help", tmp_path).returncode != 0:
        pytest.skip("`latentspeech eval protocol` is not available")
    c = make_fake_corpus(tmp_path)
    prepare_librispeech(c["librispeech"] / "test-clean", tmp_path / "dump/raw/test")
    save_model_dir(tmp_path / "exp/latentlm/model", {"w": torch.zeros(2)}, "latentlm", {"dim": 8})
    stub = tmp_path / "bin" / "latentspeech"
    stub.parent.mkdir()
    stub.write_text(STUB_LATENTSPEECH)
    stub.chmod(0o755)
    env = _env(tmp_path, extra_path=str(stub.parent))
    env.update(REAL_LATENTSPEECH=real, STUB_LOG=str(tmp_path / "stub.log"))
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    cmd = [str(REPO / "recipes/tts.sh"), "--stage", "7", "--stop-stage", "9", "--dumpdir", str(tmp_path / "dump"),
           "--expdir", str(tmp_path / "exp"), "--test-sets", "test", "--cross-sets", "test:test", "--cross-num-utts", "3",
           "--run-baseline", "false", "--nj", "3", "--train-set", "test", "--eval-min-dur", "4", "--eval-max-dur", "5.5",
           "--pretrained-codec", "codec-demo", "--decode-engine", "cli", "--eval-protocols", "ref-utt"]
    res = sh(cmd, recipe, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    ref = tmp_path / "exp/decode/test/ref-utt"
    assert len((ref / "protocol.tsv").read_text().splitlines()) == 5  # header + the 4 s and 5 s utterances
    assert len(list((ref / "latentlm/wav").glob("*.wav"))) == 4
    assert len(list((ref / "latentlm/log").glob("decode.*.log"))) == 3
    assert (ref / "summary.tsv").read_text().splitlines() == [
        "system\tn\twer\tsim", "ground_truth\t4\t0.2500\t0.5000", "latentlm\t4\t0.2500\t0.5000"]
    assert (ref / "report/index.html").is_file()
    cross = tmp_path / "exp/decode/test_voices_test_text/cross"
    assert (cross / "summary.tsv").read_text().splitlines()[1:] == ["latentlm\t3\t0.2500\t0.5000"]
    card = (tmp_path / "exp/packed/latentlm/README.md").read_text()
    assert "Set `test/ref-utt`:" in card and "Set `test_voices_test_text/cross`:" in card
    calls = (tmp_path / "stub.log").read_text().splitlines()
    assert sum(c.startswith("synthesize") for c in calls) == 7 and sum(c.startswith("eval") for c in calls) == 3

    res = sh(cmd, recipe, env=env)  # done: nothing is synthesized or scored again
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "stub.log").read_text().splitlines() == calls

    # --synth-draws 2: only the second draw is synthesized (seed 1, into wav.draw1/), and both are scored together
    res = sh(cmd + ["--synth-draws", "2"], recipe, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    more = (tmp_path / "stub.log").read_text().splitlines()[len(calls):]
    synth = [c for c in more if c.startswith("synthesize")]
    assert len(synth) == 7 and all("/latentlm/wav.draw1/" in c and c.endswith(" seed 1") for c in synth), more
    assert sum(c.startswith("eval") for c in more) == 2  # the two units' latentlm rows; ground truth unchanged
    pairs = (ref / "latentlm/pairs.tsv").read_text().splitlines()[1:]
    ids = [p.split("\t")[0] for p in pairs]
    assert len(ids) == 8 and len(set(ids)) == 8 and sum(i.endswith(".draw1") for i in ids) == 4
    assert sum("/latentlm/wav.draw1/" in p for p in pairs) == 4
    res = sh(cmd + ["--synth-draws", "0"], recipe, env=env)
    assert res.returncode != 0 and "--synth-draws must be a positive number, got '0'" in res.stderr

    # each protocol decodes into its own folder: adding prefix-3s leaves the ref-utt decodes as they are
    before = {p: p.read_bytes() for p in ref.rglob("*") if p.is_file() and "log" not in p.parts}
    n = len((tmp_path / "stub.log").read_text().splitlines())
    res = sh([*cmd[:-1], "ref-utt prefix-3s", "--stop-stage", "8", "--synth-draws", "2"], recipe, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert {p: p.read_bytes() for p in before} == before
    prefix = tmp_path / "exp/decode/test/prefix-3s"
    rows = [line.split("\t") for line in (prefix / "protocol.tsv").read_text().splitlines()]
    assert rows[0] == ["utt_id", "prompt", "text", "ref_wav", "gt_wav"] and len(rows) == 5
    ref_rows = {r.split("\t")[0]: r.split("\t")[2] for r in (ref / "protocol.tsv").read_text().splitlines()[1:]}
    assert all(ref_rows[r[0]].endswith(" " + r[2]) for r in rows[1:])  # the continuation: the transcript's last words
    assert len(list((prefix / "latentlm/wav").glob("*.wav"))) == 4 and (prefix / "summary.tsv").is_file()
    new = (tmp_path / "stub.log").read_text().splitlines()[n:]
    assert all("/prefix-3s/" in c for c in new) and sum(c.startswith("synthesize") for c in new) == 8  # 2 draws
    res = sh([*cmd[:-1], "prefix-5s"], recipe, env=env)
    assert res.returncode != 0 and "unknown protocol 'prefix-5s'" in res.stderr


def test_decode_list_sets_the_threads_of_each_job(tmp_path):
    """Stage 7's jobs run side by side: decode_list.py gives torch --threads (default 1) before loading a
    model, as `latentspeech synthesize` does (two 2-thread jobs on 2 cores ran 50-100x slower)."""
    lst = tmp_path / "list"
    lst.write_text("utt_id\tprompt\ttext\nu1\tp.wav\thello\n")
    res = sh(["python3", str(UTILS / "decode_list.py"), "--threads", "-1", "--model", str(tmp_path / "none"),
              str(lst), str(tmp_path / "wav")], tmp_path, env=_env(tmp_path))
    assert res.returncode != 0 and "--threads must be >= 0, got -1" in res.stderr and "Traceback" not in res.stderr
    res = sh(["python3", str(UTILS / "decode_list.py"), "--model", str(tmp_path / "none"), str(lst), str(tmp_path / "wav")],
             tmp_path, env=_env(tmp_path))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error:") and "none" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    import torch

    before = torch.get_num_threads()
    sys.path.insert(0, str(UTILS))
    try:
        import decode_list

        # the threads are set, then the missing model fails with one line
        rc = decode_list.main(["--threads", "1", "--model", str(tmp_path / "none"), str(lst), str(tmp_path / "wav")])
        assert rc == 1 and torch.get_num_threads() == 1
    finally:
        sys.path.remove(str(UTILS))
        torch.set_num_threads(before)


def test_replace_codec_takes_a_decoder_only_fine_tune_and_refuses_another_encoder(tmp_path):
    """utils/replace_codec.py swaps an LM's nested codec for one that encodes alike (compared at the
    nested copy's float16 precision) and leaves it untouched otherwise."""
    import torch

    from latentspeech.models.codec import AudioCodec, CodecConfig, load_codec, save_codec
    from latentspeech.config import from_dict

    model = {"sample_rate": 16000, "n_fft": 64, "frame_hop": 16, "downsample": [2, 2], "latent_dim": 8,
             "encoder": {"dim": 16, "blocks": [1, 1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1, 1]}}
    torch.manual_seed(0)
    src = AudioCodec(from_dict(CodecConfig, model)).eval()
    lm = tmp_path / "lm"
    save_codec(src, lm / "codec", dtype=torch.float16)
    harmonic = {**model, "decoder": {**model["decoder"], "source": "harmonic"}}
    ft = AudioCodec(from_dict(CodecConfig, harmonic)).eval()
    ft.encoder.load_state_dict(src.encoder.state_dict())  # fp32 weights that round to the nested fp16 ones
    save_codec(ft, tmp_path / "ft")
    other = AudioCodec(from_dict(CodecConfig, harmonic)).eval()  # another encoder
    save_codec(other, tmp_path / "other")
    script = str(UTILS / "replace_codec.py")
    res = sh([sys.executable, script, str(lm), str(tmp_path / "other")], tmp_path, env=_env(tmp_path))
    assert res.returncode == 1 and "does not encode like" in res.stderr
    assert load_codec(lm / "codec").cfg.decoder.source == "none" and not (lm / "codec.new").exists()
    res = sh([sys.executable, script, str(lm), str(tmp_path / "ft")], tmp_path, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert load_codec(lm / "codec").cfg.decoder.source == "harmonic"


@pytest.mark.skipif(not __import__("shutil").which("sox"), reason="sox is needed")
def test_perturb_speed_makes_new_voices_with_scaled_durations(tmp_path):
    """utils/perturb_speed.py: one sped-up copy per factor, as new speakers, text carried, durations / f."""
    src = tmp_path / "src"
    (src / "wav").mkdir(parents=True)
    for utt in ("a-1", "b-1"):
        sf.write(src / "wav" / f"{utt}.wav", _tone(1.0, 200.0), SR, subtype="PCM_16")
    write_table(src / "wav.scp", {u: f"wav/{u}.wav" for u in ("a-1", "b-1")})
    write_table(src / "utt2spk", {"a-1": "a", "b-1": "b"})
    write_table(src / "spk2utt", {"a": "a-1", "b": "b-1"})
    write_table(src / "utt2dur", {"a-1": 1.0, "b-1": 1.0})
    write_table(src / "text", {"a-1": "one", "b-1": "two"})
    write_table(src / "spk2gender", {"a": "f", "b": "m"})
    script = [sys.executable, str(UTILS / "perturb_speed.py"), str(src), str(tmp_path / "sp"), "--factors", "0.8", "1.25"]
    res = sh(script, tmp_path, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    out = DataDir.load(tmp_path / "sp")
    assert validate(tmp_path / "sp", require_text=True, check_audio=True) == []
    assert sorted(out.utt2spk) == ["sp0.8-a-1", "sp0.8-b-1", "sp1.25-a-1", "sp1.25-b-1"]
    assert out.utt2spk["sp1.25-b-1"] == "sp1.25-b" and out.text["sp0.8-a-1"] == "one"
    wav, sr = sf.read(tmp_path / "sp" / "wav" / "sp1.25-a-1.wav")
    assert sr == SR and abs(len(wav) - SR / 1.25) < 0.01 * SR
    durs = (tmp_path / "sp" / "utt2dur").read_text().split()
    assert dict(zip(durs[::2], map(float, durs[1::2])))["sp0.8-b-1"] == 1.25
    assert (tmp_path / "sp" / "spk2gender").read_text() == "sp0.8-a f\nsp0.8-b m\nsp1.25-a f\nsp1.25-b m\n"
    res = sh(script[:-3] + ["--factors", "1"], tmp_path, env=_env(tmp_path))
    assert res.returncode == 2 and "not 1" in res.stderr
