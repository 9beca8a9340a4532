"""CLI: ``latentspeech train MODEL --config C ...``, one sub-command per model family.

To add a family, write ``_register_<name>(sub)`` that adds its parser (use :func:`add_common`) and
sets ``func``, and list it in :data:`FAMILIES`.

Every training command (these and ``latentspeech codec train``) takes the trainer options of
:func:`add_trainer_options`: ``--set KEY=VALUE`` for any config value, flags for the settings a
cluster run changes (``--devices``, ``--num-nodes``, ``--accumulate-grad-batches``, ``--precision``,
``--keep-checkpoints``), and ``--print-resources``, which prints the job runner options the run
needs (``--gpu G --ntasks-per-node T --nodes N``, :func:`latentspeech.train.common.job_resources`)
instead of training: ``recipes/tts.sh`` asks the job runner for exactly that.
"""

from __future__ import annotations

import argparse


def parse_devices(text: str):
    """``--devices``: a number, comma-separated device indices (``0,1``) or ``auto``."""
    text = text.strip()
    if text == "auto":
        return "auto"
    try:
        if "," in text:
            return [int(t) for t in text.split(",") if t.strip()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, indices like 0,1 or 'auto', got {text!r}") from None


def add_trainer_options(p, transformers: tuple[str, ...] = ()) -> None:
    """The trainer options every training command shares (see the module doc). ``transformers``: the
    config paths of the model's Transformers, which ``--activation-checkpointing`` switches on."""
    g = p.add_argument_group("trainer (override the config's trainer section)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set optim.lr=5e-4 (repeatable; the flags below win)")
    g.add_argument("--devices", type=parse_devices, default=None, metavar="N|I,J|auto",
                   help="processes (devices) per node: trainer.devices")
    g.add_argument("--num-nodes", type=int, default=None, metavar="N", help="trainer.num_nodes")
    g.add_argument("--accumulate-grad-batches", type=int, default=None, metavar="N",
                   help="batches per optimizer step: trainer.accumulate_grad_batches")
    g.add_argument("--precision", default=None, metavar="P", help="e.g. bf16-mixed, 32-true, auto: trainer.precision")
    g.add_argument("--keep-checkpoints", type=int, default=None, metavar="N",
                   help="newest step checkpoints kept besides last.ckpt (-1: all): trainer.keep_checkpoints")
    if transformers:
        g.add_argument("--activation-checkpointing", action="store_true",
                       help="recompute each Transformer block in the backward pass (less memory): "
                            + ", ".join(f"{t}.activation_checkpointing" for t in transformers))
    g.add_argument("--print-resources", action="store_true",
                   help="print the job runner options this run needs (--gpu G --ntasks-per-node T --nodes N) and exit")
    g.add_argument("--gpus-if-auto", type=int, default=1, metavar="N",
                   help="with --print-resources: the GPUs per node that devices 'auto' means (0: CPU; default 1)")
    p.set_defaults(transformers=transformers)


def trainer_overrides(args) -> dict:
    """The config overrides of :func:`add_trainer_options`' options: ``--set`` items, then the flags."""
    from ..config import merge
    from .common import config_overrides

    flags = {"devices": args.devices, "num_nodes": args.num_nodes,
             "accumulate_grad_batches": args.accumulate_grad_batches, "precision": args.precision,
             "keep_checkpoints": args.keep_checkpoints}
    out = {"trainer": {k: v for k, v in flags.items() if v is not None}}
    if getattr(args, "activation_checkpointing", False):
        for path in args.transformers:
            node = out
            for k in path.split("."):
                node = node.setdefault(k, {})
            node["activation_checkpointing"] = True
    return merge(config_overrides(args.set), out)


def print_resources(args, trainer) -> bool:
    """With ``--print-resources``: print the job runner options for ``trainer`` (a config's trainer
    section) and return True (the command then stops)."""
    if not args.print_resources:
        return False
    from ..train.common import job_resources

    r = job_resources(trainer, args.gpus_if_auto)
    print(f"--gpu {r['gpus']} --ntasks-per-node {r['tasks']} --nodes {r['nodes']}")
    return True


def add_common(p, transformers: tuple[str, ...] = ()) -> None:
    """Options every ``train`` sub-command shares (with :func:`add_trainer_options`)."""
    p.add_argument("--config", required=True, metavar="C", help="training config YAML (egs/*/tts1/conf/)")
    p.add_argument("--out", required=True, metavar="EXP_DIR", help="experiment dir (checkpoints, logs, model/)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="override optim.max_steps")
    p.add_argument("--resume", action="store_true", help="continue from EXP_DIR/checkpoints/last.ckpt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_trainer_options(p, transformers)


def _register_latentlm(sub) -> None:
    p = sub.add_parser("latentlm", help="train the LatentLM on extracted latents + phones",
                       description="Pairs --data DIR --latents DIR name each training set (repeat for several): "
                                   "DIR holds a Kaldi data dir with 'phones' and 'utt2spk'; the latent store comes "
                                   "from `latentspeech codec extract`.")
    add_common(p, ("model.transformer",))
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="Kaldi data dir (repeatable)")
    p.add_argument("--latents", action="append", required=True, metavar="DIR", help="its latent store (repeatable)")
    p.add_argument("--valid-data", action="append", default=[], metavar="DIR", help="validation data dir")
    p.add_argument("--valid-latents", action="append", default=[], metavar="DIR", help="its latent store")
    p.add_argument("--codec", default=None, metavar="M", help="codec model dir to bundle (default: from the store)")
    p.set_defaults(func=run_latentlm)


# -- VALL-E baseline (latentspeech/train/valle.py) ----------------------------------------------
def _register_valle(sub) -> None:
    p = sub.add_parser("valle", help="train the VALL-E baseline (AR + NAR) on RVQ codes + phones",
                       description="Pairs --data DIR --codes DIR name each training set (repeat for several): "
                                   "DIR holds a Kaldi data dir with 'phones' and 'utt2spk'; the code store comes "
                                   "from `latentspeech codec extract --codes` with an RVQ codec.")
    add_common(p, ("model.ar", "model.nar"))
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="Kaldi data dir (repeatable)")
    p.add_argument("--codes", action="append", required=True, metavar="DIR", help="its RVQ code store (repeatable)")
    p.add_argument("--valid-data", action="append", default=[], metavar="DIR", help="validation data dir")
    p.add_argument("--valid-codes", action="append", default=[], metavar="DIR", help="its code store")
    p.add_argument("--codec", default=None, metavar="M", help="RVQ codec model dir to bundle (default: from the store)")
    p.set_defaults(func=run_valle)


def run_valle(args) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..train.valle import VALLETrainConfig, train_valle
    from .common import data_pairs

    for flag, data, codes in (("", args.data, args.codes), ("valid-", args.valid_data, args.valid_codes)):
        if len(data) != len(codes):
            raise ConfigError(f"give one --{flag}codes per --{flag}data ({len(data)} data dirs, {len(codes)} code stores)")
    cfg = load_config(args.config, VALLETrainConfig, trainer_overrides(args))
    if print_resources(args, cfg.trainer):
        return 0
    out = train_valle(cfg, data_pairs(args.data, args.codes, "training sets"), args.out,
                      valid=data_pairs(args.valid_data, args.valid_codes, "validation sets"), codec=args.codec,
                      max_steps=args.max_steps, resume=args.resume, progress=not args.no_progress)
    print(f"exported {out}")
    return 0


#: Model families, in ``--help`` order.
FAMILIES = [_register_latentlm, _register_valle]


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (latentlm, ...)")
    models = p.add_subparsers(dest="model", metavar="MODEL")
    for reg in FAMILIES:
        reg(models)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])



def run_latentlm(args) -> int:
    from .common import data_pairs
    from ..config import load_config
    from ..train.latentlm import LatentLMTrainConfig, train_latentlm

    train = data_pairs(args.data, args.latents, "training sets")
    valid = data_pairs(args.valid_data, args.valid_latents, "validation sets")
    cfg = load_config(args.config, LatentLMTrainConfig, trainer_overrides(args))
    if print_resources(args, cfg.trainer):
        return 0
    out = train_latentlm(cfg, train, args.out, valid=valid, codec=args.codec,
                         max_steps=args.max_steps, resume=args.resume, progress=not args.no_progress)
    print(f"exported {out}")
    return 0
