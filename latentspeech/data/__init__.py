"""Data: Kaldi data dirs (``kaldi``), corpus preparation (``librilight``) and the datasets of training.

    from latentspeech.data import DataDir, validate, fix
    d = DataDir.load("egs/demo/tts1/data/train")
"""

from .kaldi import (
    DataDir,
    FixReport,
    Segment,
    Utterance,
    c_sorted,
    duration_filter,
    ensure_utt2dur,
    fix,
    read_table,
    split_data,
    validate,
    write_table,
)

__all__ = [
    "DataDir",
    "FixReport",
    "Segment",
    "Utterance",
    "c_sorted",
    "duration_filter",
    "ensure_utt2dur",
    "fix",
    "read_table",
    "split_data",
    "validate",
    "write_table",
]
