"""LatentLM training data (prompts, bucketing, sharding) and the Lightning loop (export, resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentspeech.data.collate import collate_lm
from latentspeech.data.lm_dataset import BucketBatchSampler, LMDataset, LMSource, read_phones, read_utt2spk
from latentspeech.errors import DataDirError

D = 4


class FakeStore(dict):
    """Stand-in for LatentStore: utt → (F, D) array, plus ``frames``."""

    def frames(self, utt):
        return self[utt].shape[0]


def make_source(seed=0) -> LMSource:
    rng = np.random.default_rng(seed)
    store = FakeStore()
    utt2spk, phones = {}, {}
    # speaker A: 3 utterances, B: 2, C: 1 (a single-utterance speaker)
    for spk, n in (("A", 3), ("B", 2), ("C", 1)):
        for i in range(n):
            utt = f"{spk}-{i}"
            frames = 20 + 10 * i + (5 if spk == "B" else 0)
            store[utt] = (rng.standard_normal((frames, D)) * 2 + 3 + i * 100 + ord(spk) * 1000).astype(np.float32)
            utt2spk[utt] = spk
            phones[utt] = list(range(1, 6 + i))
    mean = np.full(D, 3.0, np.float32)
    std = np.full(D, 2.0, np.float32)
    return LMSource(store, phones, utt2spk, mean, std, name="fake")


def test_prompt_comes_from_another_utterance_of_the_speaker():
    ds = LMDataset([make_source()], frame_rate=25.0, prompt_seconds=(0.2, 0.4))
    assert len(ds) == 6 and ds.speakers() == 3
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ex = ds[i]
            utt = ex["utt_id"]
            spk, own = utt.split("-")
            # utterance identity is encoded in the offset i*100 + ord(spk)*1000 (after normalisation /2)
            src_off = round(float(np.median(ex["prompt"]) * 2) / 100) * 100
            tgt_off = round(float(np.median(ex["target"]) * 2) / 100) * 100
            assert src_off // 1000 == tgt_off // 1000, "prompt of another speaker"
            if spk == "C":
                assert src_off == tgt_off  # single utterance: cropped from itself
            else:
                assert src_off != tgt_off, f"{utt}: prompt from the utterance itself"
            assert 5 <= ex["prompt"].shape[0] <= 10
            assert ex["target"].shape[0] == ds.lengths[i]
    ds.set_epoch(0)
    a = ds[0]["prompt"]
    assert np.array_equal(a, ds[0]["prompt"])  # reproducible per (seed, epoch, index)


def test_latents_are_normalised_with_the_codec_stats():
    src = make_source()
    ds = LMDataset([src], frame_rate=25.0)
    raw = src.latents["A-0"]
    i = [u for _, u in ds.items].index("A-0")
    assert np.allclose(ds[i]["target"], (raw - 3.0) / 2.0)


def test_single_utterance_speakers_can_be_skipped():
    ds = LMDataset([make_source()], frame_rate=25.0, single_utt_prompt="skip")
    assert len(ds) == 5 and ds.skipped["single_utt"] == 1
    assert all(not u.startswith("C") for _, u in ds.items)
    ds[0]


def test_length_filter_and_guard_stats():
    ds = LMDataset([make_source()], frame_rate=25.0, max_frames=30)
    assert max(ds.lengths) <= 30 and ds.skipped["length"] == 2
    fpp = ds.frames_per_phone()
    assert fpp["max"] >= fpp["p99"] >= fpp["mean"] > 0


def test_durations_reach_the_batch_and_bad_ones_are_skipped():
    src = make_source()
    src.durations = {u: [len(src.latents[u]) - len(p) + 1] + [1] * (len(p) - 1) for u, p in src.phones.items()}
    src.durations["A-1"] = src.durations["A-1"][:-1]  # one token short: skipped
    src.durations["B-0"] = [x + 1 for x in src.durations["B-0"]]  # wrong sum: skipped
    del src.durations["B-1"]
    ds = LMDataset([src], frame_rate=25.0, prompt_seconds=(0.2, 0.4))
    assert ds.skipped["no_durations"] == 3 and len(ds) == 3
    batch = collate_lm([ds[i] for i in range(len(ds))])
    assert batch.durations.shape == batch.phones.shape
    assert batch.durations.sum(1).tolist() == batch.target_lens.tolist()


WB = 99  # the word-boundary id of the fake vocabulary


def make_lone_speaker_source(frames=250, max_word=12) -> LMSource:
    """One speaker, one long utterance (10 s at 25 Hz) with word boundaries (0 frames) between words
    of 1-3 sounding tokens, and each frame's value = its own index (so cuts can be checked)."""
    rng = np.random.default_rng(1)
    phones, durations, total = [], [], 0
    while total < frames:
        if phones:
            phones.append(WB)
            durations.append(0)
        for _ in range(int(rng.integers(1, 4))):
            d = min(int(rng.integers(1, max_word)), frames - total)  # the last token takes what is left
            phones.append(int(rng.integers(1, 50)))
            durations.append(d)
            total += d
            if total == frames:
                break
    store = FakeStore({"C-0": np.repeat(np.arange(frames, dtype=np.float32)[:, None], D, 1)})
    return LMSource(store, {"C-0": phones}, {"C-0": "C"}, name="lone", durations={"C-0": durations})


