"""Alignment proxy experiment for LatentLM design choices (segment vs global positions, ...).

A synthetic "speech" task with a known alignment: each phone p has a latent pattern e_p and a
duration d_p (1-3 frames); a speaker adds an offset o_s; frames = e_p + o_s + noise. The model
must read the phones in order (skip/repeat/babble show up as phone errors) and stop on time.
Run: python bench/align_proxy.py --position-mode segment --phone-position-scale 2 --steps 3000

Metrics on held-out sentences: teacher-forced diffusion loss, length ratio, fraction stopping
within ±20 %, and a phone error rate (PER) of free-running generations decoded by nearest
phone pattern (repeats collapsed via the known durations -> run-length decoding).
"""
import argparse, json, math, random, sys, time
import numpy as np
import torch
from latentspeech.models.latentlm import LatentLM, LatentLMConfig
from latentspeech.models.transformer import TransformerConfig
from latentspeech.data.collate import collate_lm

ap = argparse.ArgumentParser()
ap.add_argument("--position-mode", default="segment")
ap.add_argument("--steps", type=int, default=1500)
ap.add_argument("--eval-every", type=int, default=500)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--no-segment-emb", action="store_true")
ap.add_argument("--phone-position-scale", type=float, default=1.0,
                help="LatentLMConfig.phone_position_scale (2.0 = this task's mean frames per phone)")
ap.add_argument("--curriculum", type=int, default=0, help="steps on short sentences first")
args = ap.parse_args()
torch.set_num_threads(1)
rng = np.random.default_rng(123)
V, D, S = 24, 8, 16
E = rng.standard_normal((V, D)).astype(np.float32)
DUR = rng.integers(1, 4, V)
O = (0.7 * rng.standard_normal((S, D))).astype(np.float32)


def utt(phones, spk, r):
    frames = np.concatenate([np.repeat(E[p][None], DUR[p], 0) for p in phones]) + O[spk]
    return (frames + 0.1 * r.standard_normal(frames.shape)).astype(np.float32)


def make(n, r, lo=4, hi=30):
    out = []
    for i in range(n):
        spk = int(r.integers(S))
        ph = r.integers(1, V, r.integers(lo, hi + 1)).tolist()
        out.append(dict(spk=spk, phones=ph, target=utt(ph, spk, r)))
    return out


r = np.random.default_rng(1)
train = make(3000, r)
dev = make(40, np.random.default_rng(2), 8, 25)
by_spk = {}
for i, u in enumerate(train):
    by_spk.setdefault(u["spk"], []).append(i)


def example(i, u, r):
    mates = by_spk[u["spk"]]
    j = mates[r.integers(len(mates))]
    p = train[j]["target"]
    n = min(len(p), int(r.integers(10, 25)))
    return dict(utt_id=str(i), prompt=p[:n], phones=u["phones"], target=u["target"])


torch.manual_seed(args.seed)
cfg = LatentLMConfig(latent_dim=D, vocab_size=V, frame_rate=25.0, position_mode=args.position_mode,
                     phone_position_scale=args.phone_position_scale,
                     transformer=TransformerConfig(dim=64, n_layers=3, n_heads=4, max_seq_len=512),
                     head_blocks=2, head_width=64, frames_per_phone=4.0)
model = LatentLM(cfg)
if args.no_segment_emb:
    model.segment_emb.weight.data.zero_()
    model.segment_emb.weight.requires_grad_(False)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1, s / args.steps)))))
br = np.random.default_rng(args.seed + 10)


def decode_phones(z, spk):
    x = z.numpy() - O[spk]
    d = ((x[:, None, :] - E[None, 1:, :]) ** 2).sum(-1)
    ids = (d.argmin(1) + 1).tolist()
    out, k = [], 0
    while k < len(ids):  # run-length decode with the known durations
        p = ids[k]
        run = 1
        while k + run < len(ids) and ids[k + run] == p:
            run += 1
        out += [p] * max(1, round(run / DUR[p]))
        k += run
    return out


def edit(a, b):
    dp = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, dp[0] = dp[0], i
        for j in range(1, len(b) + 1):
            cur = min(dp[j] + 1, dp[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev, dp[j] = dp[j], cur
    return dp[-1]


def evaluate(step):
    model.eval()
    er = np.random.default_rng(5)
    exs = [example(i, u, er) for i, u in enumerate(dev)]
    with torch.no_grad():
        tf = model.loss(collate_lm(exs), cfg_drop=False, generator=torch.Generator().manual_seed(0))
        gen = model.generate([e["phones"] for e in exs], [torch.from_numpy(e["prompt"]) for e in exs], steps=10,
                             cfg_scale=1.0, generator=torch.Generator().manual_seed(0))
    ratios = np.array([len(z) / len(e["target"]) for z, e in zip(gen.latents, exs)])
    errs = sum(edit(decode_phones(z, u["spk"]), u["phones"]) for z, u in zip(gen.latents, dev))
    per = errs / sum(len(u["phones"]) for u in dev)
    res = dict(step=step, tf_diff=round(float(tf["diff"]), 4), stop_acc=round(float(tf["stop_acc"]), 4),
               len_ratio=round(float(ratios.mean()), 3), within20=round(float(np.mean(np.abs(ratios - 1) <= 0.2)), 3),
               stopped=round(float(np.mean(gen.stopped)), 3), per=round(per, 3))
    print(json.dumps(res), flush=True)
    model.train()
    return res


t0 = time.time()
order = sorted(range(len(train)), key=lambda i: len(train[i]["target"]))
for step in range(1, args.steps + 1):
    pool = order[: len(order) // 3] if step <= args.curriculum else range(len(train))
    idx = br.choice(list(pool), 24, replace=False)
    batch = collate_lm([example(i, train[i], br) for i in idx])
    loss = model.loss(batch)["loss"]
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    if step % args.eval_every == 0:
        evaluate(step)
print(json.dumps(dict(mode=args.position_mode, phone_position_scale=args.phone_position_scale, params=model.num_parameters(), minutes=round((time.time() - t0) / 60, 1))))
