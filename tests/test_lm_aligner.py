"""The MAS aligner: the DP finds the best monotonic path, silent tokens get no frames, training
recovers known durations, the durations file round-trips, and the CLI writes it next to the latents."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from latentspeech.data.lm_dataset import LMSource
from latentspeech.errors import DataDirError
from latentspeech.data.durations import frame_tokens, read_durations
from latentspeech.models.aligner import AlignerConfig, align_batch, monotonic_alignment
from latentspeech.text.vocab import silent_token_ids
from latentspeech.train.aligner import align_source, train_aligner
from latentspeech.text import PhoneVocab


def brute_force(score: np.ndarray) -> float:
    K, T = score.shape
    best = -np.inf
    for cuts in itertools.combinations(range(1, T), K - 1):  # frames where a new token starts
        d = np.diff([0, *cuts, T])
        best = max(best, score[np.repeat(np.arange(K), d), np.arange(T)].sum())
    return best


def test_monotonic_alignment_is_the_best_path():
    rng = np.random.default_rng(0)
    for K, T in [(1, 5), (3, 3), (3, 7), (4, 9)]:
        score = rng.normal(size=(K, T))
        path = monotonic_alignment(score)
        assert path[0] == 0 and path[-1] == K - 1 and set(np.diff(path)) <= {0, 1}
        assert np.isclose(score[path, np.arange(T)].sum(), brute_force(score))
    with pytest.raises(ValueError, match="cannot"):
        monotonic_alignment(np.zeros((4, 3)))


def test_silent_tokens_are_marks_and_boundaries():
    v = PhoneVocab()
    silent = {v.tokens[i] for i in silent_token_ids(v)}
    assert {"|", "ˈ", "ˌ", "<pad>", '"'} <= silent
    assert not {"a", "ɪ", ",", ".", "?", "<unk>"} & silent


class _Toy:
    """Toy corpus over a real vocab: each phone has its own latent, durations are random."""

    def __init__(self, n=24, dim=8, seed=0):
        v = PhoneVocab()
        rng = np.random.default_rng(seed)
        phones = [v.encode([t])[0] for t in ("a", "i", "u", "s", "m", "k")]
        means = {p: rng.normal(size=dim) * 2 for p in phones}
        bar = v.encode(["|"])[0]
        self.vocab, self.phones, self.latents, self.true = v, {}, {}, {}
        for k in range(n):
            ids = [int(x) for x in rng.choice(phones, size=5)]
            ids.insert(2, bar)  # a word boundary: no frames
            d = [0 if i == bar else int(rng.integers(1, 5)) for i in ids]
            z = np.concatenate([np.repeat(means[i][None], n_, 0) for i, n_ in zip(ids, d) if n_])
            u = f"u{k:02d}"
            self.phones[u], self.true[u] = ids, d
            self.latents[u] = (z + 0.1 * rng.normal(size=z.shape)).astype(np.float32)

    def source(self):
        return LMSource(latents=self.latents, phones=self.phones, utt2spk={u: "s" for u in self.phones}, name="toy")


def test_training_recovers_known_durations_and_files_round_trip(tmp_path):
    toy = _Toy()
    src = toy.source()
    aligner = train_aligner([src], toy.vocab, steps=150, batch_size=8, progress=False, log=None,
                            config=AlignerConfig(dim=32, conv_layers=1, transformer_layers=1))
    silent = set(silent_token_ids(toy.vocab))
    utts = sorted(toy.phones)
    with torch.no_grad():
        _, durs = align_batch(aligner, [toy.phones[u] for u in utts], [toy.latents[u] for u in utts], silent)
    right = sum(int((frame_tokens(d) == frame_tokens(toy.true[u])).sum()) for u, d in zip(utts, durs))
    total = sum(len(toy.latents[u]) for u in utts)
    assert right / total > 0.9, right / total  # frames given to the right phone (measured 1.0)
    for u, d in zip(utts, durs):
        assert d[2] == 0 and sum(d) == len(toy.latents[u]) and min(np.delete(d, 2)) >= 1
    path = tmp_path / "durations"
    counts = align_source(aligner, src, toy.vocab, path, progress=False)
    assert counts == {"aligned": len(utts), "skipped": 0} and not (tmp_path / "durations.tmp").exists()
    back = read_durations(path)
    assert [back[u] for u in utts] == [d.tolist() for d in durs]


def test_saved_aligner_loads_and_the_cli_aligns_with_it(tmp_path, write_lm_corpus):
    """`load_aligner` gives back the same durations; `latentspeech align --model DIR` writes them
    without training; a model dir of another phone inventory or kind is a one-line error."""
    import subprocess
    import sys

    from latentspeech.checkpoint import save_model_dir
    from latentspeech.errors import CheckpointError
    from latentspeech.models.aligner import load_aligner, save_aligner

    toy = _Toy(n=6)
    src = toy.source()
    aligner = train_aligner([src], toy.vocab, steps=20, batch_size=4, progress=False, log=None,
                            config=AlignerConfig(dim=16, conv_layers=1, transformer_layers=1))
    model = save_aligner(aligner, tmp_path / "exp" / "model", {"phone_vocab": toy.vocab.to_dict()})
    align_source(aligner, src, toy.vocab, tmp_path / "a", progress=False)
    align_source(load_aligner(model, toy.vocab), src, toy.vocab, tmp_path / "b", progress=False)
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text()
    other = dict(toy.vocab.to_dict(), checksum="0000")
    save_aligner(aligner, tmp_path / "other", {"phone_vocab": other})
    with pytest.raises(CheckpointError, match="another phone inventory"):
        load_aligner(tmp_path / "other", toy.vocab)
    save_model_dir(tmp_path / "codec", {"w": torch.zeros(1)}, "codec", {})
    with pytest.raises(CheckpointError, match="'codec' model, expected aligner"):
        load_aligner(tmp_path / "codec")
    res = subprocess.run([sys.executable, "-m", "latentspeech", "align", "--data", str(tmp_path / "d"), "--latents",
                          str(tmp_path / "z")], capture_output=True, text=True)
    assert res.returncode != 0 and "give --out EXP_DIR (train an aligner) or --model DIR" in res.stderr
    assert "Traceback" not in res.stderr

    # the CLI on a data dir + latent store: train (--out), then align again with that model (--model): same file
    data, store = write_lm_corpus(tmp_path, toy.vocab, toy.phones, toy.latents)
    cli = [sys.executable, "-m", "latentspeech", "align", "--data", str(data), "--latents", str(store), "--no-progress"]
    res = subprocess.run(cli + ["--out", str(tmp_path / "exp2"), "--steps", "5"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    trained = (store / "durations").read_text()
    (store / "durations").unlink()
    res = subprocess.run(cli + ["--model", str(tmp_path / "exp2" / "model")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "saved aligner" not in res.stdout and (store / "durations").read_text() == trained
    assert len(trained.splitlines()) == len(toy.phones)


def test_read_durations_errors(tmp_path):
    with pytest.raises(DataDirError, match="latentspeech align"):
        read_durations(tmp_path / "durations")
    (tmp_path / "durations").write_text("u1 1 x 2\n")
    with pytest.raises(DataDirError, match="durations:1"):
        read_durations(tmp_path / "durations")
