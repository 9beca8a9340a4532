"""Kaldi data directories: read, write, validate, fix, filter and split them.

A data dir is a folder of small text tables, one ``<key> <value>`` line each, sorted by key in
C-locale (byte) order (``LC_ALL=C sort``):

=============  ==========================================================================
``wav.scp``    ``<utt-or-recording-id> <path>`` (or ``<cmd> |``, or ``<file.ark>:<offset>``)
``segments``   ``<utt-id> <recording-id> <start-s> <end-s> [channel]`` (optional; ``end`` -1 = to the end)
``text``       ``<utt-id> <transcript>`` (optional here; ``validate(require_text=True)`` demands it)
``utt2spk``    ``<utt-id> <speaker-id>``
``spk2utt``    ``<speaker-id> <utt-id> <utt-id> ...`` (derived from utt2spk)
``utt2dur``    ``<utt-id> <seconds>`` (computed from the audio when missing)
``spk2gender`` ``<speaker-id> m|f`` (optional)
=============  ==========================================================================

plus other utterance-keyed tables that travel with the utterances (``phones``, ``utt2num_frames``,
``feats.scp``...; see :data:`EXTRA_UTT_FILES`). Dirs made by Kaldi, ESPnet or lhotse load unchanged:

    d = DataDir.load("data/train")
    for u in d.utterances():                       # Utterance(utt_id, speaker, text, start, end)
        wav = d.load_utterance(u.utt_id, 16000)    # float32 mono; segments cut; pipes run
    problems = validate("data/train")             # [] when the dir is valid
    report = fix("data/train")                     # like Kaldi's utils/fix_data_dir.sh

One concept per module, all re-exported here:

==============  ================================================================================
``tables``      reading and writing tables, C-locale order (``read_table``, ``write_table``, ``c_sorted``)
``wavscp``      decoding one wav.scp entry: paths, ``cmd |`` pipes, ark offsets (``read_wav_entry``)
``datadir``     ``DataDir``, ``Utterance``, ``Segment``, ``spk2utt_from_utt2spk``, ``ensure_utt2dur``
``validation``  ``validate``: the checks of ``utils/validate_data_dir.sh``
``fixing``      ``fix`` and ``FixReport``: ``utils/fix_data_dir.sh``
``subsets``     ``duration_filter`` and ``split_data`` (``utils/split_data.sh``)
==============  ================================================================================

Relative paths in ``wav.scp`` resolve against the data dir when the file exists there, otherwise
against the current directory; see :mod:`.wavscp`.
"""

from .datadir import DataDir, Segment, Utterance, ensure_utt2dur, parse_segment, spk2utt_from_utt2spk
from .fixing import FixReport, fix
from .subsets import duration_filter, split_data
from .tables import (
    CORE_FILES,
    EXTRA_UTT_FILES,
    TableLine,
    c_sort_key,
    c_sorted,
    format_float,
    iter_tables,
    read_dict,
    read_keyed,
    read_table,
    render_table,
    write_table,
)
from .validation import validate
from .wavscp import entry_duration, is_pipe, read_wav_entry

__all__ = [
    "Utterance",
    "Segment",
    "DataDir",
    "FixReport",
    "EXTRA_UTT_FILES",
    "c_sort_key",
    "c_sorted",
    "read_table",
    "write_table",
    "render_table",
    "read_wav_entry",
    "entry_duration",
    "validate",
    "fix",
    "duration_filter",
    "split_data",
    "ensure_utt2dur",
]
