"""LatentLM training data: (speaker prompt, phones, target latents) examples and length-bucketed batches.

Sources
    A source is one Kaldi data dir (its ``phones`` file: ``<utt> <tok> <tok> ...`` and ``utt2spk``)
    plus the latents of its utterances (anything with ``store[utt] -> (F, D)`` and ``utt in store``,
    e.g. :class:`latentspeech.data.latents.LatentStore`; a ``frames(utt)`` method avoids reading
    arrays just to learn lengths). Latents are normalised here with the codec's per-dimension
    (mean, std) (by default the store's ``normalization()``), as the LM expects. Read from disk,
    ``phones``, ``utt2spk`` and ``durations`` become the compact tables of
    :mod:`latentspeech.data.tables`, cached beside their files, so the metadata of millions of
    utterances costs each rank and dataloader worker little memory and start-up time.

Prompts
    The prompt of an utterance is a random crop (``prompt_seconds`` long, drawn per example) of
    *another* utterance of the same speaker, so the model learns to take the voice but not the
    words from the prompt. A speaker with a single utterance has no other one; then
    ``single_utt_prompt`` decides: ``"self_crop"`` crops the prompt from the target utterance
    itself (the only audio of that voice; the crop does overlap the target, since the phones must
    cover the whole target, so the model could learn to copy it: keep such speakers a minority),
    or ``"skip"`` leaves the speaker out. ``"self_split"`` (sources with per-phone ``durations``, e.g.
    one clip per real speaker) cuts the utterance at word boundaries instead: the speech before the
    cut is the prompt and what follows, with its own phones and durations, the target (ending at a
    later word boundary when the rest is longer than ``max_frames``), so prompt and target never
    overlap and utterances longer than ``max_frames`` are still used; an utterance without word
    boundaries that leave both sides long enough falls back to ``"self_crop"``.

Randomness (which prompt, which crop) is drawn from ``(seed, epoch, index)``, so an epoch is
reproducible and a resumed run sees the same examples.

Batches
    :class:`BucketBatchSampler` groups utterances of similar length (sorted with a little random
    jitter) into batches whose padded size stays under ``max_tokens`` (prompt + phones + target
    slots), shuffles the batches every epoch and gives each rank of a multi-GPU run its own share
    (equal counts). An optional curriculum trains the first epochs on short utterances only. An
    epoch's batches are computed once, and the sampler resumes mid-epoch from its ``state_dict``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Dataset, Sampler

from ..errors import DataDirError
from .durations import DURATIONS
from .tables import LabelTable, RaggedTable, build_labels, build_ragged, cached_arrays

__all__ = ["LMSource", "LMDataset", "BucketBatchSampler", "read_phones", "read_utt2spk", "read_duration_table",
           "SINGLE_UTT_PROMPTS"]

#: How a speaker with one utterance gets a prompt (see the module docstring).
SINGLE_UTT_PROMPTS = ("self_crop", "self_split", "skip")


def _vocab_tag(vocab) -> str:
    """What cached phone ids depend on: the vocabulary's tokens."""
    raw = json.dumps(vocab.to_dict(), sort_keys=True) if hasattr(vocab, "to_dict") else repr(vocab)
    return "phones:" + hashlib.sha1(raw.encode("utf-8")).hexdigest()


class _TokenIds(dict):
    """Token bytes → id; a missing token is the vocabulary's ``unk``."""

    unk = 0

    def __missing__(self, key):
        return self.unk


def read_phones(path: str | Path, vocab) -> RaggedTable:
    """A Kaldi ``phones`` file → ``{utt: ids}`` with ``vocab.encode`` (unknown tokens follow the vocab's
    fallback), as a read-only :class:`~latentspeech.data.tables.RaggedTable` cached beside the file."""
    path = Path(path)

    tokens, unk = getattr(vocab, "tokens", None), getattr(vocab, "unk_id", None)
    if tokens is not None and unk is not None:  # look the UTF-8 bytes up directly (no str per token)
        ids = _TokenIds(zip((t.encode("utf-8") for t in tokens), vocab.encode(list(tokens))))
        ids.unk = unk

        def row(fields):
            return list(map(ids.__getitem__, fields))
    else:
        def row(fields):
            return vocab.encode([f.decode("utf-8") for f in fields])

    def build():
        return build_ragged(path, "phones: <utt> <tok> ...", row)

    return RaggedTable.from_arrays(cached_arrays(path, "phones", _vocab_tag(vocab), build))


