"""Presenting evaluation results: a text table, mel-spectrogram images and a static HTML page.

    print(format_table([result_a, result_b]))              # one row per system
    write_html_report([result_a, result_b], "exp/eval/report")   # index.html + media/

The HTML page is self-contained (audio copied as WAV, spectrograms as PNG next to it) and
needs no server: open ``index.html`` in a browser. It has a summary table, a side-by-side
table when several systems are given, and per system the utterances worst first (highest
WER, then lowest SIM) with players for prompt, output and (when given) ground truth, and
their mel spectrograms. A small inline script records in the page whether each player and
image loaded (``data-state`` on each element; totals on ``#media-status``).

Spectrograms are drawn with matplotlib when it is installed, otherwise written directly as
PNG (zlib + a built-in colour map), so the report never needs an extra package.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .protocol import EvalResult

__all__ = ["format_table", "mel_image", "write_png", "write_html_report", "sort_worst_first"]

#: Magma-like colour map anchors (value in [0, 1] → RGB), interpolated linearly.
_CMAP = np.array(
    [
        [0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
        [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191],
    ],
    dtype=np.float64,
)


def _fmt(x, spec: str, scale: float = 1.0) -> str:
    return "-" if x is None else format(x * scale, spec)


def format_table(results: Sequence[EvalResult]) -> str:
    """Plain-text summary: system, n, WER %, CER %, SIM, SIM-GT, total and mean duration."""
    head = ["system", "n", "WER %", "CER %", "SIM", "SIM-GT", "dur s", "mean s"]
    rows = []
    for r in results:
        a = r.aggregate
        rows.append([
            r.system, str(a["n"]), _fmt(a["wer"], ".2f", 100), _fmt(a["cer"], ".2f", 100),
            _fmt(a.get("sim"), ".3f"), _fmt(a.get("sim_gt"), ".3f"),
            _fmt(a.get("duration_total"), ".1f"), _fmt(a.get("duration_mean"), ".2f"),
        ])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def sort_worst_first(utterances: Sequence[dict]) -> list[dict]:
    """Highest WER first; ties broken by the lowest SIM, then by id."""
    return sorted(utterances, key=lambda u: (-u["wer"], u["sim"] if u.get("sim") is not None else 1.0, u["utt_id"]))


# ---------------------------------------------------------------------------------------------
# spectrogram images


def log_mel_db(wav: np.ndarray, sample_rate: int, n_mels: int = 80, top_db: float = 80.0) -> np.ndarray:
    """``[n_mels, frames]`` power mel spectrogram in dB, clipped to ``top_db`` below its peak."""
    import torch

    from ..audio.features import LogMel

    hop = sample_rate // 64  # 15.6 ms
    n_fft = 4 * hop if (4 * hop) % 2 == 0 else 4 * hop + 1
    mel = LogMel(sample_rate, n_fft, hop, n_mels, floor=1e-10, power=2.0)
    with torch.no_grad():
        ln = mel(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None])[0].numpy()
    db = ln * (10.0 / np.log(10.0))
    return np.maximum(db, db.max() - top_db)


def _colorize(x01: np.ndarray) -> np.ndarray:
    pos = np.clip(x01, 0, 1) * (len(_CMAP) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(_CMAP) - 1)
    frac = (pos - lo)[..., None]
    return (_CMAP[lo] * (1 - frac) + _CMAP[hi] * frac).round().astype(np.uint8)


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an ``[H, W, 3]`` uint8 image as a PNG (no dependencies beyond zlib)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def mel_image(wav: np.ndarray, sample_rate: int, path: str | os.PathLike, title: str = "", use_matplotlib: bool | None = None) -> Path:
    """Save the mel spectrogram of ``wav`` as a PNG (matplotlib with axes when available)."""
    db = log_mel_db(wav, sample_rate)
    x01 = (db - db.min()) / max(float(db.max() - db.min()), 1e-6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if use_matplotlib is None:
        try:
            import matplotlib  # noqa: F401

            use_matplotlib = True
        except ImportError:
            use_matplotlib = False
    if use_matplotlib:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        seconds = len(wav) / sample_rate
        fig = Figure(figsize=(min(10.0, max(3.0, 0.6 * seconds + 1.0)), 1.8), dpi=80)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.08, 0.22, 0.9, 0.66 if title else 0.74))
        ax.imshow(x01, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, db.shape[0]), interpolation="nearest")
        ax.set_xlabel("s", fontsize=7, labelpad=1)
        ax.set_ylabel("mel", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=6)
        if title:
            ax.set_title(title, fontsize=7)
        fig.savefig(str(path), format="png")
        return path
    img = _colorize(x01[::-1])  # low frequencies at the bottom
    return write_png(path, np.repeat(img, 2, axis=0))


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;font-size:13px}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{background:#fde2e2}
.txt{max-width:28em}
.hyp{color:#555}
audio{width:220px;display:block}
img.mel{display:block;max-width:420px;margin-top:3px}
#media-status{color:#666;font-size:12px}
"""

