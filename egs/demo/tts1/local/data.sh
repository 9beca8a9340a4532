#!/usr/bin/env bash
# Stage 0 of egs/demo/tts1: build the offline demo corpus as Kaldi data dirs (default: data/).
#
#   local/data.sh                         # full corpus: real_train, real_test, train (>= 10 h), dev
#   local/data.sh --smoke true --out X    # tiny corpus in seconds (tests, run.sh --smoke true)
#
# Options (all passed to tools/make_demo_corpus.py; an unknown one fails):
#   --out DIR  --nj N  --hours H  --num-speakers N  --num-dev-speakers N  --min-utts N
#   --num-real-test N  --seed S  --verify true|false  --sets real,train,dev[,train_extra]  --smoke true|false
#   --extra-hours H  --extra-speakers N  --extra-name NAME  --extra-text unread|read
#                                         (the optional train_extra set, after a full build)
# Re-running skips finished audio. Audio lives in DIR/local/wav/, referenced by absolute path.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(cd ../../.. && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
exec "$python" "$root/tools/make_demo_corpus.py" --out data "$@"
