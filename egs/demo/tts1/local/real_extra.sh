#!/usr/bin/env bash
# Extra real speech for the codec: redistributable recordings from Debian packages -> data/real_extra.
#
#   local/real_extra.sh                       # download, unpack, decode, write data/real_extra
#   local/real_extra.sh --out data/real_extra --debs data/local/debs --wav-dir data/local/wav/real_extra
#
# Options (an unknown one fails):
#   --out DIR      the Kaldi data dir written (default data/real_extra)
#   --debs DIR     .deb cache: `apt-get download` (no root, nothing installed), skipped if already there
#   --src DIR      `dpkg-deb -x` trees, one per package (default data/local/real_extra_src)
#   --wav-dir DIR  16 kHz mono PCM WAV clips (default data/local/wav/real_extra)
# Packages: asterisk-core-sounds-{en,es,fr,it,ru}-g722, festvox-ru, tuxpaint-stamps-default, klettres-data,
# ktuberling-data; one that apt cannot fetch is skipped with a message. Only speech is kept (the rules are
# in local/real_extra.py's header); everything runs under `nice -n 19`, one process at a time.
# Needs an ffmpeg: imageio-ffmpeg's binary, installed into the venv if missing. Re-running skips work done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(cd ../../.. && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)

out=data/real_extra
debs=data/local/debs
src=data/local/real_extra_src
wav_dir=data/local/wav/real_extra
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --debs) debs=$2; shift 2 ;;
    --src) src=$2; shift 2 ;;
    --wav-dir) wav_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
done

packages="asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722
  asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722 festvox-ru tuxpaint-stamps-default
  klettres-data ktuberling-data"

mkdir -p "$debs" "$src"
for p in $packages; do
  if ! ls "$debs/${p}"_*.deb >/dev/null 2>&1; then
    echo "downloading $p"
    if ! (cd "$debs" && nice -n 19 apt-get download "$p" >/dev/null); then
      echo "$p: apt-get download failed, skipped" >&2
      continue
    fi
  fi
  deb=$(ls "$debs/${p}"_*.deb | tail -n 1)
  if [ ! -f "$src/$p/.unpacked" ]; then
    rm -rf "${src:?}/$p"
    nice -n 19 dpkg-deb -x "$deb" "$src/$p"
    touch "$src/$p/.unpacked"
  fi
done

if ! "$python" -c 'import imageio_ffmpeg' 2>/dev/null; then
  nice -n 19 "$python" -m pip install -q imageio-ffmpeg
fi
ffmpeg=$("$python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')

OMP_NUM_THREADS=1 nice -n 19 "$python" local/real_extra.py --src "$src" --debs "$debs" \
  --wav-dir "$wav_dir" --out "$out" --ffmpeg "$ffmpeg"