_SCRIPT = """
(function(){
  var els=[].slice.call(document.querySelectorAll('[data-media]'));
  var st=document.getElementById('media-status');
  function update(){
    var ok=0,bad=0;
    els.forEach(function(e){if(e.dataset.state==='loaded')ok++;else if(e.dataset.state==='error')bad++;});
    st.dataset.loaded=ok;st.dataset.failed=bad;st.dataset.total=els.length;
    st.textContent='media: '+ok+' of '+els.length+' loaded'+(bad?', '+bad+' failed':'');
  }
  els.forEach(function(e){
    var ok=function(){e.dataset.state='loaded';update();};
    var bad=function(){e.dataset.state='error';update();};
    if(e.tagName==='IMG'){
      if(e.complete){(e.naturalWidth>0?ok:bad)();}else{e.addEventListener('load',ok);e.addEventListener('error',bad);}
    }else{
      if(e.readyState>=1){ok();}else{e.addEventListener('loadedmetadata',ok);e.addEventListener('error',bad,true);}
    }
  });
  update();
})();
"""


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


class _Media:
    """Copies audio (as WAV) and draws spectrograms into ``out/media``; each source once."""

    def __init__(self, out: Path, draw_mels: bool):
        self.out = out
        self.draw_mels = draw_mels
        self.done: dict[tuple[str, str], tuple[str | None, str | None]] = {}

    def add(self, src: str | None, group: str, name: str) -> tuple[str | None, str | None]:
        """(audio href, image href) relative to the page, or (None, None) when ``src`` is unreadable."""
        from ..audio import load_audio, save_audio
        from ..errors import AudioError

        if not src:
            return None, None
        key = (group, src)
        if key in self.done:
            return self.done[key]
        stem = f"{_slug(name)}_{hashlib.sha1(src.encode()).hexdigest()[:6]}"
        wav_rel = f"media/{_slug(group)}/{stem}.wav"
        png_rel = f"media/{_slug(group)}/{stem}.png"
        try:
            import soundfile as sf

            sr = sf.info(src).samplerate
            wav = load_audio(src)
        except (AudioError, RuntimeError, OSError):
            self.done[key] = (None, None)
            return self.done[key]
        if Path(src).suffix.lower() == ".wav":
            (self.out / wav_rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, self.out / wav_rel)
        else:
            save_audio(self.out / wav_rel, wav, sr)
        img = None
        if self.draw_mels:
            mel_image(wav, sr, self.out / png_rel)
            img = png_rel
        self.done[key] = (wav_rel, img)
        return self.done[key]


def _player(media: tuple[str | None, str | None], label: str) -> str:
    audio, img = media
    if audio is None:
        return f"<i>{html.escape(label)}: missing</i>"
    out = f'<audio controls preload="metadata" data-media src="{html.escape(audio)}" title="{html.escape(label)}"></audio>'
    if img:
        out += f'<img class="mel" data-media src="{html.escape(img)}" alt="mel spectrogram of {html.escape(label)}">'
    return out


