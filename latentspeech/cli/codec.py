"""CLI: ``latentspeech codec train|encode|decode|extract|stats`` (the audio codec).

Latent ``.npy`` files hold float32 arrays of shape ``(frames, latent_dim)`` (frames first, as in
latent stores); RVQ codes (``encode --codes``) are int16 ``(frames, quantizers)``.
"""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "codec-demo"


def register(sub) -> None:
    p = sub.add_parser("codec", help="train the audio codec, encode/decode audio, extract latents",
                       description="The σ-VAE audio codec: waveform <-> continuous latents at a low frame rate.")
    csub = p.add_subparsers(dest="codec_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    t = csub.add_parser("train", help="train (or resume) a codec on Kaldi data dirs")
    t.add_argument("--config", required=True, help="training YAML (e.g. egs/demo/tts1/conf/codec.yaml)")
    t.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="Kaldi data dir to crop audio from (repeatable)")
    t.add_argument("--out", required=True, metavar="EXP_DIR", help="experiment dir (checkpoints, logs, model/)")
    t.add_argument("--max-steps", type=int, default=None, help="override trainer.max_steps")
    t.add_argument("--resume", action="store_true", help="continue from EXP_DIR/checkpoints/last.ckpt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--init-from", default=None, metavar="M",
                   help="start from this codec's encoder/decoder (sets init.from_model; RVQ codebooks by k-means)")
    from .train import add_trainer_options

    add_trainer_options(t)
    t.set_defaults(func=_train)

    e = csub.add_parser("encode", help="audio file -> latents .npy (frames x dims)")
    e.add_argument("input", help="audio file (any rate/channels; resampled to the codec's rate)")
    e.add_argument("output", help="output .npy")
    e.add_argument("--model", default=DEFAULT_MODEL, help=f"codec name or model dir (default {DEFAULT_MODEL})")
    e.add_argument("--normalize", action="store_true", help="write normalised latents ((z - mean) / std)")
    e.add_argument("--codes", action="store_true", help="RVQ codecs: write the codes instead of latents")
    e.set_defaults(func=_encode)

    d = csub.add_parser("decode", help="latents .npy (frames x dims) or RVQ codes -> wav")
    d.add_argument("input", help="input .npy (float latents, or integer RVQ codes)")
    d.add_argument("output", help="output audio file (.wav/.flac)")
    d.add_argument("--model", default=DEFAULT_MODEL, help=f"codec name or model dir (default {DEFAULT_MODEL})")
    d.add_argument("--normalized", action="store_true", help="the latents are normalised: denormalise first")
    d.set_defaults(func=_decode)

    x = csub.add_parser("extract", help="latents of a whole data dir into shards (resumable; --nj/--job split it)",
                        description="Latents (or RVQ codes) of a Kaldi data dir into a latent store. Split over jobs: "
                        "run --nj N --job J for J = 1..N (each into OUT_DIR/splitN/J), then --nj N --merge.")
    x.add_argument("data_dir", help="Kaldi data dir")
    x.add_argument("out_dir", help="latent store dir (e.g. dump/train)")
    x.add_argument("--model", default=DEFAULT_MODEL, help=f"codec name or model dir (default {DEFAULT_MODEL})")
    x.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch (default 60)")
    x.add_argument("--shard-size", type=int, default=1000, help="utterances per shard (default 1000)")
    x.add_argument("--codes", action="store_true", help="RVQ codecs: store codes instead of latents")
    x.add_argument("--device", default=None,
                   help="torch device (default: cpu, or GPU (J-1) mod the visible GPUs when CUDA is available)")
    x.add_argument("--nj", type=int, default=1,
                   help="split the utterances (C order) into N contiguous ranges, one per job (default 1)")
    x.add_argument("--job", type=int, default=None, metavar="J",
                   help="with --nj N: extract only range J (1..N) into OUT_DIR/splitN/J; without it, all ranges in turn")
    x.add_argument("--merge", action="store_true",
                   help="extract nothing: list the shards of every job store (OUT_DIR/split*/*) in OUT_DIR/index.tsv; "
                        "fails while an utterance of DATA_DIR is in none (a job has not finished)")
    x.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding audio (default 0: inline)")
    x.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="encoder precision under autocast (float16: CUDA only); stored latents are float32")
    x.add_argument("--no-progress", action="store_true", help="no progress bar")
    x.set_defaults(func=_extract)

    s = csub.add_parser("stats", help="print a codec's facts and a latent store's per-dimension statistics")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"codec name or model dir (default {DEFAULT_MODEL})")
    s.add_argument("--store", default=None, help="latent store dir to summarise")
    s.set_defaults(func=_stats)


