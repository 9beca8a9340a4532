"""CLI: ``latentspeech train MODEL --config C ...``, one sub-command per model family.

To add a family, write ``_register_<name>(sub)`` that adds its parser (use :func:`add_common`) and
sets ``func``, and list it in :data:`FAMILIES`.
"""

from __future__ import annotations


def add_common(p) -> None:
    """Options every ``train`` sub-command shares."""
    p.add_argument("--config", required=True, metavar="C", help="training config YAML (egs/*/tts1/conf/)")
    p.add_argument("--out", required=True, metavar="EXP_DIR", help="experiment dir (checkpoints, logs, model/)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="override optim.max_steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set distill.steps=0 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from EXP_DIR/checkpoints/last.ckpt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _register_latentlm(sub) -> None:
    p = sub.add_parser("latentlm", help="train the LatentLM on extracted latents + phones",
                       description="Pairs --data DIR --latents DIR name each training set (repeat for several): "
                                   "DIR holds a Kaldi data dir with 'phones' and 'utt2spk'; the latent store comes "
                                   "from `latentspeech codec extract`.")
    add_common(p)
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
    add_common(p)
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
    from .common import config_overrides, data_pairs

    for flag, data, codes in (("", args.data, args.codes), ("valid-", args.valid_data, args.valid_codes)):
        if len(data) != len(codes):
            raise ConfigError(f"give one --{flag}codes per --{flag}data ({len(data)} data dirs, {len(codes)} code stores)")
    cfg = load_config(args.config, VALLETrainConfig, config_overrides(args.set))
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
    from .common import config_overrides, data_pairs
    from ..config import load_config
    from ..train.latentlm import LatentLMTrainConfig, train_latentlm

    train = data_pairs(args.data, args.latents, "training sets")
    valid = data_pairs(args.valid_data, args.valid_latents, "validation sets")
    cfg = load_config(args.config, LatentLMTrainConfig, config_overrides(args.set))
    out = train_latentlm(cfg, train, args.out, valid=valid, codec=args.codec,
                         max_steps=args.max_steps, resume=args.resume, progress=not args.no_progress)
    print(f"exported {out}")
    return 0
