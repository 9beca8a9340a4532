#!/usr/bin/env python3
"""Package trained model dirs for release (recipe stage 9): safetensors + config + a model card.

    package_models.py --out exp/packed [--recipe DIR] [--train-data DATA_DIR ...] [--dtype float16]
                      [--results SET=SUMMARY.tsv ...] NAME=MODEL_DIR [NAME=MODEL_DIR ...]

Each MODEL_DIR (``model.safetensors`` + ``config.yaml``, see latentspeech.checkpoint) is copied to
``OUT/NAME`` with only its safetensors, YAML and JSON files, nested model dirs included (never
pickled checkpoints, never ``checkpoints/`` or ``logs/``), and a
README.md model card: kind, version, architecture config, training data (hours, speakers),
the evaluation summaries, and how to use it. ``--dtype float16`` stores floating-point tensors in
half precision (half the size; loaders compute in float32), as the models bundled in the package.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from pathlib import Path

KEEP_SUFFIXES = (".safetensors", ".yaml", ".json")
SKIP_DIRS = {"checkpoints", "logs", "lightning_logs"}


def _yaml(path: Path) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return data if isinstance(data, dict) else {}


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.extend(_flatten(v, key))
        elif not isinstance(v, (list, tuple)) or len(v) <= 8:
            out.append((key, v))
    return out


def data_summary(data_dir: Path) -> str:
    from latentspeech.data.kaldi import DataDir

    d = DataDir.load(data_dir)
    return f"`{data_dir}`: {len(d)} utterances, {len(d.speakers)} speakers, {d.total_hours():.2f} hours"


def model_card(name: str, cfg: dict, train_data: str | None, results: dict[str, str], recipe: str | None,
               candidates: int | None = None) -> str:
    kind = cfg.get("kind", "unknown")
    lines = [
        f"# {name}",
        "",
        f"A latentspeech `{kind}` model, packaged on {datetime.date.today().isoformat()} "
        f"(latentspeech {cfg.get('latentspeech_version', '?')}, format {cfg.get('format_version', '?')}).",
        "",
        "Weights are in `model.safetensors` (tensors only: loading never executes code); "
        "`config.yaml` holds the architecture and metadata.",
        "",
        "## Use",
        "",
        "```python",
        "from latentspeech.checkpoint import load_model_dir",
        f'model_dir = load_model_dir("path/to/{name}", kind="{kind}")',
        "```",
        "",
    ]
    if kind == "latentlm" or kind == "valle":
        lines[-1:-1] = ["", f"`latentspeech synthesize --model path/to/{name} --text 'Hello.' --prompt voice.wav -o out.wav`"]
    if candidates:
        lines[-1:-1] = ["", f"`recognizer/` holds a CTC phone recognizer on the latents: the model draws {candidates} "
                            "candidates per sentence in one batch and keeps the one it reads best (`--candidates 1`: "
                            "a single draw)."]
    lines += ["## Training", ""]
    if recipe:
        if "/egs/" in f"/{recipe}":  # this toolkit's recipes: the path from the repository root, not this machine's
            recipe = "egs/" + f"/{recipe}".split("/egs/", 1)[1]
        lines.append(f"Recipe: `{recipe}` (see its README for the stages and configs).")
    if train_data:
        lines.append(f"Training data: {train_data}.")
    lines += ["", "## Configuration", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _flatten(cfg.get("config", {}))[:60]]
    if results:
        lines += ["", "## Evaluation", ""]
        for set_name, table in results.items():
            rows = [r.split("\t") for r in table.strip().splitlines()]
            lines += [f"Set `{set_name}`:", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def cast_weights(path: Path, dtype: str) -> None:
    """Rewrite a safetensors file with its floating-point tensors in ``dtype`` (float16/float32)."""
    import torch
    from safetensors.torch import load_file, save_file

    from latentspeech.checkpoint import cast_floating, umask_permissions

    state = cast_floating(load_file(str(path)), getattr(torch, dtype))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    umask_permissions(path)  # save_file creates the file 0600


def package(name: str, src: Path, out_root: Path, train_data: str | None, results: dict[str, str],
            recipe: str | None, dtype: str | None = None) -> Path:
    if not (src / "model.safetensors").is_file() or not (src / "config.yaml").is_file():
        raise SystemExit(f"error: {src} is not a model dir (needs model.safetensors and config.yaml)")
    dst = out_root / name
    tmp = out_root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in sorted(src.rglob("*")):  # nested model dirs too (a LatentLM bundles its codec in codec/)
        rel = f.relative_to(src)
        if f.is_file() and f.suffix in KEEP_SUFFIXES and not set(rel.parts) & SKIP_DIRS:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, tmp / rel)
            if dtype and f.suffix == ".safetensors":
                cast_weights(tmp / rel, dtype)
    rec = src / "recognizer" / "config.yaml"
    candidates = (_yaml(rec).get("config") or {}).get("candidates") if rec.is_file() else None
    (tmp / "README.md").write_text(model_card(name, _yaml(src / "config.yaml"), train_data, results, recipe, candidates),
                                   encoding="utf-8")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--train-data", action="append", default=[], help="a training data dir (for the card; repeatable)")
    ap.add_argument("--results", action="append", default=[], metavar="SET=SUMMARY.tsv")
    ap.add_argument("--dtype", choices=["float32", "float16"], default=None,
                    help="store floating-point weights in this precision (default: as trained)")
    ap.add_argument("models", nargs="+", metavar="NAME=MODEL_DIR")
    args = ap.parse_args(argv)
    train_data = "; ".join(data_summary(Path(d)) for d in args.train_data if Path(d, "utt2spk").is_file()) or None
    results = {}
    for item in args.results:
        set_name, _, path = item.partition("=")
        results[set_name] = Path(path).read_text(encoding="utf-8")
    for item in args.models:
        name, _, path = item.partition("=")
        dst = package(name, Path(path), Path(args.out), train_data, results, args.recipe, args.dtype)
        print(f"packaged {name}: {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
