"""LatentLM training data: (speaker prompt, phones, target latents) examples and length-bucketed batches.

Sources
    A source is one Kaldi data dir (its ``phones`` file: ``<utt> <tok> <tok> ...`` and ``utt2spk``)
    plus the latents of its utterances (anything with ``store[utt] -> (F, D)`` and ``utt in store``,
    e.g. :class:`latentspeech.data.latents.LatentStore`; a ``frames(utt)`` method avoids reading
    arrays just to learn lengths). Latents are normalised here with the codec's per-dimension
    (mean, std) (by default the store's ``normalization()``), as the LM expects.

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
    (equal counts). An optional curriculum trains the first epochs on short utterances only.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Dataset, Sampler

from ..errors import DataDirError
from .durations import DURATIONS, read_durations

__all__ = ["LMSource", "LMDataset", "BucketBatchSampler", "read_phones", "read_utt2spk", "SINGLE_UTT_PROMPTS"]

#: How a speaker with one utterance gets a prompt (see the module docstring).
SINGLE_UTT_PROMPTS = ("self_crop", "self_split", "skip")


def _read_table(path: Path, what: str) -> dict[str, list[str]]:
    if not path.is_file():
        raise DataDirError(f"{path}: no such file ({what})")
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataDirError(f"{path}:{n}: expected '<utt-id> ...', got {line!r}")
        out[parts[0]] = parts[1:]
    return out


def read_phones(path: str | Path, vocab) -> dict[str, list[int]]:
    """A Kaldi ``phones`` file → {utt: ids} with ``vocab.encode`` (unknown tokens follow the vocab's fallback)."""
    return {u: list(vocab.encode(toks)) for u, toks in _read_table(Path(path), "phones: <utt> <tok> ...").items()}


def read_utt2spk(path: str | Path) -> dict[str, str]:
    return {u: v[0] for u, v in _read_table(Path(path), "utt2spk: <utt> <speaker>").items()}


@dataclass
class LMSource:
    """One data set: latents + phone ids + speakers (+ the normalisation to apply)."""

    latents: Mapping
    phones: dict[str, list[int]]
    utt2spk: dict[str, str]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    name: str = ""
    durations: dict[str, list[int]] | None = None  # frames per phone token (LatentLM's pointer mode)

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
                   durations=read_durations(Path(latent_dir) / DURATIONS) if durations else None)

    def frames(self, utt: str) -> int:
        f = getattr(self.latents, "frames", None)
        return int(f(utt)) if callable(f) else int(np.shape(self.latents[utt])[0])

    def load(self, utt: str) -> np.ndarray:
        z = np.asarray(self.latents[utt], dtype=np.float32)
        if self.mean is not None:
            z = (z - self.mean) / self.std
        return z


