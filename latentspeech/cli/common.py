"""Argument helpers the CLI's command groups share."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["data_pairs"]


def data_pairs(data: list[str], latents: list[str], what: str) -> list[tuple[str, str]]:
    """Repeated ``--data DIR --latents DIR`` options → (data dir, latent/code dir) pairs, checked to match."""
    if len(data) != len(latents):
        raise ConfigError(f"{what}: give one --latents per --data ({len(data)} data dirs, {len(latents)} latent dirs)")
    return list(zip(data, latents))
