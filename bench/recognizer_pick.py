"""How well does a phone recognizer pick the clearest of several draws? Offline, on saved decodes.

Stage 8 of the recipe scores every draw of every utterance (``--synth-draws N``: ids ``<utt>.draw<k>``,
per-utterance Whisper errors in ``result.json``). This script re-encodes each draw's audio with the
LatentLM's codec, scores it with each ``--recognizer`` (CTC log-likelihood of the sentence's phones per
phone, what :func:`latentspeech.models.recognizer.best_candidates` maximises), and reports per recognizer:

* Spearman's rho between the score and the draw's WER (more negative: a better judge);
* the pooled WER of the draw it picks among the first k draws of each utterance, for k = 2 .. N,
  beside the mean over draws (no pick) and the oracle (the draw with the fewest errors).

    python bench/recognizer_pick.py --model latentspeech/assets/latentlm-demo \\
        --recognizer latentspeech/assets/latentlm-demo/recognizer --recognizer OTHER_RECOGNIZER_DIR \\
        egs/demo/tts1/exp_hc/decode/dev/latentlm/result.json egs/demo/tts1/exp_hc_chk/decode/dev/latentlm/result.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path


def load_draws(result_json: Path) -> dict[str, list[dict]]:
    """utterance id → its draws' result rows, in draw order (rows whose id has no ``.drawK`` are draw 0)."""
    rows = json.loads(result_json.read_text())["utterances"]
    by_utt: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        m = re.fullmatch(r"(.*)\.draw(\d+)", r["utt_id"])
        utt, k = (m.group(1), int(m.group(2))) if m else (r["utt_id"], 0)
        by_utt[utt][k] = r
    return {u: [d[k] for k in sorted(d)] for u, d in by_utt.items()}


def pooled_wer(rows: list[dict]) -> float:
    errors = sum(r["substitutions"] + r["deletions"] + r["insertions"] for r in rows)
    return errors / max(1, sum(r["ref_words"] for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="stage 8's result.json of decodes with several draws")
    ap.add_argument("--model", required=True, help="the LatentLM model dir (its codec and phone inventory)")
    ap.add_argument("--recognizer", action="append", required=True, help="recognizer model dir (repeatable)")
    ap.add_argument("--num-threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from latentspeech.api import LatentLMBackend
    from latentspeech.audio import load_audio
    from latentspeech.models.recognizer import load_recognizer, phone_scores

    torch.set_num_threads(args.num_threads)
    backend = LatentLMBackend.load(Path(args.model))
    recognizers = {r: load_recognizer(r, backend.frontend.vocab) for r in args.recognizer}
    for result in args.results:
        draws = load_draws(result)
        n = min(len(d) for d in draws.values())
        scores = {r: [] for r in recognizers}  # per utterance: [n] scores
        with torch.inference_mode():
            for utt, rows in draws.items():
                ids = backend.frontend.encode_batch([rows[0]["text"]])[0]
                lat = [backend.encode_prompt(load_audio(r["wav"], backend.sample_rate)) for r in rows[:n]]
                for name, rec in recognizers.items():
                    scores[name].append(phone_scores(rec, lat, [ids] * n).tolist())
        utts = list(draws)
        wer = np.array([[draws[u][k]["wer"] for k in range(n)] for u in utts])
        print(f"\n{result} ({len(utts)} utterances x {n} draws)")
        print(f"  mean over draws {pooled_wer([draws[u][k] for u in utts for k in range(n)]):.3f}; oracle of k: "
              + ", ".join(f"k={k} {pooled_wer([min(draws[u][:k], key=lambda r: r['wer'] * r['ref_words']) for u in utts]):.3f}"
                          for k in range(2, n + 1)))
        if len(recognizers) > 1:
            scores["all, scores summed"] = np.sum([scores[r] for r in recognizers], 0).tolist()
        for name, sc in scores.items():
            s = np.array(sc)
            finite = np.isfinite(s)
            rho = spearmanr(s[finite], wer[finite]).statistic
            picks = ", ".join(f"k={k} {pooled_wer([draws[u][int(np.argmax(s[i, :k]))] for i, u in enumerate(utts)]):.3f}"
                              for k in range(2, n + 1))
            print(f"  {name}: rho {rho:+.3f}; pick of k: {picks}")


if __name__ == "__main__":
    from latentspeech.errors import LatentSpeechError

    try:
        main()
    except LatentSpeechError as e:  # a model or recognizer dir that does not load: one line
        raise SystemExit(f"error: {e}") from None
