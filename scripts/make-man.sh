#!/usr/bin/env bash
# Writes the pstrain(1) man page with help2man from the binary's own --help and --version, plus
# each command's --help (train, launch, status, eval, predict, export) as COMMANDS sections and the hand-written
# sections of cli/share/pstrain.h2m (environment, exit status, files).
# Usage: make-man.sh PSTRAIN_BINARY OUTPUT [H2M_FILE]. Run by the build (target pstrain_man).
set -euo pipefail
bin=$1
out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
h2m=${3:-$root/cli/share/pstrain.h2m}
command -v help2man >/dev/null || {
  echo "make-man.sh: help2man is missing: run scripts/setup.sh (Debian's help2man)" >&2
  exit 1
}
# The binary runs at build time: no sanitizer leak report, no PSTRAIN_* flags from the builder's
# environment in the help's defaults.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
while IFS='=' read -r name _; do unset "$name"; done < <(env | grep -E '^PSTRAIN_' || true)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A command's --help as roff: option lines ("  --name TYPE   help", continued on lines indented
# to the help column) become .TP entries, group headings ("Training:") bold paragraphs, example
# lines ("  pstrain ...", "  # ...") preformatted, anything else text; backslashes escaped and
# lines starting with . or ' protected.
help_to_roff() {
  sed -e 's/\\/\\e/g' -e 's/-/\\-/g' | awk '
    function flush() { if (tp != "") { print ".TP"; print "\\fB" tp "\\fR"; if (desc != "") print desc } tp = ""; desc = "" }
    function text(s) { sub(/^[.\x27]/, "\\\\\\&&", s); return s }
    /^ *$/ { flush(); if (ex) { print ".fi"; ex = 0 } print ".PP"; next }
    /^  +\\-/ {
      flush(); line = $0; sub(/^ +/, "", line)
      n = match(line, /  +/)
      if (n) { tp = substr(line, 1, n - 1); desc = text(substr(line, n + RLENGTH)) } else { tp = line; desc = "" }
      next
    }
    /^                    +[^ ]/ && tp != "" { line = $0; sub(/^ +/, "", line); desc = desc (desc == "" ? "" : " ") text(line); next }
    /^  (pstrain|#|[A-Z_]+=)/ { flush(); if (!ex) { print ".nf"; ex = 1 } line = $0; sub(/^  /, "", line); print text(line); next }
    /^Usage:/ { flush(); print ".PP"; print text($0); next }
    /^ *[^ ].*:$/ { flush(); if (ex) { print ".fi"; ex = 0 } line = $0; sub(/^ +/, "", line); print ".PP"; print "\\fB" line "\\fR"; next }
    { flush(); if (ex) { print ".fi"; ex = 0 } line = $0; sub(/^ +/, "", line); print text(line) }
    END { flush(); if (ex) print ".fi" }'
}
{
  echo "[COMMANDS]"
  for cmd in train launch status eval predict export; do
    echo ".SS \"pstrain $cmd\""
    "$bin" "$cmd" --help 2>&1 | help_to_roff
  done
  echo
  cat "$h2m"
} >"$tmp/pstrain.h2m"
help2man --no-info --no-discard-stderr \
  --name="a parameter-server training runtime for MNIST-style models" \
  --include="$tmp/pstrain.h2m" --output="$tmp/pstrain.1" "$bin"
mv "$tmp/pstrain.1" "$out"
