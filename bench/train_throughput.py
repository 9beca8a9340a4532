"""Training throughput of the paper-size configs: tokens per second, audio per second and, on a GPU whose
peak is known, model FLOPs utilisation (MFU).

One optimiser step after another on synthetic batches shaped as the config's data section makes them
(``max_tokens`` padded slots of prompt + phones + target, ``--utt-seconds`` targets, the mean prompt),
with the config's precision and AdamW. The FLOPs of one step are counted by torch's FlopCounterMode
(forward + backward), so MFU = counted FLOPs per second / the device's dense bf16 peak.

Runs here on tiny sizes and unchanged on a GPU:

    .venv/bin/python bench/train_throughput.py --tiny                          # CPU, a few seconds
    python bench/train_throughput.py --system latentlm --steps 20              # a GPU, paper size
    python bench/train_throughput.py --system valle --steps 20
    python bench/train_throughput.py --system latentlm --activation-checkpointing --max-tokens 120000

It measures one device; DDP over N devices adds the gradient all-reduce on top (overlapped with backward).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from latentspeech.config import from_dict, load_yaml
from latentspeech.data.batch import LMBatch, VALLEBatch
from latentspeech.models.latentlm import LatentLM, LatentLMConfig
from latentspeech.models.valle import VALLE, VALLEConfig

CONF = Path(__file__).resolve().parents[1] / "egs" / "librilight" / "tts1" / "conf"
#: Dense bf16 peak FLOP/s by a substring of torch.cuda.get_device_name (vendor datasheets, no sparsity).
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12,
             "A10G": 70e12, "L4": 121e12, "RTX 4090": 165e12}
PHONES_PER_SECOND = 12.0  # English read speech, roughly
TINY = dict(dim=64, n_layers=2, n_heads=4)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def durations(n_phones: int, frames: int) -> list[int]:
    """``frames`` spread over ``n_phones`` as evenly as integers allow."""
    return [(i + 1) * frames // n_phones - i * frames // n_phones for i in range(n_phones)]


def shapes(data: dict, frame_rate: float, utt_seconds: float, max_tokens: int) -> tuple[int, int, int, int]:
    """(batch size, prompt frames, phones, target frames) of a full batch."""
    prompt = round(sum(data.get("prompt_seconds", (3.0, 10.0))) / 2 * frame_rate)
    target = round(utt_seconds * frame_rate)
    phones = max(1, round(utt_seconds * PHONES_PER_SECOND))
    batch = max(1, min(int(data.get("max_batch_size", 256)), max_tokens // (prompt + phones + target)))
    return batch, prompt, phones, target


def latentlm_setup(conf: dict, args, vocab: int = 100):
    model_cfg = dict(conf["model"], vocab_size=vocab)
    if args.tiny:
        model_cfg["transformer"] = {**model_cfg["transformer"], **TINY}
        model_cfg["head_blocks"] = 2
    if args.activation_checkpointing:
        model_cfg["transformer"] = {**model_cfg["transformer"], "activation_checkpointing": True}
    cfg = from_dict(LatentLMConfig, model_cfg)
    b, p, l, f = shapes(conf["data"], cfg.frame_rate, args.utt_seconds, args.max_tokens or conf["data"]["max_tokens"])
    g = torch.Generator().manual_seed(0)

    def batch() -> LMBatch:
        full = lambda n: torch.full((b,), n, dtype=torch.long)  # noqa: E731
        dur = torch.tensor([durations(l, f)] * b) if cfg.alignment == "pointer" else None
        return LMBatch(prompt=torch.randn(b, p, cfg.latent_dim, generator=g), prompt_lens=full(p),
                       phones=torch.randint(1, vocab, (b, l), generator=g), phone_lens=full(l),
                       target=torch.randn(b, f, cfg.latent_dim, generator=g), target_lens=full(f),
                       utt_ids=[f"u{i}" for i in range(b)], durations=dur)

    return LatentLM(cfg), batch, dict(batch=b, prompt=p, phones=l, target=f, frame_rate=cfg.frame_rate)


def valle_setup(conf: dict, args, vocab: int = 100):
    model_cfg = dict(conf["model"], phone_vocab_size=vocab)
    for part in ("ar", "nar"):
        if args.tiny:
            model_cfg[part] = {**model_cfg[part], **TINY}
        if args.activation_checkpointing:
            model_cfg[part] = {**model_cfg[part], "activation_checkpointing": True}
    cfg = from_dict(VALLEConfig, model_cfg)
    b, p, l, f = shapes(conf["data"], cfg.frame_rate, args.utt_seconds, args.max_tokens or conf["data"]["max_tokens"])
    g = torch.Generator().manual_seed(0)
    q, k = cfg.num_quantizers, cfg.codebook_size

    def batch() -> VALLEBatch:
        full = lambda n: torch.full((b,), n, dtype=torch.long)  # noqa: E731
        dur = torch.tensor([durations(l, f)] * b) if getattr(cfg, "alignment", "") == "pointer" else None
        return VALLEBatch(phones=torch.randint(1, vocab, (b, l), generator=g), phone_lens=full(l),
                          prompt=torch.randint(0, k, (b, q, p), generator=g), prompt_lens=full(p),
                          codes=torch.randint(0, k, (b, q, f), generator=g), code_lens=full(f), durations=dur)

    return VALLE(cfg), batch, dict(batch=b, prompt=p, phones=l, target=f, frame_rate=cfg.frame_rate)


def to_device(batch, device):
    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)
                                         if isinstance(getattr(batch, f.name), torch.Tensor)})


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--system", choices=["latentlm", "valle"], default="latentlm")
    ap.add_argument("--config", help="training config (default: egs/librilight/tts1/conf/<system>.yaml)")
    ap.add_argument("--tiny", action="store_true", help=f"shrink the Transformers to {TINY} (CPU)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    ap.add_argument("--precision", help="32 or bf16-mixed (default: the config's on a GPU, 32 on the CPU)")
    ap.add_argument("--max-tokens", type=int, help="padded slots per batch (default: the config's; --tiny: 2000)")
    ap.add_argument("--utt-seconds", type=float, default=12.0, help="target length of every utterance (default 12)")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    if args.tiny and args.max_tokens is None:
        args.max_tokens = 2000
    conf = load_yaml(args.config or CONF / f"{args.system}.yaml")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    precision = args.precision or (str(conf.get("trainer", {}).get("precision", "32")) if device.type == "cuda" else "32")
    if precision not in ("32", "bf16-mixed"):
        raise SystemExit(f"--precision must be 32 or bf16-mixed, got {precision}")
    torch.manual_seed(0)
    model, make_batch, shape = (latentlm_setup if args.system == "latentlm" else valle_setup)(conf, args)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), fused=device.type == "cuda")
    batches = [to_device(make_batch(), device) for _ in range(2)]

    def step(i: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = model.loss(batches[i % 2])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(0)
    flops = counter.get_total_flops()
    for i in range(args.warmup):
        step(i)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    sync()
    seconds = (time.perf_counter() - t0) / args.steps
    b, tokens = shape["batch"], shape["batch"] * (shape["prompt"] + shape["phones"] + shape["target"])
    peak = peak_flops(device)
    out = dict(system=args.system, tiny=args.tiny, device=torch.cuda.get_device_name(device) if device.type == "cuda"
               else "cpu", precision=precision, params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
               **shape, step_s=round(seconds, 4), tokens_per_s=round(tokens / seconds),
               audio_h_per_gpu_hour=round(b * shape["target"] / shape["frame_rate"] / seconds, 1),
               tflops_per_step=round(flops / 1e12, 3), achieved_tflops=round(flops / seconds / 1e12, 4),
               mfu=round(flops / seconds / peak, 3) if peak and precision == "bf16-mixed" else None,
               peak_mem_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None)
    print("| " + " | ".join(out) + " |\n|" + "---|" * len(out) + "\n| " + " | ".join(str(v) for v in out.values()) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
