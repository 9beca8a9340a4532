# path.sh: the environment of the recipe (sourced by run.sh and recipes/tts.sh).
LATENTSPEECH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
export LATENTSPEECH_ROOT
# the repository's virtual environment first, when there is one (make test / make demo create it)
if [ -x "$LATENTSPEECH_ROOT/.venv/bin/latentspeech" ]; then
  export PATH="$LATENTSPEECH_ROOT/.venv/bin:$PATH"
fi
export PATH="$LATENTSPEECH_ROOT/recipes/utils:$PATH"
export LC_ALL=C           # Kaldi's sort order for every `sort` in the recipe
export PYTHONUNBUFFERED=1 # logs show progress as it happens
