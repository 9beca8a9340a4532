#!/usr/bin/env bash
# parse_options.sh: Kaldi-style command-line options for recipe scripts. Source it, don't run it.
#
#   stage=0            # every variable defined before sourcing is an option
#   use_gpu=true
#   help_message="Usage: $0 [options] <data-dir>"
#   . recipes/utils/parse_options.sh
#
# Semantics (those of Kaldi's utils/parse_options.sh):
#   --foo-bar VALUE or --foo-bar=VALUE   sets foo_bar (dashes map to underscores)
#   an option whose variable is not defined fails ("unknown option")
#   a variable whose default is true/false only takes true or false
#   --config FILE                        sources FILE (shell assignments) before the options after it
#   --help / -h                          prints $help_message and exits 0
#   parsing stops at the first argument that does not start with "--" (or after "--");
#   the remaining arguments stay in "$@".

_po_script=${0##*/}

for _po_arg in "$@"; do
  case "$_po_arg" in
    --) break ;;
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%s\n' "$help_message"; else echo "$_po_script: no help available"; fi
      exit 0 ;;
  esac
done

while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --config|--config=*)
      if [ "$1" = --config ]; then
        [ $# -ge 2 ] || { echo "$_po_script: option --config needs a value" >&2; exit 1; }
        _po_value=$2; shift 2
      else
        _po_value=${1#--config=}; shift
      fi
      [ -f "$_po_value" ] || { echo "$_po_script: config file not found: $_po_value" >&2; exit 1; }
      # shellcheck disable=SC1090
      . "$_po_value" || { echo "$_po_script: cannot source config $_po_value" >&2; exit 1; }
      ;;
    --?*)
      if [[ "$1" == *=* ]]; then
        _po_opt=${1%%=*}; _po_value=${1#*=}; shift
      else
        [ $# -ge 2 ] || { echo "$_po_script: option $1 needs a value" >&2; exit 1; }
        _po_opt=$1; _po_value=$2; shift 2
      fi
      _po_name=${_po_opt#--}
      _po_name=${_po_name//-/_}
      if ! [[ "$_po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [[ "$_po_name" == _po_* ]]; then
        echo "$_po_script: invalid option $_po_opt" >&2; exit 1
      fi
      if [ -z "${!_po_name+set}" ]; then
        echo "$_po_script: unknown option $_po_opt (see $_po_script --help)" >&2; exit 1
      fi
      _po_old=${!_po_name}
      if { [ "$_po_old" = true ] || [ "$_po_old" = false ]; } && [ "$_po_value" != true ] && [ "$_po_value" != false ]; then
        echo "$_po_script: option $_po_opt takes true or false, got '$_po_value'" >&2; exit 1
      fi
      printf -v "$_po_name" '%s' "$_po_value"
      ;;
    *) break ;;
  esac
done

unset _po_arg _po_opt _po_name _po_value _po_old
true
