"""Training metadata at corpus scale: compact tables cached beside the data, the latent index as
arrays, batches computed once per epoch, codec crops read on their own."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from latentspeech.data.lm_dataset import BucketBatchSampler, LMDataset, LMSource, read_duration_table, read_phones, \
    read_utt2spk
from latentspeech.data.tables import CACHE_DIR, LabelTable, RaggedTable
from latentspeech.errors import DataDirError
from latentspeech.text import PhoneVocab

import test_lm_train

D = test_lm_train.D
data_on_disk = test_lm_train.data_on_disk


def test_tables_behave_as_the_dicts_they_replace():
    phones = {"b": [3, 1, 2], "a": [], "é-1": [40000], "c": [7]}  # unsorted, non-ASCII, one value past int16
    t = RaggedTable.from_dict(phones)
    assert t == phones and list(t) == ["a", "b", "c", "é-1"] and len(t) == 4
    assert t["é-1"] == [40000] and t.values.dtype == np.int32 and "z" not in t and 3 not in t
    with pytest.raises(KeyError):
        t["z"]
    assert t.sums(np.array([1, 0, 3])).tolist() == [6, 0, 40000]
    spk = LabelTable.from_dict({"u2": "s1", "u1": "s2", "u3": "s1"})
    assert spk == {"u1": "s2", "u2": "s1", "u3": "s1"} and spk.num_labels == 2 and spk.codes.dtype == np.int32
    assert dict(spk) == {"u1": "s2", "u2": "s1", "u3": "s1"}


def test_readers_cache_arrays_beside_the_file_and_rebuild_when_it_changes(tmp_path):
    vocab = PhoneVocab()
    (tmp_path / "phones").write_text("u2 a\nu1 h ə l ˈ oʊ\nu1 a a\n", encoding="utf-8")  # the last line wins
    (tmp_path / "utt2spk").write_text("u1 s1\nu2 s1\n")
    (tmp_path / "durations").write_text("u1 1 0\nu2 3\n")
    ph = read_phones(tmp_path / "phones", vocab)
    assert ph == {"u1": vocab.encode(["a", "a"]), "u2": vocab.encode(["a"])}
    assert (tmp_path / CACHE_DIR / "phones" / "values.npy").is_file()
    again = read_phones(tmp_path / "phones", vocab)
    assert isinstance(again.values, np.memmap) and again == ph  # mapped from the cache, shared between processes
    assert read_utt2spk(tmp_path / "utt2spk") == {"u1": "s1", "u2": "s1"}
    assert read_duration_table(tmp_path / "durations") == {"u1": [1, 0], "u2": [3]}
    (tmp_path / "phones").write_text("u1 a\nu3 h\n", encoding="utf-8")
    assert read_phones(tmp_path / "phones", vocab) == {"u1": vocab.encode(["a"]), "u3": vocab.encode(["h"])}
    (tmp_path / "bad").write_text("u1 1 x\n")
    with pytest.raises(DataDirError, match=r"bad:1: expected '<utt> <int> <int> ...'"):
        read_duration_table(tmp_path / "bad")


def test_latent_store_index_is_arrays_and_reads_each_array_at_its_offset(data_on_disk):
    from latentspeech.data.latents import LatentStore

    _, dump = data_on_disk
    src = test_lm_train.make_source()
    store = LatentStore(dump)
    assert (dump / CACHE_DIR / "index" / "offset.npy").is_file()
    store = LatentStore(dump)  # from the cache
    assert store.utt_ids == sorted(src.latents) and len(store) == len(src.latents) and "nope" not in store
    for u, z in src.latents.items():
        assert store.frames(u) == len(z) and np.array_equal(store[u], z)
    assert dict((u, z.shape) for u, z in store.items()) == {u: z.shape for u, z in src.latents.items()}
    with pytest.raises(KeyError):
        store["nope"]


def test_dataset_over_files_matches_the_dataset_over_dicts(data_on_disk):
    data, dump = data_on_disk
    vocab = PhoneVocab()
    disk = LMSource.from_dirs(data, dump, vocab)
    src = test_lm_train.make_source()
    mem = LMSource(src.latents, {u: vocab.encode("h ə l ˈ oʊ".split()) for u in src.utt2spk}, dict(src.utt2spk),
                   disk.mean, disk.std)
    a, b = LMDataset([disk], 25.0, (0.2, 0.4)), LMDataset([mem], 25.0, (0.2, 0.4))
    assert list(a.items) == list(b.items) and a.lengths.tolist() == b.lengths.tolist() and a.speakers() == 3
    for epoch in (0, 1):
        a.set_epoch(epoch), b.set_epoch(epoch)
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert x["utt_id"] == y["utt_id"] and x["phones"] == y["phones"]
            assert np.allclose(x["prompt"], y["prompt"]) and np.allclose(x["target"], y["target"])


def test_bucket_sampler_computes_an_epoch_once():
    lengths = np.random.default_rng(1).integers(10, 300, 5000)
    s = BucketBatchSampler(lengths, 2000, 32, seed=2, rank=1, world_size=3)
    n = len(s)
    plan = s._plan
    assert len(s) == n and s._plan is plan  # len again: no new sort
    batches = list(s)
    assert len(batches) == n and s._plan is plan
    s.set_epoch(1)
    assert list(s) != batches and s._plan is not plan  # a new epoch: new batches


def test_codec_crops_are_read_on_their_own(tmp_path, monkeypatch):
    from latentspeech.data.dataset import AudioCropDataset

    sr = 16000
    d = tmp_path / "data"
    d.mkdir()
    wav = (np.sin(np.arange(3 * sr) * 0.01) * 0.5).astype(np.float32)
    sf.write(d / "rec.wav", wav, sr, subtype="FLOAT")
    (d / "wav.scp").write_text(f"rec {d / 'rec.wav'}\n")
    (d / "segments").write_text("a rec 0.0 2.0\nb rec 2.0 2.5\n")
    (d / "utt2spk").write_text("a s\nb s\n")
    (d / "utt2dur").write_text("a 2.0\nb 0.5\n")
    ds = AudioCropDataset([d], sr, crop_seconds=0.5, gain_db=None, cache_mb=0)
    assert ds.num_utterances == 2 and len(ds) == 5  # 4 crops of a, 1 of b, from 2 entries
    reads = []
    real = sf.read

    def read(*args, **kw):
        reads.append((kw.get("start"), kw.get("stop")))
        return real(*args, **kw)

    monkeypatch.setattr(sf, "read", read)
    for i in range(4):
        crop = ds[i].numpy()
        start, stop = reads[-1]
        assert start is not None and stop - start == 8000 and 0 <= start <= sr * 2 - 8000  # only the crop's samples
        assert np.allclose(crop, wav[start:stop], atol=1e-6)
    assert ds.utterance(4) == (0, "b")
