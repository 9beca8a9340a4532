"""LatentLM decoding benchmark: speed and sampler quality against diffusion steps and CFG scale.

    .venv/bin/python bench/decode.py                                  # demo-size model, random weights
    .venv/bin/python bench/decode.py --model exp/latentlm/model       # a trained model dir (adds codec RTF)
    .venv/bin/python bench/decode.py --steps 1 2 3 5 10 20 --cfg 1 3 --seconds 4 --threads 2
    .venv/bin/python bench/decode.py --valle random [--model LM_DIR]  # side by side with VALL-E (compare_valle)
    .venv/bin/python bench/decode.py --model LM_DIR --valle VE_DIR --text T1 T2 --prompt P1 P2  # paired, every pair

Prints one table row per (steps, cfg):
  passes/s   Transformer forward passes per second of generated audio (= token rate: frame rate /
             patch_size; the paper's
             "decoding steps"; VALL-E 2 needs 75 AR + 7 NAR passes per second at 75 Hz)
  head/s     diffusion-head evaluations per second of audio (steps × frame rate; CFG doubles the rows
             of each evaluation, not their number)
  LM s/s     wall time of the LM per second of audio; RTF adds the codec decoder when there is one
  gauss err  sampler accuracy proxy (model-independent): relative error of the std of a Gaussian
             target recovered with the exact denoiser at this step count (0 = perfect)
  ode dev    model proxy (only with --model): RMS deviation of the sampled frame from a 50-step
             sample from the same noise and LM state, relative to the RMS of the frame
Quality in WER/SIM needs a trained model and `latentspeech eval`; see RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from latentspeech.models.diffusion import NoiseSchedule, guided, sample  # noqa: E402
from latentspeech.models.latentlm import LatentLM  # noqa: E402


def build_model(args):
    if args.model:
        from latentspeech.models.latentlm import load_latentlm

        model, md = load_latentlm(args.model)
        codec = None
        if (md.path / "codec").is_dir():
            from latentspeech.models.codec import load_codec

            codec = load_codec(md.path / "codec")
        return model, codec, str(md.path)
    import dataclasses

    from latentspeech.config import load_config
    from latentspeech.train.latentlm import LatentLMTrainConfig

    cfg = load_config(args.config, LatentLMTrainConfig).model
    cfg = dataclasses.replace(cfg, vocab_size=args.vocab)
    torch.manual_seed(0)
    model = LatentLM(cfg).eval()
    with torch.no_grad():
        for p in model.head.parameters():  # wake the zero-initialised head so that it does real work
            if p.dim() == 2 and float(p.abs().sum()) == 0.0:
                torch.nn.init.normal_(p, std=0.02)
    return model, None, f"{args.config} (random weights)"


def gaussian_error(steps: int) -> float:
    sched = NoiseSchedule(1000)
    mu, sd = torch.tensor([1.0, -0.5, 0.0, 0.3]), torch.tensor([0.5, 1.0, 0.2, 0.1])

    def fn(x, t):
        a, s = sched.alpha[t, None], sched.sigma[t, None]
        x0 = mu + a * sd**2 * (x - a * mu) / (a**2 * sd**2 + s**2)
        eps = (x - a * x0) / s
        return a * eps - s * x0

    x = sample(fn, (20000, 4), sched, "v", steps=steps, generator=torch.Generator().manual_seed(0))
    return float((x.std(0) / sd - 1).abs().max())


@torch.no_grad()
def ode_deviation(model: LatentLM, steps: int, cfg: float, n: int = 64) -> float:
    """RMS(sample_N − sample_50) / RMS(sample_50) over ``n`` LM states of a generated sequence."""
    g = torch.Generator().manual_seed(1)
    d = model.cfg.token_dim
    phones = [[(7 * i) % (model.cfg.vocab_size - 1) + 1 for i in range(30)]]
    pk = model.pack(torch.zeros(1, 1, d), torch.zeros(1, dtype=torch.long), torch.tensor(phones),
                     torch.tensor([30]), torch.randn(1, n, d, generator=g), torch.tensor([n]), left_pad=False)
    h = model.transformer(pk.x, pk.positions, pk.valid)[0, -n:]
    unc = None
    if cfg != 1.0:
        pu = model.pack(torch.zeros(1, 1, d), torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
                         torch.zeros(1, dtype=torch.long), torch.randn(1, n, d, generator=g), torch.tensor([n]), left_pad=False)
        unc = model.transformer(pu.x, pu.positions, pu.valid)[0, -n:]
    fn = guided(model.head, h, unc, cfg)
    x_T = torch.randn(n, d, generator=g)
    ref = sample(fn, (n, d), model.head.schedule, model.cfg.prediction, steps=50, x_T=x_T.clone())
    got = sample(fn, (n, d), model.head.schedule, model.cfg.prediction, steps=steps, x_T=x_T.clone())
    return float((got - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp(min=1e-8))


@torch.no_grad()
def time_generation(model: LatentLM, codec, steps: int, cfg: float, seconds: float, batch: int, reps: int):
    tokens = max(1, round(seconds * model.cfg.token_rate))  # Transformer steps (frames / patch_size)
    frames = tokens * model.cfg.patch_size
    n_phones = max(1, math.ceil(frames / model.cfg.guard_frames_per_phone))
    phones = [[(5 * i + b) % (model.cfg.vocab_size - 1) + 1 for i in range(n_phones)] for b in range(batch)]
    prompt = torch.randn(round(3 * model.cfg.frame_rate), model.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    best_lm, best_codec, out = math.inf, 0.0, None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = model.generate(phones, prompt, steps=steps, cfg_scale=cfg, max_frames=tokens, use_stop=False,
                             generator=torch.Generator().manual_seed(0))
        t1 = time.perf_counter()
        tc = 0.0
        if codec is not None:
            z = codec.denormalize(out.latents[0].transpose(0, 1)[None])
            codec.decode(z)
            tc = time.perf_counter() - t1
        if t1 - t0 < best_lm:
            best_lm, best_codec = t1 - t0, tc
    audio = batch * frames / model.cfg.frame_rate
    return out, best_lm / audio, (best_lm + best_codec * batch) / audio


# -- LatentLM vs the VALL-E baseline, side by side (`--valle`) ------------------------------------
# One run, the same text, prompt and machine; each system runs in its own process (so that its
# peak memory is its own). Trained model dirs when given (--model, --valle DIR), otherwise
# random weights of the demo sizes (egs/demo/tts1/conf/{latentlm,codec,valle,codec_rvq}.yaml),
# which run for exactly --seconds of audio (stopping is meaningless without training).
COMPARE_TEXT = "The quick brown fox jumps over the lazy dog, and the dog did not mind at all."
COMPARE_PROMPT = REPO.parent / "shared/data/librispeech_voices/flac/103-1240-0000.flac"


def _random_codec(conf: Path):
    from latentspeech.models.codec import AudioCodec, CodecConfig
    from latentspeech.config import from_dict, load_yaml

    torch.manual_seed(0)
    return AudioCodec(from_dict(CodecConfig, load_yaml(conf)["model"])).eval()


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load_system(system: str, opts: dict) -> dict:
    """Load one system (model, codec, phone vocabulary) as ``opts`` names it."""
    torch.set_num_threads(opts["threads"])
    from latentspeech.models.diffusion import trace  # the module whose TRACE_SAMPLER the head reads
    from latentspeech.text import PhoneVocab

    trace.TRACE_SAMPLER = not opts.get("eager_sampler", False)

    conf = REPO / "egs/demo/tts1/conf"
    vocab = PhoneVocab()
    recognizer, candidates = None, 1  # a LatentLM model dir with a recognizer/ draws `candidates` per sentence
    spec = opts["latentlm"] if system == "latentlm" else opts["valle"]
    random_weights = spec in (None, "random")
    if system == "latentlm":
        if random_weights:
            spec_args = argparse.Namespace(model=None, config=opts["latentlm_config"], vocab=vocab.size)
            model, _, name = build_model(spec_args)
            codec = _random_codec(conf / "codec.yaml")
        else:
            from latentspeech.models.codec import load_codec
            from latentspeech.models.latentlm import load_latentlm

            model, md = load_latentlm(spec)
            codec, name = load_codec(md.path / "codec"), str(md.path)
            if opts.get("candidates") != 1:
                from latentspeech.models.recognizer import load_attached_recognizer

                recognizer = load_attached_recognizer(md.path, vocab)
                if recognizer is not None:
                    candidates = opts.get("candidates") or recognizer.cfg.candidates
        params = model.num_parameters()
    else:
        from latentspeech.models.valle import VALLE, load_valle

        if random_weights:
            from latentspeech.config import load_config
            from latentspeech.train.valle import VALLETrainConfig

            cfg = load_config(opts["valle_config"], VALLETrainConfig).model
            cfg.phone_vocab_size, cfg.phone_pad_id = vocab.size, vocab.pad_id
            torch.manual_seed(0)
            model, codec = VALLE(cfg).eval(), _random_codec(conf / "codec_rvq.yaml")
            name = f"{opts['valle_config']} (random weights)"
        else:
            model, codec, vocab, _ = load_valle(spec)
            name = spec
        params = model.num_parameters()["total"]
    if candidates > 1:
        name += f" (best of {candidates} candidates)"
    return {"system": system, "model": model, "codec": codec, "vocab": vocab, "name": name, "params": params,
            "random": random_weights, "rss_loaded_MB": _rss_mb(), "recognizer": recognizer, "candidates": candidates}


@torch.no_grad()
def _time_system(loaded: dict, text: str, prompt_path: str, opts: dict) -> dict:
    """Synthesize ``text`` in the voice of ``prompt_path`` ``opts["reps"]`` times; the figures of the fastest."""
    from latentspeech.audio import prepare_prompt
    from latentspeech.models.recognizer import best_candidates
    from latentspeech.text import TextFrontend

    system, model, codec, random_weights = loaded["system"], loaded["model"], loaded["codec"], loaded["random"]
    phones = TextFrontend(loaded["vocab"]).encode(text)
    wav = torch.from_numpy(prepare_prompt(prompt_path, codec.sample_rate, max_seconds=6.0))[None]
    frames = round(opts["seconds"] * codec.frame_rate) if random_weights else None
    best = None
    for rep in range(opts["reps"]):
        g = torch.Generator().manual_seed(opts["seed"])
        t0 = time.perf_counter()
        if system == "latentlm":
            prompt = codec.normalize(codec.encode(wav))[0].transpose(0, 1)
            t1, c1 = time.perf_counter(), time.process_time()
            tokens = None if frames is None else -(-frames // model.cfg.patch_size)
            n = loaded["candidates"]
            out = model.generate([phones] * n, prompt, steps=opts["steps"], cfg_scale=opts["cfg"], generator=g,
                                 max_frames=tokens, use_stop=not random_weights)
            z = best_candidates(loaded["recognizer"], out.latents, [phones], n)[0]
            t2, c2 = time.perf_counter(), time.process_time()
            audio = codec.decode(codec.denormalize(z.transpose(0, 1)[None]))
            n_frames, calls = z.shape[0], out.transformer_passes
            passes = calls * n * (2 if opts["cfg"] != 1.0 else 1)  # candidate and CFG rows count as passes too
            head, stopped = out.head_evals, bool(out.stopped[0])
        else:
            from latentspeech.inference.valle import DEFAULT_RAS_THRESHOLD, DEFAULT_RAS_WINDOW, DEFAULT_TOP_K

            prompt = codec.encode_codes(wav)[:, : model.cfg.num_quantizers]
            t1, c1 = time.perf_counter(), time.process_time()
            out = model.generate([phones], prompt, temperature=1.0, top_k=DEFAULT_TOP_K, ras_window=DEFAULT_RAS_WINDOW,
                                 ras_threshold=DEFAULT_RAS_THRESHOLD, generator=g, max_frames=frames, min_frames=frames)
            t2, c2 = time.perf_counter(), time.process_time()
            n_frames = int(out.lengths[0])
            audio = codec.decode_codes(out.codes[:, :, :n_frames])
            calls = passes = out.ar_steps + out.nar_passes
            head, stopped = 0, bool(out.stopped[0])
        t3 = time.perf_counter()
        secs = audio.shape[-1] / codec.sample_rate
        row = {"system": system, "model": loaded["name"], "random": random_weights, "params_M": loaded["params"] / 1e6,
               "frame_rate": codec.frame_rate, "audio_s": secs, "frames": n_frames, "stopped": stopped,
               "calls": calls, "passes_per_s": passes / secs, "head_per_s": head / secs,
               "prompt_s": t1 - t0, "lm_s": t2 - t1, "lm_cpu_s": c2 - c1, "codec_s": t3 - t2, "wall_s": t3 - t0,
               "rtf": (t3 - t0) / secs}
        if best is None or row["wall_s"] < best["wall_s"]:
            best = row
    best["rss_loaded_MB"], best["peak_MB"] = loaded["rss_loaded_MB"], _peak_mb()
    return best


def _run_system(system: str, opts: dict) -> dict:
    """Load one system and time it on ``opts["text"]`` / ``opts["prompt"]``."""
    return _time_system(_load_system(system, opts), opts["text"], opts["prompt"], opts)


_WORKER: dict = {}  # the system loaded in a worker process of the paired benchmark


def _worker_init(system: str, opts: dict) -> None:
    _WORKER.update(loaded=_load_system(system, opts), opts=opts)


def _worker_time(text: str, prompt_path: str) -> dict:
    return _time_system(_WORKER["loaded"], text, prompt_path, _WORKER["opts"])


def compare_paired(args, texts: list[str], prompts: list[str]) -> int:
    """Every (text, prompt) pair spoken by both systems, the systems taking turns (the first of each pair
    alternates), each loaded once in its own process: a drift of the machine's speed hits both alike, and
    the per-pair ratio of their real-time factors is a paired comparison."""
    import multiprocessing as mp
    import statistics

    opts = {"latentlm": args.model, "valle": args.valle, "latentlm_config": args.config,
            "valle_config": args.valle_config, "seconds": args.seconds, "steps": args.lm_steps, "cfg": args.lm_cfg,
            "reps": args.reps, "threads": args.threads, "seed": 0, "eager_sampler": args.eager_sampler,
            "candidates": args.lm_candidates}
    ctx = mp.get_context("spawn")
    pools = {s: ctx.Pool(1, initializer=_worker_init, initargs=(s, opts)) for s in ("latentlm", "valle")}
    pairs = [(t, p) for t in texts for p in prompts]
    print(f"{len(pairs)} pairs ({len(texts)} texts x {len(prompts)} prompts); threads: {args.threads}; torch "
          f"{torch.__version__}; best of {args.reps} per pair; LatentLM: {args.lm_steps} sampler steps "
          f"({'eager' if args.eager_sampler else 'traced'} loop), CFG "
          f"{args.lm_cfg:g}; VALL-E: AR top-k 50 + repetition-aware sampling, NAR greedy")
    print(f"{'pair':>4} {'prompt':<24} {'LM audio s':>10} {'LM RTF':>7} {'VE audio s':>10} {'VE RTF':>7} {'ratio':>6}")
    rows = []
    try:
        for pool in pools.values():  # warm-up, not timed: the first synthesis of a process is slower
            pool.apply(_worker_time, (pairs[0][0], str(pairs[0][1])))
        for i, (text, prompt) in enumerate(pairs):
            order = ("latentlm", "valle") if i % 2 == 0 else ("valle", "latentlm")
            got = {s: pools[s].apply(_worker_time, (text, str(prompt))) for s in order}
            lm, ve = got["latentlm"], got["valle"]
            rows.append((lm, ve))
            print(f"{i:4d} {Path(prompt).name[:24]:<24} {lm['audio_s']:10.2f} {lm['rtf']:7.3f} {ve['audio_s']:10.2f} "
                  f"{ve['rtf']:7.3f} {lm['rtf'] / ve['rtf']:6.2f}")
            sys.stdout.flush()
    finally:
        for pool in pools.values():
            pool.terminate()
    ratios = [lm["rtf"] / ve["rtf"] for lm, ve in rows]
    faster = sum(r < 1.0 for r in ratios)
    for s, k in (("latentlm", 0), ("valle", 1)):
        wall, audio = sum(r[k]["wall_s"] for r in rows), sum(r[k]["audio_s"] for r in rows)
        lm_cpu = sum(r[k]["lm_cpu_s"] for r in rows)
        passes = sum(r[k]["passes_per_s"] * r[k]["audio_s"] for r in rows)
        print(f"{s:<9} {rows[0][k]['model']}: RTF {wall / audio:.3f} (total wall {wall:.1f} s / audio {audio:.1f} s), "
              f"median pair RTF {statistics.median(r[k]['rtf'] for r in rows):.3f}, LM CPU {lm_cpu / audio:.3f} s/s, "
              f"{passes / audio:.1f} Transformer passes/s")
    print(f"RTF ratio LatentLM / VALL-E: median {statistics.median(ratios):.2f} over {len(rows)} pairs "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); LatentLM faster on {faster}/{len(rows)} pairs")
    return 0


def compare_valle(args) -> int:
    """Print the side-by-side table (see the section comment); one process per system."""
    import multiprocessing as mp

    texts, prompts = args.text or [COMPARE_TEXT], args.prompt or [str(COMPARE_PROMPT)]
    if len(texts) * len(prompts) > 1:
        return compare_paired(args, texts, [str(p) for p in prompts])
    args.text, args.prompt = texts[0], prompts[0]
    opts = {"latentlm": args.model, "valle": args.valle, "latentlm_config": args.config,
            "valle_config": args.valle_config, "text": args.text, "prompt": str(args.prompt), "seconds": args.seconds,
            "steps": args.lm_steps, "cfg": args.lm_cfg, "reps": args.reps, "threads": args.threads, "seed": 0,
            "eager_sampler": args.eager_sampler, "candidates": args.lm_candidates}
    ctx = mp.get_context("spawn")
    rows = []
    for system in ("latentlm", "valle"):
        with ctx.Pool(1) as pool:
            rows.append(pool.apply(_run_system, (system, opts)))
    print(f"text: {args.text!r}\nprompt: {args.prompt}\nthreads: {args.threads}; torch {torch.__version__}; "
          f"best of {args.reps}; LatentLM: {args.lm_steps} sampler steps, CFG {args.lm_cfg:g}; "
          "VALL-E: AR top-k 50 + repetition-aware sampling, NAR greedy")
    for r in rows:
        note = ("RANDOM WEIGHTS, fixed length" if r["random"]
                else "stopped itself" if r["stopped"] else "hit the length guard")
        print(f"  {r['system']}: {r['model']} ({r['params_M']:.2f} M parameters, {r['frame_rate']:g} Hz; {note})")
    cols = [("system", "{:<9}", "system"), ("audio s", "{:>7.2f}", "audio_s"), ("calls", "{:>6d}", "calls"),
            ("passes/s", "{:>8.1f}", "passes_per_s"), ("head/s", "{:>7.0f}", "head_per_s"),
            ("LM s", "{:>6.2f}", "lm_s"), ("LM cpu s", "{:>6.2f}", "lm_cpu_s"), ("codec s", "{:>7.2f}", "codec_s"),
            ("wall s", "{:>6.2f}", "wall_s"),
            ("RTF", "{:>6.3f}", "rtf"), ("RSS MB", "{:>6.0f}", "rss_loaded_MB"), ("peak MB", "{:>7.0f}", "peak_MB")]
    cells = [[h for h, _, _ in cols]]
    cells += [[f.format(r[k]) if r[k] is not None else "-" for _, f, k in cols] for r in rows]
    widths = [max(len(c[i].strip()) for c in cells) for i in range(len(cols))]
    for c in cells:
        print(" ".join(c[0].strip().ljust(widths[0]) if i == 0 else c[i].strip().rjust(widths[i])
                       for i in range(len(cols))))
    print("calls: Transformer forward calls (prefill + one per frame; + Q-1 NAR passes for VALL-E); passes/s counts\n"
          "LatentLM's CFG rows as a second pass; head/s: diffusion-head evaluations; wall = prompt encoding + LM +\n"
          "codec decoding; LM cpu s = CPU time of the LM (less sensitive to a busy machine than wall time);\n"
          "RSS after loading, peak = the process's maximum resident memory (CPU).")
    return 0


def _distilled(model: str) -> bool:
    from latentspeech.checkpoint import load_model_dir

    return bool(load_model_dir(model, kind="latentlm").config.get("guidance_distilled"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="trained LatentLM model dir (default: random weights of --config)")
    ap.add_argument("--config", default=str(REPO / "egs/demo/tts1/conf/latentlm.yaml"))
    ap.add_argument("--vocab", type=int, default=160, help="phone vocabulary size for --config")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20])
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--seconds", type=float, default=4.0, help="audio generated per sentence")
    ap.add_argument("--batch", type=int, default=1, help="sentences generated together")
    ap.add_argument("--reps", type=int, default=2, help="repetitions (the best time is kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: least hurt by a busy machine)")
    # side-by-side comparison with the VALL-E baseline (compare_valle)
    ap.add_argument("--valle", metavar="DIR|random", default=None,
                    help="compare with the VALL-E baseline: a VALL-E model dir or 'random' (demo size, random weights)")
    ap.add_argument("--valle-config", default=str(REPO / "egs/demo/tts1/conf/valle.yaml"))
    ap.add_argument("--text", nargs="+", help="--valle: the sentence(s) both systems speak (default: one pangram)")
    ap.add_argument("--prompt", nargs="+", help="--valle: the speaker prompt(s) both systems get (default: a LibriSpeech "
                    "voice); more than one text or prompt: every pair, the systems taking turns (compare_paired)")
    ap.add_argument("--lm-steps", type=int, default=10, help="--valle: LatentLM sampler steps")
    ap.add_argument("--lm-cfg", type=float, default=None,
                    help="--valle: LatentLM CFG scale (default 2; 1 for a guidance-distilled model)")
    ap.add_argument("--lm-candidates", type=int, default=None, metavar="N",
                    help="--valle: LatentLM candidates per sentence, the recognizer keeping the clearest "
                         "(default: the model dir's recognizer/ setting; 1 = one draw)")
    ap.add_argument("--eager-sampler", action="store_true",
                    help="--valle: the LatentLM head's sampler loop eagerly (diffusion.trace.TRACE_SAMPLER = False)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.valle is not None:
        if args.lm_cfg is None:
            args.lm_cfg = 1.0 if args.model and _distilled(args.model) else 2.0
        return compare_valle(args)
    model, codec, name = build_model(args)
    if model.cfg.guidance_distilled and args.cfg != [1.0]:  # CFG is built into the head: only cfg 1 applies
        print(f"note: guidance-distilled model (scale {model.cfg.guidance_distilled:g}): --cfg 1 only")
        args.cfg = [1.0]
    print(f"model: {name}; {model.num_parameters() / 1e6:.2f} M parameters; {model.cfg.frame_rate:g} Hz latents, {model.cfg.token_rate:g} tokens/s; "
          f"{args.batch} x {args.seconds:g} s; {args.threads} threads; torch {torch.__version__}")
    print(f"{'steps':>5} {'cfg':>4} {'passes/s':>9} {'head/s':>7} {'LM s/s':>7} {'RTF':>6} {'gauss err':>9} {'ode dev':>8}")
    for cfg in args.cfg:
        for steps in args.steps:
            out, lm, rtf = time_generation(model, codec, steps, cfg, args.seconds, args.batch, args.reps)
            dev = f"{ode_deviation(model, steps, cfg):8.3f}" if args.model else f"{'-':>8}"
            print(f"{steps:5d} {cfg:4g} {(out.transformer_passes - 1) / args.seconds:9.1f} "
                  f"{out.head_evals / args.seconds:7.0f} {lm:7.3f} {rtf:6.3f} {gaussian_error(steps):9.3f} {dev}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
