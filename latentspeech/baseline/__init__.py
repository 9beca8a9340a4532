"""Baselines that LatentLM is compared with, on the same data, machine and evaluation.

    from latentspeech.baseline import VALLE, VALLEConfig, load_valle
"""

from .valle import KIND, VALLE, VALLEBackend, VALLEBatch, VALLEConfig, VALLEOutput, load_valle, save_valle

__all__ = ["KIND", "VALLE", "VALLEBackend", "VALLEBatch", "VALLEConfig", "VALLEOutput", "load_valle", "save_valle"]