def read_utt2spk(path: str | Path) -> LabelTable:
    """A Kaldi ``utt2spk`` file → ``{utt: speaker}`` as a read-only :class:`~latentspeech.data.tables.LabelTable`."""
    path = Path(path)
    return LabelTable.from_arrays(cached_arrays(path, "utt2spk", "utt2spk",
                                                lambda: build_labels(path, "utt2spk: <utt> <speaker>")))


def read_duration_table(path: str | Path) -> RaggedTable:
    """A ``durations`` file (see :mod:`latentspeech.data.durations`) → ``{utt: frames per token}`` as a
    read-only :class:`~latentspeech.data.tables.RaggedTable` cached beside the file."""
    path = Path(path)

    def build():
        return build_ragged(path, "per-token durations: run `latentspeech align`", lambda f: list(map(int, f)),
                            form="'<utt> <int> <int> ...'", min_fields=0)

    return RaggedTable.from_arrays(cached_arrays(path, "durations", "durations", build))


@dataclass
class LMSource:
    """One data set: latents + phone ids + speakers (+ the normalisation to apply).

    ``phones``, ``utt2spk`` and ``durations`` are mappings: dicts, or (from :meth:`from_dirs`) the
    compact tables of :mod:`latentspeech.data.tables`, which :class:`LMDataset` indexes without copying."""

    latents: Mapping
    phones: Mapping[str, Sequence[int]]
    utt2spk: Mapping[str, str]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    name: str = ""
    durations: Mapping[str, Sequence[int]] | None = None  # frames per phone token (LatentLM's pointer mode)

    @classmethod
    def from_dirs(cls, data_dir: str | Path, latent_dir: str | Path, vocab, durations: bool = False) -> "LMSource":
        """A Kaldi data dir (``phones``, ``utt2spk``) + a latent store dir (+ its ``durations`` file
        from ``latentspeech align`` when ``durations``)."""
        from .latents import LatentStore

        data_dir = Path(data_dir)
        store = LatentStore(latent_dir)
        norm = store.normalization()
        if norm is None:
            raise DataDirError(f"latent store {latent_dir} records no latent_mean/latent_std in its meta.yaml")
        return cls(latents=store, phones=read_phones(data_dir / "phones", vocab),
                   utt2spk=read_utt2spk(data_dir / "utt2spk"), mean=norm[0], std=norm[1], name=str(data_dir),
                   durations=read_duration_table(Path(latent_dir) / DURATIONS) if durations else None)

    def frames(self, utt: str) -> int:
        f = getattr(self.latents, "frames", None)
        return int(f(utt)) if callable(f) else int(np.shape(self.latents[utt])[0])

    def utt_frames(self, keys) -> np.ndarray:
        """The latent frames of each of the utterances :class:`~latentspeech.data.tables.UttKeys` ``keys``
        (-1: no latents)."""
        if callable(getattr(self.latents, "rows", None)) and callable(getattr(self.latents, "row_frames", None)):
            rows = self.latents.rows(keys)
            out = np.full(len(keys), -1, dtype=np.int64)
            found = rows >= 0
            out[found] = self.latents.row_frames(rows[found])
            return out
        return np.fromiter((self.frames(u) if u in self.latents else -1 for u in keys), dtype=np.int64,
                           count=len(keys))

    def load(self, utt: str) -> np.ndarray:
        z = np.asarray(self.latents[utt], dtype=np.float32)
        if self.mean is not None:
            z = (z - self.mean) / self.std
        return z


class _Items(Sequence):
    """``(source index, utt id)`` of each item of an :class:`LMDataset`, decoded on access."""

    def __init__(self, ds: "LMDataset"):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds.item_source)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        si = int(self.ds.item_source[i])
        return si, self.ds._utt2spk[si].utts[int(self.ds.item_row[i])]