@pytest.mark.parametrize("frames", [250, 600])  # 10 s: the target runs to the end; 24 s: it ends at a word too
def test_self_split_cuts_a_lone_utterance_into_prompt_and_target_at_word_boundaries(frames):
    src = make_lone_speaker_source(frames)
    ds = LMDataset([src], frame_rate=25.0, prompt_seconds=(2.0, 4.0), max_frames=225,
                   single_utt_prompt="self_split", word_boundary_id=WB)
    assert len(ds) == 1 and ds.splittable == {0}  # longer than max_frames, kept: it is cut
    assert ds.lengths[0] <= 225
    phones, durations = src.phones["C-0"], src.durations["C-0"]
    seen = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        ex = ds[0]
        p, t = ex["prompt"][:, 0], ex["target"][:, 0]
        cut = len(p)
        seen.add(cut)
        # no overlap: the prompt is frames [0, cut), the target the frames that follow
        assert np.array_equal(p, np.arange(cut)) and np.array_equal(t, np.arange(cut, cut + len(t)))
        assert 50 <= cut and 25 <= len(t) <= 225  # prompt >= 2 s, target 1 s .. max_frames
        assert abs(cut - 75) <= 60  # near the drawn prompt length (2-4 s), up to a word's length off
        k = next(j for j in range(len(phones)) if sum(durations[:j]) == cut and phones[j - 1] == WB and
                 phones[j : j + len(ex["phones"])] == ex["phones"])
        e = k + len(ex["phones"])
        assert ex["durations"] == durations[k:e] and sum(ex["durations"]) == len(t)
        assert e == len(phones) or phones[e] == WB  # ends at the utterance's end or at a word boundary
        if frames == 250:
            assert e == len(phones)
    assert len(seen) > 1  # the cut moves with the drawn prompt length


def test_self_split_falls_back_to_a_crop_without_a_usable_word_boundary():
    src = make_lone_speaker_source()
    src.phones["C-0"] = [t if t != WB else 5 for t in src.phones["C-0"]]  # no word boundaries
    ds = LMDataset([src], frame_rate=25.0, prompt_seconds=(2.0, 4.0), single_utt_prompt="self_split",
                   word_boundary_id=WB)
    assert ds.splittable == set()
    ex = ds[0]
    assert ex["target"].shape[0] == 250 and ex["phones"] == src.phones["C-0"]  # self_crop
    # too long to split and over max_frames: filtered out like any long utterance
    with pytest.raises(DataDirError):
        LMDataset([src], frame_rate=25.0, max_frames=225, single_utt_prompt="self_split", word_boundary_id=WB)
    with pytest.raises(ValueError, match="word_boundary_id"):
        LMDataset([src], frame_rate=25.0, single_utt_prompt="self_split")


def test_self_split_leaves_speakers_with_several_utterances_alone():
    src = make_source()
    src.durations = {u: [len(src.latents[u]) - len(p) + 1] + [1] * (len(p) - 1) for u, p in src.phones.items()}
    ds = LMDataset([src], frame_rate=25.0, prompt_seconds=(0.2, 0.4), single_utt_prompt="self_split",
                   word_boundary_id=WB)
    assert len(ds) == 6 and ds.splittable == set()  # C-0 has no word boundary: cropped as before
    for i in range(len(ds)):
        assert ds[i]["target"].shape[0] == ds.lengths[i]


def test_no_usable_data_is_a_data_dir_error():
    src = make_source()
    src.phones = {}
    with pytest.raises(DataDirError, match="no usable"):
        LMDataset([src], frame_rate=25.0)


def test_bucket_sampler_budget_coverage_and_sharding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 300, 200).tolist()
    s = BucketBatchSampler(lengths, max_tokens=1200, max_batch_size=16, seed=1)
    batches = list(s)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(200))  # every utterance exactly once
    for b in batches:
        assert len(b) <= 16 and (len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1200)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 60  # bucketed: similar lengths together (random batches would spread ~200)
    s.set_epoch(1)
    assert list(s) != batches  # reshuffled per epoch
    r0 = list(BucketBatchSampler(lengths, 1200, 16, seed=1, rank=0, world_size=2))
    r1 = list(BucketBatchSampler(lengths, 1200, 16, seed=1, rank=1, world_size=2))
    assert len(r0) == len(r1) and r0 != r1
    cur = BucketBatchSampler(lengths, 1200, 16, seed=1, curriculum_epochs=1, curriculum_max_len=100)
    assert all(lengths[i] <= 100 for b in cur for i in b)
    cur.set_epoch(1)
    assert sorted(i for b in cur for i in b) == list(range(200))


