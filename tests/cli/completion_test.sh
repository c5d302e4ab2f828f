#!/usr/bin/env bash
# The bash completion (cli/share/pstrain.bash) against the real binary: commands, each
# command's flags, flag values in both "--flag value" and "--flag=value" forms.
# Usage: completion_test.sh PSTRAIN_BINARY COMPLETION_SCRIPT
set -uo pipefail
bin=$1
# shellcheck source=/dev/null
source "$2"
fail=0

# complete WORD... : sets COMP_WORDS as bash would for the command line (the last word is the
# one being completed; '=' is its own word, as COMP_WORDBREAKS splits it) and runs _pstrain.
complete_line() {
  COMP_WORDS=("$bin" "$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _pstrain
}
expect() {  # expect "description" WANTED -- WORD...
  local what=$1 wanted=$2
  shift 3
  complete_line "$@"
  if [[ " ${COMPREPLY[*]} " != *" $wanted "* ]]; then
    echo "FAIL: $what: completing '$*' gave (${COMPREPLY[*]}), not $wanted"
    fail=1
  else
    echo "ok: $what: $wanted"
  fi
}
expect_not() {
  local what=$1 unwanted=$2
  shift 3
  complete_line "$@"
  if [[ " ${COMPREPLY[*]} " == *" $unwanted "* ]]; then
    echo "FAIL: $what: completing '$*' offered $unwanted"
    fail=1
  else
    echo "ok: $what"
  fi
}

expect "command" launch -- lau
expect "command" status -- st
expect "role flag" --job_name -- --job_n
expect "launch flag" --workers -- launch --work
expect "training flag of launch" --train_steps -- launch --train_s
expect "train flag" --optimizer -- train --opt
expect "metrics flag" --metrics_port -- train --metrics_p
expect_not "train has no launch flags" --workers -- train --work
expect "value" cnn -- train --model c
expect "value after =" cnn -- --model = c
expect "value after = with nothing typed" momentum -- train --optimizer =
expect "job name" worker -- --job_name w
expect "command" predict -- pred
expect "command" export -- exp
expect "eval flag" --summary_json -- eval --summary_j
expect "predict flag" --input -- predict --inp
expect "export format" onnx -- export --format o
expect "export format after =" safetensors -- export --format = s
expect_not "export has no training flags" --train_steps -- export --train_s
exit $fail