def _train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..train.codec import CodecTrainConfig, train_codec
    from .train import print_resources, trainer_overrides

    cfg = load_config(args.config, CodecTrainConfig, trainer_overrides(args))
    if print_resources(args, cfg.trainer):
        return 0
    if args.init_from:
        cfg.init.from_model = args.init_from
    model = train_codec(cfg, args.data, args.out, max_steps=args.max_steps, resume=args.resume,
                        progress=not args.no_progress)
    print(f"codec model: {model}")
    return 0


def _load(name: str, device: str | None = None):
    from ..models.codec import load_codec

    return load_codec(name, device=device)


def _encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..audio import load_audio

    codec = _load(args.model)
    wav = torch.from_numpy(load_audio(args.input, codec.sample_rate))[None]
    if args.codes:
        arr = codec.encode_codes(wav)[0].T.numpy().astype(np.int16)
    else:
        z = codec.encode(wav)
        if args.normalize:
            z = codec.normalize(z)
        arr = z[0].T.numpy().astype(np.float32)
    np.save(args.output, arr)
    print(f"{args.output}: {arr.shape[0]} frames x {arr.shape[1]} at {codec.frame_rate:g} Hz")
    return 0


def _decode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..audio import save_audio
    from ..errors import AudioError

    codec = _load(args.model)
    try:
        arr = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise AudioError(f"cannot read latents {args.input}: {e}") from None
    if arr.ndim != 2:
        raise AudioError(f"{args.input}: expected a 2-D array (frames x dims), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        wav = codec.decode_codes(torch.from_numpy(arr.astype(np.int64)).T[None])
    else:
        if arr.shape[1] != codec.latent_dim:
            raise AudioError(
                f"{args.input}: latents have {arr.shape[1]} dims per frame, the codec expects {codec.latent_dim} "
                f"(shape must be frames x {codec.latent_dim})"
            )
        z = torch.from_numpy(arr.astype(np.float32)).T[None]
        if args.normalized:
            z = codec.denormalize(z)
        wav = codec.decode(z)
    save_audio(args.output, wav[0].numpy(), codec.sample_rate)
    print(f"{args.output}: {wav.shape[-1] / codec.sample_rate:.2f} s at {codec.sample_rate} Hz")
    return 0


def _extract(args: argparse.Namespace) -> int:
    import torch

    from ..data.latents import LatentStore
    from ..errors import ConfigError
    from ..inference.extract import extract_latents, merge_job_stores

    if args.merge:
        if args.job is not None:
            raise ConfigError("--merge only merges the job stores: run it after the jobs, without --job")
        n = merge_job_stores(args.out_dir, args.data_dir)
        print(f"{args.out_dir}: {n} utterances (merged)")
        return 0
    device = args.device
    if device is None:  # several visible GPUs: job J takes GPU (J - 1) mod count
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = "cpu" if n == 0 else f"cuda:{((args.job or 1) - 1) % n}"
    codec = _load(args.model, device)
    out = extract_latents(codec, args.data_dir, args.out_dir, batch_seconds=args.batch_seconds,
                          shard_size=args.shard_size, codes=args.codes, codec_name=str(args.model),
                          nj=args.nj, job=args.job, num_workers=args.num_workers, dtype=args.dtype,
                          progress=not args.no_progress)
    print(f"{out}: {len(LatentStore(out))} utterances")
    return 0


def _stats(args: argparse.Namespace) -> int:
    import numpy as np

    codec = _load(args.model)
    n = sum(p.numel() for p in codec.parameters())
    print(f"codec {args.model}: {n / 1e6:.2f} M parameters, {codec.sample_rate} Hz audio, hop {codec.hop_length} "
          f"({codec.frame_rate:g} Hz), {codec.latent_dim}-d {codec.cfg.bottleneck.kind} latents, "
          f"compression {codec.hop_length / codec.latent_dim:g}x samples per latent value")
    print(f"latent std per dim: min {codec.latent_std.min():.3f} mean {codec.latent_std.mean():.3f} "
          f"max {codec.latent_std.max():.3f}")
    if args.store:
        from ..data.latents import LatentStore

        store = LatentStore(args.store)
        allz = np.concatenate([z for _, z in store.items()], axis=0)
        hours = allz.shape[0] / (store.frame_rate or codec.frame_rate) / 3600
        std = allz.std(axis=0)
        print(f"store {args.store}: {len(store)} utterances, {allz.shape[0]} frames ({hours:.2f} h); "
              f"per-dim std min {std.min():.3f} mean {std.mean():.3f} max {std.max():.3f}; "
              f"active dims (std > 0.1): {(std > 0.1).sum()}/{allz.shape[1]}")
    return 0