def test_collate_pads_each_segment():
    ds = LMDataset([make_source()], frame_rate=25.0)
    b = collate_lm([ds[0], ds[3]], pad_id=0)
    assert b.prompt.shape[0] == 2 and b.target.shape[2] == D
    assert b.target_lens.tolist() == [ds.lengths[0], ds.lengths[3]]
    assert b.phones[0, b.phone_lens[0]:].eq(0).all()


def test_cli_pairs_data_and_latents(capsys):
    from latentspeech.cli import main

    assert main(["train", "latentlm", "--config", "c.yaml", "--data", "a", "--data", "b", "--latents", "x",
                 "--out", "o"]) == 1
    assert "one --latents per --data" in capsys.readouterr().err


def test_kaldi_readers(tmp_path):
    from latentspeech.text import PhoneVocab

    vocab = PhoneVocab()
    (tmp_path / "phones").write_text("u1 h ə l ˈ oʊ\nu2 a\n", encoding="utf-8")
    (tmp_path / "utt2spk").write_text("u1 s1\nu2 s1\n", encoding="utf-8")
    ph = read_phones(tmp_path / "phones", vocab)
    assert len(ph["u1"]) == 5 and all(0 <= i < vocab.size for i in ph["u1"])
    assert read_utt2spk(tmp_path / "utt2spk") == {"u1": "s1", "u2": "s1"}
    with pytest.raises(DataDirError, match="no such file"):
        read_utt2spk(tmp_path / "nope")