class LMDataset(Dataset):
    """Examples ``{utt_id, prompt [P, D], phones [L], target [F, D]}`` from one or more sources.

    The per-item tables are numpy arrays (``item_source``, ``item_row``: the row in the source's
    ``utt2spk``, ``lengths``, ``n_phones``, ``item_speaker``), so a dataset of millions of utterances
    costs tens of bytes per item and forked dataloader workers share its pages; ``items`` is a
    sequence view of ``(source index, utt id)``."""

    def __init__(self, sources: Sequence[LMSource], frame_rate: float, prompt_seconds: tuple[float, float] = (2.0, 5.0),
                 min_frames: int = 2, max_frames: int | None = None, single_utt_prompt: str = "self_crop",
                 seed: int = 0, word_boundary_id: int | None = None):
        if single_utt_prompt not in SINGLE_UTT_PROMPTS:
            raise ValueError(f"single_utt_prompt must be one of {', '.join(SINGLE_UTT_PROMPTS)}, got {single_utt_prompt!r}")
        if single_utt_prompt == "self_split" and word_boundary_id is None:
            raise ValueError("single_utt_prompt 'self_split' needs the vocabulary's word_boundary_id")
        self.sources = list(sources)
        self.frame_rate = frame_rate
        self.prompt_frames = (max(1, round(prompt_seconds[0] * frame_rate)), max(1, round(prompt_seconds[1] * frame_rate)))
        self.min_split_target = max(min_frames, round(frame_rate))  # a split leaves at least 1 s of target
        self.max_frames = max_frames
        self.word_boundary_id = word_boundary_id
        self.seed = seed
        self.epoch = 0
        self.skipped = {"no_latents": 0, "no_phones": 0, "length": 0, "single_utt": 0, "no_durations": 0}
        cols: dict[str, list[np.ndarray]] = {"source": [], "row": [], "lengths": [], "n_phones": [], "speaker": []}
        n_speakers = 0
        self._utt2spk: list[LabelTable] = []  # per source: its utterances (the items' rows index them)
        for si, src in enumerate(self.sources):
            utt2spk, phones = LabelTable.from_dict(src.utt2spk), RaggedTable.from_dict(src.phones)
            self._utt2spk.append(utt2spk)
            keys = utt2spk.utts
            frames = src.utt_frames(keys)
            prow = phones.utts.rows(keys)
            nph = np.where(prow >= 0, phones.lengths(np.maximum(prow, 0)), 0) if len(phones) else \
                np.zeros(len(keys), np.int64)
            has_latents = frames >= 0
            ok = has_latents & (nph > 0)
            self.skipped["no_latents"] += int((~has_latents).sum())
            self.skipped["no_phones"] += int((has_latents & (nph <= 0)).sum())
            if src.durations is not None:
                durations = RaggedTable.from_dict(src.durations)
                drow = durations.utts.rows(keys)
                dlen = np.where(drow >= 0, durations.lengths(np.maximum(drow, 0)), -1) if len(durations) \
                    else np.full(len(keys), -1, np.int64)
                cand = np.flatnonzero(ok & (drow >= 0) & (dlen == nph))
                good = np.zeros(len(keys), dtype=bool)
                good[cand] = durations.sums(drow[cand]) == frames[cand]
                self.skipped["no_durations"] += int((ok & ~good).sum())
                ok &= good
            # a split utterance may be longer than max_frames: then the check waits for the speaker count
            split = single_utt_prompt == "self_split" and src.durations is not None
            bad = frames < min_frames
            if max_frames is not None and not split:
                bad |= frames > max_frames
            self.skipped["length"] += int((ok & bad).sum())
            rows = np.flatnonzero(ok & ~bad)
            cols["source"].append(np.full(len(rows), si, dtype=np.int32))
            cols["row"].append(rows.astype(np.int32))
            cols["lengths"].append(frames[rows].astype(np.int32))
            cols["n_phones"].append(nph[rows].astype(np.int32))
            cols["speaker"].append(np.asarray(utt2spk.codes)[rows].astype(np.int32) + n_speakers)
            n_speakers += utt2spk.num_labels
        cat = {k: (np.concatenate(v) if v else np.zeros(0, np.int32)) for k, v in cols.items()}
        self.item_source, self.item_row = cat["source"].astype(np.int32), cat["row"]
        self.lengths, self.n_phones, self._speaker = cat["lengths"], cat["n_phones"], cat["speaker"]
        self.items = _Items(self)
        self.cuts: dict[int, list[tuple[int, int, int, int]]] = {}  # item → its self_split cuts (see _cuts)
        lone = self._lone()
        if single_utt_prompt == "self_split":
            cuts = {int(i): c for i in lone if (c := self._cuts(*self.items[int(i)]))}
            too_long = np.zeros(len(self), dtype=bool)
            if max_frames is not None:
                too_long = self.lengths > max_frames
                too_long[list(cuts)] = False
            self.skipped["length"] += int(too_long.sum())
            new = self._drop(too_long)
            self.cuts = {int(new[i]): c for i, c in cuts.items()}
            for i, c in self.cuts.items():  # bucket by the longest target a cut can leave
                self.lengths[i] = max(end - cut for _, cut, _, end in c)
        elif single_utt_prompt == "skip":
            self.skipped["single_utt"] = len(lone)
            drop = np.zeros(len(self), dtype=bool)
            drop[lone] = True
            self._drop(drop)
        self._group_speakers()
        if not len(self):
            names = ", ".join(s.name or "?" for s in self.sources)
            raise DataDirError(f"no usable utterances (with latents, phones and {min_frames}+ frames) in {names}")

    def _group_speakers(self) -> None:
        """``item_speaker`` (a dense speaker index per item) and the items of each speaker
        (``_speaker_items[_speaker_start[s] : _speaker_start[s + 1]]``, ascending)."""
        uniq, inverse, counts = np.unique(self._speaker, return_inverse=True, return_counts=True)
        self.item_speaker = inverse.astype(np.int32).reshape(-1)
        self._speaker_items = np.argsort(self.item_speaker, kind="stable").astype(np.int32)
        self._speaker_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def _lone(self) -> np.ndarray:
        """The items whose speaker has no other item."""
        self._group_speakers()
        counts = np.diff(self._speaker_start)
        return np.flatnonzero(counts[self.item_speaker] == 1)

    def __len__(self) -> int:
        return len(self.item_source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames_per_phone(self) -> dict[str, float]:
        """Target frames per phone token over the data: min, 1st percentile, mean, 99th percentile and
        max (for the length guards)."""
        r = np.asarray(self.lengths, dtype=np.float64) / np.maximum(np.asarray(self.n_phones, dtype=np.float64), 1)
        return {"min": float(r.min()), "p01": float(np.percentile(r, 1)), "mean": float(r.mean()),
                "p99": float(np.percentile(r, 99)), "max": float(r.max())}

    def speakers(self) -> int:
        return len(self._speaker_start) - 1

    def _crop(self, z: np.ndarray, rng: random.Random) -> np.ndarray:
        n = rng.randint(*self.prompt_frames)
        if z.shape[0] <= n:
            return z
        start = rng.randint(0, z.shape[0] - n)
        return z[start : start + n]

    @property
    def splittable(self) -> set[int]:
        """The items whose prompt is cut off their own utterance (``self_split``)."""
        return set(self.cuts)

    def _drop(self, drop: np.ndarray) -> np.ndarray:
        """Remove the items where ``drop`` is true; returns the new index of each old item (-1: dropped)."""
        keep = ~np.asarray(drop, dtype=bool)
        new = np.full(len(keep), -1, dtype=np.int64)
        new[keep] = np.arange(int(keep.sum()))
        self.item_source, self.item_row = self.item_source[keep], self.item_row[keep]
        self.lengths, self.n_phones, self._speaker = self.lengths[keep], self.n_phones[keep], self._speaker[keep]
        return new

    def _cuts(self, si: int, utt: str) -> list[tuple[int, int, int, int]]:
        """How an utterance may be cut into prompt + target: ``(k, cut, e, end)``, the prompt = frames
        ``[0, cut)`` before the word boundary at token ``k``; the target = tokens ``k+1 .. e-1``, frames
        ``[cut, end)``: to the end of the utterance, or to the furthest word boundary ``e`` that keeps
        it within ``max_frames``. The prompt lasts at least ``prompt_seconds[0]``, the target 1 s."""
        src = self.sources[si]
        if src.durations is None:
            return []
        phones, total = src.phones[utt], sum(src.durations[utt])
        before = np.cumsum(src.durations[utt]) - np.asarray(src.durations[utt])  # frames before each token
        limit = self.max_frames or total
        bounds = [k for k, tok in enumerate(phones) if tok == self.word_boundary_id]
        cuts = []
        for k in bounds:
            cut = int(before[k])
            if cut < self.prompt_frames[0] or total - cut < self.min_split_target:
                continue
            if total - cut <= limit:
                cuts.append((k, cut, len(phones), total))
                continue
            ends = [e for e in bounds if e > k and self.min_split_target <= before[e] - cut <= limit]
            if ends:
                cuts.append((k, cut, ends[-1], int(before[ends[-1]])))
        return cuts

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        si, utt = self.items[i]
        src = self.sources[si]
        rng = random.Random(hash((self.seed, self.epoch, i)) & 0xFFFFFFFF)
        target = src.load(utt)
        phones = src.phones[utt]
        durations = src.durations[utt] if src.durations is not None else None
        g = self.item_speaker[i]
        members = self._speaker_items[self._speaker_start[g] : self._speaker_start[g + 1]]
        if len(members) > 1:  # another item of the speaker, uniformly (``rng.choice`` of the others)
            k = rng.randrange(len(members) - 1)
            k += k >= int(np.searchsorted(members, i))
            sj, other = self.items[int(members[k])]
            prompt = self._crop(self.sources[sj].load(other), rng)
        elif i in self.cuts:  # prompt = the speech before a word boundary, target = the rest
            want = rng.randint(*self.prompt_frames)
            k, cut, e, end = min(self.cuts[i], key=lambda c: (abs(c[1] - want), c[1]))
            prompt, target = target[:cut], target[cut:end]
            phones, durations = phones[k + 1 : e], durations[k + 1 : e]
        else:
            prompt = self._crop(target, rng)
        ex = {"utt_id": utt, "prompt": prompt, "phones": phones, "target": target}
        if durations is not None:
            ex["durations"] = durations
        return ex


class BucketBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches under a padded-token budget; shuffled per epoch; sharded per rank.

    The batches of an epoch are computed once (on the first ``len`` or ``iter`` of that epoch) and
    kept as two arrays: the items in batch order and the start of each batch of this rank. The
    sampler is resumable: :meth:`state_dict` holds the epoch, the seed and how many of this epoch's
    batches were consumed; after :meth:`load_state_dict` the next iteration of that epoch skips them.
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, max_batch_size: int = 64, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, extra_tokens: Sequence[int] | None = None,
                 curriculum_epochs: int = 0, curriculum_max_len: int | None = None):
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.cost = self.lengths + (np.asarray(extra_tokens, dtype=np.int64).reshape(-1)
                                    if extra_tokens is not None else 0)
        self.max_tokens, self.max_batch_size = max_tokens, max_batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.curriculum_epochs, self.curriculum_max_len = curriculum_epochs, curriculum_max_len
        self.epoch = 0
        self.position = 0  # batches of this epoch handed out (or skipped on resume)
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip on the next iteration
        self._plan: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # (epoch, order, starts, ends)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": int(self.seed)}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue where ``state`` left off: its epoch, seed, and the batches of that epoch not yet consumed."""
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])
        self._skip = (self.epoch, int(state.get("position", 0)))
        self._plan = None

    def _batches(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items in batch order, start and end in it of each of this rank's batches) of the epoch."""
        if self._plan is not None and self._plan[0] == self.epoch:
            return self._plan[1:]
        rng = np.random.default_rng([self.seed, self.epoch])
        idx = np.arange(len(self.lengths), dtype=np.int64)
        if self.curriculum_max_len is not None and self.epoch < self.curriculum_epochs:
            short = idx[self.lengths <= self.curriculum_max_len]
            idx = short if len(short) else idx
        cost = self.cost[idx]
        jitter = rng.random(len(idx)) if self.shuffle else np.zeros(len(idx))
        order = idx[np.argsort(cost + jitter * 0.1 * cost, kind="stable")]  # ties: by index
        # greedy packing in sorted order: a batch ends before the item that would break the budget
        starts = []
        cur_max, n = 0, 0
        sorted_cost = self.cost[order]
        for a in range(0, len(order), 1 << 20):
            for k, c in enumerate(sorted_cost[a : a + (1 << 20)].tolist(), a):
                new_max = c if c > cur_max else cur_max
                if n and (new_max * (n + 1) > self.max_tokens or n >= self.max_batch_size):
                    starts.append(k)
                    n, new_max = 0, c
                n += 1
                cur_max = new_max
        bounds = np.asarray([0, *starts, len(order)] if len(order) else [0], dtype=np.int64)
        begin, end = bounds[:-1], bounds[1:]
        pick = rng.permutation(len(begin)) if self.shuffle else np.arange(len(begin))
        if self.world_size > 1 and len(pick):  # equal share per rank: repeat from the start to fill the last round
            per = math.ceil(len(pick) / self.world_size)
            pick = pick[np.arange(per * self.world_size) % len(pick)][self.rank :: self.world_size]
        self._plan = (self.epoch, order, begin[pick], end[pick])
        return self._plan[1:]

    def __iter__(self) -> Iterator[list[int]]:
        order, begin, end = self._batches()
        skip = 0
        if self._skip is not None:
            if self._skip[0] == self.epoch:
                skip = min(self._skip[1], len(begin))
            self._skip = None
        self.position = skip
        for b, e in zip(begin[skip:].tolist(), end[skip:].tolist()):
            self.position += 1
            yield order[b:e].tolist()

    def __len__(self) -> int:
        return len(self._batches()[1])


def examples(sources: Sequence[LMSource]) -> list[tuple[int, str]]:
    """(source index, utterance id) of every utterance that has both phones and latents, in a fixed order."""
    return [(si, u) for si, src in enumerate(sources) for u in sorted(src.phones) if u in src.latents]