class LMDataset(Dataset):
    """Examples ``{utt_id, prompt [P, D], phones [L], target [F, D]}`` from one or more sources."""

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
        self.items: list[tuple[int, str]] = []  # (source index, utt)
        self.lengths: list[int] = []  # target frames
        self.n_phones: list[int] = []
        by_spk: dict[tuple[int, str], list[int]] = {}
        self.skipped = {"no_latents": 0, "no_phones": 0, "length": 0, "single_utt": 0, "no_durations": 0}
        for si, src in enumerate(self.sources):
            for utt in sorted(src.utt2spk):
                if utt not in src.latents:
                    self.skipped["no_latents"] += 1
                    continue
                if not src.phones.get(utt):
                    self.skipped["no_phones"] += 1
                    continue
                f = src.frames(utt)
                if src.durations is not None:
                    d = src.durations.get(utt)
                    if d is None or len(d) != len(src.phones[utt]) or sum(d) != f:
                        self.skipped["no_durations"] += 1
                        continue
                # a split utterance may be longer than max_frames: then the check waits for the speaker count
                split = single_utt_prompt == "self_split" and src.durations is not None
                if f < min_frames or (max_frames is not None and f > max_frames and not split):
                    self.skipped["length"] += 1
                    continue
                by_spk.setdefault((si, src.utt2spk[utt]), []).append(len(self.items))
                self.items.append((si, utt))
                self.lengths.append(f)
                self.n_phones.append(len(src.phones[utt]))
        self.cuts: dict[int, list[tuple[int, int, int, int]]] = {}  # item → its self_split cuts (see _cuts)
        lone = {i for idx in by_spk.values() if len(idx) == 1 for i in idx}
        if single_utt_prompt == "self_split":
            cuts = {i: c for i in lone if (c := self._cuts(*self.items[i]))}
            too_long = {i for i in range(len(self.items)) if i not in cuts
                        and max_frames is not None and self.lengths[i] > max_frames}
            self.skipped["length"] += len(too_long)
            new, by_spk = self._drop(too_long, by_spk)
            self.cuts = {new[i]: c for i, c in cuts.items()}
            for i, c in self.cuts.items():  # bucket by the longest target a cut can leave
                self.lengths[i] = max(end - cut for _, cut, _, end in c)
        elif single_utt_prompt == "skip":
            self.skipped["single_utt"] = len(lone)
            _, by_spk = self._drop(lone, by_spk)
        self.speaker_items = by_spk
        self.item_speaker = {i: k for k, v in by_spk.items() for i in v}
        if not self.items:
            names = ", ".join(s.name or "?" for s in self.sources)
            raise DataDirError(f"no usable utterances (with latents, phones and {min_frames}+ frames) in {names}")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames_per_phone(self) -> dict[str, float]:
        """Target frames per phone token over the data: min, 1st percentile, mean, 99th percentile and
        max (for the length guards)."""
        r = np.asarray(self.lengths, dtype=np.float64) / np.maximum(np.asarray(self.n_phones, dtype=np.float64), 1)
        return {"min": float(r.min()), "p01": float(np.percentile(r, 1)), "mean": float(r.mean()),
                "p99": float(np.percentile(r, 99)), "max": float(r.max())}

    def speakers(self) -> int:
        return len(self.speaker_items)

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

    def _drop(self, drop: set[int], by_spk: dict) -> tuple[dict[int, int], dict]:
        """Remove the items ``drop``; returns {old index: new index} of those kept and ``by_spk``
        (speaker → item indices) renumbered, without speakers left empty."""
        keep = [i for i in range(len(self.items)) if i not in drop]
        self.items = [self.items[i] for i in keep]
        self.lengths = [self.lengths[i] for i in keep]
        self.n_phones = [self.n_phones[i] for i in keep]
        new = {i: n for n, i in enumerate(keep)}
        by_spk = {k: [new[i] for i in v if i in new] for k, v in by_spk.items()}
        return new, {k: v for k, v in by_spk.items() if v}

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
        si, utt = self.items[i]
        src = self.sources[si]
        rng = random.Random(hash((self.seed, self.epoch, i)) & 0xFFFFFFFF)
        target = src.load(utt)
        phones = src.phones[utt]
        durations = src.durations[utt] if src.durations is not None else None
        mates = [j for j in self.speaker_items[self.item_speaker[i]] if j != i]
        if mates:
            sj, other = self.items[rng.choice(mates)]
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
    """Length-bucketed batches under a padded-token budget; shuffled per epoch; sharded per rank."""

    def __init__(self, lengths: Sequence[int], max_tokens: int, max_batch_size: int = 64, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, extra_tokens: Sequence[int] | None = None,
                 curriculum_epochs: int = 0, curriculum_max_len: int | None = None):
        self.lengths = list(lengths)
        self.cost = [a + b for a, b in zip(self.lengths, extra_tokens or [0] * len(self.lengths))]
        self.max_tokens, self.max_batch_size = max_tokens, max_batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.curriculum_epochs, self.curriculum_max_len = curriculum_epochs, curriculum_max_len
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + 1000003 * self.epoch)
        idx = list(range(len(self.lengths)))
        if self.curriculum_max_len is not None and self.epoch < self.curriculum_epochs:
            short = [i for i in idx if self.lengths[i] <= self.curriculum_max_len]
            idx = short or idx
        jitter = {i: rng.random() if self.shuffle else 0.0 for i in idx}
        idx.sort(key=lambda i: (self.cost[i] + jitter[i] * 0.1 * self.cost[i], i))
        batches, cur, cur_max = [], [], 0
        for i in idx:
            new_max = max(cur_max, self.cost[i])
            if cur and (new_max * (len(cur) + 1) > self.max_tokens or len(cur) >= self.max_batch_size):
                batches.append(cur)
                cur, new_max = [], self.cost[i]
            cur.append(i)
            cur_max = new_max
        if cur:
            batches.append(cur)
        if self.shuffle:
            rng.shuffle(batches)
        if self.world_size > 1:  # equal share per rank: repeat from the start to fill the last round
            per = math.ceil(len(batches) / self.world_size)
            batches = [batches[k % len(batches)] for k in range(per * self.world_size)][self.rank :: self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def examples(sources: Sequence[LMSource]) -> list[tuple[int, str]]:
    """(source index, utterance id) of every utterance that has both phones and latents, in a fixed order."""
    return [(si, u) for si, src in enumerate(sources) for u in sorted(src.phones) if u in src.latents]