@pytest.fixture
def data_on_disk(tmp_path):
    """A Kaldi data dir (phones, utt2spk) + a real LatentStore written with LatentWriter."""
    from latentspeech.data.latents import LatentWriter

    src = make_source()
    data = tmp_path / "data"
    data.mkdir()
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(src.utt2spk.items())))
    (data / "phones").write_text("".join(f"{u} h ə l ˈ oʊ\n" for u in sorted(src.utt2spk)), encoding="utf-8")
    meta = {"latent_dim": D, "frame_rate": 25.0, "hop_length": 640, "sample_rate": 16000, "codec": None,
            "latent_mean": [3.0] * D, "latent_std": [2.0] * D}
    with LatentWriter(tmp_path / "dump", meta) as w:
        for u, z in src.latents.items():
            w.add(u, z)
    return data, tmp_path / "dump"


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_exports_and_resumes(data_on_disk, tmp_path, one_thread):
    from latentspeech.config import from_dict
    from latentspeech.models.latentlm import load_latentlm
    from latentspeech.train.latentlm import LatentLMTrainConfig, train_latentlm

    cfg = from_dict(LatentLMTrainConfig, {
        "model": {"transformer": {"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 256}, "head_blocks": 1},
        "data": {"prompt_seconds": [0.2, 0.4], "max_tokens": 400, "max_batch_size": 4},
        "optim": {"warmup_steps": 2, "lr": 1e-3},
        "trainer": {"accelerator": "cpu", "ckpt_every_steps": 2, "log_every_steps": 1},
    })
    data, dump = data_on_disk
    out = tmp_path / "exp"
    model_dir = train_latentlm(cfg, [(str(data), str(dump))], out, valid=[(str(data), str(dump))], max_steps=3,
                               progress=False)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    model, md = load_latentlm(model_dir)
    assert md.kind == "latentlm" and md.meta["train_steps"] == 3
    assert md.meta["inference"] == {"steps": 10, "cfg": 2.0, "temperature": 1.0}  # the sampler the model recommends
    assert model.cfg.latent_dim == D and model.cfg.frame_rate == 25.0
    assert model.cfg.frames_per_phone == pytest.approx(1.25 * md.meta["frames_per_phone"]["max"], rel=1e-3)
    assert model.cfg.min_frames_per_phone == pytest.approx(md.meta["frames_per_phone"]["p01"] / 1.25, rel=1e-2)
    assert "phone_vocab" in md.meta
    # resume through the CLI: `latentspeech train latentlm --config C --data D --latents Z --out EXP --resume`
    from latentspeech.cli import main
    from latentspeech.config import save_config

    save_config(cfg, tmp_path / "lm.yaml")
    rc = main(["train", "latentlm", "--config", str(tmp_path / "lm.yaml"), "--data", str(data), "--latents", str(dump),
               "--out", str(out), "--max-steps", "5", "--resume", "--no-progress"])
    assert rc == 0
    _, md2 = load_latentlm(model_dir)
    assert md2.meta["train_steps"] == 5
    logs = list((out / "logs").rglob("metrics.csv"))
    assert logs and "train/diff" in logs[0].read_text().splitlines()[0]


def _tiny_base_model(data_on_disk, out):
    """(raw train config, model dir) of a 1-layer LatentLM trained 3 steps: the source of init_from tests."""
    from latentspeech.config import from_dict
    from latentspeech.train.latentlm import LatentLMTrainConfig, train_latentlm

    raw = {
        "model": {"transformer": {"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 256}, "head_blocks": 1},
        "data": {"prompt_seconds": [0.2, 0.4], "max_tokens": 400, "max_batch_size": 4},
        "optim": {"warmup_steps": 1, "lr": 1e-3},
        "trainer": {"accelerator": "cpu", "ckpt_every_steps": 0, "log_every_steps": 1, "seed": 1},
    }
    data, dump = data_on_disk
    return raw, train_latentlm(from_dict(LatentLMTrainConfig, raw), [(str(data), str(dump))], out, max_steps=3,
                               progress=False)


def test_train_init_from_starts_at_the_given_weights(data_on_disk, tmp_path, one_thread):
    """``init_from``: the run starts from a trained model's weights (lr 0 keeps them), and a model of
    another shape is refused in one line."""
    import dataclasses

    from latentspeech.checkpoint import CheckpointError
    from latentspeech.config import from_dict
    from latentspeech.models.latentlm import load_latentlm
    from latentspeech.train.latentlm import LatentLMTrainConfig, train_latentlm

    raw, base = _tiny_base_model(data_on_disk, tmp_path / "a")
    data, dump = data_on_disk
    cfg = from_dict(LatentLMTrainConfig, {**raw, "optim": {"warmup_steps": 1, "lr": 0.0}, "init_from": str(base)})
    cfg.trainer.seed = 2  # another random init: only init_from can make the weights equal
    tuned = train_latentlm(cfg, [(str(data), str(dump))], tmp_path / "b", max_steps=1, progress=False)
    a, _ = load_latentlm(base)
    b, md = load_latentlm(tuned)
    assert md.meta["init_from"] == str(base)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    wider = dataclasses.replace(cfg, model=from_dict(type(cfg.model), {**raw["model"], "transformer": {
        "dim": 48, "n_layers": 1, "n_heads": 2, "max_seq_len": 256}}))
    with pytest.raises(CheckpointError, match="init_from .* does not match the model config"):
        train_latentlm(wider, [(str(data), str(dump))], tmp_path / "c", max_steps=1, progress=False)


def test_init_grow_layers_starts_from_the_same_function(data_on_disk, tmp_path, one_thread):
    """``init_grow_layers``: a deeper Transformer starts from a trained model's weights, its extra layers
    as identity maps (the same outputs); without the flag the deeper model is refused, and a model
    shallower than its source is refused with the flag too."""
    from latentspeech.checkpoint import CheckpointError
    from latentspeech.config import from_dict
    from latentspeech.models.latentlm import load_latentlm
    from latentspeech.train.latentlm import LatentLMTrainConfig, init_latentlm_from, train_latentlm

    raw, base = _tiny_base_model(data_on_disk, tmp_path / "a")
    data, dump = data_on_disk
    deeper = {**raw, "model": {**raw["model"], "transformer": {**raw["model"]["transformer"], "n_layers": 3}},
              "optim": {"warmup_steps": 1, "lr": 0.0}, "init_from": str(base)}
    with pytest.raises(CheckpointError, match="init_from .* does not match the model config"):
        train_latentlm(from_dict(LatentLMTrainConfig, deeper), [(str(data), str(dump))], tmp_path / "b",
                       max_steps=1, progress=False)
    grown_dir = train_latentlm(from_dict(LatentLMTrainConfig, {**deeper, "init_grow_layers": True}),
                               [(str(data), str(dump))], tmp_path / "c", max_steps=1, progress=False)
    a, _ = load_latentlm(base)
    g, _ = load_latentlm(grown_dir)
    assert g.transformer.cfg.n_layers == 3
    for k, v in a.state_dict().items():
        assert torch.equal(v, g.state_dict()[k]), k
    for layer in g.transformer.layers[1:]:
        assert not layer.attn.wo.weight.any() and not layer.ffn.w2.weight.any()
        assert layer.attn.wq.weight.any()  # the rest of a new layer is initialised as usual
    torch.manual_seed(0)
    x, pos = torch.randn(2, 9, 32), torch.arange(9).expand(2, 9)
    valid = torch.ones(2, 9, dtype=torch.bool)
    torch.testing.assert_close(g.transformer(x, pos, valid), a.transformer(x, pos, valid))
    with pytest.raises(CheckpointError, match="can only add layers"):
        init_latentlm_from(a, str(grown_dir), grow_layers=True)
