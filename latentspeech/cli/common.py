"""Argument helpers the CLI's command groups share."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["data_pairs", "config_overrides"]


def data_pairs(data: list[str], latents: list[str], what: str) -> list[tuple[str, str]]:
    """Repeated ``--data DIR --latents DIR`` options → (data dir, latent/code dir) pairs, checked to match."""
    if len(data) != len(latents):
        raise ConfigError(f"{what}: give one --latents per --data ({len(data)} data dirs, {len(latents)} latent dirs)")
    return list(zip(data, latents))


def config_overrides(items: list[str]) -> dict:
    """Repeated ``--set KEY=VALUE`` options (dotted keys into the config's sections, YAML values)
    → a nested dict to merge over the config file, e.g. ``optim.lr=5e-4 distill.steps=0``."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or any(not k for k in key.strip().split(".")):
            raise ConfigError(f"--set takes KEY=VALUE with a dotted key (e.g. optim.lr=5e-4), got {item!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: {value!r} is not a YAML value") from None
        node = out
        *parents, leaf = key.strip().split(".")
        for k in parents:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {k} is set to a value and used as a section")
        node[leaf] = parsed
    return out
