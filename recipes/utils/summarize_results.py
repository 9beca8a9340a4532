#!/usr/bin/env python3
"""Side-by-side table of `latentspeech eval` results (stage 8).

    summarize_results.py --out SUMMARY.tsv NAME=RESULT.json [NAME=RESULT.json ...]

Each RESULT.json holds aggregate figures (``wer``, ``sim``, ...) either at the top level or under
``aggregate``; the table has one row per system and the columns n, wer, cer, sim, sim_gt first, then any other numeric figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = ("n", "wer", "cer", "sim", "sim_gt")


def load_aggregate(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    agg = data.get("aggregate", data) if isinstance(data, dict) else {}
    return {k: v for k, v in agg.items() if isinstance(v, (int, float))}


def summarize(results: dict[str, Path]) -> str:
    rows = {name: load_aggregate(p) for name, p in results.items()}
    cols = [c for c in COLUMNS if any(c in r for r in rows.values())]
    cols += [c for r in rows.values() for c in r if c not in cols]  # other figures, in their order
    cols = list(dict.fromkeys(cols))
    lines = ["\t".join(["system", *cols])]
    for name, r in rows.items():
        cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols]
        lines.append("\t".join([name, *cells]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("results", nargs="+", metavar="NAME=RESULT.json")
    args = ap.parse_args(argv)
    results = {}
    for item in args.results:
        name, _, path = item.partition("=")
        if not path or not Path(path).is_file():
            print(f"error: no result file for '{item}'", file=sys.stderr)
            return 1
        results[name] = Path(path)
    Path(args.out).write_text(summarize(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