def _summary_table(results: Sequence[EvalResult]) -> str:
    rows = []
    for r in results:
        a = r.aggregate
        rows.append(
            "<tr>" + f"<td>{html.escape(r.system)}</td>"
            + "".join(f'<td class="num">{v}</td>' for v in (
                a["n"], _fmt(a["wer"], ".2f", 100), _fmt(a["cer"], ".2f", 100), _fmt(a.get("sim"), ".3f"),
                _fmt(a.get("sim_gt"), ".3f"), _fmt(a.get("duration_total"), ".1f"),
                f'{a.get("substitutions", 0)}/{a.get("deletions", 0)}/{a.get("insertions", 0)}'))
            + f"<td>{html.escape(r.asr)}</td><td>{html.escape(r.sim_model or '-')}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("system", "n", "WER %", "CER %", "SIM", "SIM-GT", "duration s", "S/D/I", "ASR", "SIM model"))
    return f'<table id="summary"><tr>{head}</tr>{"".join(rows)}</table>'


def _side_by_side(results: Sequence[EvalResult], media: _Media, max_rows: int) -> str:
    by_sys = [{u["utt_id"]: u for u in r.utterances} for r in results]
    common = [u for u in by_sys[0] if all(u in d for d in by_sys[1:])]
    common.sort(key=lambda k: (-max(d[k]["wer"] for d in by_sys), k))
    head = "<th>utterance</th>" + "".join(f"<th>{html.escape(r.system)}</th>" for r in results)
    rows = []
    for k in common[:max_rows]:
        first = by_sys[0][k]
        cells = [f'<td class="txt"><b>{html.escape(k)}</b><br>{html.escape(first["text"])}</td>']
        for r, d in zip(results, by_sys):
            u = d[k]
            m = media.add(u.get("wav"), r.system, k)
            cls = ' class="bad"' if u["wer"] > 0 else ""
            cells.append(
                f"<td{cls}>{_player(m, f'{r.system} {k}')}WER {_fmt(u['wer'], '.1f', 100)} % · SIM {_fmt(u.get('sim'), '.3f')}"
                f'<div class="hyp">{html.escape(u.get("hyp", ""))}</div></td>'
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p>{len(common)} utterances in all systems; worst (highest WER in any system) first.</p>"
    return f'<h2>Side by side</h2>{note}<table id="side-by-side"><tr>{head}</tr>{"".join(rows)}</table>'


def _system_section(r: EvalResult, media: _Media, max_rows: int) -> str:
    utts = sort_worst_first(r.utterances)
    with_gt = any(u.get("ref_wav") for u in utts)
    columns = ("#", "utterance", "WER %", "CER %", "SIM", "SIM-GT", "text / ASR", "prompt", "output") + (("ground truth",) if with_gt else ())
    head = "".join(f"<th>{h}</th>" for h in columns)
    rows = []
    for i, u in enumerate(utts[:max_rows], start=1):
        cls = ' class="bad"' if u["wer"] > 0 else ""
        gt = ""
        if with_gt:
            gt = f"<td>{_player(media.add(u['ref_wav'], 'ground_truth', u['utt_id'] + '_gt'), 'ground truth')}</td>" if u.get("ref_wav") else "<td>-</td>"
        rows.append(
            f"<tr{cls}><td class=\"num\">{i}</td><td>{html.escape(u['utt_id'])}</td>"
            f'<td class="num">{_fmt(u["wer"], ".1f", 100)}</td><td class="num">{_fmt(u["cer"], ".1f", 100)}</td>'
            f'<td class="num">{_fmt(u.get("sim"), ".3f")}</td><td class="num">{_fmt(u.get("sim_gt"), ".3f")}</td>'
            f'<td class="txt">{html.escape(u["text"])}<div class="hyp">ASR: {html.escape(u.get("hyp", ""))}</div></td>'
            f"<td>{_player(media.add(u.get('prompt'), 'prompts', u['utt_id'] + '_prompt'), 'prompt')}</td>"
            f"<td>{_player(media.add(u.get('wav'), r.system, u['utt_id']), 'output')}</td>{gt}</tr>"
        )
    more = f"<p>Showing the {max_rows} worst of {len(utts)}.</p>" if len(utts) > max_rows else ""
    return (
        f'<h2 id="sys-{_slug(r.system)}">{html.escape(r.system)}: utterances, worst first</h2>{more}'
        f'<table class="utts"><tr>{head}</tr>{"".join(rows)}</table>'
    )


def write_html_report(
    results: Sequence[EvalResult],
    out_dir: str | os.PathLike,
    max_rows: int = 200,
    mels: bool = True,
    title: str = "latentspeech evaluation",
) -> Path:
    """Write ``out_dir/index.html`` (+ ``media/``) for one or several systems; returns the page."""
    from ..errors import ConfigError

    if not results:
        raise ConfigError("the report needs at least one result")
    names = [r.system for r in results]
    if len(set(names)) != len(names):
        raise ConfigError(f"systems in a report need distinct names, got {names} (use --system)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    media = _Media(out, mels)
    parts = [
        f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p id="media-status">media: loading…</p>',
        "<h2>Summary</h2>",
        _summary_table(results),
        "<p>WER/CER: corpus-level, after the English scoring normaliser (numbers spelled out, punctuation "
        "and case removed). SIM: cosine of speaker embeddings, output vs prompt; SIM-GT: output vs ground truth.</p>",
    ]
    if len(results) > 1:
        parts.append(_side_by_side(results, media, max_rows))
    parts += [_system_section(r, media, max_rows) for r in results]
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    page = out / "index.html"
    tmp = out / ".index.html.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, page)
    return page
