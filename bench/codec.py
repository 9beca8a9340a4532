#!/usr/bin/env python
"""Codec benchmark: size, frame rate, compression, CPU speed and resynthesis quality.

    .venv/bin/python bench/codec.py --model egs/demo/tts1/exp/codec_demo/model \\
        --data egs/demo/tts1/data/real_test --quality --json exp/bench_codec.json

Prints a table:
- parameters, sample rate, hop, frame rate, latent dim, compression (16-bit PCM bits / latent
  bits with fp16 latents, or RVQ code bits);
- encode and decode real-time factor on this CPU (``--threads``, default 1; RTF = seconds of compute per
  second of audio; lower is faster);
- multi-resolution log-mel L1 distance between each original and its resynthesis;
- with ``--quality``: Whisper tiny.en WER of the originals and of the resyntheses against the
  data dir's transcripts (pseudo-labels for librispeech_voices: the *difference* is the point),
  and Resemblyzer cosine(original, resynthesis) (mean and min over utterances);
- with ``--degrade``: each original is first made to sound like a user's recording (room
  reverberation, background noise at 15-30 dB SNR, band limits; seeded per utterance,
  :mod:`latentspeech.audio.augment`), and that degraded clip is what is encoded and compared.

Nothing is downloaded: the ASR and speaker encoder ship inside pip packages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("LATENTSPEECH_SHARED", REPO.parent / "shared")) / "data" / "librispeech_voices"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="codec-demo", help="codec name or model dir (default codec-demo)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Kaldi data dir of real speech")
    p.add_argument("--text-file", default=None, help="transcript table (default: text, else text.pseudo)")
    p.add_argument("--max-utts", type=int, default=0, help="first N utterances only (0 = all)")
    p.add_argument("--quality", action="store_true", help="also WER (Whisper tiny.en) and SIM (Resemblyzer)")
    p.add_argument("--degrade", action="store_true",
                   help="reverberate / add noise / band-limit the originals first (seeded), as users' recordings are")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the timing (default 1)")
    p.add_argument("--save-wavs", default=None, help="write the resyntheses into this folder")
    p.add_argument("--json", default=None, help="write the figures as JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from latentspeech.audio import save_audio
    from latentspeech.audio.features import mel_distance
    from latentspeech.models.codec import load_codec
    from latentspeech.data.kaldi import DataDir

    codec = load_codec(args.model)
    text_file = args.text_file or ("text" if (Path(args.data) / "text").is_file() else "text.pseudo")
    data = DataDir.load(args.data, text_file=text_file)
    utts = data.utt_ids[: args.max_utts or None]
    sr = codec.sample_rate
    originals, resyn, dists = [], [], []
    t_enc = t_dec = seconds = 0.0
    from latentspeech.audio.augment import AugmentConfig, augment

    degrade = AugmentConfig(reverb_prob=0.5, noise_prob=0.5, band_prob=0.3, snr_db=[15.0, 30.0])
    for i, utt in enumerate(utts):
        wav = data.load_utterance(utt, sr)
        if args.degrade:
            wav = augment(wav, sr, degrade, np.random.default_rng(i))
        x = torch.from_numpy(wav)[None]
        t0 = time.perf_counter()
        z = codec.encode(x)
        t1 = time.perf_counter()
        y = codec.decode(z)[0, : len(wav)].numpy()
        t2 = time.perf_counter()
        t_enc, t_dec, seconds = t_enc + t1 - t0, t_dec + t2 - t1, seconds + len(wav) / sr
        originals.append(wav)
        resyn.append(y)
        dists.append(mel_distance(torch.from_numpy(wav), torch.from_numpy(y), sr))
        if args.save_wavs:
            save_audio(Path(args.save_wavs) / f"{utt}.wav", y, sr)

    n_params = sum(p.numel() for p in codec.parameters())
    if codec.is_rvq:
        latent_bits = codec.frame_rate * codec.num_quantizers * np.log2(codec.codebook_size)
    else:
        latent_bits = codec.frame_rate * codec.latent_dim * 16
    res = {
        "model": str(args.model),
        "data": str(args.data),
        "degraded": bool(args.degrade),
        "utterances": len(utts),
        "seconds": round(seconds, 1),
        "parameters_M": round(n_params / 1e6, 3),
        "sample_rate": sr,
        "hop_length": codec.hop_length,
        "frame_rate": codec.frame_rate,
        "latent_dim": codec.latent_dim,
        "bottleneck": codec.cfg.bottleneck.kind,
        "latent_kbps": round(latent_bits / 1000, 2),
        "compression": round(sr * 16 / latent_bits, 1),
        "encode_rtf": round(t_enc / seconds, 4),
        "decode_rtf": round(t_dec / seconds, 4),
        "threads": args.threads,
        "mel_distance": round(float(np.mean(dists)), 4),
    }
    if args.quality:
        from latentspeech.eval import get_asr, get_speaker_encoder, word_error_rate

        refs = [data.text.get(u, "") for u in utts]
        asr = get_asr()
        hyp_orig = asr.transcribe(originals, progress=True)
        hyp_resyn = asr.transcribe(resyn, progress=True)
        enc = get_speaker_encoder()
        e_orig, e_resyn = enc.embed(originals), enc.embed(resyn)
        sims = (e_orig * e_resyn).sum(axis=1)
        res.update({
            "text_file": text_file,
            "wer_original": round(word_error_rate(refs, hyp_orig), 4),
            "wer_resynthesis": round(word_error_rate(refs, hyp_resyn), 4),
            "wer_resynthesis_vs_original_asr": round(word_error_rate(hyp_orig, hyp_resyn), 4),
            "sim_mean": round(float(sims.mean()), 4),
            "sim_min": round(float(sims.min()), 4),
        })
        res["wer_delta"] = round(res["wer_resynthesis"] - res["wer_original"], 4)
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
