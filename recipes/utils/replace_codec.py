#!/usr/bin/env python3
"""Give a trained LM model dir a decoder-only fine-tune of its codec (e.g. a harmonic-source decoder).

    replace_codec.py MODEL_DIR CODEC_DIR

An LM model dir (LatentLM or VALL-E) nests the codec it was trained with in ``MODEL_DIR/codec``. A
codec fine-tuned with ``init.freeze_encoder`` + ``init.keep_bottleneck`` encodes exactly as that one
(same encoder, bottleneck and latent statistics), so the LM stays valid with it; this script checks
that (tensors equal at the precision of the nested copy, e.g. float16 in packaged models) and then
replaces the nested codec, writing to a temporary folder first so that a failure leaves the old one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ENCODING = ("encoder.", "bottleneck.", "latent_mean", "latent_std")


def encodes_alike(stored: dict, new: dict) -> list[str]:
    """Names of the encoding tensors (encoder, bottleneck, latent statistics) where the state dict
    ``new`` differs from ``stored``, compared at ``stored``'s precision; empty when they encode alike."""
    import torch

    keys = sorted(k for k in set(stored) | set(new) if k.startswith(ENCODING))
    return [k for k in keys
            if k not in stored or k not in new or stored[k].shape != new[k].shape
            or not torch.equal(stored[k], new[k].to(stored[k].dtype))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", type=Path, help="LM model dir with a nested codec/ (e.g. exp/latentlm/model)")
    p.add_argument("codec_dir", type=Path, help="the fine-tuned codec model dir (e.g. exp/codec_ft/model)")
    args = p.parse_args(argv)

    from latentspeech.checkpoint import load_model_dir
    from latentspeech.models.codec import load_codec

    nested = args.model_dir / "codec"
    if not (nested / "model.safetensors").is_file():
        print(f"replace_codec.py: {args.model_dir} has no nested codec/", file=sys.stderr)
        return 1
    stored = load_model_dir(nested, kind="codec").state_dict  # as stored (packaged models: float16)
    bad = encodes_alike(stored, load_codec(args.codec_dir).state_dict())
    if bad:
        print(f"replace_codec.py: {args.codec_dir} does not encode like {nested} (differs in {len(bad)} tensors, "
              f"e.g. {bad[0]}): train it with init.freeze_encoder and init.keep_bottleneck", file=sys.stderr)
        return 1
    tmp = args.model_dir / "codec.new"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(args.codec_dir, tmp, ignore=shutil.ignore_patterns("checkpoints", "logs", "*.ckpt"))
    shutil.rmtree(nested)
    tmp.rename(nested)
    print(f"{nested}: now {args.codec_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
